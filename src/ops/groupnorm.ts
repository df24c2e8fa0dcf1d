// GroupNorm and InstanceNorm, forward and backward (PyTorch's torch.nn.functional.group_norm and
// instance_norm), on the batch-norm kernels plus assembly/groups.ts. Float32 in and out, f64
// statistics as for batch norm. Shapes [N, C, ...spatial] (NCHW) or [N, ...spatial, C] (NHWC),
// rank >= 2; R = the spatial size, G groups of Cg = C / G channels, M = Cg·R values per group.
// InstanceNorm is GroupNorm with G = C (per (n, c) statistics) plus optional running statistics.
//
// Forward, per (n, g) over its M values (biased variance, as PyTorch):
//   mean = Σx / M,  var = Σ(x − mean)² / M,  invStd = 1 / sqrt(var + eps)
//   y = (x − mean)·invStd·w_c + b_c           activation 'silu': y = z·σ(z) of that z
// The group's mean and m2 come from the statistics kernels (block partials with their own pivots,
// merged by Chan's update: 'runs' statsNchwF32 + mergeMomentsF64 with one run per group; 'rows'
// statsNhwcF32 per sample + mergeGroupMomentsF64, see src/plan.ts). They are expanded to every
// (n, c) of the group and folded by foldF32 (assembly/fold.ts) with per-(n, c) gamma = w_c, beta = b_c:
// meanHi = f32(mean), scale = f32(w_c·invStd), shift = f32(b_c − f32(mean − meanHi)·scale), the
// batch-norm rounding contract; the apply is normalizeNchwF32 over N·C planes of R values, or
// normalizeNhwcF32 per sample (normalizeSilu* with SiLU).
//
// InstanceNorm running statistics (PyTorch's instance_norm, aten/src/ATen/native/Normalization.cpp:
// the running stats are repeated N times, batch_norm updates each (n, c) copy, then the mean over
// n is copied back), m = momentum (weight of the new batch):
//   runningMean_c = (1 − m)·runningMean_c + m·(Σ_n mean_nc) / N
//   runningVar_c  = (1 − m)·runningVar_c  + m·(Σ_n m2_nc / (R − 1)) / N      (unbiased, as PyTorch)
// in f64, rounded once. useInputStats false normalizes every instance with the running statistics.
//
// Backward (through the group statistics), per (n, g) with μ, invStd as saved by the forward:
//   S1 = Σ_{c∈g} w_c·Σdy_nc,  S2 = Σ_{c∈g} w_c·Σdy·(x − μ)_nc   (f64, channels in order)
//   dx = invStd·(w_c·dy − S1/M − (x − μ)·invStd²·S2/M)
//   dweight_c = Σ_n invStd_ng·Σdy·(x − μ)_nc,  dbias_c = Σ_n Σdy_nc
// The per-(n, c) sums come from backwardReduce{Nchw,Nhwc}F32 + mergeSumsF64; dx is
// groupNormDx{Nchw,Nhwc}F32 with k3 = w_c·invStd, k1 = invStd·S1/M, k2 = invStd³·S2/M (f64, rounded
// once). InstanceNorm with useInputStats false: μ and invStd are constants, dx = w_c·invStd·dy
// (backwardDx*F32 in eval mode). With SiLU, z is recomputed from x as the forward applied it, from
// the saved statistics: z = (x − saveMean)·f32(w_c·saveInvStd) + b_c (siluBackward*F32 writes
// dz = dy·σ(z)·(1 + z·(1 − σ(z))) once, into dx's memory), and the above runs on dz.
import type { Core } from '../exec.js';
import { CallScope, STATS_BLOCK, threadWorkBytes, workStride } from '../exec.js';
import { applyThreads, ranges, runJobs, threadsFor } from '../threads/split.js';
import { InvalidArgumentError, ShapeError, describe } from '../errors.js';
import { checkLayout, geometry, type Geometry, type Layout } from '../layout.js';
import { groupNormPlan, instanceNormPlan, type GroupPlan } from '../plan.js';
import {
  aliasRule, checkAliasing, checkBoolean, checkEps, checkF32, checkMomentum, checkOptionalF32, readOptions, readShape, type Options,
} from '../args.js';
import { FORWARD_ALIASING, callerOutput, type BackwardResult, type ForwardResult } from './batchnorm.js';

export type GroupActivation = 'none' | 'silu';

