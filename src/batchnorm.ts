import type { Engine } from './engine.js';
import { InvalidArgumentError, describe } from './errors.js';
import { checkLayout, geometry, type Layout } from './layout.js';
import { CallScope, channelsLast, snapshot } from './call.js';
import {
  checkAliasing, checkBoolean, checkEnoughValues, checkEps, checkF32, checkMomentum, checkOptionalF32, isObject,
} from './args.js';

export interface ForwardOptions {
  /** 'NCHW' (default): channel axis 1, any rank >= 2. 'NHWC': channel axis last. */
  layout?: Layout;
  /** Normalize with batch statistics (and update running stats) or with the running ones. */
  training: boolean;
  /** gamma, length C (default 1). */
  weight?: Float32Array | null;
  /** beta, length C (default 0). */
  bias?: Float32Array | null;
  /** Running statistics, length C, given together or not at all. Updated in place in training. */
  runningMean?: Float32Array | null;
  runningVar?: Float32Array | null;
  /** Weight of the new batch in the running average, in [0, 1]; default 0.1 (PyTorch). */
  momentum?: number;
  /** Running var stores the unbiased batch variance (PyTorch, default) or the biased one (ONNX, Keras). */
  unbiasedRunningVar?: boolean;
  /** Added to the variance, finite and > 0; default 1e-5. */
  eps?: number;
  /** Destination for y, length = x.length; may be x itself (in place). */
  out?: Float32Array;
  /** 'relu' applies max(y, 0) in the same pass (NaN stays NaN); default 'none'. */
  activation?: Activation;
}

export type Activation = 'none' | 'relu';

export interface ForwardResult {
  y: Float32Array;
  /** Mean used to normalize (batch mean, or running mean in eval), per channel. */
  saveMean: Float32Array;
  /** 1 / sqrt(var + eps) used to normalize, per channel. */
  saveInvStd: Float32Array;
}

export interface BackwardOptions {
  layout?: Layout;
  /** true: gradient through the batch statistics; false: mean and invStd are constants. */
  training: boolean;
  weight?: Float32Array | null;
  saveMean: Float32Array;
  saveInvStd: Float32Array;
  /** Destination for dx, length = x.length; may be dy, x or y itself. */
  out?: Float32Array;
  /** 'relu': the forward pass fused ReLU; dy is masked by its output `y` (0 where y <= 0). */
  activation?: Activation;
  /** The forward output (required with activation 'relu'). */
  y?: Float32Array | null;
}

export interface BackwardResult {
  dx: Float32Array;
  dweight: Float32Array;
  dbias: Float32Array;
}

// ---------------------------------------------------------------------------------------
// Forward.
//
// Per channel c over its n = numel / C values (PyTorch's native_batch_norm):
//   training (or no running stats):  mean = Σx / n,   var = Σ(x − mean)² / n   (biased)
//   eval with running stats:         mean = runningMean,   var = runningVar
//   invStd = 1 / sqrt(var + eps),    y = (x − mean) · invStd · gamma + beta
// computed by the kernel as y = ((x − meanHi) − meanLo) · scale + shift with
//   scale = gamma · invStd, shift = beta, meanHi + meanLo = mean (f32 pair of the f64 mean).
// Running statistics in training, m = momentum (weight of the new batch):
//   runningMean = (1 − m) · runningMean + m · mean
//   runningVar  = (1 − m) · runningVar  + m · Σ(x − mean)² / (n − 1)   (unbiased; / n if not)
// activation 'relu' clamps y below at 0 in the same pass (the kernels' `lower` argument).

function checkActivation(value: unknown, name: string): Activation {
  if (value === undefined) return 'none';
  if (value !== 'none' && value !== 'relu') throw new InvalidArgumentError(name, `'none' or 'relu'`, describe(value));
  return value;
}

