// LayerNorm and RMSNorm, forward and backward (PyTorch's layer_norm / native_layer_norm and
// RMSNorm; the residual option is ONNX Runtime's SkipLayerNormalization): x of `shape` is R rows
// of D = prod(normalizedShape) values (the trailing dims), normalized row by row with f64
// statistics. The formulas are in assembly/rows.ts, where they are computed. Each entry point
// reads its arguments once (src/args.ts), checks all of them, then runs one kernel.
import { CallScope, type Core, type Pinned } from '../exec.js';
import { InvalidArgumentError, ShapeError, describe } from '../errors.js';
import { MAX_ELEMENTS, geometry, type Geometry } from '../layout.js';
import { STATS_BLOCK, rowNormBackwardPlan, rowNormPlan } from '../plan.js';
import { aliasRule, checkAliasing, checkEps, checkF32, checkOptionalF32, readOptions, readShape, type Options } from '../args.js';
import { callerOutput } from './batchnorm.js';
import { ranges, runJobs, threadsFor } from '../threads/split.js';
import { copyInto, isArray } from '../typed.js';

export interface LayerNormOptions {
  /** The trailing dims of `shape` that form one row (PyTorch's normalized_shape); required. */
  normalizedShape: readonly number[];
  /** Per element of a row, length prod(normalizedShape) (default 1). */
  weight?: Float32Array | null;
  /** Per element of a row (default 0). */
  bias?: Float32Array | null;
  /** Added to the variance, finite and >= 2^-126; default 1e-5. */
  eps?: number;
  /** Same length as x: normalizes the float32 sum x + residual and returns it as `sum`. */
  residual?: Float32Array | null;
  /** Destination for y, length = x.length; may be x or residual itself. */
  out?: Float32Array;
  /** Destination for `sum` (with a residual), length = x.length; may be x or residual itself, not out. */
  sumOut?: Float32Array;
  /** Destinations for saveMean and saveInvStd, length R (as batch norm's saveMeanOut). */
  saveMeanOut?: Float32Array;
  saveInvStdOut?: Float32Array;
}

export interface LayerNormResult {
  y: Float32Array;
  /** Per row (R = x.length / prod(normalizedShape)). */
  saveMean: Float32Array;
  /** 1 / sqrt(var + eps) per row. */
  saveInvStd: Float32Array;
  /** x + residual (float32), when a residual is given. */
  sum?: Float32Array;
}

export interface LayerNormBackwardOptions {
  normalizedShape: readonly number[];
  weight?: Float32Array | null;
  saveMean: Float32Array;
  saveInvStd: Float32Array;
  /** Destination for dx; may be dy or x itself. */
  out?: Float32Array;
  /** Destinations for dweight and dbias, length D. */
  dweightOut?: Float32Array;
  dbiasOut?: Float32Array;
}

export interface LayerNormBackwardResult {
  dx: Float32Array;
  dweight: Float32Array;
  dbias: Float32Array;
}

export interface RmsNormOptions {
  normalizedShape: readonly number[];
  weight?: Float32Array | null;
  /** Added to mean(x²), finite and >= 2^-126; default 2^-23, the float32 machine epsilon (PyTorch's eps=None). */
  eps?: number;
  residual?: Float32Array | null;
  out?: Float32Array;
  sumOut?: Float32Array;
  /** Destination for saveInvRms, length R. */
  saveInvRmsOut?: Float32Array;
}

export interface RmsNormResult {
  y: Float32Array;
  /** 1 / sqrt(mean(x²) + eps) per row. */
  saveInvRms: Float32Array;
  sum?: Float32Array;
}

export interface RmsNormBackwardOptions {
  normalizedShape: readonly number[];
  weight?: Float32Array | null;
  saveInvRms: Float32Array;
  out?: Float32Array;
  /** Destination for dweight, length D. */
  dweightOut?: Float32Array;
}

export interface RmsNormBackwardResult {
  dx: Float32Array;
  dweight: Float32Array;
}