export interface GroupNormOptions {
  /** Number of groups, dividing C. */
  groups: number;
  /** 'NCHW' (default): channel axis 1. 'NHWC': channel axis last. */
  layout?: Layout;
  /** Per-channel weight and bias, length C (default 1 and 0). */
  weight?: Float32Array | null;
  bias?: Float32Array | null;
  /** Added to the variance, finite and >= 2^-126; default 1e-5. */
  eps?: number;
  /** 'silu': y = z·σ(z) fused (the UNet/VAE GroupNorm + SiLU); default 'none'. */
  activation?: GroupActivation;
  /** Destination for y, length = x.length; may be x. */
  out?: Float32Array;
  /** Destinations for saveMean and saveInvStd, length N·groups (as batch norm's saveMeanOut). */
  saveMeanOut?: Float32Array;
  saveInvStdOut?: Float32Array;
}

export interface GroupNormBackwardOptions {
  groups: number;
  layout?: Layout;
  weight?: Float32Array | null;
  /** With activation 'silu': the forward's bias, to recompute the pre-activation. */
  bias?: Float32Array | null;
  /** From the forward, length N·groups. */
  saveMean: Float32Array;
  saveInvStd: Float32Array;
  activation?: GroupActivation;
  /** Destination for dx; may be dy or x. */
  out?: Float32Array;
  /** Destinations for dweight and dbias, length C. */
  dweightOut?: Float32Array;
  dbiasOut?: Float32Array;
}

export interface InstanceNormOptions {
  layout?: Layout;
  weight?: Float32Array | null;
  bias?: Float32Array | null;
  /** Running statistics, length C, given together or not at all; updated in place with useInputStats. */
  runningMean?: Float32Array | null;
  runningVar?: Float32Array | null;
  /** true (default): each instance's own statistics; false: the running ones (required then). */
  useInputStats?: boolean;
  /** Weight of the new batch in the running average, in [0, 1]; default 0.1. */
  momentum?: number;
  eps?: number;
  out?: Float32Array;
  /** Destinations for saveMean and saveInvStd, length N·C. */
  saveMeanOut?: Float32Array;
  saveInvStdOut?: Float32Array;
}

export interface InstanceNormBackwardOptions {
  layout?: Layout;
  weight?: Float32Array | null;
  /** From the forward, length N·C. */
  saveMean: Float32Array;
  saveInvStd: Float32Array;
  /** As in the forward: false means the statistics were constants (the running ones). */
  useInputStats?: boolean;
  out?: Float32Array;
  dweightOut?: Float32Array;
  dbiasOut?: Float32Array;
}

export const GROUP_NORM_KEYS = ['groups', 'layout', 'weight', 'bias', 'eps', 'activation', 'out', 'saveMeanOut', 'saveInvStdOut'] as const;
export const GROUP_NORM_BACKWARD_KEYS = [
  'groups', 'layout', 'weight', 'bias', 'saveMean', 'saveInvStd', 'activation', 'out', 'dweightOut', 'dbiasOut',
] as const;
export const INSTANCE_NORM_KEYS = [
  'layout', 'weight', 'bias', 'runningMean', 'runningVar', 'useInputStats', 'momentum', 'eps', 'out', 'saveMeanOut', 'saveInvStdOut',
] as const;
export const INSTANCE_NORM_BACKWARD_KEYS = ['layout', 'weight', 'saveMean', 'saveInvStd', 'useInputStats', 'out', 'dweightOut', 'dbiasOut'] as const;

/** GroupNorm's written and read arguments (InstanceNorm's forward: batch norm's, FORWARD_ALIASING). */
const GROUP_FORWARD_ALIASING = aliasRule(['opts.out', 'opts.saveMeanOut', 'opts.saveInvStdOut'], ['x', 'opts.weight', 'opts.bias'], ['opts.out=x']);
const BACKWARD_ALIASING = aliasRule(['opts.out', 'opts.dweightOut', 'opts.dbiasOut'],
  ['dy', 'x', 'opts.weight', 'opts.bias', 'opts.saveMean', 'opts.saveInvStd'], ['opts.out=dy', 'opts.out=x']);

// ---------------------------------------------------------------------------------------------
// Checks (phase 2 of the reading layer, src/args.ts: on values read once).

