import type { Core } from '../exec.js';
import { InvalidArgumentError, describe } from '../errors.js';
import { checkLayout, geometry, type Geometry, type Layout } from '../layout.js';
import { CallScope, STATS_BLOCK, backwardDx, backwardSums, batchStats, normalize, runChannels, threadWorkBytes } from '../exec.js';
import { threadsFor } from '../threads/split.js';
import { copyInto } from '../typed.js';
import { backwardPlan, forwardPlan } from '../plan.js';
import {
  aliasRule, checkAliasing, checkBoolean, checkEnoughValues, checkEps, checkF32, checkMomentum, checkOptionalF32, readOptions, readShape,
  type Options,
} from '../args.js';

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
  /**
   * Destinations for saveMean and saveInvStd, length C (PyTorch's native_batch_norm.out
   * save_mean, save_invstd): returned as the result's, and written in place by the kernels when
   * they are engine tensors, so a call with these and `out` allocates no array.
   */
  saveMeanOut?: Float32Array;
  saveInvStdOut?: Float32Array;
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
  /** Destinations for dweight and dbias, length C (as saveMeanOut in the forward). */
  dweightOut?: Float32Array;
  dbiasOut?: Float32Array;
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
// computed by the kernel as y = (x − meanHi) · scale + shift with meanHi = f32(mean),
//   scale = gamma · invStd, shift = beta − (mean − meanHi) · scale (assembly/fold.ts).
// Running statistics in training, m = momentum (weight of the new batch), in
// assembly/fold.ts (updateRunningF32):
//   runningMean = (1 − m) · runningMean + m · mean
//   runningVar  = (1 − m) · runningVar  + m · Σ(x − mean)² / (n − 1)   (unbiased; / n if not)
// activation 'relu' clamps y below at 0 in the same pass (the kernels' `lower` argument).

/**
 * The written and read arguments of the forward entry points (a running statistic is written in
 * training, read otherwise: the call fills one of its two slots) and of the backward; an output
 * may be exactly one of the inputs named (the kernels are elementwise in place).
 */
export const FORWARD_ALIASING = aliasRule(['opts.out', 'opts.saveMeanOut', 'opts.saveInvStdOut', 'opts.runningMean', 'opts.runningVar'],
  ['x', 'opts.weight', 'opts.bias', 'opts.runningMean', 'opts.runningVar'], ['opts.out=x']);
const BACKWARD_ALIASING = aliasRule(['opts.out', 'opts.dweightOut', 'opts.dbiasOut'],
  ['dy', 'x', 'opts.y', 'opts.weight', 'opts.saveMean', 'opts.saveInvStd'], ['opts.out=dy', 'opts.out=x', 'opts.out=opts.y']);

function checkActivation(value: unknown, name: string): Activation {
  if (value === undefined) return 'none';
  if (value !== 'none' && value !== 'relu') throw new InvalidArgumentError(name, `'none' or 'relu'`, describe(value));
  return value;
}

/** The keys of each options object (the reading layer rejects any other, src/args.ts). */
export const FORWARD_KEYS = [
  'layout', 'training', 'weight', 'bias', 'runningMean', 'runningVar', 'momentum', 'unbiasedRunningVar', 'eps', 'out', 'activation',
  'saveMeanOut', 'saveInvStdOut',
] as const;
export const BACKWARD_KEYS = ['layout', 'training', 'weight', 'saveMean', 'saveInvStd', 'out', 'activation', 'y', 'dweightOut', 'dbiasOut'] as const;

/** The arguments every forward entry point shares, checked (engine.forward, forwardWithMoments): engine-made views. */
export interface ForwardArgs {
  g: Geometry;
  x: Float32Array;
  weight: Float32Array | null;
  bias: Float32Array | null;
  runningMean: Float32Array | null;
  runningVar: Float32Array | null;
  momentum: number;
  unbiased: boolean;
  eps: number;
  out: Float32Array | null;
  saveMeanOut: Float32Array | null;
  saveInvStdOut: Float32Array | null;
}