/** The keys of each options object (the reading layer rejects any other). */
export const LAYER_NORM_KEYS = ['normalizedShape', 'weight', 'bias', 'eps', 'residual', 'out', 'sumOut', 'saveMeanOut', 'saveInvStdOut'] as const;
export const RMS_NORM_KEYS = ['normalizedShape', 'weight', 'eps', 'residual', 'out', 'sumOut', 'saveInvRmsOut'] as const;
export const LAYER_NORM_BACKWARD_KEYS = ['normalizedShape', 'weight', 'saveMean', 'saveInvStd', 'out', 'dweightOut', 'dbiasOut'] as const;
export const RMS_NORM_BACKWARD_KEYS = ['normalizedShape', 'weight', 'saveInvRms', 'out', 'dweightOut'] as const;

/** LayerNorm's and RMSNorm's (whose saved statistic is saveInvRms, and no saveMean; no bias, no dbias). */
const FORWARD_ALIASING = {
  centered: aliasRule(['opts.out', 'opts.sumOut', 'opts.saveMeanOut', 'opts.saveInvStdOut'], ['x', 'opts.residual', 'opts.weight', 'opts.bias'],
    ['opts.out=x', 'opts.out=opts.residual', 'opts.sumOut=x', 'opts.sumOut=opts.residual']),
  rms: aliasRule(['opts.out', 'opts.sumOut', 'opts.saveMeanOut', 'opts.saveInvRmsOut'], ['x', 'opts.residual', 'opts.weight', 'opts.bias'],
    ['opts.out=x', 'opts.out=opts.residual', 'opts.sumOut=x', 'opts.sumOut=opts.residual']),
};
const BACKWARD_ALIASING = {
  centered: aliasRule(['opts.out', 'opts.dweightOut', 'opts.dbiasOut'], ['dy', 'x', 'opts.weight', 'opts.saveMean', 'opts.saveInvStd'],
    ['opts.out=dy', 'opts.out=x']),
  rms: aliasRule(['opts.out', 'opts.dweightOut', 'opts.dbiasOut'], ['dy', 'x', 'opts.weight', 'opts.saveMean', 'opts.saveInvRms'],
    ['opts.out=dy', 'opts.out=x']),
};

/**
 * Dimensions (rank >= 1, positive integers), as read by readShape (a plain array, or the value
 * itself if it was none). Index loops only: nothing a caller puts on Array.prototype runs here.
 */
export function checkDims(value: unknown, argument: string): number[] {
  if (!isArray(value)) throw new InvalidArgumentError(argument, 'an array of dimensions', describe(value));
  const dims: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const d = value[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1) throw new ShapeError(`${argument}[${i}]`, 'a positive integer', describe(d));
    dims[i] = d;
  }
  if (dims.length < 1) throw new ShapeError(argument, 'at least one dimension', 'rank 0 []');
  return dims;
}

/** The product of checked dimensions. */
export function product(dims: readonly number[]): number {
  let p = 1;
  for (let i = 0; i < dims.length; i++) p *= dims[i];
  return p;
}

/** A checked shape and normalizedShape: x as rows, geometry([R, D], 'NHWC') (rows = outer, D = channels). */
export interface Rows {
  g: Geometry;
  shape: readonly number[];
  normalizedShape: readonly number[];
}

export function checkRows(shapeValue: unknown, normalizedValue: unknown): Rows {
  const shape = checkDims(shapeValue, 'shape');
  const size = product(shape);
  if (size > MAX_ELEMENTS) throw new ShapeError('shape', `at most ${MAX_ELEMENTS} elements (4 GiB of float32)`, `${size} elements`);
  const normalizedShape = checkDims(normalizedValue, 'opts.normalizedShape');
  const k = normalizedShape.length;
  let trailing = k <= shape.length;
  for (let i = 0; trailing && i < k; i++) trailing = normalizedShape[i] === shape[shape.length - k + i];
  if (!trailing) {
    throw new ShapeError('opts.normalizedShape', `trailing dims of shape [${shape.join(', ')}] (this one needs an input of shape [*, ${normalizedShape.join(', ')}])`,
      `[${normalizedShape.join(', ')}]`);
  }
  const D = product(normalizedShape);
  return { g: geometry([size / D, D], 'NHWC'), shape, normalizedShape };
}

