// registerTfjsKernels: our inference kernel in place of tfjs's FusedBatchNorm on the cpu and wasm
// backends.
//
// tfjs's FusedBatchNorm (tf.batchNorm, and tfjs-layers' batchNormalization in inference and in
// training) computes, over the flat index i of x (any rank: tf.batchNorm reshapes rank < 4 to 4-D):
//   y[i] = offset[i % Lo] + (x[i] − mean[i % Lm]) · scale[i % Ls] / sqrt(variance[i % Lv] + eps)
// where Lk is the flat length of each parameter (its shape does not matter: [C], [1,1,1,C] and
// [C,1,1] all index by i mod C, which is why [C,1,1] parameters on NCHW give wrong results; we
// reproduce tfjs's result, not NumPy's broadcasting). With L = lcm(Lm, Lv, Ls, Lo) dividing
// size(x), that is exactly our NHWC inference over [size / L, L], each parameter tiled to L values.
// Anything else (L not dividing the size, L > 2^20, non-float32 data, eps below 2^-126, an empty
// x) goes to the kernel we replaced, unchanged.
//
// Data: on cpu, tfjs keeps each tensor as a typed array (backend.readSync returns it without a
// copy): our copy path reads it, y becomes the new tensor's values. On wasm the tensors live in
// tfjs-wasm's own heap. 'heap' (default) reads them through views of that heap
// (backend.typedArrayFromHeap) and writes y straight into a tensor allocated there
// (backend.makeOutput): x is copied once into our memory and y once out. 'copy' goes through JS
// (readSync copies x out of tfjs's heap, makeOutput(shape, dtype, undefined, y) copies y back):
// two more copies.
import type { Engine } from '../engine.js';
import { Engine as EngineClass } from '../engine.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { TfKernelArgs, TfKernelConfig, TfTensorInfo, TfjsKernelRegistry } from './types.js';

export const FUSED_BATCH_NORM = 'FusedBatchNorm';
export const TFJS_BACKENDS = ['cpu', 'wasm'] as const;
export type TfjsBackendName = (typeof TFJS_BACKENDS)[number];

/** The largest parameter period (lcm of the parameter lengths) handled by us. */
const MAX_PERIOD = 2 ** 20;
const MIN_EPS = 2 ** -126;

export interface RegisterTfjsKernelsOptions {
  /**
   * Backends whose FusedBatchNorm is replaced; default: those of 'cpu' and 'wasm' that have one
   * registered (importing `@tensorflow/tfjs-backend-cpu` / `-wasm` registers it). A backend named
   * here without a FusedBatchNorm kernel is an InvalidArgumentError.
   */
  backends?: readonly TfjsBackendName[];
  /** wasm backend only: read and write tfjs-wasm's heap in place ('heap', default) or copy through JS ('copy'). */
  wasmTransfer?: 'heap' | 'copy';
}

export interface TfjsKernelRegistration {
  /** The backends whose kernel was replaced. */
  readonly backends: readonly TfjsBackendName[];
  /** Calls run by our kernel, and calls handed to the original one (inputs we do not express), since registration. */
  readonly stats: { calls: number; fallbacks: number };
  /** Puts the original kernels back (idempotent). */
  unregister(): void;
}

