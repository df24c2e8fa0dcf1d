// Inference folding (PyTorch's fuse_conv_bn_eval / fuse_linear_bn_eval): batch norm with
// running statistics is a per-channel affine map, so a conv or linear layer followed by it is
// the same layer with new weights. Per output channel o:
//
//   scale[o] = gamma[o] / sqrt(runningVar[o] + eps)
//   shift[o] = beta[o] − runningMean[o] · scale[o]
//   W'[o, ...] = W[o, ...] · scale[o]
//   b'[o]      = (b[o] − runningMean[o]) · scale[o] + beta[o]        (b = 0 when the layer has none)
//
// Everything is computed in float64 and rounded to float32 once, so each folded value is within
// half an ulp of the exact one (PyTorch computes in the weights' own float32).
import { InvalidArgumentError, ShapeError, describe } from './errors.js';
import { checkEps, isObject } from './args.js';

/**
 * Where the output channel O sits in a conv weight. 'OIHW': O first (PyTorch Conv1d/2d/3d: OIL,
 * OIHW, OIDHW; ONNX Conv). 'OHWI': O first, I last (channels-last runtimes). 'HWIO': O last
 * (Keras / TensorFlow Conv kernels). O-first layouts keep each output channel contiguous.
 */
export type ConvWeightLayout = 'OIHW' | 'OHWI' | 'HWIO';

/** Linear weight layout: 'OI' = [out, in] (PyTorch nn.Linear, default); 'IO' = [in, out] (Keras Dense kernel). */
export type LinearWeightLayout = 'OI' | 'IO';

/** The batch norm to fold: running statistics, optional affine parameters, eps (default 1e-5). The BatchNorm layer satisfies it. */
export interface FoldableBatchNorm {
  readonly runningMean: ArrayLike<number> | null;
  readonly runningVar: ArrayLike<number> | null;
  readonly weight?: ArrayLike<number> | null;
  readonly bias?: ArrayLike<number> | null;
  readonly eps?: number;
}

/** y = x · scale[c] + shift[c]: the batch norm's inference map per channel. */
export interface FoldedAffine {
  scale: Float32Array;
  shift: Float32Array;
}

export interface FoldedWeights {
  /** Same length and layout as the given weight. */
  weight: Float32Array;
  /** One per output channel (also when the layer had no bias). */
  bias: Float32Array;
}

function isNumbers(value: unknown): value is ArrayLike<number> {
  return Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
}

/** scale and shift in float64 for `bn`, validated. */
function affine64(bn: unknown, name: string): { C: number; scale: Float64Array; mean: Float64Array; beta: Float64Array } {
  if (!isObject(bn)) throw new InvalidArgumentError(name, 'a BatchNorm layer or { runningMean, runningVar, weight?, bias?, eps? }', describe(bn));
  const rm = bn.runningMean, rv = bn.runningVar;
  if (!isNumbers(rm) || !isNumbers(rv)) {
    const which = isNumbers(rm) ? 'runningVar' : 'runningMean';
    throw new InvalidArgumentError(`${name}.${which}`, 'running statistics (an array per channel; a layer needs trackRunningStats)', describe(bn[which]));
  }
  const C = rm.length;
  if (C < 1) throw new ShapeError(`${name}.runningMean`, 'at least one channel', 'length 0');
  const perChannel = (key: 'runningVar' | 'weight' | 'bias'): ArrayLike<number> | null => {
    const v = bn[key];
    if (v === undefined || v === null) return null;
    if (!isNumbers(v)) throw new InvalidArgumentError(`${name}.${key}`, `an array of ${C} numbers or null`, describe(v));
    if (v.length !== C) throw new ShapeError(`${name}.${key}`, `length ${C} (the channels of ${name}.runningMean)`, `length ${v.length}`);
    return v;
  };
  perChannel('runningVar');
  const gamma = perChannel('weight'), beta = perChannel('bias');
  const eps = checkEps(bn.eps, `${name}.eps`);
  const scale = new Float64Array(C), mean = new Float64Array(C), b = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(rv[c] + eps);
    mean[c] = rm[c];
    b[c] = beta ? beta[c] : 0;
  }
  return { C, scale, mean, beta: b };
}

