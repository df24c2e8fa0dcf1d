/**
 * Float64 reference implementation of batch normalization (PyTorch `native_batch_norm`
 * and its backward), written for clarity rather than speed. Tests compare the wasm
 * engine against it; it validates only enough to keep those comparisons honest.
 *
 * For each channel c, over its N = numel / C values:
 *
 *   mean    = sum(x) / N
 *   m2      = sum((x - mean)^2)                      (two passes: mean first)
 *   var     = m2 / N                                  (biased: used to normalize)
 *   invStd  = 1 / sqrt(var + eps)
 *   xhat    = (x - mean) * invStd
 *   y       = xhat * weight + bias
 *   running = (1 - momentum) * running + momentum * batch,
 *             batch var = m2 / (N - 1) (unbiased, PyTorch) or m2 / N (biased, ONNX)
 *
 *   backward, training:  dx = weight * invStd * (dy - sum(dy)/N - xhat * sum(dy * xhat)/N)
 *   backward, eval:      dx = dy * weight * invStd
 *   both:                dweight = sum(dy * xhat),  dbias = sum(dy)
 *
 * Every per-channel sum is compensated (Neumaier), so results stay accurate to a few
 * ulps even for millions of values whose mean is far larger than their spread.
 */
import { geometry, type Layout } from '../layout.js';

export interface OracleForwardOptions {
  layout?: Layout;
  training: boolean;
  weight?: ArrayLike<number> | null;
  bias?: ArrayLike<number> | null;
  runningMean?: ArrayLike<number> | null;
  runningVar?: ArrayLike<number> | null;
  /** Weight of the new batch: running = (1 - momentum) * running + momentum * batch. */
  momentum?: number;
  /** true: the running variance receives m2 / (N - 1); false: m2 / N. */
  unbiasedRunningVar?: boolean;
  eps?: number;
  /** 'relu': y = max(y, 0) (NaN stays NaN). */
  activation?: 'none' | 'relu';
}

export interface OracleForwardResult {
  y: Float64Array;
  /** Mean used to normalize: the batch mean, or the running mean in eval with running stats. */
  mean: Float64Array;
  /** 1 / sqrt(var + eps) of the variance used to normalize. */
  invStd: Float64Array;
  /** Batch statistics (biased variance); null when they were not computed. */
  batchMean: Float64Array | null;
  batchVar: Float64Array | null;
  /** Updated copies of the running statistics (inputs are never mutated); null if none were given. */
  runningMean: Float64Array | null;
  runningVar: Float64Array | null;
}

export interface OracleBackwardOptions {
  layout?: Layout;
  training: boolean;
  weight?: ArrayLike<number> | null;
  /** Statistics the forward pass normalized with (its `mean` and `invStd`). */
  mean: ArrayLike<number>;
  invStd: ArrayLike<number>;
  /** 'relu': dy is first masked by the forward output `y`: 0 where y <= 0 (PyTorch's threshold_backward). */
  activation?: 'none' | 'relu';
  y?: ArrayLike<number>;
}

/** The shape seen as channels C, the row-major stride of the channel axis, and N values per channel. */
interface Channels {
  channels: number;
  stride: number;
  count: number;
  size: number;
}

function channelsOf(shape: readonly number[], layout: Layout = 'NCHW'): Channels {
  // `inner` is the product of the dims after the channel axis: its row-major stride.
  const g = geometry(shape, layout);
  return { channels: g.channels, stride: g.inner, count: g.count, size: g.size };
}

/** Channel of flat (row-major) index i. */
function channelOf(i: number, ch: Channels): number {
  return Math.floor(i / ch.stride) % ch.channels;
}

function checkLength(name: string, values: ArrayLike<number>, expected: number): void {
  if (values.length !== expected) {
    throw new Error(`oracle: ${name} has length ${values.length}, expected ${expected}`);
  }
}

/** A float64 copy of a per-channel array. */
function channelArray(name: string, values: ArrayLike<number>, channels: number): Float64Array {
  checkLength(name, values, channels);
  return Float64Array.from(values);
}

/** A per-channel parameter, or `fill` for every channel when absent. */
function parameter(name: string, values: ArrayLike<number> | null | undefined, fill: number, channels: number): Float64Array {
  return values == null ? new Float64Array(channels).fill(fill) : channelArray(name, values, channels);
}

/** Per-channel Neumaier-compensated sums of term(i) over all flat indices i. */
function channelSums(ch: Channels, term: (i: number) => number): Float64Array {
  const sum = new Float64Array(ch.channels);
  const compensation = new Float64Array(ch.channels);
  for (let i = 0; i < ch.size; i++) {
    const c = channelOf(i, ch);
    const value = term(i);
    const total = sum[c] + value;
    // The low-order bits lost by `total`, taken from the smaller-magnitude operand.
    compensation[c] += Math.abs(sum[c]) >= Math.abs(value) ? sum[c] - total + value : value - total + sum[c];
    sum[c] = total;
  }
  // An infinite (or NaN) sum is the IEEE result already; its compensation would be NaN.
  return sum.map((s, c) => (Number.isFinite(s) ? s + compensation[c] : s));
}

