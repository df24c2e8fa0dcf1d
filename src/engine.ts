import { Arena } from './memory.js';
import { InvalidArgumentError, MemoryError, describe } from './errors.js';
import { checkNumbers, readOptions } from './args.js';
import { isArrayBufferLike, snapshotTyped } from './typed.js';
import {
  forwardBatchNorm, backwardBatchNorm,
  type ForwardOptions, type ForwardResult, type BackwardOptions, type BackwardResult,
} from './batchnorm.js';
import {
  momentsBatchNorm, forwardWithMomentsBatchNorm, backwardReduceBatchNorm, backwardWithSumsBatchNorm,
  type Moments, type MomentsOptions, type ForwardWithMomentsOptions, type BackwardSums, type BackwardReduceOptions,
  type BackwardWithSumsOptions,
} from './sync.js';

/** The wasm module's exports (assembly/index.ts): byte pointers and element counts only. */
export interface KernelExports {
  readonly memory: WebAssembly.Memory;
  heapBase(): number;
  simdEnabled(): number;
  /** Partials (count | pivot | offset | m2, f64[C] each) of statistics blocks [b0, b1) (assembly/stats.ts). */
  statsNchwF32(x: number, outer: number, C: number, inner: number, block: number, b0: number, b1: number, partials: number): void;
  statsNhwcF32(x: number, rows: number, C: number, block: number, b0: number, b1: number, partials: number, work: number): void;
  /** Each channel's partials merged in block order (Chan's update) into f64 mean[C], m2[C]. */
  mergeMomentsF64(partials: number, blocks: number, C: number, mean: number, m2: number): void;
  /** `lower`: 0 fuses ReLU, -Infinity applies none (assembly/normalize.ts). */
  normalizeNchwF32(x: number, y: number, outer: number, C: number, inner: number,
    meanHi: number, scale: number, shift: number, lower: number): void;
  normalizeNhwcF32(x: number, y: number, rows: number, C: number,
    meanHi: number, scale: number, shift: number, work: number, lower: number): void;
  /**
   * Partials (Σg | Σg·(x − mean), f64[C] each) of blocks [b0, b1) of the statistics partition;
   * `y`: the fused ReLU's forward output masking dy, or 0 (assembly/backward.ts).
   */
  backwardReduceNchwF32(dy: number, x: number, outer: number, C: number, inner: number, mean: number,
    block: number, b0: number, b1: number, partials: number, y: number): void;
  backwardReduceNhwcF32(dy: number, x: number, rows: number, C: number, mean: number,
    block: number, b0: number, b1: number, partials: number, work: number, y: number): void;
  /** Each channel's backward partials added in block order into f64 sumDy[C], sumDyXmu[C]. */
  mergeSumsF64(partials: number, blocks: number, C: number, sumDy: number, sumDyXmu: number): void;
  backwardDxNchwF32(dy: number, x: number, dx: number, outer: number, C: number, inner: number,
    mean: number, k1: number, k2: number, k3: number, training: boolean, y: number): void;
  backwardDxNhwcF32(dy: number, x: number, dx: number, rows: number, C: number,
    mean: number, k1: number, k2: number, k3: number, work: number, training: boolean, y: number): void;
  forwardTrainNchwF32(x: number, y: number, outer: number, C: number, inner: number, block: number,
    gamma: number, beta: number, eps: number, mean: number, m2: number, invStd: number, lower: number): void;
  backwardNchwF32(dy: number, x: number, dx: number, outer: number, C: number, inner: number, block: number,
    mean: number, invStd: number, gamma: number, training: boolean, sumDy: number, sumDyXmu: number, y: number): void;
  foldF32(C: number, mean: number, v: number, divisor: number, eps: number, gamma: number, beta: number,
    meanHi: number, scale: number, shift: number, invStd: number): void;
  narrowF64(src: number, C: number, dst: number): void;
  widenF32(src: number, C: number, dst: number): void;
  updateRunningF32(C: number, mean: number, m2: number, divisor: number, momentum: number, rm: number, rv: number): void;
  foldBackwardF32(C: number, sumDy: number, s2: number, xmu: boolean, invStd: number, gamma: number, n: number,
    training: boolean, k1: number, k2: number, k3: number, dweight: number, dbias: number): void;
}

