// Mergeable statistics: the building blocks of synchronized batch norm (PyTorch's SyncBatchNorm
// internals) for any all-reduce: worker_threads, Web Workers, or a training framework's collective.
//
// Each shard holds a slice of the batch (any split, uneven sizes; every shard has all C channels).
// Per training step:
//
//   local   = engine.moments(x, shape)                          { count, mean, m2 } per channel, f64
//   global  = all-reduce(local, mergeMoments)                   Chan et al.: exact for any split
//   fwd     = engine.forwardWithMoments(x, shape, { moments: global, runningMean, runningVar, ... })
//             normalizes with mean = global.mean, var = global.m2 / global.count and updates the
//             running statistics with the global count (unbiased: m2 / (count − 1))
//   sums    = engine.backwardReduce(dy, x, shape, { saveMean, saveInvStd })    { sumDy, sumDyXhat }
//   gsums   = all-reduce(sums, mergeBackwardSums)               elementwise sum
//   bwd     = engine.backwardWithSums(dy, x, shape, { ...gsums, count: global.count, weight, saveMean, saveInvStd })
//             dx = γ·invStd·(dy − ΣDy/n − xhat·ΣDyXhat/n) with the global sums and n = global count;
//             dweight = ΣDyXhat, dbias = ΣDy (the whole batch's gradients, the same on every shard).
//
// Chan's update for shards a, b: n = na + nb, δ = mean_b − mean_a,
//   mean = mean_a + δ·nb/n,   m2 = m2_a + m2_b + δ²·na·nb/n.
// Statistics stay in float64 end to end, so merging k shards costs a few f64 roundings, far
// below the float32 outputs' half ulp (test/sync.test.ts derives the bounds).
import type { Core } from '../exec.js';
import {
  FORWARD_ALIASING, FORWARD_KEYS, callerGrads, callerOutputs, checkBackwardArgs, checkGradOuts, checkForwardArgs, forwardCall, runBackward, runForward,
  type BackwardResult, type ForwardOptions, type ForwardResult,
} from './batchnorm.js';
import { InvalidArgumentError, ShapeError, describe } from '../errors.js';
import { checkLayout, geometry, type Layout } from '../layout.js';
import { CallScope, backwardSums, batchStats, threadWorkBytes } from '../exec.js';
import { threadsFor } from '../threads/split.js';
import { sliceF64 } from '../typed.js';
import { momentsPlan, reducePlan } from '../plan.js';
import {
  aliasRule, checkAliasing, checkF32, checkNumberElements, checkOptionalF32, readElements, readOptions, readRecord, readShape, type Options,
} from '../args.js';
import { isArray } from '../typed.js';

/** Per-channel moments of a batch (or of a merged set of shards). */
export interface Moments {
  /** Values per channel (the same for every channel). */
  count: number;
  /** Per-channel mean. */
  mean: Float64Array;
  /** Per-channel sum of squared deviations from the mean: biased var = m2 / count. */
  m2: Float64Array;
}

/** Moments as they may arrive from elsewhere (postMessage keeps Float64Array; JSON gives arrays). */
export interface MomentsLike {
  count: number;
  mean: ArrayLike<number>;
  m2: ArrayLike<number>;
}

export interface MomentsOptions {
  layout?: Layout;
}

/**
 * engine.forward's options without `training` (this is the training forward of one shard) and
 * `activation`, plus the global moments. The running statistics are updated with the GLOBAL
 * count: runningVar receives m2 / (count − 1) (or m2 / count).
 */
export interface ForwardWithMomentsOptions extends Omit<ForwardOptions, 'training' | 'activation'> {
  /** The GLOBAL moments (all shards merged); count >= this shard's values per channel, >= 2. */
  moments: MomentsLike;
}

/** Per-channel backward reductions of one shard (or their all-reduced sums). */
export interface BackwardSums {
  /** Σ dy. */
  sumDy: Float64Array;
  /** Σ dy · xhat = invStd · Σ dy · (x − mean). */
  sumDyXhat: Float64Array;
}

