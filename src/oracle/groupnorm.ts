/**
 * Float64 reference for GroupNorm and InstanceNorm (PyTorch's group_norm and instance_norm) and
 * their backward, written for clarity: one loop over the flat row-major tensor for either
 * layout, each index mapped through the shape's strides to its sample n, channel c and group
 * s = n·G + floor(c / (C / G)). Every sum is Neumaier-compensated; the statistics take two
 * passes (mean first). M = (C / G)·R values per group, R the spatial size.
 *
 *   mean_s = Σx / M,  var_s = Σ(x − mean_s)² / M,  invStd_s = 1 / sqrt(var_s + eps)
 *   xhat = (x − mean_s)·invStd_s,  z = xhat·w_c + b_c,  y = z (or silu: z·σ(z), σ(z) = 1 / (1 + e^−z))
 *
 *   backward, with the given mean and invStd: dz = dy (silu: dy·σ(z)·(1 + z·(1 − σ(z))))
 *     dbias_c = Σ dz,  dweight_c = Σ dz·xhat  (over the c's values of every sample)
 *     A_s = Σ_{i∈s} w_c·dz,  B_s = Σ_{i∈s} w_c·dz·xhat
 *     dx = invStd_s·(w_c·dz − A_s / M − xhat·B_s / M);  constant statistics: dx = w_c·invStd_s·dz
 *
 * InstanceNorm is G = C; with running statistics (useInputStats true) they are updated as
 * PyTorch's instance_norm does: running ← (1 − m)·running + m·mean_n(batch), batch var unbiased
 * (m2 / (R − 1)); useInputStats false normalizes every instance with the running statistics.
 */
import { channelAxis, geometry, type Layout } from '../layout.js';

export interface OracleGroupNormOptions {
  groups: number;
  layout?: Layout;
  weight?: ArrayLike<number> | null;
  bias?: ArrayLike<number> | null;
  eps?: number;
  activation?: 'none' | 'silu';
}

export interface OracleGroupNormResult {
  y: Float64Array;
  /** The pre-activation z (equal to y without an activation). */
  z: Float64Array;
  /** Per group (n, g), index n·G + g: the statistics used. */
  mean: Float64Array;
  invStd: Float64Array;
  /** Biased variance per group. */
  variance: Float64Array;
}

export interface OracleGroupNormBackwardOptions {
  groups: number;
  layout?: Layout;
  weight?: ArrayLike<number> | null;
  /** With silu: the forward's bias (z is recomputed from x). */
  bias?: ArrayLike<number> | null;
  /** The statistics the forward normalized with, per group. */
  mean: ArrayLike<number>;
  invStd: ArrayLike<number>;
  activation?: 'none' | 'silu';
  /** false: mean and invStd are constants (InstanceNorm with running statistics). */
  inputStats?: boolean;
}

export interface OracleInstanceNormOptions {
  layout?: Layout;
  weight?: ArrayLike<number> | null;
  bias?: ArrayLike<number> | null;
  runningMean?: ArrayLike<number> | null;
  runningVar?: ArrayLike<number> | null;
  useInputStats?: boolean;
  momentum?: number;
  eps?: number;
}

/** The shape as N samples, C channels in G groups, R spatial values, and each flat index's group and channel. */
interface Groups {
  N: number;
  C: number;
  G: number;
  M: number;
  size: number;
  channel: (i: number) => number;
  group: (i: number) => number;
}

function groupsOf(shape: readonly number[], layout: Layout, G: number): Groups {
  const g = geometry(shape, layout);
  const N = shape[0], C = g.channels;
  if (!Number.isInteger(G) || G < 1 || C % G !== 0) throw new Error(`oracle: groups ${G} does not divide C = ${C}`);
  let stride = 1;
  for (let a = channelAxis(shape.length, layout) + 1; a < shape.length; a++) stride *= shape[a];
  const perSample = g.size / N, Cg = C / G;
  const channel = (i: number) => Math.floor(i / stride) % C;
  return { N, C, G, M: Cg * (perSample / C), size: g.size, channel, group: (i) => Math.floor(i / perSample) * G + Math.floor(channel(i) / Cg) };
}

function check(name: string, values: ArrayLike<number>, length: number): void {
  if (values.length !== length) throw new Error(`oracle: ${name} has length ${values.length}, expected ${length}`);
}

function param(name: string, values: ArrayLike<number> | null | undefined, fill: number, C: number): Float64Array {
  if (values == null) return new Float64Array(C).fill(fill);
  check(name, values, C);
  return Float64Array.from(values);
}

