// Loading the kernel module, in Node and in browsers, for one build of the build table. One
// layout for every platform: the wasm ships in the package's build/ folder, next to dist/ (and
// src/ in this repository), and is found from the build table's URLs (builds.ts):
// - Node: a file: URL, read with node:fs/promises (imported dynamically, so browsers never see it);
// - browsers (plain ESM serving the package folder): fetched, compileStreaming when the server
//   sends application/wasm, compiled from the bytes otherwise;
// - bundlers: the URLs are literal `new URL('…', import.meta.url)` expressions, one per build, so
//   Vite, webpack 5 and Parcel emit the files as assets and rewrite the URLs.
// options.wasm overrides any build with bytes, a URL or a compiled module.
import { InvalidArgumentError, describe } from '../errors.js';
import { readOptions } from '../args.js';
import { isArrayBufferLike, snapshotTyped } from '../typed.js';
import { BUILDS, BUILD_NAMES, type Build, type BuildSpec } from './builds.js';
import type { KernelExports } from './kernels.js';

/**
 * Where one build's wasm comes from:
 * - bytes: an `ArrayBuffer` or a view of one (`Uint8Array`, `DataView`, ...), e.g. inlined or fetched by you;
 * - a URL: a `URL`, or a string that is resolved against `document.baseURI` in a page, or taken as a
 *   file path (relative to the working directory) in Node. `http(s):`, `data:` and `blob:` URLs are
 *   fetched (streaming compilation when the server sends `application/wasm`, bytes otherwise);
 *   `file:` URLs are read from disk, in Node only;
 * - a `WebAssembly.Module` you compiled yourself (e.g. under a CSP that allows only precompiled modules).
 *
 * (`& object`: `WebAssembly.Module` is an empty interface, which any value would match.)
 */
export type WasmSource = ArrayBuffer | ArrayBufferView | URL | string | (WebAssembly.Module & object);

declare global {
  // Keeps these declarations valid without lib "DOM" (Node-only TypeScript projects, whose
  // @types/node has no WebAssembly types): empty interfaces, which merge with lib.dom's
  // WebAssembly.Module and WebAssembly.Memory wherever those exist.
  namespace WebAssembly {
    interface Module {} // eslint-disable-line @typescript-eslint/no-empty-interface
    interface Memory {} // eslint-disable-line @typescript-eslint/no-empty-interface
  }
}

/** Per-build wasm sources; a build left out is loaded from the package's own `build/` folder. */
export type WasmSources = {
  /**
   * `relaxed-simd`: `build/batchnorm.relaxed-simd.wasm` in the package (SIMD and relaxed SIMD);
   * `simd`: `build/batchnorm.simd.wasm`; `scalar`: `build/batchnorm.scalar.wasm` (no SIMD instructions).
   */
  [B in Build]?: WasmSource;
};

/**
 * How the kernel module was obtained: `'file'` read from disk (Node); `'stream'`
 * `WebAssembly.compileStreaming` of a fetch; `'fetch'` fetched, then compiled from its bytes (the
 * server sent a MIME type other than `application/wasm`, or streaming is unavailable); `'bytes'`
 * or `'module'` given in `options.wasm`.
 */
export type WasmOrigin = 'file' | 'stream' | 'fetch' | 'bytes' | 'module';

/**
 * Modules loaded from URLs, compiled once per realm and shared by every engine (instances and
 * their memories are per engine). `null`: the engine rejects that (SIMD) binary.
 */
const compiled = new Map<string, Promise<Loaded | null>>();

export interface Loaded {
  module: WebAssembly.Module;
  source: WasmOrigin;
  url: string | null;
}

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];
const SOURCE_EXPECTED = 'bytes (an ArrayBuffer or a view of one), a URL or URL string, or a WebAssembly.Module';

function isBufferSource(value: unknown): value is ArrayBuffer | ArrayBufferView {
  return ArrayBuffer.isView(value) || isArrayBufferLike(value);
}

function toBytes(source: ArrayBuffer | ArrayBufferView): Uint8Array<ArrayBuffer> {
  return ArrayBuffer.isView(source)
    ? new Uint8Array(source.buffer as ArrayBuffer, source.byteOffset, source.byteLength)
    : new Uint8Array(source as ArrayBuffer);
}

function isNode(): boolean {
  return typeof globalThis.process?.versions?.node === 'string';
}

/**
 * A Node built-in, out of bundlers' sight (a static specifier would make Vite or webpack stub or
 * reject it for browsers, where this is never called): process.getBuiltinModule (Node 20.16+),
 * else a dynamic import of a non-literal specifier.
 */