/** A validated forward call (LayerNorm or RMSNorm): every argument checked, nothing touched yet. */
export interface RowNormCall {
  g: Geometry;
  x: Float32Array;
  residual: Float32Array | null;
  weight: Float32Array | null;
  /** Always null for RMSNorm. */
  bias: Float32Array | null;
  eps: number;
  out: Float32Array | null;
  /** Destination of the sum (with a residual), or null: a new array. */
  sumOut: Float32Array | null;
  /** Destinations of the saved statistics (saveMean: LayerNorm only; inv: saveInvStd or saveInvRms), or null. */
  meanOut: Float32Array | null;
  invOut: Float32Array | null;
}

type ForwardKey = 'normalizedShape' | 'weight' | 'eps' | 'residual' | 'out' | 'bias' | 'sumOut' | 'saveMeanOut' | 'saveInvStdOut' | 'saveInvRmsOut';

/** Reads and checks a forward call's arguments (`centered`: LayerNorm, else RMSNorm). */
function forwardCall(core: Core, x: unknown, shape: unknown, opts: unknown, centered: boolean): { call: RowNormCall; o: Options<ForwardKey> } {
  const dims = readShape(shape);
  const o: Options<ForwardKey> = readOptions(opts, 'opts', centered ? LAYER_NORM_KEYS : RMS_NORM_KEYS, 'an options object with `normalizedShape`');
  const rows = checkRows(dims, readShape(o.normalizedShape, 'opts.normalizedShape'));
  const { g } = rows;
  const arena = core.arena;
  const perRow = () => `normalizedShape [${rows.normalizedShape.join(', ')}]: ${g.channels} values`;
  const xv = checkF32(arena, x, 'x', g.size, () => `shape [${rows.shape.join(', ')}]`);
  const weight = checkOptionalF32(arena, o.weight, 'opts.weight', g.channels, perRow);
  const bias = centered ? checkOptionalF32(arena, o.bias, 'opts.bias', g.channels, perRow) : null;
  const eps = centered || o.eps !== undefined ? checkEps(o.eps, 'opts.eps') : 2 ** -23;
  const residual = checkOptionalF32(arena, o.residual, 'opts.residual', g.size, 'same as x');
  const out = checkOptionalF32(arena, o.out, 'opts.out', g.size, 'same as x');
  const sumOut = checkOptionalF32(arena, o.sumOut, 'opts.sumOut', g.size, 'same as x');
  if (sumOut !== null && residual === null) throw new InvalidArgumentError('opts.sumOut', 'no destination for a sum without opts.residual', describe(o.sumOut));
  const perRowOf = () => `${g.outer} rows of shape [${rows.shape.join(', ')}]`;
  const meanOut = centered ? checkOptionalF32(arena, o.saveMeanOut, 'opts.saveMeanOut', g.outer, perRowOf) : null;
  const invName = centered ? 'saveInvStdOut' : 'saveInvRmsOut';
  const invOut = checkOptionalF32(arena, o[invName], `opts.${invName}`, g.outer, perRowOf);
  checkAliasing(centered ? FORWARD_ALIASING.centered : FORWARD_ALIASING.rms, [out, sumOut, meanOut, invOut, xv, residual, weight, bias]);
  return { call: { g, x: xv, residual, weight, bias, eps, out, sumOut, meanOut, invOut }, o };
}

const pinOf = (scope: CallScope, a: Float32Array | null): Pinned | null => (a === null ? null : scope.pin(a));

/**
 * Runs a validated forward call: layerNormRowsF32 (centered) or rmsNormRowsF32. y goes to a
 * resident out, else over the scratch copy of x, else to new scratch; the sum to a resident
 * sumOut, else over the scratch copy of the residual, else to new scratch; the saved statistics
 * (mean: LayerNorm's, else null; inv: saveInvStd or saveInvRms) to resident destinations, else
 * to scratch, copied out.
 */
