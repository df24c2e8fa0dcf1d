// createEngine's loading in Node: the package's own files by default (no network), every kind of
// options.wasm source (bytes, module, file URL, path, http URL with and without the wasm MIME
// type), the relaxed-SIMD and SIMD probes and their fallbacks, info(), and the typed errors of
// bad sources. Node 20 (V8 11.3) has no relaxed SIMD, Node 21+ has it: the tests that need it
// are skipped on the former with the reason, the rest hold on both.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createEngine, InvalidArgumentError, type Engine } from '../src/index.js';
import { startServer, type RunningServer } from '../examples/browser/serve.mjs';
import { unsupported } from './helpers/engines.js';

const BUILD = fileURLToPath(new URL('../build/', import.meta.url));
/** Why relaxed SIMD does not run here, or null. */
const NO_RELAXED = unsupported('relaxed-simd');
/** What createEngine() picks here. */
const BEST = NO_RELAXED === null ? 'relaxed-simd' : 'simd';
let relaxedBytes: Uint8Array<ArrayBuffer>;
let simdBytes: Uint8Array<ArrayBuffer>;
let scalarBytes: Uint8Array<ArrayBuffer>;
let server: RunningServer;
let wrongMime: RunningServer;

beforeAll(async () => {
  relaxedBytes = new Uint8Array(await readFile(path.join(BUILD, 'batchnorm.relaxed-simd.wasm')));
  simdBytes = new Uint8Array(await readFile(path.join(BUILD, 'batchnorm.simd.wasm')));
  scalarBytes = new Uint8Array(await readFile(path.join(BUILD, 'batchnorm.scalar.wasm')));
  [server, wrongMime] = await Promise.all([startServer(), startServer({ wrongWasmMime: true })]);
});

afterAll(async () => {
  await server?.close();
  await wrongMime?.close();
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** The engine normalizes [1, 2, 3, 4] as two channels of two values: [-1, -1, 1, 1]. */
function expectWorks(engine: Engine): void {
  const { y } = engine.forward(new Float32Array([1, 2, 3, 4]), [2, 2], { training: true });
  expect(Array.from(y)).toEqual([-1, -1, 1, 1].map((v) => expect.closeTo(v, 4)));
  expect(engine.info().bytesInUse).toBe(0);
}

async function rejection(promise: Promise<unknown>): Promise<InvalidArgumentError> {
  const error = await promise.then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(InvalidArgumentError);
  return error as InvalidArgumentError;
}

describe('default location: the package\'s own build/ folder, read from disk in Node', () => {
  it(`auto-detect loads the most capable build from a file: URL (here ${BEST}); info() reports build, features, source, memory`, async () => {
    const engine = await createEngine();
    const info = engine.info();
    expect(info).toMatchObject({
      build: BEST, simd: true, features: { simd: true, relaxedSimd: NO_RELAXED === null, streaming: true }, source: 'file', bytesInUse: 0,
    });
    // threads: 'auto' on more than one core loads the build's threaded binary; threads: 1 the plain one.
    expect(info.url).toBe(pathToFileURL(path.join(BUILD, `batchnorm.${BEST}${info.threads.count > 1 ? '.threads' : ''}.wasm`)).href);
    expect((await createEngine({ threads: 1 })).info().url).toBe(pathToFileURL(path.join(BUILD, `batchnorm.${BEST}.wasm`)).href);
    expect(info.memoryBytes).toBeGreaterThanOrEqual(65536);
    expectWorks(engine);
  });

  it('simd: false loads the scalar build and leaves SIMD unprobed', async () => {
    const engine = await createEngine({ simd: false });
    expect(engine.info()).toMatchObject({ build: 'scalar', simd: false, features: { simd: null, relaxedSimd: null }, source: 'file' });
    expect(engine.info().url).toMatch(/\/build\/batchnorm\.scalar(\.threads)?\.wasm$/);
    expectWorks(engine);
  });

  it('never fetches in Node', async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    await createEngine();
    await createEngine({ simd: false });
    expect(fetchSpy).not.toHaveBeenCalled();
  });
});

describe('options.wasm sources', () => {
  it('bytes: Uint8Array, ArrayBuffer, DataView, a view at an offset', async () => {
    const padded = new Uint8Array(simdBytes.length + 16);
    padded.set(simdBytes, 16);
    for (const simd of [simdBytes, simdBytes.buffer.slice(0), new DataView(simdBytes.buffer), padded.subarray(16)]) {
      const engine = await createEngine({ wasm: { simd } });
      expect(engine.info()).toMatchObject({ build: 'simd', source: 'bytes', url: null });
      expectWorks(engine);
    }
  });

  it('a compiled WebAssembly.Module', async () => {
    const engine = await createEngine({ simd: false, wasm: { scalar: await WebAssembly.compile(scalarBytes) } });
    expect(engine.info()).toMatchObject({ build: 'scalar', source: 'module', url: null });
    expectWorks(engine);
  });

  it('a file: URL, an absolute path and a path relative to the working directory', async () => {
    const file = path.join(BUILD, 'batchnorm.simd.wasm');
    for (const simd of [pathToFileURL(file), file, path.relative(process.cwd(), file)]) {
      const engine = await createEngine({ wasm: { simd } });
      expect(engine.info()).toMatchObject({ build: 'simd', source: 'file', url: pathToFileURL(file).href });
      expectWorks(engine);
    }
  });

  it('an http URL served as application/wasm: streaming compilation', async () => {
    const engine = await createEngine({ wasm: { simd: new URL('build/batchnorm.simd.wasm', server.url) } });
    expect(engine.info()).toMatchObject({ build: 'simd', source: 'stream', url: `${server.url}build/batchnorm.simd.wasm` });
    expectWorks(engine);
  });

  it('an http URL served with the wrong MIME type: compiled from the fetched bytes instead', async () => {
    const engine = await createEngine({ wasm: { simd: `${wrongMime.url}build/batchnorm.simd.wasm` } });
    expect(engine.info()).toMatchObject({ build: 'simd', source: 'fetch' });
    expectWorks(engine);
  });

  it('a data: URL', async () => {
    const url = `data:application/wasm;base64,${Buffer.from(scalarBytes).toString('base64')}`;
    const engine = await createEngine({ simd: false, wasm: { scalar: url } });
    expect(engine.info().build).toBe('scalar');
    expectWorks(engine);
  });
});

/** An engine that rejects these binaries (and judges every other one itself). */
function rejectBinaries(...rejected: Uint8Array[]): void {
  const validate = WebAssembly.validate.bind(WebAssembly);
  vi.spyOn(WebAssembly, 'validate').mockImplementation((bytes) => {
    const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes as ArrayBuffer);
    return !rejected.some((r) => b.length === r.length && b.every((v, i) => v === r[i])) && validate(bytes);
  });
}

