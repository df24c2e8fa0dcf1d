import { Arena } from './memory.js';
import { InvalidArgumentError, MemoryError, describe } from './errors.js';
import {
  forwardBatchNorm, backwardBatchNorm,
  type ForwardOptions, type ForwardResult, type BackwardOptions, type BackwardResult,
} from './batchnorm.js';

/** The wasm module's exports (assembly/index.ts): byte pointers and element counts only. */
export interface KernelExports {
  readonly memory: WebAssembly.Memory;
  heapBase(): number;
  simdEnabled(): number;
  workspaceBytes(C: number): number;
  statsNchwF32(x: number, outer: number, C: number, inner: number, mean: number, m2: number): void;
  statsNhwcF32(x: number, rows: number, C: number, mean: number, m2: number, work: number): void;
  normalizeNchwF32(x: number, y: number, outer: number, C: number, inner: number,
    meanHi: number, meanLo: number, scale: number, shift: number): void;
  normalizeNhwcF32(x: number, y: number, rows: number, C: number,
    meanHi: number, meanLo: number, scale: number, shift: number, work: number): void;
  backwardReduceNchwF32(dy: number, x: number, outer: number, C: number, inner: number,
    mean: number, sumDy: number, sumDyXmu: number): void;
  backwardReduceNhwcF32(dy: number, x: number, rows: number, C: number,
    mean: number, sumDy: number, sumDyXmu: number, work: number): void;
  backwardDxNchwF32(dy: number, x: number, dx: number, outer: number, C: number, inner: number,
    mean: number, k1: number, k2: number, k3: number): void;
  backwardDxNhwcF32(dy: number, x: number, dx: number, rows: number, C: number,
    mean: number, k1: number, k2: number, k3: number, work: number): void;
}

export type Build = 'simd' | 'scalar';

export interface EngineOptions {
  /** true: SIMD build (error where unsupported); false: scalar build; default: SIMD when the engine validates it. */
  simd?: boolean;
}

export interface EngineInfo {
  build: Build;
  simd: boolean;
  /** Bytes of wasm linear memory (grows on demand, never shrinks). */
  memoryBytes: number;
  /** Bytes held by live tensors and in-flight calls. */
  bytesInUse: number;
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

  /** Copies `values` in (copy-in helper). */
  set(values: ArrayLike<number>): this {
    if (values.length !== this.length) {
      throw new InvalidArgumentError('values', `length ${this.length}`, `length ${values.length}`);
    }
    this.data.set(values);
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

  /** Allocates a tensor in wasm memory, zero-filled, or holding a copy of `values`. */
  tensor(lengthOrValues: number | ArrayLike<number>): Tensor {
    const length = typeof lengthOrValues === 'number' ? lengthOrValues : lengthOrValues?.length;
    if (typeof length !== 'number' || !Number.isInteger(length) || length < 1) {
      throw new InvalidArgumentError('length', 'a positive integer or an array of numbers', describe(lengthOrValues));
    }
    const ptr = this.arena.alloc(length * 4, 'tensor');
    const t = new Tensor(this.arena, ptr, length);
    if (typeof lengthOrValues === 'number') t.data.fill(0);
    else t.data.set(lengthOrValues);
    return t;
  }

  info(): EngineInfo {
    return {
      build: this.build,
      simd: this.build === 'simd',
      memoryBytes: this.arena.buffer.byteLength,
      bytesInUse: this.arena.bytesInUse,
    };
  }
}

const WASM_FILES: Record<Build, string> = {
  simd: 'batchnorm.simd.wasm',
  scalar: 'batchnorm.scalar.wasm',
};

const compiled = new Map<Build, Promise<WebAssembly.Module>>();

async function readWasm(file: string): Promise<Uint8Array<ArrayBuffer>> {
  const url = new URL(`../build/${file}`, import.meta.url);
  if (url.protocol === 'file:') {
    const { readFile } = await import('node:fs/promises');
    return new Uint8Array(await readFile(url));
  }
  const response = await fetch(url);
  if (!response.ok) throw new MemoryError('wasm', `${url} (HTTP 200)`, `HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** Compiles each build once per process; instances are per engine. */
function compile(build: Build): Promise<WebAssembly.Module> {
  let module = compiled.get(build);
  if (!module) {
    module = readWasm(WASM_FILES[build]).then((bytes) => {
      if (!WebAssembly.validate(bytes)) {
        throw new InvalidArgumentError('options.simd', 'a WebAssembly engine with 128-bit SIMD', 'an engine that rejects the SIMD build');
      }
      return WebAssembly.compile(bytes);
    });
    module.catch(() => compiled.delete(build));
    compiled.set(build, module);
  }
  return module;
}

/** Traps from a kernel (only the debug build has any) carry the module's message offsets. */
const imports = {
  env: {
    abort(_message: number, _file: number, line: number, column: number): never {
      throw new Error(`batchnorm kernel aborted at ${line}:${column}`);
    },
  },
};

/** Loads the kernel module (no network in Node: read from the package's own files). */
export async function createEngine(options: EngineOptions = {}): Promise<Engine> {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError('options', 'an object', describe(options));
  }
  const { simd } = options;
  if (simd !== undefined && typeof simd !== 'boolean') {
    throw new InvalidArgumentError('options.simd', 'a boolean or undefined', describe(simd));
  }
  let build: Build = simd === false ? 'scalar' : 'simd';
  let module: WebAssembly.Module;
  try {
    module = await compile(build);
  } catch (error) {
    if (simd !== undefined) throw error;
    build = 'scalar';
    module = await compile(build);
  }
  const instance = await WebAssembly.instantiate(module, imports);
  return new Engine(instance.exports as unknown as KernelExports, build);
}