export function runRowNorm(
  engine: Core, c: RowNormCall, centered: boolean,
): { y: Float32Array; mean: Float32Array | null; inv: Float32Array; sum: Float32Array | null } {
  const { g, eps } = c;
  const R = g.outer, D = g.channels, size = g.size;
  const plan = rowNormPlan(g);
  const k = engine.kernels;
  const scope = new CallScope(engine);
  const xPin = scope.pin(c.x), rPin = pinOf(scope, c.residual), outPin = pinOf(scope, c.out), sumPin = pinOf(scope, c.sumOut);
  const wPin = pinOf(scope, c.weight), bPin = pinOf(scope, c.bias), meanPin = pinOf(scope, c.meanOut), invPin = pinOf(scope, c.invOut);
  try {
    const [xCopy, rCopy, yScratch, sumScratch, ws] = scope.allocate([
      [scope.copyBytes(xPin), 'x'], [scope.copyBytes(rPin), 'residual'],
      [!outPin?.resident && xPin.resident ? 4 * size : 0, 'y'], [rPin?.resident && !sumPin?.resident ? 4 * size : 0, 'sum'], [plan.workspace.bytes, 'workspace'],
    ]);
    const params = ws + plan.workspace.params, stats = ws + plan.workspace.stats;
    const saved = ws + plan.workspace.saved, partials = ws + plan.workspace.partials;
    // RMSNorm's invRms goes where LayerNorm's saveMean would: the first of the two saved arrays.
    const meanPtr = scope.target(meanPin, saved), invPtr = scope.target(invPin, centered ? saved + 4 * R : saved);
    const xPtr = scope.place(c.x, xPin, xCopy), rPtr = scope.place(c.residual, rPin, rCopy);
    const wPtr = scope.place(c.weight, wPin, params), bPtr = scope.place(c.bias, bPin, params + 4 * D);
    const yPtr = outPin?.resident ? outPin.ptr : xPin.resident ? yScratch : xPtr;
    const sumPtr = rPin === null ? 0 : sumPin?.resident ? sumPin.ptr : rPin.resident ? sumScratch : rPtr;
    // On T threads by row ranges: a row's statistics and values depend on that row alone.
    const blocks = plan.blocks, T = threadsFor(engine.pool, size);
    const rowsJob = (r0: number, r1: number) => {
      const o = 4 * D * r0, at = (p: number) => (p === 0 ? 0 : p + o);
      const rows = [at(xPtr), at(rPtr), at(sumPtr), at(yPtr), r1 - r0, D];
      if (!centered) return [...rows, wPtr, eps, invPtr + 4 * r0];
      const stat = [stats + 8 * r0, stats + 8 * R + 8 * r0, partials + 32 * blocks * r0];
      return [...rows, STATS_BLOCK, wPtr, bPtr, eps, ...stat, meanPtr + 4 * r0, invPtr + 4 * r0];
    };
    if (T > 1) {
      runJobs(k, engine.pool, centered ? 'layerNormRowsF32' : 'rmsNormRowsF32', ranges(R, T).map(([r0, r1]) => rowsJob(r0, r1)));
    } else if (centered) {
      k.layerNormRowsF32(xPtr, rPtr, sumPtr, yPtr, R, D, STATS_BLOCK, wPtr, bPtr, eps, stats, stats + 8 * R, partials, meanPtr, invPtr);
    } else {
      k.rmsNormRowsF32(xPtr, rPtr, sumPtr, yPtr, R, D, wPtr, eps, invPtr);
    }
    // Fresh views from here on: the allocation above may have grown memory.
    const [mean, inv] = centered ? scope.results(c.meanOut, meanPin, meanPtr, c.invOut, invPin, invPtr, R)
      : [null, scope.result(c.invOut, invPin, invPtr, R)];
    const y = scope.result(c.out, outPin, yPtr, size);
    let sum: Float32Array | null = null;
    if (c.sumOut !== null) {
      sum = scope.live(c.sumOut, sumPin!);
      if (!sumPin!.resident) copyInto(sum, scope.f32(sumPtr, size));
    } else if (sumPtr !== 0) sum = scope.readF32(sumPtr, size);
    return { y, mean, inv, sum };
  } finally {
    scope.release();
  }
}

