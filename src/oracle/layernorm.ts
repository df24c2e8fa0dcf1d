/**
 * Float64 reference implementation of LayerNorm (PyTorch `native_layer_norm` and its backward)
 * and RMSNorm (`torch.nn.RMSNorm`), written for clarity rather than speed. Tests compare the
 * wasm engine against it; it validates only enough to keep those comparisons honest.
 *
 * x of `shape` is R rows of D = prod(normalizedShape) values (the trailing dims): value d of
 * row r is at flat index r·D + d (row stride D, column stride 1). With a residual, v = f32(x +
 * residual) (the float32 sum PyTorch normalizes), else v = x. Per row, over its D values:
 *
 *   LayerNorm  mean = Σv/D,  var = Σ(v − mean)²/D (two passes),  invStd = 1/sqrt(var + eps)
 *              xhat = (v − mean)·invStd,  y = xhat·weight + bias
 *   RMSNorm    ms = Σv²/D,  invRms = 1/sqrt(ms + eps),  xhat = v·invRms,  y = xhat·weight
 *
 *   backward, g = weight·dy:
 *     LayerNorm  dx = invStd·(g − Σg/D − xhat·Σ(g·xhat)/D)
 *     RMSNorm    dx = invRms·(g − xhat·Σ(g·xhat)/D)
 *     dweight = Σ_rows dy·xhat,  dbias = Σ_rows dy   (per column)
 *
 * Every sum is compensated (Neumaier).
 */

export interface OracleRowNormOptions {
  normalizedShape: readonly number[];
  weight?: ArrayLike<number> | null;
  bias?: ArrayLike<number> | null;
  eps?: number;
  residual?: ArrayLike<number> | null;
}

export interface OracleRowNormBackwardOptions {
  normalizedShape: readonly number[];
  weight?: ArrayLike<number> | null;
  /** The statistics the forward pass normalized with (LayerNorm: mean and invStd; RMSNorm: invStd = invRms). */
  mean?: ArrayLike<number>;
  invStd: ArrayLike<number>;
}

/** R rows of D values; throws unless normalizedShape is a non-empty suffix of shape. */
function rowsOf(shape: readonly number[], normalizedShape: readonly number[]): { R: number; D: number } {
  const k = normalizedShape.length;
  if (k < 1 || k > shape.length || normalizedShape.some((d, i) => d !== shape[shape.length - k + i])) {
    throw new Error(`oracle: normalizedShape [${normalizedShape}] is not a suffix of shape [${shape}]`);
  }
  const D = normalizedShape.reduce((a, b) => a * b, 1);
  return { R: shape.reduce((a, b) => a * b, 1) / D, D };
}

function checkLength(name: string, values: ArrayLike<number>, expected: number): void {
  if (values.length !== expected) throw new Error(`oracle: ${name} has length ${values.length}, expected ${expected}`);
}

/** Neumaier-compensated Σ term(i) for i in [0, n). */
function sum(n: number, term: (i: number) => number): number {
  let s = 0, c = 0;
  for (let i = 0; i < n; i++) {
    const v = term(i), t = s + v;
    c += Math.abs(s) >= Math.abs(v) ? s - t + v : v - t + s;
    s = t;
  }
  return Number.isFinite(s) ? s + c : s;
}

function column(name: string, values: ArrayLike<number> | null | undefined, fill: number, D: number): Float64Array {
  if (values == null) return new Float64Array(D).fill(fill);
  checkLength(name, values, D);
  return Float64Array.from(values);
}

/** v = f32(x + residual), or x. */
function input(x: ArrayLike<number>, residual: ArrayLike<number> | null | undefined): Float64Array {
  if (residual == null) return Float64Array.from(x);
  checkLength('residual', residual, x.length);
  return Float64Array.from(x, (v, i) => Math.fround(v + residual[i]));
}