export async function nodeBuiltin<T>(id: 'node:fs/promises' | 'node:url' | 'node:worker_threads' | 'node:os'): Promise<T> {
  const proc = globalThis.process as { getBuiltinModule?: (id: string) => unknown } | undefined;
  if (typeof proc?.getBuiltinModule === 'function') return proc.getBuiltinModule(id) as T;
  return (await import(/* webpackIgnore: true */ /* @vite-ignore */ id)) as T;
}

/** Sets `cause` on one of our errors (their constructor takes none). */
export function withCause<E extends Error>(error: E, cause: unknown): E {
  Object.defineProperty(error, 'cause', { value: cause, configurable: true, writable: true });
  return error;
}

export function reason(error: unknown): string {
  if (error instanceof Error) return (error as Error & { code?: string }).code ?? error.message;
  return String(error);
}

/** A URL string against the page (browsers and workers), or a file path in Node. */
async function resolveUrl(spec: string, argument: string): Promise<URL> {
  const base = (globalThis as { document?: { baseURI?: string } }).document?.baseURI
    ?? (globalThis as { location?: { href?: string } }).location?.href;
  if (base !== undefined) {
    try {
      return new URL(spec, base);
    } catch (error) {
      throw withCause(new InvalidArgumentError(argument, 'a valid URL', JSON.stringify(spec)), error);
    }
  }
  // No page: an absolute URL (scheme of two or more letters; `C:\…` is a Windows path) or a path.
  if (/^[a-z][a-z0-9+.-]+:/i.test(spec)) return new URL(spec);
  if (!isNode()) throw new InvalidArgumentError(argument, 'an absolute URL (there is no page to resolve against)', JSON.stringify(spec));
  const { pathToFileURL } = await nodeBuiltin<typeof import('node:url')>('node:url');
  return pathToFileURL(spec);
}

/**
 * Compiles validated bytes. The feature probe lives here: `WebAssembly.validate` on the binary
 * itself; a build with a fallback that the engine rejects yields `null` (fall back, or an error
 * when that build was demanded).
 */
async function fromBytes(spec: BuildSpec, bytes: Uint8Array<ArrayBuffer>, source: WasmOrigin, url: string | null, argument: string): Promise<Loaded | null> {
  const where = url === null ? undefined : `from ${url}`;
  if (bytes.length < 8 || WASM_MAGIC.some((b, i) => bytes[i] !== b)) {
    const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new InvalidArgumentError(argument, 'a WebAssembly binary (starting with 00 61 73 6d, "\\0asm")',
      `${bytes.length} bytes starting with ${head || 'nothing'}`, where);
  }
  if (!WebAssembly.validate(bytes)) {
    if (spec.fallback !== null) return null;
    throw new InvalidArgumentError(argument, 'a WebAssembly module this engine accepts', 'a binary WebAssembly.validate rejects', where);
  }
  return { module: await WebAssembly.compile(bytes), source, url };
}

async function fromUrl(spec: BuildSpec, url: URL, argument: string): Promise<Loaded | null> {
  if (url.protocol === 'file:') {
    if (!isNode()) {
      throw new InvalidArgumentError(argument, 'an http(s) URL (a page cannot read file: URLs)', url.href,
        'serve the page over http, or pass the bytes in options.wasm');
    }
    const { readFile } = await nodeBuiltin<typeof import('node:fs/promises')>('node:fs/promises');
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(await readFile(url));
    } catch (error) {
      throw withCause(new InvalidArgumentError(argument, `a readable WebAssembly file at ${url.href}`, reason(error)), error);
    }
    return fromBytes(spec, bytes, 'file', url.href, argument);
  }
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw withCause(new InvalidArgumentError(argument, `a WebAssembly binary fetched from ${url.href}`, `a failed fetch: ${reason(error)}`,
      'pass options.wasm to load it from elsewhere'), error);
  }
  if (!response.ok) {
    throw new InvalidArgumentError(argument, `HTTP 200 from ${url.href}`, `HTTP ${response.status}`, 'pass options.wasm to load it from elsewhere');
  }
  const mime = (response.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (mime === 'application/wasm' && typeof WebAssembly.compileStreaming === 'function') {
    const backup = response.clone(); // a few KiB: kept in case streaming fails
    try {
      return { module: await WebAssembly.compileStreaming(response), source: 'stream', url: url.href };
    } catch {
      // A CompileError (e.g. no SIMD) or a refused stream: judge the bytes themselves below.
      return fromBytes(spec, new Uint8Array(await backup.arrayBuffer()), 'fetch', url.href, argument);
    }
  }
  // Wrong MIME type (or no streaming): WebAssembly.compileStreaming would reject, bytes work anywhere.
  return fromBytes(spec, new Uint8Array(await response.arrayBuffer()), 'fetch', url.href, argument);
}