// Modules read from the package's files are compiled once per process (and a rejected one is
// remembered as rejected), so the tests that make the engine reject a binary pass it as bytes.
describe('relaxed-SIMD probe: WebAssembly.validate on the relaxed-SIMD binary itself, falling back to simd', () => {
  it('where the engine rejects the relaxed-SIMD binary (Safari, Node 20), createEngine() loads the simd build silently', async () => {
    rejectBinaries(relaxedBytes);
    const engine = await createEngine({ wasm: { 'relaxed-simd': relaxedBytes } });
    expect(engine.info()).toMatchObject({ build: 'simd', simd: true, features: { simd: true, relaxedSimd: false }, source: 'file' });
    expect(engine.info().url).toBe(pathToFileURL(path.join(BUILD, 'batchnorm.simd.wasm')).href);
    expectWorks(engine);
  });

  it('build: \'relaxed-simd\' where the engine rejects it: InvalidArgumentError on options.build, naming the fallback', async () => {
    rejectBinaries(relaxedBytes);
    const error = await rejection(createEngine({ build: 'relaxed-simd', wasm: { 'relaxed-simd': relaxedBytes } }));
    expect(error.argument).toBe('options.build');
    expect(error.message).toMatch(/expected a WebAssembly engine with relaxed SIMD .* got an engine that rejects the relaxed-SIMD build .*omit `build` to fall back to the simd build/);
  });

  it('rejecting relaxed SIMD and SIMD: createEngine() falls back twice, to scalar', async () => {
    rejectBinaries(relaxedBytes, simdBytes);
    const engine = await createEngine({ wasm: { 'relaxed-simd': relaxedBytes, simd: simdBytes } });
    expect(engine.info()).toMatchObject({ build: 'scalar', simd: false, features: { simd: false, relaxedSimd: false } });
    expectWorks(engine);
  });

  it('simd: true is the bit-reproducible simd build, also where relaxed SIMD runs (relaxed SIMD left unprobed)', async () => {
    const engine = await createEngine({ simd: true });
    expect(engine.info()).toMatchObject({ build: 'simd', simd: true, features: { simd: true, relaxedSimd: null } });
    expectWorks(engine);
  });

  it('build: \'relaxed-simd\' pins it where it runs (skipped where it cannot), from the package or from options.wasm', async (ctx) => {
    ctx.skip(NO_RELAXED !== null, NO_RELAXED ?? '');
    const pinned = await createEngine({ build: 'relaxed-simd' });
    expect(pinned.info()).toMatchObject({ build: 'relaxed-simd', simd: true, features: { simd: true, relaxedSimd: true }, source: 'file' });
    expectWorks(pinned);
    const fromBytes = await createEngine({ wasm: { 'relaxed-simd': relaxedBytes } });
    expect(fromBytes.info()).toMatchObject({ build: 'relaxed-simd', source: 'bytes', url: null });
    expectWorks(fromBytes);
    const swapped = await rejection(createEngine({ wasm: { simd: relaxedBytes } }));
    expect(swapped.message).toBe('options.wasm.simd: expected the simd build of wasm-batchnorm, got the relaxed-simd build');
  });

  it('options.wasm without a relaxed-simd entry: createEngine() does not try it (a page that serves only simd and scalar)', async () => {
    const readSpy = vi.spyOn(WebAssembly, 'validate');
    const engine = await createEngine({ wasm: { simd: simdBytes, scalar: scalarBytes } });
    expect(engine.info()).toMatchObject({ build: 'simd', source: 'bytes', features: { simd: true, relaxedSimd: null } });
    expect(readSpy.mock.calls.every(([b]) => (b as Uint8Array).length !== relaxedBytes.length)).toBe(true);
    // Only scalar listed: simd is still tried from the package (as before relaxed-simd existed).
    expect((await createEngine({ wasm: { scalar: scalarBytes } })).info()).toMatchObject({ build: 'simd', source: 'file' });
  });

  it('the other build under the relaxed-simd key is a typed error', async () => {
    const swapped = await rejection(createEngine({ wasm: { 'relaxed-simd': simdBytes } }));
    expect(swapped.message).toBe('options.wasm.relaxed-simd: expected the relaxed-simd build of wasm-batchnorm, got the simd build');
  });
});