/** Neumaier-compensated sums of term(i) by key(i) < keys. */
function sums(size: number, keys: number, key: (i: number) => number, term: (i: number) => number): Float64Array {
  const sum = new Float64Array(keys), comp = new Float64Array(keys);
  for (let i = 0; i < size; i++) {
    const k = key(i), v = term(i), t = sum[k] + v;
    comp[k] += Math.abs(sum[k]) >= Math.abs(v) ? sum[k] - t + v : v - t + sum[k];
    sum[k] = t;
  }
  return sum.map((s, k) => (Number.isFinite(s) ? s + comp[k] : s));
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

function normalize(
  x: ArrayLike<number>, gr: Groups, mean: Float64Array, invStd: Float64Array, w: Float64Array, b: Float64Array, silu: boolean,
): { y: Float64Array; z: Float64Array } {
  const z = new Float64Array(gr.size), y = new Float64Array(gr.size);
  for (let i = 0; i < gr.size; i++) {
    const s = gr.group(i), c = gr.channel(i);
    z[i] = (x[i] - mean[s]) * invStd[s] * w[c] + b[c];
    y[i] = silu ? z[i] * sigmoid(z[i]) : z[i];
  }
  return { y, z };
}

function moments(x: ArrayLike<number>, gr: Groups): { mean: Float64Array; m2: Float64Array } {
  const keys = gr.N * gr.G;
  const mean = sums(gr.size, keys, gr.group, (i) => x[i]).map((s) => s / gr.M);
  return { mean, m2: sums(gr.size, keys, gr.group, (i) => (x[i] - mean[gr.group(i)]) ** 2) };
}

export function oracleGroupNorm(x: ArrayLike<number>, shape: readonly number[], opts: OracleGroupNormOptions): OracleGroupNormResult {
  const gr = groupsOf(shape, opts.layout ?? 'NCHW', opts.groups);
  check('x', x, gr.size);
  const eps = opts.eps ?? 1e-5;
  const { mean, m2 } = moments(x, gr);
  const variance = m2.map((q) => q / gr.M);
  const invStd = variance.map((v) => 1 / Math.sqrt(v + eps));
  const w = param('weight', opts.weight, 1, gr.C), b = param('bias', opts.bias, 0, gr.C);
  return { ...normalize(x, gr, mean, invStd, w, b, opts.activation === 'silu'), mean, invStd, variance };
}

export function oracleGroupNormBackward(
  dy: ArrayLike<number>, x: ArrayLike<number>, shape: readonly number[], opts: OracleGroupNormBackwardOptions,
): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const gr = groupsOf(shape, opts.layout ?? 'NCHW', opts.groups);
  check('x', x, gr.size);
  check('dy', dy, gr.size);
  check('mean', opts.mean, gr.N * gr.G);
  check('invStd', opts.invStd, gr.N * gr.G);
  const w = param('weight', opts.weight, 1, gr.C), b = param('bias', opts.bias, 0, gr.C);
  const { mean, invStd } = opts;
  const xhat = (i: number) => (x[i] - mean[gr.group(i)]) * invStd[gr.group(i)];
  const dz = Float64Array.from(dy, (g, i) => {
    if (opts.activation !== 'silu') return g;
    const z = xhat(i) * w[gr.channel(i)] + b[gr.channel(i)], s = sigmoid(z);
    return g * s * (1 + z * (1 - s));
  });
  const dbias = sums(gr.size, gr.C, gr.channel, (i) => dz[i]);
  const dweight = sums(gr.size, gr.C, gr.channel, (i) => dz[i] * xhat(i));
  const keys = gr.N * gr.G;
  const A = sums(gr.size, keys, gr.group, (i) => w[gr.channel(i)] * dz[i]);
  const B = sums(gr.size, keys, gr.group, (i) => w[gr.channel(i)] * dz[i] * xhat(i));
  const dx = new Float64Array(gr.size);
  for (let i = 0; i < gr.size; i++) {
    const s = gr.group(i), wc = w[gr.channel(i)];
    dx[i] = opts.inputStats === false ? wc * invStd[s] * dz[i] : invStd[s] * (wc * dz[i] - A[s] / gr.M - (xhat(i) * B[s]) / gr.M);
  }
  return { dx, dweight, dbias };
}

export function oracleInstanceNorm(
  x: ArrayLike<number>, shape: readonly number[], opts: OracleInstanceNormOptions = {},
): OracleGroupNormResult & { runningMean: Float64Array | null; runningVar: Float64Array | null } {
  const layout = opts.layout ?? 'NCHW';
  const C = geometry(shape, layout).channels;
  const gr = groupsOf(shape, layout, C);
  check('x', x, gr.size);
  const eps = opts.eps ?? 1e-5, m = opts.momentum ?? 0.1;
  const rm = opts.runningMean == null ? null : param('runningMean', opts.runningMean, 0, C);
  const rv = opts.runningVar == null ? null : param('runningVar', opts.runningVar, 1, C);
  const w = param('weight', opts.weight, 1, C), b = param('bias', opts.bias, 0, C);
  let mean: Float64Array, variance: Float64Array;
  if (opts.useInputStats ?? true) {
    const mo = moments(x, gr);
    mean = mo.mean;
    variance = mo.m2.map((q) => q / gr.M);
    if (rm !== null && rv !== null) {
      for (let c = 0; c < C; c++) {
        let sm = 0, sv = 0;
        for (let n = 0; n < gr.N; n++) {
          sm += mo.mean[n * C + c];
          sv += mo.m2[n * C + c] / (gr.M - 1);
        }
        rm[c] = (1 - m) * rm[c] + m * (sm / gr.N);
        rv[c] = (1 - m) * rv[c] + m * (sv / gr.N);
      }
    }
  } else {
    if (rm === null || rv === null) throw new Error('oracle: useInputStats false needs running statistics');
    mean = Float64Array.from({ length: gr.N * C }, (_, s) => rm[s % C]);
    variance = Float64Array.from({ length: gr.N * C }, (_, s) => rv[s % C]);
  }
  const invStd = variance.map((v) => 1 / Math.sqrt(v + eps));
  return { ...normalize(x, gr, mean, invStd, w, b, false), mean, invStd, variance, runningMean: rm, runningVar: rv };
}

export function oracleInstanceNormBackward(
  dy: ArrayLike<number>, x: ArrayLike<number>, shape: readonly number[],
  opts: { layout?: Layout; weight?: ArrayLike<number> | null; mean: ArrayLike<number>; invStd: ArrayLike<number>; useInputStats?: boolean },
): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const C = geometry(shape, opts.layout ?? 'NCHW').channels;
  return oracleGroupNormBackward(dy, x, shape, { ...opts, groups: C, inputStats: opts.useInputStats ?? true });
}
