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
import { checkEps, checkNumberElements, readElements, readOptions, readRecord, type Options } from './args.js';

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

/** A batch norm to fold, read once (phase 1 of src/args.ts): own properties, arrays' elements copied. */
interface ReadBatchNorm {
  raw: unknown;
  record: Options<'runningMean' | 'runningVar' | 'weight' | 'bias' | 'eps'> | null;
  runningMean: ArrayLike<unknown> | null;
  runningVar: ArrayLike<unknown> | null;
  weight: ArrayLike<unknown> | null;
  bias: ArrayLike<unknown> | null;
}

function readBatchNorm(bn: unknown): ReadBatchNorm {
  const record = readRecord(bn, ['runningMean', 'runningVar', 'weight', 'bias', 'eps'] as const);
  const elements = (key: 'runningMean' | 'runningVar' | 'weight' | 'bias') => (record === null ? null : readElements(record[key]));
  return {
    raw: bn, record,
    runningMean: elements('runningMean'), runningVar: elements('runningVar'), weight: elements('weight'), bias: elements('bias'),
  };
}

/** scale and shift in float64 for a batch norm read by readBatchNorm, every element checked. */
function affine64(bn: ReadBatchNorm, name: string): { C: number; scale: Float64Array; mean: Float64Array; beta: Float64Array } {
  const r = bn.record;
  if (r === null) throw new InvalidArgumentError(name, 'a BatchNorm layer or { runningMean, runningVar, weight?, bias?, eps? }', describe(bn.raw));
  if (bn.runningMean === null || bn.runningVar === null) {
    const which = bn.runningMean !== null ? 'runningVar' : 'runningMean';
    throw new InvalidArgumentError(`${name}.${which}`, 'running statistics (an array per channel; a layer needs trackRunningStats)', describe(r[which]));
  }
  const C = bn.runningMean.length;
  if (C < 1) throw new ShapeError(`${name}.runningMean`, 'at least one channel', 'length 0');
  const perChannel = (key: 'runningVar' | 'weight' | 'bias'): Float64Array | null => {
    const v = r[key], elements = bn[key];
    if (v === undefined || v === null) return null;
    if (elements === null) throw new InvalidArgumentError(`${name}.${key}`, `an array of ${C} numbers or null`, describe(v));
    if (elements.length !== C) throw new ShapeError(`${name}.${key}`, `length ${C} (the channels of ${name}.runningMean)`, `length ${elements.length}`);
    return checkNumberElements(elements, `${name}.${key}`);
  };
  const rm = checkNumberElements(bn.runningMean, `${name}.runningMean`);
  const rv = perChannel('runningVar')!;
  const gamma = perChannel('weight'), beta = perChannel('bias');
  const eps = checkEps(r.eps, `${name}.eps`);
  const scale = new Float64Array(C), b = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(rv[c] + eps);
    b[c] = beta ? beta[c] : 0;
  }
  return { C, scale, mean: rm, beta: b };
}

/** Per-channel `{ scale, shift }` with y = x · scale + shift equal to bn's eval forward. */
export function foldedAffine(bn: FoldableBatchNorm): FoldedAffine {
  const { C, scale, mean, beta } = affine64(readBatchNorm(bn), 'bn');
  const out = { scale: new Float32Array(C), shift: new Float32Array(C) };
  for (let c = 0; c < C; c++) {
    out.scale[c] = scale[c];
    out.shift[c] = beta[c] - mean[c] * scale[c];
  }
  return out;
}

/** A layer's weight and bias read once (phase 1), the raw values kept for messages. */
interface ReadLayer { weight: unknown; bias: unknown; weightRead: ArrayLike<unknown> | null; biasRead: ArrayLike<unknown> | null }

function readLayer(weight: unknown, bias: unknown): ReadLayer {
  return { weight, bias, weightRead: readElements(weight), biasRead: bias === null || bias === undefined ? null : readElements(bias) };
}

function fold(
  layer: ReadLayer, bnRead: ReadBatchNorm, outerOf: (C: number, size: number) => (i: number) => number,
  names: { weight: string; bias: string; what: string },
): FoldedWeights {
  const { weight, bias, weightRead, biasRead } = layer;
  const { C, scale, mean, beta } = affine64(bnRead, 'bn');
  if (weightRead === null) throw new InvalidArgumentError(names.weight, `an array of numbers (${names.what})`, describe(weight));
  if (weightRead.length === 0 || weightRead.length % C !== 0) {
    throw new ShapeError(names.weight, `a positive multiple of ${C} values (${C} output channels = bn's channels, ${names.what})`, `length ${weightRead.length}`);
  }
  let b: Float64Array | null = null;
  if (bias !== null && bias !== undefined) {
    if (biasRead === null) throw new InvalidArgumentError(names.bias, `an array of ${C} numbers or null`, describe(bias));
    if (biasRead.length !== C) throw new ShapeError(names.bias, `length ${C} (output channels)`, `length ${biasRead.length}`);
    b = checkNumberElements(biasRead, names.bias);
  }
  const wv = checkNumberElements(weightRead, names.weight);
  const channel = outerOf(C, wv.length);
  const w = new Float32Array(wv.length);
  for (let i = 0; i < wv.length; i++) w[i] = wv[i] * scale[channel(i)];
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
  const o = readOptions(options, 'options', ['layout'] as const);
  const layer = readLayer(convWeight, convBias), bnRead = readBatchNorm(bn);
  const layout = o.layout ?? 'OIHW';
  if (layout !== 'OIHW' && layout !== 'OHWI' && layout !== 'HWIO') {
    throw new InvalidArgumentError('options.layout', `'OIHW', 'OHWI' or 'HWIO'`, describe(layout));
  }
  return fold(layer, bnRead, layout === 'HWIO' ? oLast : oFirst,
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
  const o = readOptions(options, 'options', ['layout'] as const);
  const layer = readLayer(weight, bias), bnRead = readBatchNorm(bn);
  const layout = o.layout ?? 'OI';
  if (layout !== 'OI' && layout !== 'IO') throw new InvalidArgumentError('options.layout', `'OI' or 'IO'`, describe(layout));
  return fold(layer, bnRead, layout === 'IO' ? oLast : oFirst,
    { weight: 'weight', bias: 'bias', what: `linear weight [${layout === 'OI' ? 'out, in' : 'in, out'}]` });
}