export interface BackwardReduceOptions {
  layout?: Layout;
  /** From forwardWithMoments (the global statistics: identical on every shard). */
  saveMean: Float32Array;
  saveInvStd: Float32Array;
}

export interface BackwardWithSumsOptions {
  layout?: Layout;
  weight?: Float32Array | null;
  saveMean: Float32Array;
  saveInvStd: Float32Array;
  /** All-reduced (summed over every shard) backward reductions. */
  sumDy: ArrayLike<number>;
  sumDyXhat: ArrayLike<number>;
  /** Global values per channel (the merged moments' count). */
  count: number;
  /** Destination for dx; may be dy or x itself. */
  out?: Float32Array;
  /** Destinations for dweight and dbias, length C (as engine.backward's). */
  dweightOut?: Float32Array;
  dbiasOut?: Float32Array;
}

// ---------------------------------------------------------------------------------------
// Argument checks for the JS-side per-channel inputs (moments, sums).

/** A per-channel array of numbers read once (phase 1 of src/args.ts), or null if it is not one. */
type Read = ArrayLike<unknown> | null;

/** A float64 copy of a per-channel array of numbers of length C, every element checked. */
function channelF64(read: Read, raw: unknown, name: string, C: number, what: string): Float64Array {
  if (read === null) throw new InvalidArgumentError(name, `a Float64Array (or array of numbers) of length ${C} (${what})`, describe(raw));
  if (read.length !== C) throw new ShapeError(name, `length ${C} (${what})`, `length ${read.length}`);
  return checkNumberElements(read, name);
}

function checkCount(value: unknown, name: string, min: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(name, `an integer >= ${min} (${what})`, describe(value));
  }
  return value;
}

/** Moments read once: the record's own count, mean, m2, the arrays' elements copied. */
interface ReadMoments {
  raw: unknown;
  record: Options<'count' | 'mean' | 'm2'> | null;
  mean: Read;
  m2: Read;
}

function readMoments(value: unknown): ReadMoments {
  const record = readRecord(value, ['count', 'mean', 'm2'] as const);
  return { raw: value, record, mean: record && readElements(record.mean), m2: record && readElements(record.m2) };
}

/** Validated copy of moments read by readMoments, with C channels (null: as many as `name.mean` has). */
function checkMoments(read: ReadMoments, name: string, C: number | null, minCount: number, what: string): Moments {
  const { record } = read;
  if (record === null) throw new InvalidArgumentError(name, '{ count, mean, m2 } (from engine.moments / mergeMoments)', describe(read.raw));
  const count = checkCount(record.count, `${name}.count`, minCount, what);
  const channels = C ?? (read.mean === null ? 0 : read.mean.length);
  const mean = channelF64(read.mean, record.mean, `${name}.mean`, channels, C === null ? 'per channel' : `C = ${C} channels`);
  const m2 = channelF64(read.m2, record.m2, `${name}.m2`, channels, `the length of ${name}.mean`);
  const negative = m2.findIndex((v) => v < 0);
  if (negative >= 0) throw new InvalidArgumentError(`${name}.m2[${negative}]`, 'a sum of squares >= 0', describe(m2[negative]));
  return { count, mean, m2 };
}

// ---------------------------------------------------------------------------------------
// Merging (pure JS, float64).

/** Chan's update of two validated moments (same channels). count 0 is the identity. */
function merge(ma: Moments, mb: Moments): Moments {
  const na = ma.count, nb = mb.count, n = na + nb;
  if (na === 0) return mb;
  if (nb === 0) return ma;
  const C = ma.mean.length;
  const mean = new Float64Array(C), m2 = new Float64Array(C);
  const wb = nb / n, cross = (na * nb) / n;
  for (let c = 0; c < C; c++) {
    const delta = mb.mean[c] - ma.mean[c];
    mean[c] = ma.mean[c] + delta * wb;
    m2[c] = ma.m2[c] + mb.m2[c] + delta * delta * cross;
  }
  return { count: n, mean, m2 };
}