export function forwardLayerNorm(engine: Core, x: Float32Array, shape: readonly number[], opts: LayerNormOptions): LayerNormResult {
  const { call, o } = forwardCall(engine, x, shape, opts, true);
  const { y, mean, inv, sum } = runRowNorm(engine, call, true);
  const result: LayerNormResult = {
    y: callerOutput(y, call.out, o.out), saveMean: callerOutput(mean!, call.meanOut, o.saveMeanOut), saveInvStd: callerOutput(inv, call.invOut, o.saveInvStdOut),
  };
  if (sum !== null) result.sum = callerOutput(sum, call.sumOut, o.sumOut);
  return result;
}

export function forwardRmsNorm(engine: Core, x: Float32Array, shape: readonly number[], opts: RmsNormOptions): RmsNormResult {
  const { call, o } = forwardCall(engine, x, shape, opts, false);
  const { y, inv, sum } = runRowNorm(engine, call, false);
  const result: RmsNormResult = { y: callerOutput(y, call.out, o.out), saveInvRms: callerOutput(inv, call.invOut, o.saveInvRmsOut) };
  if (sum !== null) result.sum = callerOutput(sum, call.sumOut, o.sumOut);
  return result;
}

// ---------------------------------------------------------------------------------------
// Backward.

/** A validated backward call: `mean` null for RMSNorm (`inv` is then invRms). */
export interface RowNormBackwardCall {
  g: Geometry;
  dy: Float32Array;
  x: Float32Array;
  weight: Float32Array | null;
  mean: Float32Array | null;
  inv: Float32Array;
  out: Float32Array | null;
  /** Destinations of dweight and dbias (LayerNorm only), or null. */
  dweightOut: Float32Array | null;
  dbiasOut: Float32Array | null;
}

type BackwardKey = 'normalizedShape' | 'weight' | 'saveMean' | 'saveInvStd' | 'saveInvRms' | 'out' | 'dweightOut' | 'dbiasOut';

function backwardCall(core: Core, dy: unknown, x: unknown, shape: unknown, opts: unknown, centered: boolean) {
  const dims = readShape(shape);
  const o: Options<BackwardKey> = readOptions(opts, 'opts', centered ? LAYER_NORM_BACKWARD_KEYS : RMS_NORM_BACKWARD_KEYS,
    `an options object with \`normalizedShape\`, ${centered ? '`saveMean`, `saveInvStd`' : '`saveInvRms`'}`);
  const rows = checkRows(dims, readShape(o.normalizedShape, 'opts.normalizedShape'));
  const { g } = rows;
  const arena = core.arena;
  const what = () => `shape [${rows.shape.join(', ')}]`, saved = () => `${g.outer} rows of shape [${rows.shape.join(', ')}], from the forward pass`;
  const dyv = checkF32(arena, dy, 'dy', g.size, what);
  const xv = checkF32(arena, x, 'x', g.size, what);
  const weight = checkOptionalF32(arena, o.weight, 'opts.weight', g.channels, () => `normalizedShape [${rows.normalizedShape.join(', ')}]: ${g.channels} values`);
  const mean = centered ? checkF32(arena, o.saveMean, 'opts.saveMean', g.outer, saved) : null;
  const inv = centered ? checkF32(arena, o.saveInvStd, 'opts.saveInvStd', g.outer, saved) : checkF32(arena, o.saveInvRms, 'opts.saveInvRms', g.outer, saved);
  const out = checkOptionalF32(arena, o.out, 'opts.out', g.size, 'same as x');
  const perElement = () => `normalizedShape [${rows.normalizedShape.join(', ')}]: ${g.channels} values`;
  const dweightOut = checkOptionalF32(arena, o.dweightOut, 'opts.dweightOut', g.channels, perElement);
  const dbiasOut = centered ? checkOptionalF32(arena, o.dbiasOut, 'opts.dbiasOut', g.channels, perElement) : null;
  checkAliasing(centered ? BACKWARD_ALIASING.centered : BACKWARD_ALIASING.rms, [out, dweightOut, dbiasOut, dyv, xv, weight, mean, inv]);
  const call: RowNormBackwardCall = { g, dy: dyv, x: xv, weight, mean, inv, out, dweightOut, dbiasOut };
  return { call, o };
}

/**
 * Runs a validated backward call; dx goes to a resident out, else over the scratch copy of dy,
 * else to new scratch; dweight and dbias (LayerNorm's, else null) likewise to resident destinations.
 */