function moments(x: ArrayLike<number>, ch: Channels): { mean: Float64Array; m2: Float64Array } {
  const mean = channelSums(ch, (i) => x[i]).map((s) => s / ch.count);
  const m2 = channelSums(ch, (i) => (x[i] - mean[channelOf(i, ch)]) ** 2);
  return { mean, m2 };
}

/** Per-channel count, mean and m2 = sum of squared deviations from the mean. */
export function oracleMoments(
  x: ArrayLike<number>,
  shape: readonly number[],
  layout?: Layout,
): { count: number; mean: Float64Array; m2: Float64Array } {
  const ch = channelsOf(shape, layout);
  checkLength('x', x, ch.size);
  return { count: ch.count, ...moments(x, ch) };
}

export function oracleForward(x: ArrayLike<number>, shape: readonly number[], opts: OracleForwardOptions): OracleForwardResult {
  const ch = channelsOf(shape, opts.layout);
  const { channels, count } = ch;
  checkLength('x', x, ch.size);
  const weight = parameter('weight', opts.weight, 1, channels);
  const bias = parameter('bias', opts.bias, 0, channels);
  const momentum = opts.momentum ?? 0.1;
  const eps = opts.eps ?? 1e-5;
  const runningMean = opts.runningMean == null ? null : channelArray('runningMean', opts.runningMean, channels);
  const runningVar = opts.runningVar == null ? null : channelArray('runningVar', opts.runningVar, channels);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new Error('oracle: runningMean and runningVar must be given together');
  }

  let mean: Float64Array;
  let invStd: Float64Array;
  let batchMean: Float64Array | null = null;
  let batchVar: Float64Array | null = null;
  if (opts.training || runningMean === null || runningVar === null) {
    // Batch statistics: training, or eval without running stats (track_running_stats=False).
    const m = moments(x, ch);
    batchMean = m.mean;
    batchVar = m.m2.map((s) => s / count);
    mean = batchMean;
    // PyTorch's InvStd functor: a constant channel with eps = 0 gets invStd 0, not Infinity.
    invStd = batchVar.map((v) => (v === 0 && eps === 0 ? 0 : 1 / Math.sqrt(v + eps)));
    if (opts.training && runningMean !== null && runningVar !== null) {
      const divisor = (opts.unbiasedRunningVar ?? true) ? count - 1 : count;
      for (let c = 0; c < channels; c++) {
        runningMean[c] = (1 - momentum) * runningMean[c] + momentum * m.mean[c];
        runningVar[c] = (1 - momentum) * runningVar[c] + momentum * (m.m2[c] / divisor);
      }
    }
  } else {
    mean = runningMean.slice();
    invStd = runningVar.map((v) => 1 / Math.sqrt(v + eps));
  }

  const y = new Float64Array(ch.size);
  for (let i = 0; i < ch.size; i++) {
    const c = channelOf(i, ch);
    const v = (x[i] - mean[c]) * invStd[c] * weight[c] + bias[c];
    y[i] = opts.activation === 'relu' && v < 0 ? 0 : v;
  }
  return { y, mean, invStd, batchMean, batchVar, runningMean, runningVar };
}

export function oracleBackward(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  shape: readonly number[],
  opts: OracleBackwardOptions,
): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const ch = channelsOf(shape, opts.layout);
  checkLength('x', x, ch.size);
  checkLength('dy', dy, ch.size);
  checkLength('mean', opts.mean, ch.channels);
  checkLength('invStd', opts.invStd, ch.channels);
  const weight = parameter('weight', opts.weight, 1, ch.channels);
  const { mean, invStd } = opts;
  if (opts.activation === 'relu') {
    checkLength('y', opts.y ?? [], ch.size);
    const y = opts.y!;
    dy = Array.from(dy, (g, i) => (y[i] <= 0 ? 0 : g));
  }
  const xhat = (i: number): number => {
    const c = channelOf(i, ch);
    return (x[i] - mean[c]) * invStd[c];
  };

  const dbias = channelSums(ch, (i) => dy[i]);
  const dweight = channelSums(ch, (i) => dy[i] * xhat(i));
  const dx = new Float64Array(ch.size);
  for (let i = 0; i < ch.size; i++) {
    const c = channelOf(i, ch);
    const scale = weight[c] * invStd[c];
    dx[i] = opts.training ? scale * (dy[i] - dbias[c] / ch.count - (xhat(i) * dweight[c]) / ch.count) : scale * dy[i];
  }
  return { dx, dweight, dbias };
}