/** Per-channel `{ scale, shift }` with y = x · scale + shift equal to bn's eval forward. */
export function foldedAffine(bn: FoldableBatchNorm): FoldedAffine {
  const { C, scale, mean, beta } = affine64(bn, 'bn');
  const out = { scale: new Float32Array(C), shift: new Float32Array(C) };
  for (let c = 0; c < C; c++) {
    out.scale[c] = scale[c];
    out.shift[c] = beta[c] - mean[c] * scale[c];
  }
  return out;
}

function fold(
  weight: unknown, bias: unknown, bn: unknown, outerOf: (C: number, size: number) => (i: number) => number,
  names: { weight: string; bias: string; what: string },
): FoldedWeights {
  const { C, scale, mean, beta } = affine64(bn, 'bn');
  if (!isNumbers(weight)) throw new InvalidArgumentError(names.weight, `an array of numbers (${names.what})`, describe(weight));
  if (weight.length === 0 || weight.length % C !== 0) {
    throw new ShapeError(names.weight, `a positive multiple of ${C} values (${C} output channels = bn's channels, ${names.what})`, `length ${weight.length}`);
  }
  if (bias !== null && bias !== undefined) {
    if (!isNumbers(bias)) throw new InvalidArgumentError(names.bias, `an array of ${C} numbers or null`, describe(bias));
    if (bias.length !== C) throw new ShapeError(names.bias, `length ${C} (output channels)`, `length ${bias.length}`);
  }
  const b = (bias ?? null) as ArrayLike<number> | null;
  const channel = outerOf(C, weight.length);
  const w = new Float32Array(weight.length);
  for (let i = 0; i < weight.length; i++) w[i] = weight[i] * scale[channel(i)];
  const folded = new Float32Array(C);
  for (let c = 0; c < C; c++) folded[c] = ((b ? b[c] : 0) - mean[c]) * scale[c] + beta[c];
  return { weight: w, bias: folded };
}

const oFirst = (C: number, size: number) => {
  const per = size / C;
  return (i: number) => Math.floor(i / per);
};
const oLast = (C: number) => (i: number) => i % C;

/**
 * Folds `bn` (eval mode: running statistics) into the conv that feeds it: conv(x; W', b') =
 * bn(conv(x; W, b)). `convWeight` is flat in `options.layout` ('OIHW' default, 'OHWI', 'HWIO')
 * with O = bn's channels; `convBias` may be null. Returns new arrays; the inputs are not modified.
 */
export function foldIntoConv(
  convWeight: ArrayLike<number>, convBias: ArrayLike<number> | null, bn: FoldableBatchNorm,
  options: { layout?: ConvWeightLayout } = {},
): FoldedWeights {
  if (!isObject(options)) throw new InvalidArgumentError('options', 'an options object', describe(options));
  const layout = options.layout ?? 'OIHW';
  if (layout !== 'OIHW' && layout !== 'OHWI' && layout !== 'HWIO') {
    throw new InvalidArgumentError('options.layout', `'OIHW', 'OHWI' or 'HWIO'`, describe(layout));
  }
  return fold(convWeight, convBias, bn, layout === 'HWIO' ? oLast : oFirst,
    { weight: 'convWeight', bias: 'convBias', what: `${layout} conv weight` });
}

/**
 * Folds `bn` into the linear layer that feeds it: linear(x; W', b') = bn(linear(x; W, b)).
 * `weight` is [out, in] ('OI', PyTorch, default) or [in, out] ('IO', Keras Dense) with out = bn's channels.
 */
export function foldIntoLinear(
  weight: ArrayLike<number>, bias: ArrayLike<number> | null, bn: FoldableBatchNorm,
  options: { layout?: LinearWeightLayout } = {},
): FoldedWeights {
  if (!isObject(options)) throw new InvalidArgumentError('options', 'an options object', describe(options));
  const layout = options.layout ?? 'OI';
  if (layout !== 'OI' && layout !== 'IO') throw new InvalidArgumentError('options.layout', `'OI' or 'IO'`, describe(layout));
  return fold(weight, bias, bn, layout === 'IO' ? oLast : oFirst,
    { weight: 'weight', bias: 'bias', what: `linear weight [${layout === 'OI' ? 'out, in' : 'in, out'}]` });
}