export function forwardBatchNorm(engine: Engine, x: Float32Array, shape: readonly number[], opts: ForwardOptions): ForwardResult {
  if (!isObject(opts)) throw new InvalidArgumentError('opts', 'an options object with `training`', describe(opts));
  const layout = checkLayout(opts.layout);
  const g = geometry(shape, layout);
  const C = g.channels;
  checkF32(engine, x, 'x', g.size, `shape [${g.shape.join(', ')}]`);
  const training = checkBoolean(opts.training, 'opts.training');
  const weight = checkOptionalF32(engine, opts.weight, 'opts.weight', C, `C = ${C} channels`);
  const bias = checkOptionalF32(engine, opts.bias, 'opts.bias', C, `C = ${C} channels`);
  const runningMean = checkOptionalF32(engine, opts.runningMean, 'opts.runningMean', C, `C = ${C} channels`);
  const runningVar = checkOptionalF32(engine, opts.runningVar, 'opts.runningVar', C, `C = ${C} channels`);
  if ((runningMean === null) !== (runningVar === null)) {
    const missing = runningMean === null ? 'opts.runningMean' : 'opts.runningVar';
    throw new InvalidArgumentError(missing, 'a Float32Array when the other running statistic is given', 'null');
  }
  const momentum = checkMomentum(opts.momentum, 'opts.momentum');
  const unbiased = checkBoolean(opts.unbiasedRunningVar, 'opts.unbiasedRunningVar', true);
  const eps = checkEps(opts.eps, 'opts.eps');
  const lower = checkActivation(opts.activation, 'opts.activation') === 'relu' ? 0 : -Infinity;
  const out = checkOptionalF32(engine, opts.out, 'opts.out', g.size, 'same as x');
  const batchStats = training || runningMean === null;
  if (batchStats) checkEnoughValues(g);
  const updateRunning = training && runningMean !== null;
  checkAliasing(
    [['opts.out', out], ['opts.runningMean', updateRunning ? runningMean : null], ['opts.runningVar', updateRunning ? runningVar : null]],
    [['x', x], ['opts.weight', weight], ['opts.bias', bias],
      ['opts.runningMean', updateRunning ? null : runningMean], ['opts.runningVar', updateRunning ? null : runningVar]],
    new Set(['opts.out=x']),
  );

  const k = engine.kernels;
  const n = g.count;
  const last = channelsLast(g);
  const scope = new CallScope(engine);
  const xPin = scope.pin(x), outPin = out === null ? null : scope.pin(out);
  const rmPin = runningMean === null ? null : scope.pin(runningMean), rvPin = runningVar === null ? null : scope.pin(runningVar);
  const w = snapshot(weight), b = snapshot(bias), rm = snapshot(runningMean), rv = snapshot(runningVar);
  try {
    // One preflight for the allocations below (same sizes, same order): a call that cannot fit
    // in 4 GiB, or whose memory.grow is refused, fails before anything is allocated or grown.
    scope.reserve([[xPin.resident ? 0 : 4 * g.size, 'x'], [!outPin?.resident && xPin.resident ? 4 * g.size : 0, 'y'],
      [batchStats ? 24 * C : 0, 'statistics'], [16 * C, 'parameters'], [last ? k.workspaceBytes(C) : 0, 'workspace']]);
    const xPtr = scope.place(xPin, 'x');
    // y goes to a resident out, else over the scratch copy of x, else to new scratch.
    const yPtr = outPin?.resident ? outPin.ptr : xPin.resident ? scope.alloc(4 * g.size, 'y') : xPtr;
    const fused = batchStats && !last; // NCHW training: forwardTrainNchwF32, one channel at a time
    const stats = batchStats ? scope.alloc(24 * C, 'statistics') : 0; // f64 mean | m2 | invStd
    const params = scope.alloc(16 * C, 'parameters'); // f32 meanHi | meanLo | scale | shift, or gamma | beta
    const work = last ? scope.alloc(k.workspaceBytes(C), 'workspace') : 0;
    if (!xPin.resident) scope.f32(xPtr, g.size).set(x);

    const mean = new Float64Array(C);
    const m2 = new Float64Array(C);
    const invStd = new Float64Array(C);
    if (fused) {
      const p = scope.f32(params, 2 * C);
      for (let c = 0; c < C; c++) {
        p[c] = w ? w[c] : 1;
        p[C + c] = b ? b[c] : 0;
      }
      k.forwardTrainNchwF32(xPtr, yPtr, g.outer, C, g.inner, params, params + 4 * C, eps, stats, stats + 8 * C, stats + 16 * C, lower);
      const s = scope.f64(stats, 3 * C);
      mean.set(s.subarray(0, C));
      m2.set(s.subarray(C, 2 * C));
      invStd.set(s.subarray(2 * C));
    } else {
      if (batchStats) {
        k.statsNhwcF32(xPtr, g.outer, C, stats, stats + 8 * C, work);
        const s = scope.f64(stats, 2 * C);
        mean.set(s.subarray(0, C));
        m2.set(s.subarray(C, 2 * C));
      } else {
        mean.set(rm!);
      }
      const p = scope.f32(params, 4 * C);
      for (let c = 0; c < C; c++) {
        invStd[c] = 1 / Math.sqrt((batchStats ? m2[c] / n : rv![c]) + eps);
        const hi = Math.fround(mean[c]);
        p[c] = hi;
        p[C + c] = Number.isFinite(hi) ? mean[c] - hi : 0; // an infinite mean has no low part (Inf − Inf would be NaN)
        p[2 * C + c] = (w ? w[c] : 1) * invStd[c];
        p[3 * C + c] = b ? b[c] : 0;
      }
      if (last) k.normalizeNhwcF32(xPtr, yPtr, g.outer, C, params, params + 4 * C, params + 8 * C, params + 12 * C, work, lower);
      else k.normalizeNchwF32(xPtr, yPtr, g.outer, C, g.inner, params, params + 4 * C, params + 8 * C, params + 12 * C, lower);
    }
    const saveMean = new Float32Array(mean);
    const saveInvStd = new Float32Array(invStd);

    const y = out === null ? new Float32Array(g.size) : scope.live(out, outPin!);
    if (!outPin?.resident) y.set(scope.f32(yPtr, g.size));

    if (updateRunning) {
      const divisor = unbiased ? n - 1 : n;
      const rmOut = scope.live(runningMean!, rmPin!), rvOut = scope.live(runningVar!, rvPin!);
      for (let c = 0; c < C; c++) {
        rmOut[c] = (1 - momentum) * rm![c] + momentum * mean[c];
        rvOut[c] = (1 - momentum) * rv![c] + momentum * (m2[c] / divisor);
      }
    }
    return { y, saveMean, saveInvStd };
  } finally {
    scope.release();
  }
}

