// The public facade: createEngine() loads one build of the build table and instantiates it;
// an Engine is that instance (the kernels and their memory arena) with the functional API on it.
// The ops live in src/ops/, the loader in src/wasm/, tensors in src/tensor.ts.
import { Arena } from './memory.js';
import { DisposedError, InvalidArgumentError, describe } from './errors.js';
import { Pool } from './threads/pool.js';
import { threadSupport } from './threads/support.js';
import { checkNumbers, readOptions } from './args.js';
import { Tensor } from './tensor.js';
import { bufferOf, copyInto, fillWith, lengthOf } from './typed.js';
import { BUILDS, BUILD_NAMES, type Build } from './wasm/builds.js';
import type { KernelExports } from './wasm/kernels.js';
import { checkSources, instantiateKernels, loadModule, reason as reason_, type WasmOrigin, type WasmSources } from './wasm/load.js';
import {
  forwardBatchNorm, backwardBatchNorm,
  type ForwardOptions, type ForwardResult, type BackwardOptions, type BackwardResult,
} from './ops/batchnorm.js';
import {
  momentsBatchNorm, forwardWithMomentsBatchNorm, backwardReduceBatchNorm, backwardWithSumsBatchNorm,
  type Moments, type MomentsOptions, type ForwardWithMomentsOptions, type BackwardSums, type BackwardReduceOptions,
  type BackwardWithSumsOptions,
} from './ops/sync.js';

export { Tensor };
export type { Build, KernelExports };
export type { WasmSource, WasmSources, WasmOrigin } from './wasm/load.js';

export interface EngineOptions {
  /**
   * Pins one build of the build table (`'relaxed-simd'`, `'simd'` or `'scalar'`): an
   * `InvalidArgumentError` (argument `options.build`) where the JavaScript engine rejects it.
   * Omitted: the most capable build the engine accepts (`WebAssembly.validate` on each binary
   * itself), relaxed-simd, then simd, then scalar. relaxed-simd is exact within the same bounds
   * but not bit-identical to simd (its multiply-adds round once or twice, by hardware); simd is
   * the bit-reproducible choice.
   */
  build?: Build;
  /**
   * `true`: the `'simd'` build (the bit-reproducible SIMD build, never relaxed-simd), or an
   * `InvalidArgumentError` (argument `options.simd`) where the JavaScript engine rejects it;
   * `false`: the scalar build; omitted: as `build` omitted. With `build`, it must agree with
   * whether that build uses SIMD.
   */
  simd?: boolean;
  /**
   * Where to load the wasm from. Not needed in Node, in browsers serving the package folder, or
   * with bundlers that understand `new URL('…', import.meta.url)` (Vite, webpack 5, Parcel): by
   * default Node reads the package's own files and browsers fetch them relative to the module.
   * Pass bytes, a URL or a compiled module for CDNs, CSP-restricted pages or other bundlers.
   * Given, it lists the builds its caller serves: createEngine() without `build` tries
   * relaxed-simd only when it is listed (simd and scalar, when left out, still load from the
   * package's own files).
   *
   * @example
   * // the wasm files copied next to your page or to a CDN:
   * await createEngine({ wasm: {
   *   'relaxed-simd': new URL('/static/batchnorm.relaxed-simd.wasm', location.href),
   *   simd: new URL('/static/batchnorm.simd.wasm', location.href),
   *   scalar: new URL('/static/batchnorm.scalar.wasm', location.href),
   * } });
   */
  wasm?: WasmSources;
  /**
   * Threads a call may split over, the calling thread included: a whole number from 1 to 64, or
   * `'auto'` (the default) = min(4, the machine's logical cores) where shared memory and workers
   * are available (Node; a `crossOriginIsolated` page), else 1. `1` is the single-threaded
   * engine: no workers, no `SharedArrayBuffer`. More than 1 loads the build's threaded binary
   * over a shared memory; workers start on the first call big enough to split (or
   * `startThreads()`), and results are bit-identical for every thread count. Where threads
   * cannot run, the engine has 1 and `info().threads.reason` says why.
   */
  threads?: number | 'auto';
}

const ENGINE_OPTIONS = ['build', 'simd', 'wasm', 'threads'] as const;
/** 'auto' uses at most this many threads: the gain of a fifth on memory-bound passes is small. */
const AUTO_THREADS = 4;