export type Build = 'simd' | 'scalar';

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
export interface WasmSources {
  /** The SIMD build, `build/batchnorm.simd.wasm` in the package. */
  simd?: WasmSource;
  /** The scalar build (no SIMD instructions), `build/batchnorm.scalar.wasm` in the package. */
  scalar?: WasmSource;
}

export interface EngineOptions {
  /**
   * `true`: the SIMD build, or an `InvalidArgumentError` (argument `options.simd`) where the
   * JavaScript engine rejects it; `false`: the scalar build; omitted: the SIMD build when
   * `WebAssembly.validate` accepts the SIMD binary itself, else the scalar build.
   */
  simd?: boolean;
  /**
   * Where to load the wasm from. Not needed in Node, in browsers serving the package folder, or
   * with bundlers that understand `new URL('…', import.meta.url)` (Vite, webpack 5, Parcel): by
   * default Node reads the package's own files and browsers fetch them relative to the module.
   * Pass bytes, a URL or a compiled module for CDNs, CSP-restricted pages or other bundlers.
   *
   * @example
   * // the wasm files copied next to your page or to a CDN:
   * await createEngine({ wasm: {
   *   simd: new URL('/static/batchnorm.simd.wasm', location.href),
   *   scalar: new URL('/static/batchnorm.scalar.wasm', location.href),
   * } });
   */
  wasm?: WasmSources;
}

/**
 * How the kernel module was obtained: `'file'` read from disk (Node); `'stream'`
 * `WebAssembly.compileStreaming` of a fetch; `'fetch'` fetched, then compiled from its bytes (the
 * server sent a MIME type other than `application/wasm`, or streaming is unavailable); `'bytes'`
 * or `'module'` given in `options.wasm`.
 */
export type WasmOrigin = 'file' | 'stream' | 'fetch' | 'bytes' | 'module';

/** What the JavaScript engine running us supports, as far as it was probed. */
export interface EngineFeatures {
  /**
   * 128-bit wasm SIMD: whether the engine accepted the SIMD build (`WebAssembly.validate` on the
   * SIMD binary itself, or its streaming compilation). `null` when not probed (`simd: false`).
   */
  simd: boolean | null;
  /** `WebAssembly.compileStreaming` exists (used for URLs served as `application/wasm`). */
  streaming: boolean;
}

export interface EngineInfo {
  build: Build;
  simd: boolean;
  /** Bytes of wasm linear memory (grows on demand, never shrinks). */
  memoryBytes: number;
  /** Bytes held by live tensors and in-flight calls. */
  bytesInUse: number;
  features: EngineFeatures;
  /** How the module was obtained; `null` for an engine not made by `createEngine`. */
  source: WasmOrigin | null;
  /** The URL the module was loaded from (a `file:` URL in Node), or `null` (bytes, module). */
  url: string | null;
}

/** A float32 tensor allocated in the engine's wasm memory: the zero-copy path. */
export class Tensor {
  readonly byteOffset: number;
  readonly length: number;
  private readonly arena: Arena;
  private view: Float32Array | null = null;
  private freed = false;

  /** @internal */
  constructor(arena: Arena, byteOffset: number, length: number) {
    this.arena = arena;
    this.byteOffset = byteOffset;
    this.length = length;
  }

  /**
   * A live Float32Array over the tensor's memory. Pass it to forward/backward for zero-copy
   * calls. It is valid until wasm memory grows (an allocation may grow it); this getter always
   * returns a current view, so read `tensor.data` again rather than keeping an old one.
   */
  get data(): Float32Array {
    if (this.freed) throw new MemoryError('tensor', 'a live tensor', 'a freed tensor');
    if (this.view === null || this.view.buffer !== this.arena.buffer) {
      this.view = new Float32Array(this.arena.buffer, this.byteOffset, this.length);
    }
    return this.view;
  }

  /** Copies `values` in (copy-in helper): a typed array or an array of numbers, converted to float32. */
  set(values: ArrayLike<number>): this {
    const source = checkNumbers(values, 'values'); // read (and checked) before anything is written
    const data = this.data;
    if (source.length !== this.length) {
      throw new InvalidArgumentError('values', `length ${this.length}`, `length ${source.length}`);
    }
    data.set(source);
    return this;
  }