function normalizeRows(
  x: ArrayLike<number>, shape: readonly number[], opts: OracleRowNormOptions, centered: boolean, eps: number,
): { y: Float64Array; mean: Float64Array; invStd: Float64Array; sum: Float64Array | null } {
  const { R, D } = rowsOf(shape, opts.normalizedShape);
  checkLength('x', x, R * D);
  const v = input(x, opts.residual);
  const w = column('weight', opts.weight, 1, D), b = column('bias', centered ? opts.bias : null, 0, D);
  const mean = new Float64Array(R), invStd = new Float64Array(R), y = new Float64Array(R * D);
  for (let r = 0; r < R; r++) {
    const at = (d: number) => v[r * D + d];
    const m = centered ? sum(D, at) / D : 0;
    const second = sum(D, (d) => (at(d) - m) ** 2) / D; // the variance, or (m = 0) the mean square
    mean[r] = m;
    invStd[r] = 1 / Math.sqrt(second + eps);
    for (let d = 0; d < D; d++) y[r * D + d] = (at(d) - m) * invStd[r] * w[d] + b[d];
  }
  return { y, mean, invStd, sum: opts.residual == null ? null : v };
}

/** LayerNorm forward: y, and per row mean and invStd; `sum` = f32(x + residual) when a residual is given. */
export function oracleLayerNorm(x: ArrayLike<number>, shape: readonly number[], opts: OracleRowNormOptions) {
  return normalizeRows(x, shape, opts, true, opts.eps ?? 1e-5);
}

/** RMSNorm forward: y, and per row invRms; eps defaults to the float32 machine epsilon 2^-23. */
export function oracleRmsNorm(x: ArrayLike<number>, shape: readonly number[], opts: Omit<OracleRowNormOptions, 'bias'>) {
  const { y, invStd, sum: s } = normalizeRows(x, shape, opts, false, opts.eps ?? 2 ** -23);
  return { y, invRms: invStd, sum: s };
}

function backwardRows(
  dy: ArrayLike<number>, x: ArrayLike<number>, shape: readonly number[], opts: OracleRowNormBackwardOptions, centered: boolean,
): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const { R, D } = rowsOf(shape, opts.normalizedShape);
  checkLength('x', x, R * D);
  checkLength('dy', dy, R * D);
  checkLength('invStd', opts.invStd, R);
  if (centered) checkLength('mean', opts.mean ?? [], R);
  const w = column('weight', opts.weight, 1, D);
  const xhat = (i: number) => (x[i] - (centered ? opts.mean![Math.floor(i / D)] : 0)) * opts.invStd[Math.floor(i / D)];
  const dx = new Float64Array(R * D);
  for (let r = 0; r < R; r++) {
    const g = (d: number) => w[d] * dy[r * D + d];
    const k1 = centered ? sum(D, g) / D : 0;
    const k2 = sum(D, (d) => g(d) * xhat(r * D + d)) / D;
    for (let d = 0; d < D; d++) dx[r * D + d] = opts.invStd[r] * (g(d) - k1 - xhat(r * D + d) * k2);
  }
  const dweight = Float64Array.from({ length: D }, (_, d) => sum(R, (r) => dy[r * D + d] * xhat(r * D + d)));
  const dbias = Float64Array.from({ length: D }, (_, d) => sum(R, (r) => dy[r * D + d]));
  return { dx, dweight, dbias };
}

export function oracleLayerNormBackward(dy: ArrayLike<number>, x: ArrayLike<number>, shape: readonly number[], opts: OracleRowNormBackwardOptions) {
  return backwardRows(dy, x, shape, opts, true);
}

/** RMSNorm backward (opts.invStd is the forward's invRms); no dbias: RMSNorm has no bias. */
export function oracleRmsNormBackward(dy: ArrayLike<number>, x: ArrayLike<number>, shape: readonly number[], opts: Omit<OracleRowNormBackwardOptions, 'mean'>) {
  const { dx, dweight } = backwardRows(dy, x, shape, opts, false);
  return { dx, dweight };
}