describe('SIMD probe: WebAssembly.validate on the SIMD binary itself', () => {
  /** An engine without SIMD, as far as our SIMD build is concerned. */
  function rejectSimdBuild(): void {
    rejectBinaries(simdBytes);
  }

  it('auto-detect falls back to the scalar build when the engine rejects the SIMD binary', async () => {
    rejectSimdBuild();
    const engine = await createEngine({ wasm: { simd: simdBytes } });
    expect(engine.info()).toMatchObject({ build: 'scalar', simd: false, features: { simd: false }, source: 'file' });
    expect(WebAssembly.validate).toHaveBeenCalled();
    expectWorks(engine);
  });

  it('simd: true where the engine rejects it: InvalidArgumentError on options.simd', async () => {
    rejectSimdBuild();
    const error = await rejection(createEngine({ simd: true, wasm: { simd: simdBytes } }));
    expect(error.argument).toBe('options.simd');
    expect(error.message).toMatch(/expected a WebAssembly engine with 128-bit SIMD/);
  });
});

describe('bad sources are typed errors naming the argument', () => {
  it('options.wasm of the wrong type, an unknown key, a source of the wrong type', async () => {
    expect((await rejection(createEngine({ wasm: 'x' as never }))).argument).toBe('options.wasm');
    expect((await rejection(createEngine({ wasm: { SIMD: simdBytes } as never }))).argument).toBe('options.wasm.SIMD');
    expect((await rejection(createEngine({ wasm: [] as never }))).expected).toBe("an object { 'relaxed-simd'?, simd?, scalar? }");
    for (const bad of [42, true, null, {}, [1, 2]]) {
      const error = await rejection(createEngine({ wasm: { simd: bad as never } }));
      expect(error.argument).toBe('options.wasm.simd');
      expect(error.expected).toMatch(/bytes .* a URL .* a WebAssembly\.Module/);
    }
  });

  it('bytes that are not WebAssembly, the other build, a missing file, an HTTP 404', async () => {
    const notWasm = await rejection(createEngine({ wasm: { simd: new TextEncoder().encode('<!doctype html>') } }));
    expect(notWasm.message).toMatch(/options\.wasm\.simd: expected a WebAssembly binary .* got 15 bytes starting with 3c 21 64 6f/);

    const swapped = await rejection(createEngine({ wasm: { simd: scalarBytes } }));
    expect(swapped.message).toBe('options.wasm.simd: expected the simd build of wasm-batchnorm, got the scalar build');

    const missing = await rejection(createEngine({ simd: false, wasm: { scalar: path.join(BUILD, 'nope.wasm') } }));
    expect(missing.message).toMatch(/options\.wasm\.scalar: expected a readable WebAssembly file at file:.*nope\.wasm, got ENOENT/);

    const notFound = await rejection(createEngine({ wasm: { simd: `${server.url}build/nope.wasm` } }));
    expect(notFound.message).toBe(`options.wasm.simd: expected HTTP 200 from ${server.url}build/nope.wasm, got HTTP 404 (pass options.wasm to load it from elsewhere)`);
  });

  it('a failed load is not cached: the next createEngine tries again', async () => {
    const url = `${server.url}build/batchnorm.simd.wasm?retry`;
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockRejectedValueOnce(new TypeError('network down'));
    const error = await rejection(createEngine({ wasm: { simd: url } }));
    expect(error.message).toMatch(/a failed fetch: network down/);
    expect((await createEngine({ wasm: { simd: url } })).info().build).toBe('simd');
    expect(fetchSpy).toHaveBeenCalledTimes(2);
  });
});