type ForwardKey = 'layout' | 'weight' | 'bias' | 'runningMean' | 'runningVar' | 'momentum' | 'unbiasedRunningVar' | 'eps' | 'out'
  | 'saveMeanOut' | 'saveInvStdOut';

/** Checks what was read (`dims` from readShape, `opts` from readOptions); runs no user code. */
export function checkForwardArgs(engine: Core, x: unknown, dims: unknown, opts: Options<ForwardKey>): ForwardArgs {
  const g = geometry(dims, checkLayout(opts.layout));
  const C = g.channels;
  const channels = () => `C = ${C} channels`;
  const xv = checkF32(engine.arena, x, 'x', g.size, () => `shape [${g.shape.join(', ')}]`);
  const weight = checkOptionalF32(engine.arena, opts.weight, 'opts.weight', C, channels);
  const bias = checkOptionalF32(engine.arena, opts.bias, 'opts.bias', C, channels);
  const runningMean = checkOptionalF32(engine.arena, opts.runningMean, 'opts.runningMean', C, channels);
  const runningVar = checkOptionalF32(engine.arena, opts.runningVar, 'opts.runningVar', C, channels);
  if ((runningMean === null) !== (runningVar === null)) {
    const missing = runningMean === null ? 'opts.runningMean' : 'opts.runningVar';
    throw new InvalidArgumentError(missing, 'a Float32Array when the other running statistic is given', 'null');
  }
  const momentum = checkMomentum(opts.momentum, 'opts.momentum');
  const unbiased = checkBoolean(opts.unbiasedRunningVar, 'opts.unbiasedRunningVar', true);
  const eps = checkEps(opts.eps, 'opts.eps');
  const out = checkOptionalF32(engine.arena, opts.out, 'opts.out', g.size, 'same as x');
  const saveMeanOut = checkOptionalF32(engine.arena, opts.saveMeanOut, 'opts.saveMeanOut', C, channels);
  const saveInvStdOut = checkOptionalF32(engine.arena, opts.saveInvStdOut, 'opts.saveInvStdOut', C, channels);
  return { g, x: xv, weight, bias, runningMean, runningVar, momentum, unbiased, eps, out, saveMeanOut, saveInvStdOut };
}

/**
 * The core returns a destination (`out` as y, saveMeanOut as saveMean, ...); it got an
 * engine-made view of the caller's array, so the caller gets their own object back (unless
 * memory grew under a resident one: then the fresh view).
 */
export function callerOutput(result: Float32Array, view: Float32Array | null, caller: unknown): Float32Array {
  return view !== null && result === view ? caller as Float32Array : result;
}

export function forwardBatchNorm(engine: Core, x: Float32Array, shape: readonly number[], opts: ForwardOptions): ForwardResult {
  const dims = readShape(shape);
  const o = readOptions(opts, 'opts', FORWARD_KEYS, 'an options object with `training`');
  const args = checkForwardArgs(engine, x, dims, o);
  const { g, weight, bias, runningMean, runningVar, out } = args;
  const training = checkBoolean(o.training, 'opts.training');
  const lower = checkActivation(o.activation, 'opts.activation') === 'relu' ? 0 : -Infinity;
  const batchStats = training || runningMean === null;
  if (batchStats) checkEnoughValues(g);
  const updateRunning = training && runningMean !== null;
  checkAliasing(FORWARD_ALIASING, [out, args.saveMeanOut, args.saveInvStdOut, updateRunning ? runningMean : null,
    updateRunning ? runningVar : null, args.x, weight, bias, updateRunning ? null : runningMean, updateRunning ? null : runningVar]);

  return callerOutputs(runForward(engine, forwardCall(args, args.x, lower, batchStats ? 'batch' : 'running')), args, o);
}

