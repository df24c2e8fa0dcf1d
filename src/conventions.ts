// Framework conventions for the running statistics. The functional API has two primitives,
// `momentum` = the weight of the NEW batch and `unbiasedRunningVar`; each preset below is
// only a default for those plus eps:
//
//   convention  momentum means          default  running var stores        eps
//   pytorch     weight of the new batch  0.1      unbiased m2 / (n − 1)     1e-5
//   onnx        weight of the old value  0.9      biased   m2 / n           1e-5
//   keras       weight of the old value  0.99     biased   m2 / n           1e-3
//
// ONNX BatchNormalization (opset 14/15): running = input_running · momentum + batch · (1 − momentum),
// with the population variance. Keras / tfjs-layers: moving = moving · momentum + batch · (1 − momentum);
// `moving_variance` is the biased (population) batch variance (tf.nn.moments; the fused path
// adds Bessel's correction for the kernel and removes it again for the moving average).
// `momentum: null` is PyTorch's cumulative average (factor 1 / numBatchesTracked) in every convention.
import { InvalidArgumentError, describe } from './errors.js';
import { checkBoolean, checkEps, readOptions } from './args.js';

export type Convention = 'pytorch' | 'onnx' | 'keras';

export const CONVENTION_NAMES: readonly Convention[] = ['pytorch', 'onnx', 'keras'];

export interface ConventionPreset {
  /** Which value `momentum` weights in the running average. */
  readonly momentumWeights: 'new' | 'old';
  /** Default momentum in the convention's own meaning. */
  readonly momentum: number;
  /** The running variance stores the unbiased (n − 1) batch variance. */
  readonly unbiasedRunningVar: boolean;
  readonly eps: number;
}

export const CONVENTIONS: Readonly<Record<Convention, ConventionPreset>> = Object.freeze({
  pytorch: Object.freeze({ momentumWeights: 'new', momentum: 0.1, unbiasedRunningVar: true, eps: 1e-5 }),
  onnx: Object.freeze({ momentumWeights: 'old', momentum: 0.9, unbiasedRunningVar: false, eps: 1e-5 }),
  keras: Object.freeze({ momentumWeights: 'old', momentum: 0.99, unbiasedRunningVar: false, eps: 1e-3 }),
} as const);

export function checkConvention(value: unknown, name = 'options.convention'): Convention {
  if (value === undefined) return 'pytorch';
  if (typeof value !== 'string' || !(CONVENTION_NAMES as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(name, `one of ${CONVENTION_NAMES.map((c) => `'${c}'`).join(', ')}`, describe(value));
  }
  return value as Convention;
}

/** A momentum in the convention's meaning: a number in [0, 1], or null (cumulative average). */
export function checkConventionMomentum(value: unknown, convention: Convention, name = 'options.momentum'): number | null {
  if (value === undefined) return CONVENTIONS[convention].momentum;
  if (value === null) return null;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    const meaning = CONVENTIONS[convention].momentumWeights === 'new' ? 'weight of the new batch' : 'weight of the old running value';
    throw new InvalidArgumentError(name, `a number in [0, 1] (${convention}: ${meaning}) or null (cumulative average)`, describe(value));
  }
  return value;
}

/**
 * The functional primitive for engine.forward: the weight of the NEW batch. `momentum` is in
 * the convention's meaning (ONNX/Keras: 1 − m); null is the cumulative average, 1 / (t + 1) for
 * the (t + 1)-th tracked batch (`numBatchesTracked` = t batches tracked so far).
 */
export function batchWeight(convention: Convention, momentum: number | null, numBatchesTracked = 0): number {
  if (momentum === null) return 1 / (numBatchesTracked + 1);
  return CONVENTIONS[convention].momentumWeights === 'new' ? momentum : 1 - momentum;
}

export interface ConventionOptions {
  /** Momentum in the convention's meaning (default: the preset's); null = cumulative average. */
  momentum?: number | null;
  unbiasedRunningVar?: boolean;
  eps?: number;
  /** Batches tracked so far (only for momentum null). */
  numBatchesTracked?: number;
}

/** `{ momentum, unbiasedRunningVar, eps }` for engine.forward from a convention and overrides. */
export function functionalOptions(
  convention: Convention, overrides: ConventionOptions = {},
): { momentum: number; unbiasedRunningVar: boolean; eps: number } {
  const o = readOptions(overrides, 'overrides', ['momentum', 'unbiasedRunningVar', 'eps', 'numBatchesTracked'] as const);
  const c = checkConvention(convention, 'convention');
  const preset = CONVENTIONS[c];
  const momentum = checkConventionMomentum(o.momentum, c, 'overrides.momentum');
  const tracked: unknown = o.numBatchesTracked ?? 0;
  if (typeof tracked !== 'number' || !Number.isSafeInteger(tracked) || tracked < 0) {
    throw new InvalidArgumentError('overrides.numBatchesTracked', 'a non-negative integer', describe(tracked));
  }
  return {
    momentum: batchWeight(c, momentum, tracked),
    unbiasedRunningVar: checkBoolean(o.unbiasedRunningVar, 'overrides.unbiasedRunningVar', preset.unbiasedRunningVar),
    eps: o.eps === undefined ? preset.eps : checkEps(o.eps, 'overrides.eps'),
  };
}