  /** A plain Float32Array copy (copy-out helper, safe across memory growth). */
  toArray(): Float32Array {
    return this.data.slice();
  }

  /** Returns the memory to the engine; the tensor is unusable afterwards. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.view = null;
    this.arena.release(this.byteOffset);
  }
}

/**
 * One instance of the kernel module with its own linear memory. Engines share nothing but
 * the compiled module, so two engines never interfere.
 */
export class Engine {
  readonly build: Build;
  /** @internal */ readonly kernels: KernelExports;
  /** @internal */ readonly arena: Arena;

  /** @internal Use createEngine(). */
  constructor(kernels: KernelExports, build: Build) {
    this.kernels = kernels;
    this.build = build;
    this.arena = new Arena(kernels.memory, kernels.heapBase());
  }

  /** Batch-normalizes x; see ForwardOptions for the semantics (PyTorch's by default). */
  forward(x: Float32Array, shape: readonly number[], opts: ForwardOptions): ForwardResult {
    return forwardBatchNorm(this, x, shape, opts);
  }

  /** Gradients of forward's y with respect to x, weight and bias. */
  backward(dy: Float32Array, x: Float32Array, shape: readonly number[], opts: BackwardOptions): BackwardResult {
    return backwardBatchNorm(this, dy, x, shape, opts);
  }

  /** Synchronized BN (src/sync.ts): per-channel { count, mean, m2 } of x, f64; merge shards with mergeMoments. */
  moments(x: Float32Array, shape: readonly number[], opts: MomentsOptions = {}): Moments {
    return momentsBatchNorm(this, x, shape, opts);
  }

  /** Synchronized BN: training forward of a shard with the global (merged) moments; running stats use the global count. */
  forwardWithMoments(x: Float32Array, shape: readonly number[], opts: ForwardWithMomentsOptions): ForwardResult {
    return forwardWithMomentsBatchNorm(this, x, shape, opts);
  }

  /** Synchronized BN: this shard's per-channel Σdy and Σdy·xhat, to be all-reduced (summed). */
  backwardReduce(dy: Float32Array, x: Float32Array, shape: readonly number[], opts: BackwardReduceOptions): BackwardSums {
    return backwardReduceBatchNorm(this, dy, x, shape, opts);
  }

  /** Synchronized BN: dx of a shard from the all-reduced sums and the global count. */
  backwardWithSums(dy: Float32Array, x: Float32Array, shape: readonly number[], opts: BackwardWithSumsOptions): BackwardResult {
    return backwardWithSumsBatchNorm(this, dy, x, shape, opts);
  }

  /**
   * Allocates a tensor in wasm memory: `length` zero-filled float32 values, or a float32 copy of
   * `values` (a typed array or an array of numbers; the one place the API converts types). A
   * request beyond 4 GiB, or a refused memory.grow, throws MemoryError before anything is
   * allocated; growing memory detaches earlier views (read `tensor.data` again).
   */
  tensor(lengthOrValues: number | ArrayLike<number>): Tensor {
    let source: ArrayLike<number> | null = null;
    let length: number;
    if (typeof lengthOrValues === 'number') {
      length = lengthOrValues;
      if (!Number.isInteger(length) || length < 1) {
        throw new InvalidArgumentError('length', 'a positive integer (float32 values) or an array of numbers', describe(length));
      }
    } else {
      // Every value is read (an array's element getters run) before the block is allocated, so a
      // throwing getter cannot leak it; a typed array comes back as an engine-made view.
      source = checkNumbers(lengthOrValues, 'values');
      length = source.length;
      if (length < 1) throw new InvalidArgumentError('values', 'at least one value', 'length 0');
      // A view of this engine's memory would be detached by a growing allocation: copy it first.
      if (ArrayBuffer.isView(source) && source.buffer === this.arena.buffer) source = new Float32Array(source);
    }
    const ptr = this.arena.alloc(length * 4, source === null ? 'length' : 'values');
    const t = new Tensor(this.arena, ptr, length);
    if (source === null) t.data.fill(0);
    else t.data.set(source);
    return t;
  }