/** The forward's result with the caller's own destination objects (callerOutput). */
export function callerOutputs(
  r: ForwardResult, a: Pick<ForwardArgs, 'out' | 'saveMeanOut' | 'saveInvStdOut'>, o: Options<'out' | 'saveMeanOut' | 'saveInvStdOut'>,
): ForwardResult {
  r.y = callerOutput(r.y, a.out, o.out);
  r.saveMean = callerOutput(r.saveMean, a.saveMeanOut, o.saveMeanOut);
  r.saveInvStd = callerOutput(r.saveInvStd, a.saveInvStdOut, o.saveInvStdOut);
  return r;
}


/** A validated forward call: every argument checked, nothing touched yet. */
export interface ForwardCall {
  g: Geometry;
  x: Float32Array;
  out: Float32Array | null;
  saveMeanOut: Float32Array | null;
  saveInvStdOut: Float32Array | null;
  weight: Float32Array | null;
  bias: Float32Array | null;
  eps: number;
  /** 0 fuses ReLU, −Infinity applies none. */
  lower: number;
  /** Batch statistics computed here, the running ones, or global moments merged from shards. */
  stats: 'batch' | 'running' | { mean: Float64Array; m2: Float64Array; count: number };
  /** Read with stats 'running'; otherwise updated in place when given. */
  runningMean: Float32Array | null;
  runningVar: Float32Array | null;
  momentum: number;
  unbiased: boolean;
}

/** The call for checked arguments (built field by field: an object spread is a slow path in V8). */
export function forwardCall(a: ForwardArgs, x: Float32Array, lower: number, stats: ForwardCall['stats']): ForwardCall {
  return {
    g: a.g, x, out: a.out, saveMeanOut: a.saveMeanOut, saveInvStdOut: a.saveInvStdOut, weight: a.weight, bias: a.bias, eps: a.eps, lower, stats,
    runningMean: a.runningMean, runningVar: a.runningVar, momentum: a.momentum, unbiased: a.unbiased,
  };
}

/**
 * Runs a validated forward call. Batch statistics in NCHW with large planes use
 * forwardTrainNchwF32 (one channel at a time); otherwise the statistics (computed, running or given) are folded by foldF32 and
 * applied by the normalize kernel.
 */