function checkGroups(value: unknown, C: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new InvalidArgumentError('opts.groups', 'a positive integer dividing the channel count', describe(value));
  }
  if (C % value !== 0) throw new ShapeError('opts.groups', `a divisor of C = ${C} channels`, String(value));
  return value;
}

function checkActivation(value: unknown): boolean {
  if (value === undefined || value === 'none') return false;
  if (value !== 'silu') throw new InvalidArgumentError('opts.activation', `'none' or 'silu'`, describe(value));
  return true;
}

const shapeOf = (g: Geometry) => () => `shape [${g.shape.join(', ')}]`;

/** What every entry point reads first: the engine, the shape and the options object. */
function readCall<K extends string>(core: Core, shape: unknown, opts: unknown, keys: readonly (K | 'layout')[], what: string) {
  const dims = readShape(shape);
  const o = readOptions(opts, 'opts', keys, what);
  return { core, o, g: geometry(dims, checkLayout(o.layout)) };
}

/** x, weight, bias, eps, out and the statistics' destinations (`stats` per sample) of a forward call. */
function checkForward(
  core: Core, g: Geometry, x: unknown, stats: number, o: Options<'weight' | 'bias' | 'eps' | 'out' | 'saveMeanOut' | 'saveInvStdOut'>,
) {
  const C = g.channels, channels = () => `C = ${C} channels`, perSample = () => `N·${stats} = ${g.shape[0] * stats} statistics`;
  return {
    x: checkF32(core.arena, x, 'x', g.size, shapeOf(g)),
    weight: checkOptionalF32(core.arena, o.weight, 'opts.weight', C, channels),
    bias: checkOptionalF32(core.arena, o.bias, 'opts.bias', C, channels),
    eps: checkEps(o.eps, 'opts.eps'),
    out: checkOptionalF32(core.arena, o.out, 'opts.out', g.size, 'same as x'),
    saveMeanOut: checkOptionalF32(core.arena, o.saveMeanOut, 'opts.saveMeanOut', g.shape[0] * stats, perSample),
    saveInvStdOut: checkOptionalF32(core.arena, o.saveInvStdOut, 'opts.saveInvStdOut', g.shape[0] * stats, perSample),
  };
}

/** dy, x, weight, saveMean, saveInvStd (`stats` per sample) and out of a backward call. */
function checkBackward(
  core: Core, g: Geometry, dy: unknown, x: unknown, stats: number,
  o: Options<'weight' | 'saveMean' | 'saveInvStd' | 'out' | 'dweightOut' | 'dbiasOut'>,
) {
  const C = g.channels, saved = () => `N·${stats} = ${g.shape[0] * stats} statistics, from the forward`;
  return {
    dy: checkF32(core.arena, dy, 'dy', g.size, shapeOf(g)),
    x: checkF32(core.arena, x, 'x', g.size, shapeOf(g)),
    weight: checkOptionalF32(core.arena, o.weight, 'opts.weight', C, () => `C = ${C} channels`),
    saveMean: checkF32(core.arena, o.saveMean, 'opts.saveMean', g.shape[0] * stats, saved),
    saveInvStd: checkF32(core.arena, o.saveInvStd, 'opts.saveInvStd', g.shape[0] * stats, saved),
    out: checkOptionalF32(core.arena, o.out, 'opts.out', g.size, 'same as x'),
    dweightOut: checkOptionalF32(core.arena, o.dweightOut, 'opts.dweightOut', C, () => `C = ${C} channels`),
    dbiasOut: checkOptionalF32(core.arena, o.dbiasOut, 'opts.dbiasOut', C, () => `C = ${C} channels`),
  };
}