  /** Which build runs, what the JavaScript engine supports, where the wasm came from, and memory use. */
  info(): EngineInfo {
    const loaded = loadRecords.get(this);
    return {
      build: this.build,
      simd: this.build === 'simd',
      memoryBytes: this.arena.buffer.byteLength,
      bytesInUse: this.arena.bytesInUse,
      features: {
        simd: loaded ? loaded.simd : this.build === 'simd' ? true : null,
        streaming: typeof WebAssembly.compileStreaming === 'function',
      },
      source: loaded?.source ?? null,
      url: loaded?.url ?? null,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Loading. One layout for every platform: the wasm ships in the package's build/ folder, next to
// dist/ (and src/ in this repository), and is found from this module's own URL:
// - Node: a file: URL, read with node:fs/promises (imported dynamically, so browsers never see it);
// - browsers (plain ESM serving the package folder): fetched, compileStreaming when the server
//   sends application/wasm, compiled from the bytes otherwise;
// - bundlers: the URLs are literal `new URL('…', import.meta.url)` expressions, one per build, so
//   Vite, webpack 5 and Parcel emit the files as assets and rewrite the URLs.
// options.wasm overrides either build with bytes, a URL or a compiled module.

/** The package's own copy of a build. Literal strings, not a template: bundlers must see them. */
function packageUrl(build: Build): URL {
  return build === 'simd'
    ? new URL('../build/batchnorm.simd.wasm', import.meta.url)
    : new URL('../build/batchnorm.scalar.wasm', import.meta.url);
}

interface Loaded {
  module: WebAssembly.Module;
  source: WasmOrigin;
  url: string | null;
}

/** How each engine was loaded, for info(); engines built without createEngine have no record. */
interface LoadRecord {
  source: WasmOrigin;
  url: string | null;
  simd: boolean | null;
}
const loadRecords = new WeakMap<Engine, LoadRecord>();

/**
 * Modules loaded from URLs, compiled once per realm and shared by every engine (instances and
 * their memories are per engine). `null`: the engine rejects that (SIMD) binary.
 */
const compiled = new Map<string, Promise<Loaded | null>>();

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
async function nodeBuiltin<T>(id: 'node:fs/promises' | 'node:url'): Promise<T> {
  const proc = globalThis.process as { getBuiltinModule?: (id: string) => unknown } | undefined;
  if (typeof proc?.getBuiltinModule === 'function') return proc.getBuiltinModule(id) as T;
  return (await import(/* webpackIgnore: true */ /* @vite-ignore */ id)) as T;
}

/** Sets `cause` on one of our errors (their constructor takes none). */
function withCause<E extends Error>(error: E, cause: unknown): E {
  Object.defineProperty(error, 'cause', { value: cause, configurable: true, writable: true });
  return error;
}

function reason(error: unknown): string {
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
 * Compiles validated bytes. The SIMD probe lives here: `WebAssembly.validate` on the SIMD binary
 * itself; a SIMD binary the engine rejects yields `null` (fall back, or an error under simd: true).
 */
async function fromBytes(build: Build, bytes: Uint8Array<ArrayBuffer>, source: WasmOrigin, url: string | null, argument: string): Promise<Loaded | null> {
  const where = url === null ? undefined : `from ${url}`;
  if (bytes.length < 8 || WASM_MAGIC.some((b, i) => bytes[i] !== b)) {
    const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new InvalidArgumentError(argument, 'a WebAssembly binary (starting with 00 61 73 6d, "\\0asm")',
      `${bytes.length} bytes starting with ${head || 'nothing'}`, where);
  }
  if (!WebAssembly.validate(bytes)) {
    if (build === 'simd') return null;
    throw new InvalidArgumentError(argument, 'a WebAssembly module this engine accepts', 'a binary WebAssembly.validate rejects', where);
  }
  return { module: await WebAssembly.compile(bytes), source, url };
}

async function fromUrl(build: Build, url: URL, argument: string): Promise<Loaded | null> {
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
    return fromBytes(build, bytes, 'file', url.href, argument);
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
      return fromBytes(build, new Uint8Array(await backup.arrayBuffer()), 'fetch', url.href, argument);
    }
  }
  // Wrong MIME type (or no streaming): WebAssembly.compileStreaming would reject, bytes work anywhere.
  return fromBytes(build, new Uint8Array(await response.arrayBuffer()), 'fetch', url.href, argument);
}

/** One build's module from options.wasm[build] or the package's own file; null: SIMD rejected. */
async function load(build: Build, source: WasmSource | undefined): Promise<Loaded | null> {
  const argument = `options.wasm.${build}`;
  if (source instanceof WebAssembly.Module) return { module: source, source: 'module', url: null };
  if (isBufferSource(source)) return fromBytes(build, toBytes(source), 'bytes', null, argument);
  const url = source === undefined ? packageUrl(build)
    : typeof source === 'string' ? await resolveUrl(source, argument) : source;
  const key = `${build} ${url.href}`;
  let loaded = compiled.get(key);
  if (!loaded) {
    loaded = fromUrl(build, url, argument);
    compiled.set(key, loaded);
    loaded.catch(() => compiled.delete(key)); // a failed load is retried by the next createEngine
  }
  return loaded;
}

/**
 * options.wasm read once (own simd and scalar only; any other key rejected) and checked. Bytes
 * are copied here, so nothing the caller does while the engine loads (awaits) changes them.
 */
function checkSources(wasm: unknown): WasmSources | undefined {
  if (wasm === undefined) return undefined;
  if (Array.isArray(wasm)) throw new InvalidArgumentError('options.wasm', 'an object { simd?, scalar? }', describe(wasm));
  const o = readOptions(wasm, 'options.wasm', ['simd', 'scalar'] as const, 'an object { simd?, scalar? }');
  const sources: WasmSources = {};
  for (const key of ['simd', 'scalar'] as const) {
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
const imports = {
  env: {
    abort(_message: number, _file: number, line: number, column: number): never {
      throw new Error(`batchnorm kernel aborted at ${line}:${column}`);
    },
  },
};

/**
 * Loads the kernel module and instantiates it with its own memory. Node reads the package's own
 * wasm files (no network); browsers fetch them relative to this module; `options.wasm` overrides
 * either. Modules loaded from URLs are compiled once and shared; every engine is a new instance.
 */
export async function createEngine(options: EngineOptions = {}): Promise<Engine> {
  const o = readOptions(options, 'options', ['simd', 'wasm'] as const, 'an object');
  const simd = o.simd;
  const wasm = checkSources(o.wasm);
  if (simd !== undefined && typeof simd !== 'boolean') {
    throw new InvalidArgumentError('options.simd', 'a boolean or undefined', describe(simd));
  }
  let build: Build = simd === false ? 'scalar' : 'simd';
  let loaded = await load(build, wasm?.[build]);
  let simdFeature: boolean | null = null;
  if (build === 'simd') {
    simdFeature = loaded !== null;
    if (loaded === null) {
      if (simd === true) {
        throw new InvalidArgumentError('options.simd', 'a WebAssembly engine with 128-bit SIMD',
          'an engine that rejects the SIMD build (WebAssembly.validate returned false)', 'omit `simd` to fall back to the scalar build');
      }
      build = 'scalar';
      loaded = await load(build, wasm?.scalar);
    }
  }
  if (loaded === null) throw new Error('unreachable: the scalar build never yields null');
  let instance: WebAssembly.Instance;
  try {
    instance = await WebAssembly.instantiate(loaded.module, imports);
  } catch (error) {
    throw withCause(new InvalidArgumentError(`options.wasm.${build}`, `the ${build} build of wasm-batchnorm`,
      `a module that does not instantiate: ${reason(error)}`), error);
  }
  const kernels = instance.exports as unknown as KernelExports;
  if (typeof kernels.heapBase !== 'function' || typeof kernels.simdEnabled !== 'function' || !(kernels.memory instanceof WebAssembly.Memory)) {
    throw new InvalidArgumentError(`options.wasm.${build}`, `the ${build} build of wasm-batchnorm`, 'a module without its exports');
  }
  if ((kernels.simdEnabled() === 1) !== (build === 'simd')) {
    throw new InvalidArgumentError(`options.wasm.${build}`, `the ${build} build of wasm-batchnorm`,
      `the ${build === 'simd' ? 'scalar' : 'SIMD'} build`);
  }
  const engine = new Engine(kernels, build);
  loadRecords.set(engine, { source: loaded.source, url: loaded.url, simd: simdFeature });
  return engine;
}
