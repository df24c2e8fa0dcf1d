// GroupNorm / InstanceNorm test support: data drawn the way the world does, and the engine's
// results against the float64 oracle as fractions of derived bounds (1 = at the bound).
//
// Bounds, from the operations the engine performs (src/ops/groupnorm.ts, assembly/groups.ts):
// - saveMean, saveInvStd: batch norm's (helpers/tolerance.ts) for a channel of the group's M values:
//   the pivots are values of the group, so |x − K| <= 2·maxDev holds as there.
// - y: tolY (same folding and apply as batch norm). SiLU: y = z·σ(z) with |d(z·σ)/dz| < 1.1, so
//   1.1·tolY(z) for z's error, plus the SiLU's own: exp within 2 ulp, then 1 + e, the division and
//   z·σ: 8·ulp(y).
// - dx = (g·k3 − k1) − (x − μ)·k2: five f32 operations and three rounded constants, each within
//   u of a term below T = |g·k3| + |k1| + |x − μ|·|k2|: 8u·T; the f64 sums' error through k1, k2:
//   4γ·invStd·(Σ|w·g| + |x − μ|·invStd²·Σ|w·g·(x − μ)|)/M (γ = γ_{M+Cg+4}).
// - SiLU backward: g = dz is computed in f32 from z recomputed in f32 (|δz| <= 4u·(|xhat·w| + |z|))
//   with |d σ'(z)/dz| <= 0.5 and σ' in about a dozen roundings: Δdz = |dy|·(0.5·δz + 12u·S) with
//   S = |σ| + |z·σ·(1 − σ)|; it reaches dx directly (·|k3|) and through the group's two sums.
import type { Layout } from '../../src/index.js';
import { gamma64, U32, ulp32, gauss, rng } from './numeric.js';
import { tolSaveInvStd, tolSaveMean, tolY } from './tolerance.js';

export type DataKind = 'gauss' | 'offset' | 'outlier' | 'relu' | 'thirds';
export const DATA_KINDS: readonly DataKind[] = ['gauss', 'offset', 'outlier', 'relu', 'thirds'];

/** Sample, channel and group of each flat index. */
export interface Index { N: number; C: number; G: number; Cg: number; M: number; size: number; channel: (i: number) => number; group: (i: number) => number }

export function indexOf(shape: readonly number[], layout: Layout, G: number): Index {
  const size = shape.reduce((a, b) => a * b, 1), N = shape[0];
  const C = layout === 'NCHW' ? shape[1] : shape[shape.length - 1];
  const stride = layout === 'NCHW' ? size / (N * C) : 1, Cg = C / G, perSample = size / N;
  const channel = (i: number) => Math.floor(i / stride) % C;
  return { N, C, G, Cg, M: perSample / G, size, channel, group: (i) => Math.floor(i / perSample) * G + Math.floor(channel(i) / Cg) };
}

/**
 * Values of the kind: 'offset' |mean|/std = 1e4 per group; 'outlier' a large value at each
 * group's first element (the pivot of its first block); 'relu' sparse post-ReLU (about 2%
 * non-zero); 'thirds' multiples of 1/3 (squares not exact in binary); 'gauss' N(0.5, 2²).
 */
export function drawX(ix: Index, kind: DataKind, seed: number): Float32Array {
  const g = gauss(rng(seed)), x = new Float32Array(ix.size);
  const firstOf = new Map<number, number>();
  const center = Array.from({ length: ix.N * ix.G }, (_, s) => (s % 2 === 0 ? 1e4 : -3e4));
  for (let i = 0; i < ix.size; i++) {
    const s = ix.group(i);
    const first = !firstOf.has(s);
    if (first) firstOf.set(s, i);
    x[i] = kind === 'offset' ? center[s] + g()
      : kind === 'outlier' ? (first ? 3000 : 0.1 + g() / 3)
        : kind === 'relu' ? (first ? 50 : Math.max(g() - 2, 0))
          : kind === 'thirds' ? Math.round(g() * 30) / 3 : 0.5 + 2 * g();
  }
  return x;
}

export interface Worst { mean: number; invStd: number; y: number; dx: number; dweight: number; dbias: number }
export const noWorst = (): Worst => ({ mean: 0, invStd: 0, y: 0, dx: 0, dweight: 0, dbias: 0 });
export function mergeWorst(into: Worst, w: Worst): void {
  for (const k of Object.keys(into) as (keyof Worst)[]) into[k] = Math.max(into[k], w[k]);
}

/** A ratio that is NaN when both are NaN-free and equal is impossible: NaN where exactly one is NaN. */
function ratio(actual: number, expected: number, tol: number): number {
  if (Number.isNaN(expected) || Number.isNaN(actual)) return Number.isNaN(expected) && Number.isNaN(actual) ? 0 : Infinity;
  return actual === expected ? 0 : Math.abs(actual - expected) / tol;
}

const par = (p: ArrayLike<number> | null | undefined, c: number, fill: number) => (p ? p[c] : fill);