/** The forward's result with the caller's own destination objects. */
function callerForward(r: ForwardResult, a: ReturnType<typeof checkForward>, o: Options<'out' | 'saveMeanOut' | 'saveInvStdOut'>): ForwardResult {
  r.y = callerOutput(r.y, a.out, o.out);
  r.saveMean = callerOutput(r.saveMean, a.saveMeanOut, o.saveMeanOut);
  r.saveInvStd = callerOutput(r.saveInvStd, a.saveInvStdOut, o.saveInvStdOut);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Entry points.

export function groupNorm(core: Core, x: Float32Array, shape: readonly number[], opts: GroupNormOptions): ForwardResult {
  const { o, g } = readCall(core, shape, opts, GROUP_NORM_KEYS, 'an options object with `groups`');
  const groups = checkGroups(o.groups, g.channels);
  const a = checkForward(core, g, x, groups, o);
  const silu = checkActivation(o.activation);
  // F.group_norm's _verify_batch_size on [N·C / G, G, ...spatial]: (N·C / G)·R must exceed 1.
  if ((g.shape[0] * g.channels / groups) * (g.count / g.shape[0]) === 1) {
    throw new ShapeError('x', 'more than 1 value per channel when training', `input size [${g.shape.join(', ')}] with ${groups} groups`);
  }
  checkAliasing(GROUP_FORWARD_ALIASING, [a.out, a.saveMeanOut, a.saveInvStdOut, a.x, a.weight, a.bias]);
  const result = runForward(core, groupNormPlan(g, groups, 'forward'), {
    ...a, silu, inputStats: true, runningMean: null, runningVar: null, momentum: 0,
  });
  return callerForward(result, a, o);
}

export function instanceNorm(core: Core, x: Float32Array, shape: readonly number[], opts: InstanceNormOptions = {}): ForwardResult {
  const { o, g } = readCall(core, shape, opts, INSTANCE_NORM_KEYS, 'an options object');
  const a = checkForward(core, g, x, g.channels, o);
  const C = g.channels, channels = () => `C = ${C} channels`;
  const runningMean = checkOptionalF32(core.arena, o.runningMean, 'opts.runningMean', C, channels);
  const runningVar = checkOptionalF32(core.arena, o.runningVar, 'opts.runningVar', C, channels);
  if ((runningMean === null) !== (runningVar === null)) {
    const missing = runningMean === null ? 'opts.runningMean' : 'opts.runningVar';
    throw new InvalidArgumentError(missing, 'a Float32Array when the other running statistic is given', 'null');
  }
  const inputStats = checkBoolean(o.useInputStats, 'opts.useInputStats', true);
  if (!inputStats && runningMean === null) {
    throw new InvalidArgumentError('opts.runningMean', 'running statistics when useInputStats is false', 'null');
  }
  const momentum = checkMomentum(o.momentum, 'opts.momentum');
  // F.instance_norm's _verify_spatial_size, when it uses the input's statistics.
  if (inputStats && g.count === g.shape[0]) {
    throw new ShapeError('x', 'more than 1 spatial element when training', `input size [${g.shape.join(', ')}]`);
  }
  const update = inputStats && runningMean !== null;
  checkAliasing(FORWARD_ALIASING, [a.out, a.saveMeanOut, a.saveInvStdOut, update ? runningMean : null, update ? runningVar : null,
    a.x, a.weight, a.bias, update ? null : runningMean, update ? null : runningVar]);
  const result = runForward(core, instanceNormPlan(g, 'forward'), { ...a, silu: false, inputStats, runningMean, runningVar, momentum });
  return callerForward(result, a, o);
}

export function groupNormBackward(
  core: Core, dy: Float32Array, x: Float32Array, shape: readonly number[], opts: GroupNormBackwardOptions,
): BackwardResult {
  const { o, g } = readCall(core, shape, opts, GROUP_NORM_BACKWARD_KEYS, 'an options object with `groups`, `saveMean`, `saveInvStd`');
  const groups = checkGroups(o.groups, g.channels);
  const a = checkBackward(core, g, dy, x, groups, o);
  const bias = checkOptionalF32(core.arena, o.bias, 'opts.bias', g.channels, () => `C = ${g.channels} channels`);
  const silu = checkActivation(o.activation);
  return checkedBackward(core, groupNormPlan(g, groups, 'backward'), { ...a, bias, silu, inputStats: true }, o);
}

export function instanceNormBackward(
  core: Core, dy: Float32Array, x: Float32Array, shape: readonly number[], opts: InstanceNormBackwardOptions,
): BackwardResult {
  const { o, g } = readCall(core, shape, opts, INSTANCE_NORM_BACKWARD_KEYS, 'an options object with `saveMean`, `saveInvStd`');
  const a = checkBackward(core, g, dy, x, g.channels, o);
  const inputStats = checkBoolean(o.useInputStats, 'opts.useInputStats', true);
  return checkedBackward(core, instanceNormPlan(g, 'backward'), { ...a, bias: null, silu: false, inputStats }, o);
}

/** The aliasing check of a backward call (out may be exactly dy or x), then the call; the caller's own destinations back. */
function checkedBackward(core: Core, plan: GroupPlan, b: BackwardCall, o: Options<'out' | 'dweightOut' | 'dbiasOut'>): BackwardResult {
  checkAliasing(BACKWARD_ALIASING, [b.out, b.dweightOut, b.dbiasOut, b.dy, b.x, b.weight, b.bias, b.saveMean, b.saveInvStd]);
  const result = runBackward(core, plan, b);
  result.dx = callerOutput(result.dx, b.out, o.out);
  result.dweight = callerOutput(result.dweight, b.dweightOut, o.dweightOut);
  result.dbias = callerOutput(result.dbias, b.dbiasOut, o.dbiasOut);
  return result;
}

// ---------------------------------------------------------------------------------------------
// The validated calls.

interface ForwardCall {
  x: Float32Array;
  out: Float32Array | null;
  /** Destinations of the saved statistics, or null (a new array). */
  saveMeanOut: Float32Array | null;
  saveInvStdOut: Float32Array | null;
  weight: Float32Array | null;
  bias: Float32Array | null;
  eps: number;
  silu: boolean;
  /** The input's statistics, or (InstanceNorm) the running ones for every instance. */
  inputStats: boolean;
  runningMean: Float32Array | null;
  runningVar: Float32Array | null;
  momentum: number;
}

/** Per-(n, c) copies of per-channel values at ptr, f32[N][C]; none (pointer 0: foldF32's gamma = 1, beta = 0) without values. */
function tileChannels(scope: CallScope, ptr: number, values: Float32Array | null, N: number, C: number): number {
  if (values === null) return 0;
  for (let n = 0; n < N; n++) scope.setF32(ptr + 4 * n * C, values);
  return ptr;
}

function runForward(core: Core, plan: GroupPlan, f: ForwardCall): ForwardResult {
  const { g, samples: N, groups: G, spatial: R } = plan;
  const C = g.channels, Cg = C / G, NC = N * C, NG = N * G, M = Cg * R;
  const k = core.kernels;
  const scope = new CallScope(core);
  const xPin = scope.pin(f.x), outPin = f.out === null ? null : scope.pin(f.out);
  const rmPin = f.runningMean === null ? null : scope.pin(f.runningMean);
  const rvPin = f.runningVar === null ? null : scope.pin(f.runningVar);
  const smPin = f.saveMeanOut === null ? null : scope.pin(f.saveMeanOut), siPin = f.saveInvStdOut === null ? null : scope.pin(f.saveInvStdOut);
  const wPin = f.weight === null ? null : scope.pin(f.weight), bPin = f.bias === null ? null : scope.pin(f.bias);
  // Threads (forward): statistics by block ranges, applies by plane ('runs') or row ('rows') ranges.
  // The SiLU apply is compute-bound (an exp per value, about 2 ns), so it splits with the call,
  // not at the elementwise passes' larger threshold.
  const T = threadsFor(core.pool, g.size), ta = f.silu ? T : applyThreads(T, g.size), pool = core.pool, wstride = workStride(C);
  try {
    const [xCopy, yScratch, ws] = scope.allocate([
      [scope.copyBytes(xPin), 'x'], [!outPin?.resident && xPin.resident ? 4 * g.size : 0, 'y'],
      [plan.workspace.bytes + threadWorkBytes(g, T), 'workspace'],
    ]);
    // The per-channel arrays, read in JS below: live views (the allocation may have grown memory).
    const w = scope.liveOf(f.weight, wPin), b = scope.liveOf(f.bias, bPin), rm = scope.liveOf(f.runningMean, rmPin), rv = scope.liveOf(f.runningVar, rvPin);
    const groupMean = ws + plan.workspace.stats, groupM2 = groupMean + 8 * NG;
    const mean = groupM2 + 8 * NG, m2 = mean + 8 * NC, invStd = m2 + 8 * NC;
    const meanHi = ws + plan.workspace.params, scale = meanHi + 4 * NC, shift = scale + 4 * NC;
    const partials = ws + plan.workspace.partials, work = ws + plan.workspace.work;
    const xPtr = xPin.resident ? xPin.ptr : xCopy;
    const yPtr = outPin?.resident ? outPin.ptr : xPin.resident ? yScratch : xPtr;
    if (!xPin.resident) scope.setF32(xPtr, f.x);
    const gamma = tileChannels(scope, shift + 4 * NC, w, N, C), beta = tileChannels(scope, shift + 8 * NC, b, N, C);
    const heap = core.arena.heapF64;
    if (f.inputStats) {
      if (plan.path === 'runs') {
        runJobs(k, pool, 'statsNchwF32', ranges(plan.blocks, T).map(([b0, b1]) => [xPtr, 1, NG, M, STATS_BLOCK, b0, b1, partials]));
        k.mergeMomentsF64(partials, plan.blocks, NG, groupMean, groupM2);
      } else {
        for (let n = 0; n < N; n++) {
          const part = partials + 32 * n * C * plan.blocks, at = 8 * n * G, xn = xPtr + 4 * n * R * C;
          runJobs(k, pool, 'statsNhwcF32',
            ranges(plan.blocks, T).map(([b0, b1], t) => [xn, R, C, STATS_BLOCK, b0, b1, part, work + t * wstride]));
          if (Cg === 1) k.mergeMomentsF64(part, plan.blocks, C, groupMean + at, groupM2 + at);
          else k.mergeGroupMomentsF64(part, plan.blocks, G, Cg, groupMean + at, groupM2 + at);
        }
      }
      for (let i = 0; i < NC; i++) { // the group's moments for each of its (n, c)
        const s = Math.floor(i / Cg);
        heap[(mean >>> 3) + i] = heap[(groupMean >>> 3) + s];
        heap[(m2 >>> 3) + i] = heap[(groupM2 >>> 3) + s];
      }
    } else {
      for (let i = 0; i < NC; i++) {
        heap[(mean >>> 3) + i] = rm![i % C];
        heap[(m2 >>> 3) + i] = rv![i % C];
      }
    }
    // v / divisor is the variance: m2 / M, or the running var / 1.
    k.foldF32(NC, mean, m2, f.inputStats ? M : 1, f.eps, gamma, beta, meanHi, scale, shift, invStd);
    if (plan.path === 'runs') {
      // N·C planes of R values: plane ranges [c0, c1).
      runJobs(k, pool, f.silu ? 'normalizeSiluNchwF32' : 'normalizeNchwF32', ranges(NC, ta).map(([c0, c1]) => {
        const o = 4 * c0 * R, q = 4 * c0, args = [xPtr + o, yPtr + o, 1, c1 - c0, R, meanHi + q, scale + q, shift + q];
        return f.silu ? args : [...args, -Infinity];
      }));
    } else {
      for (let n = 0; n < N; n++) {
        const at = 4 * n * R * C, p = 4 * n * C;
        // Row ranges [r0, r1) of sample n (multiples of 4 rows: 16-byte aligned parts).
        runJobs(k, pool, f.silu ? 'normalizeSiluNhwcF32' : 'normalizeNhwcF32', ranges(R, ta, 4).map(([r0, r1], t) => {
          const o = at + 4 * r0 * C, tw = work + t * wstride;
          const args = [xPtr + o, yPtr + o, r1 - r0, C, meanHi + p, scale + p, shift + p, tw];
          return f.silu ? args : [...args, -Infinity];
        }));
      }
    }
    // saveMean, saveInvStd: each group's (the first of its channels'), into the destinations, else new arrays.
    const [saveMean, saveInvStd] = scope.fillTargets(f.saveMeanOut, smPin, f.saveInvStdOut, siPin, NG);
    for (let s = 0; s < NG; s++) {
      saveMean[s] = heap[(mean >>> 3) + s * Cg];
      saveInvStd[s] = heap[(invStd >>> 3) + s * Cg];
    }
    const y = scope.result(f.out, outPin, yPtr, g.size);
    if (f.inputStats && rm !== null) {
      // PyTorch's update of the N repeated copies, averaged over n (header), in f64, rounded once.
      // rm, rv are live views (above): each value is read before it is written.
      const m = f.momentum;
      for (let c = 0; c < C; c++) {
        let sm = 0, sv = 0;
        for (let n = 0; n < N; n++) {
          sm += heap[(mean >>> 3) + n * C + c];
          sv += heap[(m2 >>> 3) + n * C + c] / (R - 1);
        }
        rm[c] = (1 - m) * rm[c] + m * (sm / N);
        rv![c] = (1 - m) * rv![c] + m * (sv / N);
      }
    }
    return { y, saveMean, saveInvStd };
  } finally {
    scope.release();
  }
}

interface BackwardCall {
  dy: Float32Array;
  x: Float32Array;
  out: Float32Array | null;
  /** Destinations of dweight and dbias, or null (a new array). */
  dweightOut: Float32Array | null;
  dbiasOut: Float32Array | null;
  weight: Float32Array | null;
  bias: Float32Array | null;
  saveMean: Float32Array;
  saveInvStd: Float32Array;
  silu: boolean;
  /** false: the statistics were constants (InstanceNorm with the running statistics). */
  inputStats: boolean;
}

function runBackward(core: Core, plan: GroupPlan, b: BackwardCall): BackwardResult {
  const { g, samples: N, groups: G, spatial: R } = plan;
  const C = g.channels, Cg = C / G, NC = N * C, M = Cg * R;
  const k = core.kernels;
  const scope = new CallScope(core);
  const dyPin = scope.pin(b.dy), xPin = scope.pin(b.x), outPin = b.out === null ? null : scope.pin(b.out);
  const dwPin = b.dweightOut === null ? null : scope.pin(b.dweightOut), dbPin = b.dbiasOut === null ? null : scope.pin(b.dbiasOut);
  const wPin = b.weight === null ? null : scope.pin(b.weight), biasPin = b.bias === null ? null : scope.pin(b.bias);
  const meanPin = scope.pin(b.saveMean), invStdPin = scope.pin(b.saveInvStd);
  // Threads (backward), as the forward: the reductions by block ranges, the dx pass by plane or row
  // ranges; the SiLU derivative (an exp per value) splits with the call.
  const T = threadsFor(core.pool, g.size), ta = applyThreads(T, g.size), pool = core.pool, wstride = workStride(C);
  try {
    // dx goes to a resident out, else over the scratch copy of dy, else to new scratch; SiLU's dz
    // is written where dx goes, unless that is x (needed until dx is written): then to scratch.
    const dzOwn = b.silu && outPin?.resident === true && outPin.ptr === xPin.ptr;
    const [dyCopy, xCopy, dxScratch, dzScratch, ws] = scope.allocate([
      [scope.copyBytes(dyPin), 'dy'], [scope.copyBytes(xPin), 'x'],
      [!outPin?.resident && dyPin.resident ? 4 * g.size : 0, 'dx'], [dzOwn ? 4 * g.size : 0, 'dz'], [plan.workspace.bytes + threadWorkBytes(g, T), 'workspace'],
    ]);
    // The per-channel and saved arrays, read in JS below: live views (the allocation may have grown memory).
    const w = scope.liveOf(b.weight, wPin), bias = scope.liveOf(b.bias, biasPin);
    const mean = scope.live(b.saveMean, meanPin), invStd = scope.live(b.saveInvStd, invStdPin);
    const sumDy = ws + plan.workspace.stats, sumDyXmu = sumDy + 8 * NC;
    const meanPtr = ws + plan.workspace.params, k1 = meanPtr + 4 * NC, k2 = k1 + 4 * NC, k3 = k2 + 4 * NC;
    const scale = k3 + 4 * NC, shift = scale + 4 * NC;
    const partials = ws + plan.workspace.partials, work = ws + plan.workspace.work;
    const dyPtr = dyPin.resident ? dyPin.ptr : dyCopy;
    const xPtr = xPin.resident ? xPin.ptr : xCopy;
    const dxPtr = outPin?.resident ? outPin.ptr : dyPin.resident ? dxScratch : dyPtr;
    if (!dyPin.resident) scope.setF32(dyPtr, b.dy);
    if (!xPin.resident) scope.setF32(xPtr, b.x);
    const f32 = core.arena.heapF32, f64 = core.arena.heapF64;
    for (let i = 0; i < NC; i++) f32[(meanPtr >>> 2) + i] = mean[Math.floor(i / Cg)];
    let gPtr = dyPtr;
    if (b.silu) {
      for (let i = 0; i < NC; i++) {
        const c = i % C;
        f32[(scale >>> 2) + i] = (w ? w[c] : 1) * invStd[Math.floor(i / Cg)];
        f32[(shift >>> 2) + i] = bias ? bias[c] : 0;
      }
      gPtr = dzOwn ? dzScratch : dxPtr;
      if (plan.path === 'runs') {
        runJobs(k, pool, 'siluBackwardNchwF32', ranges(NC, T).map(([c0, c1]) => {
          const o = 4 * c0 * R, q = 4 * c0;
          return [dyPtr + o, xPtr + o, gPtr + o, 1, c1 - c0, R, meanPtr + q, scale + q, shift + q];
        }));
      } else {
        for (let n = 0; n < N; n++) {
          const at = 4 * n * R * C, p = 4 * n * C;
          runJobs(k, pool, 'siluBackwardNhwcF32', ranges(R, T, 4).map(([r0, r1], t) => {
            const o = at + 4 * r0 * C;
            return [dyPtr + o, xPtr + o, gPtr + o, r1 - r0, C, meanPtr + p, scale + p, shift + p, work + t * wstride];
          }));
        }
      }
    }
    if (plan.path === 'runs') {
      runJobs(k, pool, 'backwardReduceNchwF32',
        ranges(plan.blocks, T).map(([b0, b1]) => [gPtr, xPtr, 1, NC, R, meanPtr, STATS_BLOCK, b0, b1, partials, 0]));
      k.mergeSumsF64(partials, plan.blocks, NC, sumDy, sumDyXmu);
    } else {
      for (let n = 0; n < N; n++) {
        const part = partials + 16 * n * C * plan.blocks, at = 4 * n * R * C;
        runJobs(k, pool, 'backwardReduceNhwcF32', ranges(plan.blocks, T).map(([b0, b1], t) =>
          [gPtr + at, xPtr + at, R, C, meanPtr + 4 * n * C, STATS_BLOCK, b0, b1, part, work + t * wstride, 0]));
        k.mergeSumsF64(part, plan.blocks, C, sumDy + 8 * n * C, sumDyXmu + 8 * n * C);
      }
    }
    // The per-(n, c) dx constants (header) in f64, each rounded once when stored.
    const dw = new Float64Array(C), db = new Float64Array(C);
    for (let s = 0; s < N * G; s++) {
      const first = s * Cg, is = invStd[s];
      let s1 = 0, s2 = 0;
      for (let i = first; i < first + Cg; i++) {
        const wc = w ? w[i % C] : 1, sd = f64[(sumDy >>> 3) + i], sx = f64[(sumDyXmu >>> 3) + i];
        s1 += wc * sd;
        s2 += wc * sx;
        dw[i % C] += is * sx;
        db[i % C] += sd;
      }
      for (let i = first; i < first + Cg; i++) {
        f32[(k1 >>> 2) + i] = b.inputStats ? (is * s1) / M : 0;
        f32[(k2 >>> 2) + i] = b.inputStats ? (is * is * is * s2) / M : 0;
        f32[(k3 >>> 2) + i] = (w ? w[i % C] : 1) * is;
      }
    }
    // dweight, dbias: into the destinations, else new arrays.
    const [dweight, dbias] = scope.fillTargets(b.dweightOut, dwPin, b.dbiasOut, dbPin, C);
    for (let c = 0; c < C; c++) {
      dweight[c] = dw[c];
      dbias[c] = db[c];
    }
    // dx: groupNormDx, or with constant statistics backwardDx (training 0, no ReLU mask).
    if (plan.path === 'runs') {
      runJobs(k, pool, b.inputStats ? 'groupNormDxNchwF32' : 'backwardDxNchwF32', ranges(NC, ta).map(([c0, c1]) => {
        const o = 4 * c0 * R, q = 4 * c0;
        const args = [gPtr + o, xPtr + o, dxPtr + o, 1, c1 - c0, R, meanPtr + q, k1 + q, k2 + q, k3 + q];
        return b.inputStats ? args : [...args, 0, 0];
      }));
    } else {
      for (let n = 0; n < N; n++) {
        const at = 4 * n * R * C, p = 4 * n * C;
        runJobs(k, pool, b.inputStats ? 'groupNormDxNhwcF32' : 'backwardDxNhwcF32', ranges(R, ta, 4).map(([r0, r1], t) => {
          const o = at + 4 * r0 * C;
          const args = [gPtr + o, xPtr + o, dxPtr + o, r1 - r0, C, meanPtr + p, k1 + p, k2 + p, k3 + p, work + t * wstride];
          return b.inputStats ? args : [...args, 0, 0];
        }));
      }
    }
    const dx = scope.result(b.out, outPin, dxPtr, g.size);
    return { dx, dweight, dbias };
  } finally {
    scope.release();
  }
}
