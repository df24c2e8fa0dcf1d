// Tolerances for the engine's outputs against the float64 oracle, derived once here from the
// operations the engine performs (src/batchnorm.ts, assembly/*.ts). u = 2^-24, γ_n from
// numeric.ts. Inputs are the oracle's exact values; "maxDev" is max |x − mean| in a channel.
//
// y = (x − meanHi) · scale + shift, scale = fl(gamma · invStd), shift = fl(beta − meanLo·scale)
// (assembly/fold.ts): three f32 roundings plus those of scale and shift:
// |err| <= u·(3·|xhat·gamma| + |y| + |beta|) <= u·(4·|y| + 4·|beta|) using
// |xhat·gamma| <= |y| + |beta|. With u·|y| < ulp(y):  tol = 8·ulp(y) + 8u·(|gamma| + |beta|).
// (The f64 statistics and the dropped meanLo·scale rounding add < 2^-40 relative: below one term.)
//
// Statistics accumulate in f64 with the shift K (a sample, |x − K| <= 2·maxDev):
//   |mean err| <= γ·(|mean| + 6·maxDev),  |m2 err| <= γ·(8·m2 + 16·n·maxDev²)   (γ = γ_{n+4})
// and the f32 outputs add half an ulp each.
//
// dx = ((dy − k1) − (x − mean)·k2)·k3: five f32 operations and three rounded parameters, each
// at most u times a term no larger than T = |dy| + |k1| + |x − mean|·|k2|, scaled by |k3|:
//   tol = 8u·|k3|·T + |k3|·(δk1 + |x − mean|·δk2), δ = the f64 sums' error through k1, k2.
import { U32, gamma64, ulp32 } from './numeric.js';

export function tolY(y: number, gamma: number, beta: number): number {
  return 8 * ulp32(y) + 8 * U32 * (Math.abs(gamma) + Math.abs(beta));
}

export interface ChannelFacts { n: number; mean: number; m2: number; maxDev: number }

export function meanErr(f: ChannelFacts): number {
  return gamma64(f.n + 4) * (Math.abs(f.mean) + 6 * f.maxDev);
}

export function m2Err(f: ChannelFacts): number {
  return gamma64(f.n + 4) * (8 * f.m2 + 16 * f.n * f.maxDev ** 2);
}

/** saveMean: the spec's 2 ulp of the exact mean, plus the f64 accumulation bound. */
export function tolSaveMean(f: ChannelFacts): number {
  return 2 * ulp32(f.mean) + meanErr(f);
}

/** saveInvStd = fl(1/sqrt(var + eps)): half an ulp plus half the relative error of var + eps. */
export function tolSaveInvStd(invStd: number, f: ChannelFacts, eps: number): number {
  const v = f.m2 / f.n;
  return ulp32(invStd) + 0.5 * invStd * (m2Err(f) / f.n) / (v + eps);
}

export interface BackwardFacts { n: number; sumAbsDy: number; sumAbsDyXmu: number; invStd: number; k1: number; k2: number; k3: number }

export function tolDx(dy: number, xmu: number, b: BackwardFacts): number {
  const g = gamma64(b.n + 2);
  const dk1 = (2 * g * b.sumAbsDy) / b.n;
  const dk2 = (4 * g * b.sumAbsDyXmu * b.invStd * b.invStd) / b.n;
  const t = Math.abs(dy) + Math.abs(b.k1) + Math.abs(xmu) * Math.abs(b.k2);
  return 8 * U32 * Math.abs(b.k3) * t + Math.abs(b.k3) * (dk1 + Math.abs(xmu) * dk2) + 2 ** -149;
}

export function tolDweight(dw: number, b: BackwardFacts): number {
  return ulp32(dw) + 4 * gamma64(b.n + 2) * b.sumAbsDyXmu * b.invStd;
}

export function tolDbias(db: number, b: BackwardFacts): number {
  return ulp32(db) + 2 * gamma64(b.n + 2) * b.sumAbsDy;
}