/** What the JavaScript engine running us supports, as far as it was probed. */
export interface EngineFeatures {
  /**
   * 128-bit wasm SIMD: whether the engine accepted the SIMD build (`WebAssembly.validate` on the
   * SIMD binary itself, or its streaming compilation), or the relaxed-SIMD build (which uses
   * SIMD too). `null` when not probed (`simd: false`, `build: 'scalar'`).
   */
  simd: boolean | null;
  /**
   * Relaxed SIMD: whether the engine accepted the relaxed-SIMD build (probed as `simd`). `null`
   * when not probed (`simd` given, `build` other than `'relaxed-simd'`, or `options.wasm` given
   * without a relaxed-simd entry).
   */
  relaxedSimd: boolean | null;
  /** `WebAssembly.compileStreaming` exists (used for URLs served as `application/wasm`). */
  streaming: boolean;
}

export interface EngineInfo {
  build: Build;
  /** The build uses 128-bit SIMD (relaxed-simd and simd). */
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
  threads: ThreadsInfo;
}

export interface ThreadsInfo {
  /** What `createEngine` was asked for. */
  requested: number | 'auto';
  /** Threads a large call splits over once the workers run (1: single-threaded engine). */
  count: number;
  /** Threads ready now: the calling thread plus the workers that have started. */
  running: number;
  /** Why `count` is below what was asked (or, for 'auto', below min(4, cores)), or why the workers stopped; else null. */
  reason: string | null;
}

/**
 * One instance of the kernel module with its own linear memory. Engines share nothing but
 * the compiled module, so two engines never interfere.
 */
export class Engine {
  readonly build: Build;
  /** @internal */ readonly kernels: KernelExports;
  /** @internal */ readonly arena: Arena;
  /** @internal The workers of a threaded engine, else null. */ readonly pool: Pool | null;
  private readonly threads: { requested: number | 'auto'; reason: string | null };

  /** @internal Use createEngine(). */
  constructor(kernels: KernelExports, build: Build, pool: Pool | null = null, threads = { requested: 1 as number | 'auto', reason: null as string | null }) {
    this.kernels = kernels;
    this.build = build;
    this.arena = new Arena(kernels.memory, kernels.heapBase());
    this.pool = pool;
    this.threads = threads;
  }

  /**
   * Starts a threaded engine's workers now (they otherwise start on the first call big enough
   * to split, which then runs on the calling thread alone) and resolves with the threads ready:
   * for benchmarks and latency-sensitive first calls. Single-threaded engines resolve with 1.
   */
  async startThreads(): Promise<number> {
    if (this.arena.closed) throw new DisposedError();
    return this.pool === null ? 1 : this.pool.start();
  }

  /**
   * Ends the engine: terminates its workers and refuses every later call (DisposedError).
   * Idempotent. Its memory is freed when nothing references the engine or its tensors.
   */
  dispose(): void {
    this.arena.close();
    this.pool?.dispose();
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
    if (this.arena.closed) throw new DisposedError();
    let source: (ArrayLike<number> & ArrayBufferView) | null = null;
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
      length = lengthOf(source);
      if (length < 1) throw new InvalidArgumentError('values', 'at least one value', 'length 0');
      // A view of this engine's memory would be detached by a growing allocation: copy it first.
      if (this.arena.holds(bufferOf(source))) source = new Float32Array(source);
    }
    const ptr = this.arena.alloc(length * 4, source === null ? 'length' : 'values');
    const t = new Tensor(this.arena, ptr, length);
    if (source === null) fillWith(t.data, 0);
    else copyInto(t.data, source);
    return t;
  }

  /** Which build runs, what the JavaScript engine supports, where the wasm came from, and memory use. */
  info(): EngineInfo {
    const loaded = loadRecords.get(this);
    const features = BUILDS[this.build].features;
    return {
      build: this.build,
      simd: features.includes('simd'),
      memoryBytes: this.arena.buffer.byteLength,
      bytesInUse: this.arena.bytesInUse,
      features: {
        // A build that runs proves its features; an accepted relaxed-SIMD build proves SIMD.
        simd: loaded?.probed.simd ?? (features.includes('simd') || loaded?.probed['relaxed-simd'] ? true : null),
        relaxedSimd: loaded?.probed['relaxed-simd'] ?? (features.includes('relaxed-simd') ? true : null),
        streaming: typeof WebAssembly.compileStreaming === 'function',
      },
      source: loaded?.source ?? null,
      url: loaded?.url ?? null,
      threads: {
        requested: this.threads.requested,
        count: this.pool?.size ?? 1,
        running: this.pool === null || this.pool.reason !== null ? 1 : this.pool.ready(false),
        reason: this.pool?.reason ?? this.threads.reason,
      },
    };
  }
}