/** What we call on a backend: cpu's and wasm's KernelBackend, structurally. */
interface DataBackend {
  readSync(dataId: object): ArrayLike<number>;
  makeTensorInfo(shape: readonly number[], dtype: string, values: Float32Array): TfTensorInfo;
}
interface WasmHeapBackend extends DataBackend {
  /** With `values`: a new tensor in tfjs's heap holding a copy of them. */
  makeOutput(shape: readonly number[], dtype: string, memoryOffset?: number, values?: Float32Array): TfTensorInfo;
  typedArrayFromHeap(info: TfTensorInfo): ArrayLike<number>;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** The period L and each parameter's length, or null where we hand the call to the original kernel. */
export function planFusedBatchNorm(
  inputs: TfKernelArgs['inputs'], attrs: TfKernelArgs['attrs'],
): { size: number; period: number; eps: number } | null {
  const { x, mean, variance, scale, offset } = inputs;
  if (!x || !mean || !variance) return null;
  const eps = attrs?.varianceEpsilon ?? 0.001;
  if (typeof eps !== 'number' || !Number.isFinite(eps) || !(eps >= MIN_EPS)) return null;
  const params = [mean, variance, scale, offset].filter((p): p is TfTensorInfo => p != null);
  if (x.dtype !== 'float32' || params.some((p) => p.dtype !== 'float32')) return null;
  const size = sizeOf(x.shape);
  let period = 1;
  for (const p of params) {
    const n = sizeOf(p.shape);
    if (n < 1) return null;
    period = (period / gcd(period, n)) * n;
    if (period > MAX_PERIOD) return null;
  }
  if (size < 1 || size % period !== 0) return null;
  return { size, period, eps };
}

/** `values` repeated to `period` values (itself when it has that length already). */
function tile(values: ArrayLike<number>, period: number): Float32Array {
  if (values.length === period && values instanceof Float32Array) return values;
  const out = new Float32Array(period);
  for (let j = 0; j < period; j++) out[j] = values[j % values.length]!;
  return out;
}

/**
 * Replaces tfjs's FusedBatchNorm kernel on the given backends with ours. `tf` is the
 * `@tensorflow/tfjs-core` (or `@tensorflow/tfjs`) namespace the model runs on.
 */
export function registerTfjsKernels(
  tf: TfjsKernelRegistry, engine: Engine, options: RegisterTfjsKernelsOptions = {},
): TfjsKernelRegistration {
  if (!(engine instanceof EngineClass)) throw new InvalidArgumentError('engine', 'an Engine from createEngine()', describe(engine));
  if (tf === null || typeof tf !== 'object' || typeof tf.registerKernel !== 'function' || typeof tf.getKernel !== 'function') {
    throw new InvalidArgumentError('tf', 'the @tensorflow/tfjs-core namespace (registerKernel, unregisterKernel, getKernel)', describe(tf));
  }
  const transfer = options.wasmTransfer ?? 'heap';
  if (transfer !== 'heap' && transfer !== 'copy') throw new InvalidArgumentError('options.wasmTransfer', `'heap' or 'copy'`, describe(transfer));
  const explicit = options.backends !== undefined;
  const requested = options.backends ?? TFJS_BACKENDS;
  if (!Array.isArray(requested)) throw new InvalidArgumentError('options.backends', `an array of 'cpu', 'wasm'`, describe(requested));
  const originals = new Map<TfjsBackendName, TfKernelConfig>();
  for (const name of requested as readonly unknown[]) {
    if (!(TFJS_BACKENDS as readonly unknown[]).includes(name)) {
      throw new InvalidArgumentError('options.backends', `'cpu' or 'wasm' (the backends whose data we can read synchronously)`, describe(name));
    }
    const original = tf.getKernel(FUSED_BATCH_NORM, name as string) as TfKernelConfig | undefined;
    if (original === undefined) {
      if (explicit) {
        throw new InvalidArgumentError('options.backends', `backends with a registered ${FUSED_BATCH_NORM} kernel`, `'${name as string}' (import @tensorflow/tfjs-backend-${name as string} first)`);
      }
      continue;
    }
    originals.set(name as TfjsBackendName, original);
  }

  const stats = { calls: 0, fallbacks: 0 };
  const kernelFor = (backendName: TfjsBackendName, original: TfKernelConfig) => (args: TfKernelArgs): unknown => {
    const plan = planFusedBatchNorm(args.inputs, args.attrs);
    if (plan === null) {
      stats.fallbacks++;
      return original.kernelFunc(args);
    }
    stats.calls++;
    const { x, mean, variance, scale, offset } = args.inputs as Record<string, TfTensorInfo | undefined>;
    const { size, period, eps } = plan;
    const shape = [size / period, period];
    const backend = args.backend as WasmHeapBackend;
    if (backendName === 'wasm' && transfer === 'heap') {
      // Allocate the output first: makeOutput may grow tfjs's heap and detach earlier views.
      const out = backend.makeOutput(x!.shape, 'float32');
      const view = (t: TfTensorInfo | undefined) => (t ? backend.typedArrayFromHeap(t) : null);
      const y = backend.typedArrayFromHeap(out) as Float32Array;
      // Parameters are copied out of the heap view (tiny) before the engine runs.
      engine.forward(view(x) as Float32Array, shape, {
        layout: 'NHWC', training: false, eps, out: y,
        runningMean: tile(view(mean)!, period).slice(), runningVar: tile(view(variance)!, period).slice(),
        weight: scale ? tile(view(scale)!, period).slice() : null, bias: offset ? tile(view(offset)!, period).slice() : null,
      });
      return out;
    }
    const read = (t: TfTensorInfo | undefined) => (t ? backend.readSync(t.dataId) : null);
    const xv = read(x) as Float32Array;
    const { y } = engine.forward(xv, shape, {
      layout: 'NHWC', training: false, eps,
      runningMean: tile(read(mean)!, period), runningVar: tile(read(variance)!, period),
      weight: scale ? tile(read(scale)!, period) : null, bias: offset ? tile(read(offset)!, period) : null,
    });
    // wasm's backend has no makeTensorInfo: makeOutput with values copies them into its heap.
    return backendName === 'wasm' ? backend.makeOutput(x!.shape, 'float32', undefined, y) : backend.makeTensorInfo(x!.shape, 'float32', y);
  };

  const registered: TfjsBackendName[] = [];
  for (const [backendName, original] of originals) {
    tf.unregisterKernel(FUSED_BATCH_NORM, backendName);
    const config: TfKernelConfig = { kernelName: FUSED_BATCH_NORM, backendName, kernelFunc: kernelFor(backendName, original) };
    // The original's setup binds its wasm function when the backend initializes: keep it, so the
    // fallback works on a backend initialized after this call.
    if (original.setupFunc) config.setupFunc = original.setupFunc;
    if (original.disposeFunc) config.disposeFunc = original.disposeFunc;
    tf.registerKernel(config as never);
    registered.push(backendName);
  }
  let active = true;
  return {
    backends: registered,
    stats,
    unregister() {
      if (!active) return;
      active = false;
      for (const [backendName, original] of originals) {
        tf.unregisterKernel(FUSED_BATCH_NORM, backendName);
        tf.registerKernel(original as never);
      }
    },
  };
}