/** Forward: saveMean, saveInvStd per group, y per value, as fractions of their bounds. */
export function forwardRatios(
  ix: Index, x: ArrayLike<number>, r: { y: ArrayLike<number>; saveMean: ArrayLike<number>; saveInvStd: ArrayLike<number> },
  o: { y: ArrayLike<number>; z: ArrayLike<number>; mean: ArrayLike<number>; variance: ArrayLike<number>; invStd: ArrayLike<number> },
  p: { weight?: ArrayLike<number> | null; bias?: ArrayLike<number> | null; eps: number; silu: boolean; inputStats?: boolean },
): Worst {
  const w = noWorst();
  const maxDev = new Float64Array(ix.N * ix.G);
  for (let i = 0; i < ix.size; i++) maxDev[ix.group(i)] = Math.max(maxDev[ix.group(i)], Math.abs(x[i] - o.mean[ix.group(i)]));
  for (let s = 0; s < ix.N * ix.G; s++) {
    if (p.inputStats === false) {
      w.mean = Math.max(w.mean, ratio(r.saveMean[s], o.mean[s], ulp32(o.mean[s])));
      w.invStd = Math.max(w.invStd, ratio(r.saveInvStd[s], o.invStd[s], ulp32(o.invStd[s])));
      continue;
    }
    const f = { n: ix.M, mean: o.mean[s], m2: o.variance[s] * ix.M, maxDev: maxDev[s] };
    w.mean = Math.max(w.mean, ratio(r.saveMean[s], o.mean[s], tolSaveMean(f)));
    w.invStd = Math.max(w.invStd, ratio(r.saveInvStd[s], o.invStd[s], tolSaveInvStd(o.invStd[s], f, p.eps)));
  }
  for (let i = 0; i < ix.size; i++) {
    const c = ix.channel(i), zt = tolY(o.z[i], par(p.weight, c, 1), par(p.bias, c, 0));
    w.y = Math.max(w.y, ratio(r.y[i], o.y[i], p.silu ? 1.1 * zt + 8 * ulp32(o.y[i]) + 2 ** -149 : zt));
  }
  return w;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

/** Backward: dx per value, dweight and dbias per channel, as fractions of their bounds (saved: the engine's f32 statistics). */
export function backwardRatios(
  ix: Index, dy: ArrayLike<number>, x: ArrayLike<number>, r: { dx: ArrayLike<number>; dweight: ArrayLike<number>; dbias: ArrayLike<number> },
  o: { dx: ArrayLike<number>; dweight: ArrayLike<number>; dbias: ArrayLike<number> },
  p: { weight?: ArrayLike<number> | null; bias?: ArrayLike<number> | null; saveMean: ArrayLike<number>; saveInvStd: ArrayLike<number>; silu: boolean; inputStats?: boolean },
): Worst {
  const S = ix.N * ix.G, u = U32, gam = gamma64(ix.M + ix.Cg + 4);
  const g = new Float64Array(ix.size), dg = new Float64Array(ix.size), xmu = new Float64Array(ix.size);
  const A = new Float64Array(S), aA = new Float64Array(S), B = new Float64Array(S), aB = new Float64Array(S), E1 = new Float64Array(S), E2 = new Float64Array(S);
  const adwx = new Float64Array(ix.C), adb = new Float64Array(ix.C), edw = new Float64Array(ix.C), edb = new Float64Array(ix.C);
  for (let i = 0; i < ix.size; i++) {
    const s = ix.group(i), c = ix.channel(i), wc = par(p.weight, c, 1), is = p.saveInvStd[s];
    xmu[i] = x[i] - p.saveMean[s];
    g[i] = dy[i];
    if (p.silu) {
      const z = xmu[i] * is * wc + par(p.bias, c, 0), sg = sigmoid(z);
      g[i] = dy[i] * sg * (1 + z * (1 - sg));
      const dz = 4 * u * (Math.abs(xmu[i] * is * wc) + Math.abs(z));
      dg[i] = Math.abs(dy[i]) * (0.5 * dz + 12 * u * (sg + Math.abs(z * sg * (1 - sg)))) + u * Math.abs(g[i]);
    }
    A[s] += wc * g[i]; aA[s] += Math.abs(wc * g[i]);
    B[s] += wc * g[i] * xmu[i]; aB[s] += Math.abs(wc * g[i] * xmu[i]);
    E1[s] += Math.abs(wc) * dg[i]; E2[s] += Math.abs(wc * xmu[i]) * dg[i];
    adwx[c] += Math.abs(g[i] * xmu[i] * is); adb[c] += Math.abs(g[i]);
    edw[c] += Math.abs(xmu[i] * is) * dg[i]; edb[c] += dg[i];
  }
  const w = noWorst();
  for (let i = 0; i < ix.size; i++) {
    const s = ix.group(i), c = ix.channel(i), is = p.saveInvStd[s], k3 = par(p.weight, c, 1) * is;
    const live = p.inputStats !== false;
    const k1 = live ? (is * A[s]) / ix.M : 0, k2 = live ? (is ** 3 * B[s]) / ix.M : 0;
    let tol = 8 * u * (Math.abs(g[i] * k3) + Math.abs(k1) + Math.abs(xmu[i] * k2)) + Math.abs(k3) * dg[i] + 2 ** -149;
    if (live) tol += (4 * gam * is * (aA[s] + Math.abs(xmu[i]) * is * is * aB[s])) / ix.M + (is * E1[s] + Math.abs(xmu[i]) * is ** 3 * E2[s]) / ix.M;
    w.dx = Math.max(w.dx, ratio(r.dx[i], o.dx[i], tol));
  }
  for (let c = 0; c < ix.C; c++) {
    w.dweight = Math.max(w.dweight, ratio(r.dweight[c], o.dweight[c], ulp32(o.dweight[c]) + 4 * gam * adwx[c] + edw[c] + 2 ** -149));
    w.dbias = Math.max(w.dbias, ratio(r.dbias[c], o.dbias[c], ulp32(o.dbias[c]) + 2 * gam * adb[c] + edb[c] + 2 ** -149));
  }
  return w;
}