/** How each engine was loaded, for info(); engines built without createEngine have no record. */
interface LoadRecord {
  source: WasmOrigin;
  url: string | null;
  /** Per build tried: whether the JavaScript engine accepted it. */
  probed: Partial<Record<Build, boolean>>;
}
const loadRecords = new WeakMap<Engine, LoadRecord>();

/**
 * Loads the kernel module and instantiates it with its own memory. Node reads the package's own
 * wasm files (no network); browsers fetch them relative to this module; `options.wasm` overrides
 * any build. Builds are tried in the build table's order (src/wasm/builds.ts), each falling back
 * to the next when the JavaScript engine rejects it. Modules loaded from URLs are compiled once
 * and shared; every engine is a new instance.
 */
export async function createEngine(options: EngineOptions = {}): Promise<Engine> {
  const o = readOptions(options, 'options', ENGINE_OPTIONS, 'an object');
  const wasm = checkSources(o.wasm);
  const { simd, build: pinned } = o;
  if (simd !== undefined && typeof simd !== 'boolean') {
    throw new InvalidArgumentError('options.simd', 'a boolean or undefined', describe(simd));
  }
  if (pinned !== undefined && !(BUILD_NAMES as readonly unknown[]).includes(pinned)) {
    throw new InvalidArgumentError('options.build', `one of ${BUILD_NAMES.map((b) => `'${b}'`).join(', ')}`, describe(pinned));
  }
  const usesSimd = pinned !== undefined && BUILDS[pinned as Build].features.includes('simd');
  if (pinned !== undefined && simd !== undefined && usesSimd !== simd) {
    throw new InvalidArgumentError('options.simd', `${usesSimd} with build '${pinned}'`, describe(simd));
  }
  // simd: true demands the SIMD build, false forces the scalar one (the option predates `build`).
  const demanded = (pinned ?? (simd === true ? 'simd' : simd === false ? 'scalar' : null)) as Build | null;
  let spec = BUILDS[demanded ?? BUILD_NAMES[0]];
  // options.wasm lists the builds its caller serves: a build it leaves out is skipped unless the
  // table says it was always tried (builds.ts, triedUnlisted).
  while (demanded === null && wasm !== undefined && wasm[spec.name] === undefined && !spec.triedUnlisted) spec = BUILDS[spec.fallback!];
  let loaded = await loadModule(spec, wasm?.[spec.name]);
  const probed: Partial<Record<Build, boolean>> = { [spec.name]: loaded !== null };
  while (loaded === null) {
    if (demanded !== null) {
      const argument = pinned !== undefined ? 'options.build' : 'options.simd';
      throw new InvalidArgumentError(argument, `a WebAssembly engine with ${spec.needs}`,
        `an engine that rejects the ${spec.title} build (WebAssembly.validate returned false)`,
        `omit \`${argument.slice('options.'.length)}\` to fall back to the ${spec.fallback} build`);
    }
    spec = BUILDS[spec.fallback!];
    loaded = await loadModule(spec, wasm?.[spec.name]);
    probed[spec.name] = loaded !== null;
  }
  const threads = checkThreads(o.threads);
  const { count, reason } = await threadSupport(threads, AUTO_THREADS, wasm !== undefined);
  let engine: Engine | null = null, record = loaded;
  let why = reason;
  if (count > 1) {
    // The threaded binary of the chosen build over a new shared memory (its maximum is the
    // module's, 4 GiB of address space reserved, committed only as it grows).
    try {
      const threaded = await loadModule(spec, undefined, true);
      if (threaded === null) throw new Error(`the JavaScript engine rejects the threaded ${spec.title} binary`);
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true } as WebAssembly.MemoryDescriptor);
      const kernels = await instantiateKernels(spec, threaded, memory);
      engine = new Engine(kernels, spec.name, new Pool(threaded.module, memory, count), { requested: threads, reason: null });
      record = threaded;
    } catch (error) {
      why = `the threaded build could not load: ${reason_(error)}`;
    }
  }
  engine ??= new Engine(await instantiateKernels(spec, loaded), spec.name, null, { requested: threads, reason: why });
  loadRecords.set(engine, { source: record.source, url: record.url, probed });
  return engine;
}

function checkThreads(value: unknown): number | 'auto' {
  if (value === undefined || value === 'auto') return 'auto';
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 64) {
    throw new InvalidArgumentError('options.threads', `'auto' or a whole number from 1 to 64`, describe(value));
  }
  return value;
}