export function runForward(engine: Core, f: ForwardCall): ForwardResult {
  const { g, eps, lower } = f;
  const C = g.channels;
  const k = engine.kernels;
  const given = typeof f.stats === 'object' ? f.stats : null;
  const plan = forwardPlan(g, given ? 'given' : f.stats as 'batch' | 'running');
  const n = given ? given.count : g.count;
  const update = f.stats !== 'running' && f.runningMean !== null;
  const scope = new CallScope(engine);
  const xPin = scope.pin(f.x), outPin = f.out === null ? null : scope.pin(f.out);
  const rmPin = f.runningMean === null ? null : scope.pin(f.runningMean);
  const rvPin = f.runningVar === null ? null : scope.pin(f.runningVar);
  const wPin = f.weight === null ? null : scope.pin(f.weight), bPin = f.bias === null ? null : scope.pin(f.bias);
  const smPin = f.saveMeanOut === null ? null : scope.pin(f.saveMeanOut);
  const siPin = f.saveInvStdOut === null ? null : scope.pin(f.saveInvStdOut);
  const T = threadsFor(engine.pool, g.size);
  try {
    // y goes to a resident out, else over the scratch copy of x, else to new scratch.
    const [xCopy, yScratch, ws] = scope.allocate([
      [scope.copyBytes(xPin), 'x'], [!outPin?.resident && xPin.resident ? 4 * g.size : 0, 'y'],
      [plan.workspace.bytes + threadWorkBytes(g, T), 'workspace'],
    ]);
    const stats = ws + plan.workspace.stats, params = ws + plan.workspace.params;
    const partials = ws + plan.workspace.partials, work = ws + plan.workspace.work;
    const xPtr = xPin.resident ? xPin.ptr : xCopy;
    const yPtr = outPin?.resident ? outPin.ptr : xPin.resident ? yScratch : xPtr;
    if (!xPin.resident) scope.setF32(xPtr, f.x);
    // Per-channel inputs read in place when resident, else copied into params; gamma, beta: 0 when
    // absent (the kernels take gamma = 1, beta = 0: nothing to copy in). Resident running
    // statistics are updated in place by the last kernel, updateRunningF32.
    const meanHi = params, scale = params + 4 * C, shift = params + 8 * C, saved = params + 28 * C;
    const gamma = scope.place(f.weight, wPin, params + 12 * C), beta = scope.place(f.bias, bPin, params + 16 * C);
    const runMean = scope.place(f.runningMean, rmPin, params + 20 * C), runVar = scope.place(f.runningVar, rvPin, params + 24 * C);

    if (plan.path === 'fused') {
      runChannels(engine, 'forwardTrainNchwF32', C, T,
        (c0, c1) => [xPtr, yPtr, g.outer, C, g.inner, STATS_BLOCK, c0, c1, gamma, beta, eps, stats, stats + 8 * C, stats + 16 * C, lower]);
    } else {
      if (f.stats === 'batch') {
        batchStats(engine, g, plan.blocks, xPtr, partials, stats, work, T);
      } else if (given) {
        scope.setF64(stats, given.mean);
        scope.setF64(stats + 8 * C, given.m2);
      } else {
        k.widenF32(runMean, C, stats);
        k.widenF32(runVar, C, stats + 8 * C);
      }
      // v / divisor is the variance: m2 / n for batch or given moments, the running var / 1.
      k.foldF32(C, stats, stats + 8 * C, f.stats === 'running' ? 1 : n, eps, gamma, beta, meanHi, scale, shift, stats + 16 * C);
      normalize(engine, g, xPtr, yPtr, meanHi, scale, shift, work, lower, T);
    }
    // saveMean, saveInvStd: into resident destinations, else scratch (copied out below).
    const meanOut = scope.target(smPin, saved), invStdOut = scope.target(siPin, saved + 4 * C);
    k.narrowF64(stats, C, meanOut);
    k.narrowF64(stats + 16 * C, C, invStdOut);
    if (update) k.updateRunningF32(C, stats, stats + 8 * C, f.unbiased ? n - 1 : n, f.momentum, runMean, runVar);
    // Fresh views from here on: the kernels do not grow memory, but the allocation above may have.
    const [saveMean, saveInvStd] = scope.results(f.saveMeanOut, smPin, meanOut, f.saveInvStdOut, siPin, invStdOut, C);
    const y = scope.result(f.out, outPin, yPtr, g.size);
    if (update && !rmPin!.resident) copyInto(f.runningMean!, scope.f32(runMean, C));
    if (update && !rvPin!.resident) copyInto(f.runningVar!, scope.f32(runVar, C));
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
// (folded per channel by foldBackwardF32 in assembly/fold.ts; applied by assembly/backward.ts).

type BackwardKey = 'layout' | 'weight' | 'saveMean' | 'saveInvStd';

/** The arguments every backward entry point shares, checked (engine-made views); `source` names what saved the statistics. */
export function checkBackwardArgs(
  engine: Core, dy: unknown, x: unknown, dims: unknown, opts: Options<BackwardKey>, source: string,
): { g: Geometry; dy: Float32Array; x: Float32Array; weight: Float32Array | null; saveMean: Float32Array; saveInvStd: Float32Array } {
  const g = geometry(dims, checkLayout(opts.layout));
  const C = g.channels;
  const what = () => `shape [${g.shape.join(', ')}]`, saved = () => `C = ${C} channels, from ${source}`;
  const dyv = checkF32(engine.arena, dy, 'dy', g.size, what);
  const xv = checkF32(engine.arena, x, 'x', g.size, what);
  const weight = checkOptionalF32(engine.arena, opts.weight, 'opts.weight', C, () => `C = ${C} channels`);
  const saveMean = checkF32(engine.arena, opts.saveMean, 'opts.saveMean', C, saved);
  const saveInvStd = checkF32(engine.arena, opts.saveInvStd, 'opts.saveInvStd', C, saved);
  return { g, dy: dyv, x: xv, weight, saveMean, saveInvStd };
}

export function backwardBatchNorm(
  engine: Core, dyInput: Float32Array, xInput: Float32Array, shape: readonly number[], opts: BackwardOptions,
): BackwardResult {
  const dims = readShape(shape);
  const o = readOptions(opts, 'opts', BACKWARD_KEYS, 'an options object with `training`, `saveMean`, `saveInvStd`');
  const { g, dy, x, weight, saveMean, saveInvStd } = checkBackwardArgs(engine, dyInput, xInput, dims, o, 'forward');
  const training = checkBoolean(o.training, 'opts.training');
  const out = checkOptionalF32(engine.arena, o.out, 'opts.out', g.size, 'same as x');
  const relu = checkActivation(o.activation, 'opts.activation') === 'relu';
  const y = relu ? checkF32(engine.arena, o.y, 'opts.y', g.size, 'the forward output, with activation relu') : null;
  if (!relu && o.y !== undefined && o.y !== null) {
    throw new InvalidArgumentError('opts.y', `no forward output without opts.activation 'relu' (it masks dy only then)`, describe(o.y));
  }
  const grads = checkGradOuts(engine, o, g.channels);
  checkAliasing(BACKWARD_ALIASING, [out, grads.dweightOut, grads.dbiasOut, dy, x, y, weight, saveMean, saveInvStd]);

  const result = runBackward(engine, {
    g, dy, x, y, out, dweightOut: grads.dweightOut, dbiasOut: grads.dbiasOut, weight, saveMean, saveInvStd, training, sums: 'local',
  });
  return callerGrads(result, out, grads, o);
}

/** The backward's dweightOut, dbiasOut (length C), checked. */
export function checkGradOuts(engine: Core, o: Options<'dweightOut' | 'dbiasOut'>, C: number) {
  return {
    dweightOut: checkOptionalF32(engine.arena, o.dweightOut, 'opts.dweightOut', C, () => `C = ${C} channels`),
    dbiasOut: checkOptionalF32(engine.arena, o.dbiasOut, 'opts.dbiasOut', C, () => `C = ${C} channels`),
  };
}

/** The backward's result with the caller's own destination objects (callerOutput). */
export function callerGrads(
  r: BackwardResult, out: Float32Array | null, grads: ReturnType<typeof checkGradOuts>, o: Options<'out' | 'dweightOut' | 'dbiasOut'>,
): BackwardResult {
  r.dx = callerOutput(r.dx, out, o.out);
  r.dweight = callerOutput(r.dweight, grads.dweightOut, o.dweightOut);
  r.dbias = callerOutput(r.dbias, grads.dbiasOut, o.dbiasOut);
  return r;
}

/** A validated backward call: every argument checked, nothing touched yet. */
export interface BackwardCall {
  g: Geometry;
  dy: Float32Array;
  x: Float32Array;
  /** The fused ReLU's forward output masking dy, or null. */
  y: Float32Array | null;
  out: Float32Array | null;
  dweightOut: Float32Array | null;
  dbiasOut: Float32Array | null;
  weight: Float32Array | null;
  saveMean: Float32Array;
  saveInvStd: Float32Array;
  training: boolean;
  /** Reduce here ('local'), or all-reduced sums from every shard (training, global count). */
  sums: 'local' | { sumDy: Float64Array; sumDyXhat: Float64Array; count: number };
}

/**
 * Runs a validated backward call. Local sums in NCHW with large planes use backwardNchwF32 (one
 * channel at a time); otherwise the sums (reduced here or given) are folded into k1, k2, k3 per channel and
 * applied by the dx kernel.
 */
export function runBackward(engine: Core, b: BackwardCall): BackwardResult {
  const { g, training } = b;
  const C = g.channels;
  const k = engine.kernels;
  const given = typeof b.sums === 'object' ? b.sums : null;
  const plan = backwardPlan(g, given ? 'given' : 'local');
  const n = given ? given.count : g.count;
  const scope = new CallScope(engine);
  const dyPin = scope.pin(b.dy), xPin = scope.pin(b.x), outPin = b.out === null ? null : scope.pin(b.out);
  const yPin = b.y === null ? null : scope.pin(b.y);
  const wPin = b.weight === null ? null : scope.pin(b.weight), meanPin = scope.pin(b.saveMean), invStdPin = scope.pin(b.saveInvStd);
  const dwPin = b.dweightOut === null ? null : scope.pin(b.dweightOut), dbPin = b.dbiasOut === null ? null : scope.pin(b.dbiasOut);
  const T = threadsFor(engine.pool, g.size);
  try {
    // dx goes to a resident out, else over the scratch copy of dy, else to new scratch.
    const [dyCopy, xCopy, yCopy, dxScratch, ws] = scope.allocate([
      [scope.copyBytes(dyPin), 'dy'], [scope.copyBytes(xPin), 'x'], [scope.copyBytes(yPin), 'y'],
      [!outPin?.resident && dyPin.resident ? 4 * g.size : 0, 'dx'], [plan.workspace.bytes + threadWorkBytes(g, T), 'workspace'],
    ]);
    const sums = ws + plan.workspace.sums, params = ws + plan.workspace.params, work = ws + plan.workspace.work;
    const partials = ws + plan.workspace.partials;
    const dyPtr = dyPin.resident ? dyPin.ptr : dyCopy;
    const xPtr = xPin.resident ? xPin.ptr : xCopy;
    const yPtr = yPin === null ? 0 : yPin.resident ? yPin.ptr : yCopy; // 0: no ReLU mask
    const dxPtr = outPin?.resident ? outPin.ptr : dyPin.resident ? dxScratch : dyPtr;
    if (!dyPin.resident) scope.setF32(dyPtr, b.dy);
    if (!xPin.resident) scope.setF32(xPtr, b.x);
    if (yPin !== null && !yPin.resident) scope.setF32(yPtr, b.y!);
    // Per-channel inputs read in place when resident, else copied into params (gamma 0: gamma = 1, fold.ts).
    const meanPtr = scope.place(b.saveMean, meanPin, params), invStdPtr = scope.place(b.saveInvStd, invStdPin, params + 4 * C);
    const gamma = scope.place(b.weight, wPin, params + 8 * C);
    const k1 = params + 12 * C, k2 = params + 16 * C, k3 = params + 20 * C;
    // dweight, dbias: into resident destinations, else scratch (copied out below).
    const dweight = scope.target(dwPin, params + 24 * C), dbias = scope.target(dbPin, params + 28 * C);

    if (plan.path === 'fused') {
      runChannels(engine, 'backwardNchwF32', C, T,
        (c0, c1) => [dyPtr, xPtr, dxPtr, g.outer, C, g.inner, STATS_BLOCK, c0, c1, meanPtr, invStdPtr, gamma, training ? 1 : 0, sums, sums + 8 * C, yPtr]);
      k.foldBackwardF32(C, sums, sums + 8 * C, true, invStdPtr, gamma, n, training, k1, k2, k3, dweight, dbias);
    } else {
      if (given === null) {
        backwardSums(engine, g, plan.blocks, dyPtr, xPtr, meanPtr, partials, sums, work, yPtr, T);
      } else {
        scope.setF64(sums, given.sumDy);
        scope.setF64(sums + 8 * C, given.sumDyXhat);
      }
      k.foldBackwardF32(C, sums, sums + 8 * C, given === null, invStdPtr, gamma, n, training, k1, k2, k3, dweight, dbias);
      backwardDx(engine, g, dyPtr, xPtr, dxPtr, meanPtr, k1, k2, k3, work, training, yPtr, T);
    }

    const dx = scope.result(b.out, outPin, dxPtr, g.size);
    const [dw, db] = scope.results(b.dweightOut, dwPin, dweight, b.dbiasOut, dbPin, dbias, C);
    return { dx, dweight: dw, dbias: db };
  } finally {
    scope.release();
  }
}