export function runRowNormBackward(engine: Core, c: RowNormBackwardCall): { dx: Float32Array; dweight: Float32Array; dbias: Float32Array | null } {
  const { g } = c;
  const R = g.outer, D = g.channels, size = g.size, centered = c.mean !== null;
  const plan = rowNormBackwardPlan(g);
  const k = engine.kernels;
  const scope = new CallScope(engine);
  const dyPin = scope.pin(c.dy), xPin = scope.pin(c.x), outPin = pinOf(scope, c.out);
  const wPin = pinOf(scope, c.weight), meanPin = pinOf(scope, c.mean), invPin = scope.pin(c.inv);
  const dwPin = pinOf(scope, c.dweightOut), dbPin = pinOf(scope, c.dbiasOut);
  try {
    const [dyCopy, xCopy, dxScratch, ws] = scope.allocate([
      [scope.copyBytes(dyPin), 'dy'], [scope.copyBytes(xPin), 'x'], [!outPin?.resident && dyPin.resident ? 4 * size : 0, 'dx'],
      [plan.workspace.bytes, 'workspace'],
    ]);
    const params = ws + plan.workspace.params, sums = ws + plan.workspace.sums, grads = ws + plan.workspace.grads;
    const partials = ws + plan.workspace.partials;
    const dyPtr = scope.place(c.dy, dyPin, dyCopy), xPtr = scope.place(c.x, xPin, xCopy);
    const wPtr = scope.place(c.weight, wPin, params);
    const meanPtr = scope.place(c.mean, meanPin, params + 4 * D), invPtr = scope.place(c.inv, invPin, params + 4 * D + 4 * R);
    const dxPtr = outPin?.resident ? outPin.ptr : dyPin.resident ? dxScratch : dyPtr;
    // Row blocks on up to T threads by block ranges; the column partials merged in block order.
    const T = threadsFor(engine.pool, size), BR = plan.blockRows;
    runJobs(k, engine.pool, centered ? 'layerNormBackwardRowsF32' : 'rmsNormBackwardRowsF32', ranges(plan.blocks, T).map(([b0, b1]) => centered
      ? [dyPtr, xPtr, dxPtr, R, D, wPtr, meanPtr, invPtr, BR, b0, b1, partials]
      : [dyPtr, xPtr, dxPtr, R, D, wPtr, invPtr, BR, b0, b1, partials]));
    k.mergeSumsF64(partials, plan.blocks, D, sums, sums + 8 * D);
    const dwPtr = scope.target(dwPin, grads), dbPtr = scope.target(dbPin, grads + 4 * D);
    k.narrowF64(sums, D, dwPtr);
    if (centered) k.narrowF64(sums + 8 * D, D, dbPtr);
    const dx = scope.result(c.out, outPin, dxPtr, size);
    if (!centered) return { dx, dweight: scope.result(c.dweightOut, dwPin, dwPtr, D), dbias: null };
    const [dweight, dbias] = scope.results(c.dweightOut, dwPin, dwPtr, c.dbiasOut, dbPin, dbPtr, D);
    return { dx, dweight, dbias };
  } finally {
    scope.release();
  }
}

export function backwardLayerNorm(
  engine: Core, dy: Float32Array, x: Float32Array, shape: readonly number[], opts: LayerNormBackwardOptions,
): LayerNormBackwardResult {
  const { call, o } = backwardCall(engine, dy, x, shape, opts, true);
  const { dx, dweight, dbias } = runRowNormBackward(engine, call);
  return {
    dx: callerOutput(dx, call.out, o.out), dweight: callerOutput(dweight, call.dweightOut, o.dweightOut), dbias: callerOutput(dbias!, call.dbiasOut, o.dbiasOut),
  };
}

export function backwardRmsNorm(
  engine: Core, dy: Float32Array, x: Float32Array, shape: readonly number[], opts: RmsNormBackwardOptions,
): RmsNormBackwardResult {
  const { call, o } = backwardCall(engine, dy, x, shape, opts, false);
  const { dx, dweight } = runRowNormBackward(engine, call);
  return { dx: callerOutput(dx, call.out, o.out), dweight: callerOutput(dweight, call.dweightOut, o.dweightOut) };
}