// ---------------------------------------------------------------------------------------
// Backward (PyTorch's batch_norm_backward), per channel over n values, xhat = (x − mean)·invStd:
//   dbias   = Σ dy,   dweight = Σ dy · xhat = invStd · Σ dy · (x − mean)
//   training: dx = gamma · invStd · (dy − Σdy / n − xhat · Σ(dy · xhat) / n)
//   eval:     dx = gamma · invStd · dy                     (mean, invStd are constants)
// The kernels get k1 = Σdy / n, k2 = invStd² · Σdy(x − mean) / n, k3 = gamma · invStd
// (see assembly/backward.ts).

export function backwardBatchNorm(
  engine: Engine, dy: Float32Array, x: Float32Array, shape: readonly number[], opts: BackwardOptions,
): BackwardResult {
  if (!isObject(opts)) throw new InvalidArgumentError('opts', 'an options object with `training`, `saveMean`, `saveInvStd`', describe(opts));
  const layout = checkLayout(opts.layout);
  const g = geometry(shape, layout);
  const C = g.channels;
  const what = `shape [${g.shape.join(', ')}]`;
  checkF32(engine, dy, 'dy', g.size, what);
  checkF32(engine, x, 'x', g.size, what);
  const training = checkBoolean(opts.training, 'opts.training');
  const weight = checkOptionalF32(engine, opts.weight, 'opts.weight', C, `C = ${C} channels`);
  const saveMean = checkF32(engine, opts.saveMean, 'opts.saveMean', C, `C = ${C} channels, from forward`);
  const saveInvStd = checkF32(engine, opts.saveInvStd, 'opts.saveInvStd', C, `C = ${C} channels, from forward`);
  const out = checkOptionalF32(engine, opts.out, 'opts.out', g.size, 'same as x');
  const relu = checkActivation(opts.activation, 'opts.activation') === 'relu';
  const y = relu ? checkF32(engine, opts.y, 'opts.y', g.size, 'the forward output, with activation relu') : null;
  checkAliasing(
    [['opts.out', out]],
    [['dy', dy], ['x', x], ['opts.y', y], ['opts.weight', weight], ['opts.saveMean', saveMean], ['opts.saveInvStd', saveInvStd]],
    new Set(['opts.out=dy', 'opts.out=x', 'opts.out=opts.y']),
  );

  const k = engine.kernels;
  const n = g.count;
  const last = channelsLast(g);
  const scope = new CallScope(engine);
  const dyPin = scope.pin(dy), xPin = scope.pin(x), outPin = out === null ? null : scope.pin(out);
  const yPin = y === null ? null : scope.pin(y);
  const w = snapshot(weight), mean = new Float32Array(saveMean), invStds = new Float64Array(saveInvStd);
  try {
    // One preflight for the allocations below (same sizes, same order), as in forward.
    scope.reserve([[dyPin.resident ? 0 : 4 * g.size, 'dy'], [xPin.resident ? 0 : 4 * g.size, 'x'], [yPin && !yPin.resident ? 4 * yPin.length : 0, 'y'],
      [!outPin?.resident && dyPin.resident ? 4 * g.size : 0, 'dx'], [16 * C, 'sums'], [16 * C, 'parameters'], [last ? k.workspaceBytes(C) : 0, 'workspace']]);
    const dyPtr = scope.place(dyPin, 'dy');
    const xPtr = scope.place(xPin, 'x');
    const yPtr = yPin === null ? 0 : scope.place(yPin, 'y'); // 0: no ReLU mask
    // dx goes to a resident out, else over the scratch copy of dy, else to new scratch.
    const dxPtr = outPin?.resident ? outPin.ptr : dyPin.resident ? scope.alloc(4 * g.size, 'dx') : dyPtr;
    const sums = scope.alloc(16 * C, 'sums');
    const params = scope.alloc(16 * C, 'parameters'); // mean | k1 | k2 | k3
    const work = last ? scope.alloc(k.workspaceBytes(C), 'workspace') : 0;
    if (!dyPin.resident) scope.f32(dyPtr, g.size).set(dy);
    if (!xPin.resident) scope.f32(xPtr, g.size).set(x);
    if (yPin !== null && !yPin.resident) scope.f32(yPtr, g.size).set(y!);
    const p = scope.f32(params, 4 * C);
    p.set(mean);
    const dweight = new Float32Array(C);
    const dbias = new Float32Array(C);

    if (!last) {
      // NCHW: backwardNchwF32 reduces and applies one channel at a time (params: mean | invStd | gamma).
      for (let c = 0; c < C; c++) {
        p[C + c] = invStds[c];
        p[2 * C + c] = w ? w[c] : 1;
      }
      k.backwardNchwF32(dyPtr, xPtr, dxPtr, g.outer, C, g.inner, params, params + 4 * C, params + 8 * C, training, sums, sums + 8 * C, yPtr);
      const s = scope.f64(sums, 2 * C);
      for (let c = 0; c < C; c++) {
        dbias[c] = s[c];
        dweight[c] = s[C + c] * invStds[c];
      }
    } else {
      k.backwardReduceNhwcF32(dyPtr, xPtr, g.outer, C, params, sums, sums + 8 * C, work, yPtr);
      const s = scope.f64(sums, 2 * C);
      for (let c = 0; c < C; c++) {
        const invStd = invStds[c];
        const sumDy = s[c], sumDyXmu = s[C + c];
        dbias[c] = sumDy;
        dweight[c] = sumDyXmu * invStd;
        p[C + c] = training ? sumDy / n : 0;
        p[2 * C + c] = training ? (sumDyXmu * invStd * invStd) / n : 0;
        p[3 * C + c] = (w ? w[c] : 1) * invStd;
      }
      const [meanPtr, k1, k2, k3] = [params, params + 4 * C, params + 8 * C, params + 12 * C];
      k.backwardDxNhwcF32(dyPtr, xPtr, dxPtr, g.outer, C, meanPtr, k1, k2, k3, work, training, yPtr);
    }

    const dx = out === null ? new Float32Array(g.size) : scope.live(out, outPin!);
    if (!outPin?.resident) dx.set(scope.f32(dxPtr, g.size));
    return { dx, dweight, dbias };
  } finally {
    scope.release();
  }
}