/**
 * One build's module from options.wasm[build] or the package's own file (`threaded`: its
 * threaded binary, always the package's); null: the JavaScript engine rejects it.
 */
export async function loadModule(spec: BuildSpec, source: WasmSource | undefined, threaded = false): Promise<Loaded | null> {
  const argument = `options.wasm.${spec.name}`;
  if (threaded) return load(spec, spec.threadsUrl(), argument);
  if (source instanceof WebAssembly.Module) return { module: source, source: 'module', url: null };
  if (isBufferSource(source)) return fromBytes(spec, toBytes(source), 'bytes', null, argument);
  const url = source === undefined ? spec.url()
    : typeof source === 'string' ? await resolveUrl(source, argument) : source;
  return load(spec, url, argument);
}

function load(spec: BuildSpec, url: URL, argument: string): Promise<Loaded | null> {
  const key = `${spec.name} ${url.href}`;
  let loaded = compiled.get(key);
  if (!loaded) {
    loaded = fromUrl(spec, url, argument);
    compiled.set(key, loaded);
    loaded.catch(() => compiled.delete(key)); // a failed load is retried by the next createEngine
  }
  return loaded;
}

/**
 * options.wasm read once (own keys of the build table only; any other key rejected) and checked. Bytes
 * are copied here, so nothing the caller does while the engine loads (awaits) changes them.
 */
export function checkSources(wasm: unknown): WasmSources | undefined {
  if (wasm === undefined) return undefined;
  const expected = `an object { ${BUILD_NAMES.map((b) => (/^[a-z]+$/.test(b) ? `${b}?` : `'${b}'?`)).join(', ')} }`;
  if (Array.isArray(wasm)) throw new InvalidArgumentError('options.wasm', expected, describe(wasm));
  const o = readOptions(wasm, 'options.wasm', BUILD_NAMES, expected);
  const sources: WasmSources = {};
  for (const key of BUILD_NAMES) {
    const value = o[key];
    if (value === undefined) continue;
    if (typeof value === 'string' || value instanceof URL || value instanceof WebAssembly.Module) {
      sources[key] = value;
    } else if (isBufferSource(value)) {
      try {
        sources[key] = copyBytes(value);
      } catch (error) { // a detached buffer
        throw withCause(new InvalidArgumentError(`options.wasm.${key}`, SOURCE_EXPECTED, 'a detached buffer'), error);
      }
    } else {
      throw new InvalidArgumentError(`options.wasm.${key}`, SOURCE_EXPECTED, describe(value));
    }
  }
  return sources;
}

/** A copy of a buffer source's bytes, read through the intrinsic getters (views) or the buffer itself. */
function copyBytes(source: ArrayBuffer | ArrayBufferView): Uint8Array<ArrayBuffer> {
  const typed = snapshotTyped(source);
  if (typed !== null) return new Uint8Array(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
  if (ArrayBuffer.isView(source)) { // a DataView
    const view = source as DataView;
    return new Uint8Array(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  }
  return new Uint8Array(new Uint8Array(source as ArrayBuffer));
}

/** Traps from a kernel (only the debug build has any) carry the module's message offsets. */
export const imports = {
  env: {
    abort(_message: number, _file: number, line: number, column: number): never {
      throw new Error(`batchnorm kernel aborted at ${line}:${column}`);
    },
  },
};


/**
 * Instantiates a loaded module of build `spec` with its own memory (or, threaded, the shared
 * `memory` it imports) and checks that it is that
 * build of this package (its exports, and simdEnabled() against the build table).
 */
export async function instantiateKernels(spec: BuildSpec, loaded: Loaded, memory?: WebAssembly.Memory): Promise<KernelExports> {
  const argument = `options.wasm.${spec.name}`, expected = `the ${spec.name} build of wasm-batchnorm`;
  let instance: WebAssembly.Instance;
  try {
    instance = await WebAssembly.instantiate(loaded.module, memory ? { env: { ...imports.env, memory } } : imports);
  } catch (error) {
    throw withCause(new InvalidArgumentError(argument, expected, `a module that does not instantiate: ${reason(error)}`), error);
  }
  const kernels = instance.exports as unknown as KernelExports;
  if (typeof kernels.heapBase !== 'function' || typeof kernels.simdEnabled !== 'function' || !(kernels.memory instanceof WebAssembly.Memory)) {
    throw new InvalidArgumentError(argument, expected, 'a module without its exports');
  }
  const flag = kernels.simdEnabled();
  if (flag !== spec.simdFlag) {
    const other = BUILD_NAMES.find((b) => BUILDS[b].simdFlag === flag);
    throw new InvalidArgumentError(argument, expected, other === undefined ? 'another module' : `the ${other} build`);
  }
  return kernels;
}