function checkSameChannels(first: Moments, firstName: string, m: Moments, name: string): void {
  if (m.mean.length !== first.mean.length) {
    throw new ShapeError(`${name}.mean`, `length ${first.mean.length} (the channels of ${firstName})`, `length ${m.mean.length}`);
  }
}

/** Chan et al.'s parallel update: the moments of the union of two disjoint batches. count 0 is the identity. */
export function mergeMoments(a: MomentsLike, b: MomentsLike): Moments {
  const ra = readMoments(a), rb = readMoments(b);
  const ma = checkMoments(ra, 'a', null, 0, 'values per channel');
  const mb = checkMoments(rb, 'b', null, 0, 'values per channel');
  checkSameChannels(ma, 'a', mb, 'b');
  if (!Number.isSafeInteger(ma.count + mb.count)) {
    throw new InvalidArgumentError('b.count', `at most ${Number.MAX_SAFE_INTEGER - ma.count} (a safe integer total)`, describe(mb.count));
  }
  return merge(ma, mb);
}

/**
 * Merges any number of moments (pairwise tree, so the rounding grows with log2 of the count).
 * Every part is read, then checked (errors name `parts[i]...`), before any is merged.
 */
export function reduceMoments(parts: readonly MomentsLike[]): Moments {
  const elements = isArray(parts) ? readElements(parts) : null;
  const read = elements === null ? null : Array.from(elements, readMoments);
  if (read === null || read.length === 0) {
    throw new InvalidArgumentError('parts', 'a non-empty array of moments', describe(parts));
  }
  let level = read.map((r, i) => checkMoments(r, `parts[${i}]`, null, 0, 'values per channel'));
  let total = 0;
  level.forEach((m, i) => {
    checkSameChannels(level[0], 'parts[0]', m, `parts[${i}]`);
    total += m.count;
    if (!Number.isSafeInteger(total)) throw new InvalidArgumentError(`parts[${i}].count`, 'counts whose total is a safe integer', describe(m.count));
  });
  while (level.length > 1) {
    const next: Moments[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(merge(level[i], level[i + 1]));
    if (level.length % 2 === 1) next.push(level[level.length - 1]);
    level = next;
  }
  return level[0];
}

/** Elementwise sum of two shards' backward reductions (the all-reduce's SUM). */
export function mergeBackwardSums(
  a: { sumDy: ArrayLike<number>; sumDyXhat: ArrayLike<number> },
  b: { sumDy: ArrayLike<number>; sumDyXhat: ArrayLike<number> },
): BackwardSums {
  const keys = ['sumDy', 'sumDyXhat'] as const;
  const ra = readRecord(a, keys), rb = readRecord(b, keys);
  const read = (r: Options<'sumDy' | 'sumDyXhat'> | null) => (r === null ? null : { sumDy: readElements(r.sumDy), sumDyXhat: readElements(r.sumDyXhat) });
  const ea = read(ra), eb = read(rb);
  if (ra === null || ea === null) throw new InvalidArgumentError('a', '{ sumDy, sumDyXhat }', describe(a));
  if (rb === null || eb === null) throw new InvalidArgumentError('b', '{ sumDy, sumDyXhat }', describe(b));
  const C = ea.sumDy === null ? 0 : ea.sumDy.length;
  const ad = channelF64(ea.sumDy, ra.sumDy, 'a.sumDy', C, 'per channel');
  const ax = channelF64(ea.sumDyXhat, ra.sumDyXhat, 'a.sumDyXhat', C, 'the length of a.sumDy');
  const bd = channelF64(eb.sumDy, rb.sumDy, 'b.sumDy', C, 'the length of a.sumDy');
  const bx = channelF64(eb.sumDyXhat, rb.sumDyXhat, 'b.sumDyXhat', C, 'the length of a.sumDy');
  for (let c = 0; c < C; c++) {
    ad[c] += bd[c];
    ax[c] += bx[c];
  }
  return { sumDy: ad, sumDyXhat: ax };
}

// ---------------------------------------------------------------------------------------
// Engine calls.

/** Per-channel { count, mean, m2 } of x (f64, the training forward's own statistics kernel). */
export function momentsBatchNorm(engine: Core, xInput: Float32Array, shape: readonly number[], opts: MomentsOptions = {}): Moments {
  const dims = readShape(shape);
  const o = readOptions(opts, 'opts', ['layout'] as const);
  const layout = checkLayout(o.layout);
  const g = geometry(dims, layout);
  const C = g.channels;
  const x = checkF32(engine.arena, xInput, 'x', g.size, () => `shape [${g.shape.join(', ')}]`);

  const plan = momentsPlan(g);
  const scope = new CallScope(engine);
  const xPin = scope.pin(x);
  try {
    const T = threadsFor(engine.pool, g.size);
    const [xCopy, ws] = scope.allocate([[scope.copyBytes(xPin), 'x'], [plan.workspace.bytes + threadWorkBytes(g, T), 'workspace']]);
    const stats = ws + plan.workspace.stats;
    const xPtr = xPin.resident ? xPin.ptr : xCopy;
    if (!xPin.resident) scope.setF32(xPtr, x);
    batchStats(engine, g, plan.blocks, xPtr, ws + plan.workspace.partials, stats, ws + plan.workspace.work, T);
    const s = scope.f64(stats, 2 * C);
    return { count: g.count, mean: sliceF64(s, 0, C), m2: sliceF64(s, C, 2 * C) };
  } finally {
    scope.release();
  }
}

/**
 * Training forward of one shard with the global statistics: y = (x − mean)·invStd·γ + β with
 * mean = moments.mean, invStd = 1/sqrt(moments.m2 / moments.count + eps); running statistics
 * (if given) updated as engine.forward does, with the global count.
 */
export function forwardWithMomentsBatchNorm(
  engine: Core, x: Float32Array, shape: readonly number[], opts: ForwardWithMomentsOptions,
): ForwardResult {
  const dims = readShape(shape);
  const o = readOptions(opts, 'opts', FORWARD_WITH_MOMENTS_KEYS, 'an options object with `moments`');
  const moments = readMoments(o.moments);
  const args = checkForwardArgs(engine, x, dims, o);
  const { g, weight, bias, runningMean, runningVar, out } = args;
  const C = g.channels;
  const global = checkMoments(moments, 'opts.moments', C, Math.max(2, g.count),
    `the global values per channel: more than 1 when training, and at least this shard's ${g.count}`);
  checkAliasing(FORWARD_ALIASING, [out, args.saveMeanOut, args.saveInvStdOut, runningMean, runningVar, args.x, weight, bias, null, null]);

  return callerOutputs(runForward(engine, forwardCall(args, args.x, -Infinity, { mean: global.mean, m2: global.m2, count: global.count })), args, o);
}

const FORWARD_WITH_MOMENTS_KEYS = [
  ...FORWARD_KEYS.filter((k): k is Exclude<typeof k, 'training' | 'activation'> => k !== 'training' && k !== 'activation'), 'moments',
] as const;

/** This shard's Σdy and Σdy·xhat per channel (xhat with the saved global mean and invStd). */
export function backwardReduceBatchNorm(
  engine: Core, dyInput: Float32Array, xInput: Float32Array, shape: readonly number[], opts: BackwardReduceOptions,
): BackwardSums {
  const dims = readShape(shape);
  const o = readOptions(opts, 'opts', ['layout', 'saveMean', 'saveInvStd'] as const, 'an options object with `saveMean`, `saveInvStd`');
  const { g, dy, x, saveMean, saveInvStd } = checkBackwardArgs(engine, dyInput, xInput, dims, o, 'forwardWithMoments');
  const C = g.channels;

  const plan = reducePlan(g);
  const scope = new CallScope(engine);
  const dyPin = scope.pin(dy), xPin = scope.pin(x);
  const mean = new Float32Array(saveMean), invStd = new Float64Array(saveInvStd);
  try {
    const T = threadsFor(engine.pool, g.size);
    const [dyCopy, xCopy, ws] = scope.allocate([
      [scope.copyBytes(dyPin), 'dy'], [scope.copyBytes(xPin), 'x'], [plan.workspace.bytes + threadWorkBytes(g, T), 'workspace'],
    ]);
    const sums = ws + plan.workspace.sums, meanPtr = ws + plan.workspace.mean, work = ws + plan.workspace.work;
    const partials = ws + plan.workspace.partials;
    const dyPtr = dyPin.resident ? dyPin.ptr : dyCopy;
    const xPtr = xPin.resident ? xPin.ptr : xCopy;
    if (!dyPin.resident) scope.setF32(dyPtr, dy);
    if (!xPin.resident) scope.setF32(xPtr, x);
    scope.setF32(meanPtr, mean);
    backwardSums(engine, g, plan.blocks, dyPtr, xPtr, meanPtr, partials, sums, work, 0, T);
    const s = scope.f64(sums, 2 * C);
    const sumDy = sliceF64(s, 0, C);
    const sumDyXhat = new Float64Array(C);
    for (let c = 0; c < C; c++) sumDyXhat[c] = s[C + c] * invStd[c];
    return { sumDy, sumDyXhat };
  } finally {
    scope.release();
  }
}

const WITH_SUMS_ALIASING = aliasRule(['opts.out', 'opts.dweightOut', 'opts.dbiasOut'], ['dy', 'x', 'opts.weight', 'opts.saveMean', 'opts.saveInvStd'],
  ['opts.out=dy', 'opts.out=x']);

/**
 * dx of one shard from the all-reduced sums (SyncBatchNorm's backward_elemt):
 * dx = γ·invStd·(dy − sumDy/count − xhat·sumDyXhat/count). dweight = sumDyXhat and dbias = sumDy
 * (float32): the whole batch's parameter gradients.
 */
export function backwardWithSumsBatchNorm(
  engine: Core, dyInput: Float32Array, xInput: Float32Array, shape: readonly number[], opts: BackwardWithSumsOptions,
): BackwardResult {
  const dims = readShape(shape);
  const o = readOptions(opts, 'opts', ['layout', 'weight', 'saveMean', 'saveInvStd', 'sumDy', 'sumDyXhat', 'count', 'out', 'dweightOut', 'dbiasOut'] as const,
    'an options object with `saveMean`, `saveInvStd`, `sumDy`, `sumDyXhat`, `count`');
  const sumDyRead = readElements(o.sumDy), sumDyXhatRead = readElements(o.sumDyXhat);
  const { g, dy, x, weight, saveMean, saveInvStd } = checkBackwardArgs(engine, dyInput, xInput, dims, o, 'forwardWithMoments');
  const C = g.channels;
  const sumDy = channelF64(sumDyRead, o.sumDy, 'opts.sumDy', C, `C = ${C} channels, all-reduced`);
  const sumDyXhat = channelF64(sumDyXhatRead, o.sumDyXhat, 'opts.sumDyXhat', C, `C = ${C} channels, all-reduced`);
  const n = checkCount(o.count, 'opts.count', Math.max(2, g.count), `the global values per channel, at least this shard's ${g.count}`);
  const out = checkOptionalF32(engine.arena, o.out, 'opts.out', g.size, 'same as x');
  const grads = checkGradOuts(engine, o, C);
  checkAliasing(WITH_SUMS_ALIASING, [out, grads.dweightOut, grads.dbiasOut, dy, x, weight, saveMean, saveInvStd]);

  const result = runBackward(engine, {
    g, dy, x, y: null, out, dweightOut: grads.dweightOut, dbiasOut: grads.dbiasOut, weight, saveMean, saveInvStd, training: true,
    sums: { sumDy, sumDyXhat, count: n },
  });
  return callerGrads(result, out, grads, o);
}
