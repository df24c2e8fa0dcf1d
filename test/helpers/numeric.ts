// Float32 rounding facts used to derive test tolerances.
// u = 2^-24 is the unit roundoff of float32 (half an ulp of 1); every correctly rounded f32
// operation returns op(a, b) · (1 + δ) with |δ| <= u. ulp32(v) is the gap between |v| and the
// next float32 away from zero; u·|v| < ulp32(v) for normal v.

import type { Layout } from '../../src/index.js';

// The seeded PRNG shared with the benchmarks and examples (bench/prng.mjs); fast-check supplies the seeds.
export { mulberry32 as rng, gaussian as gauss } from '../../bench/prng.mjs';

export const U32 = 2 ** -24;
/** Unit roundoff of float64. */
export const U64 = 2 ** -53;

export function ulp32(v: number): number {
  const a = Math.abs(v);
  if (!Number.isFinite(a)) return NaN;
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

/** γ_n = n·u64 / (1 − n·u64): bound on the relative error of a recursive f64 sum of n terms. */
export function gamma64(n: number): number {
  return (n * U64) / (1 - n * U64);
}

export function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Channel of each flat index of a tensor of `shape` in `layout` (channel axis 1, or the last one for NHWC). */
export function channelOf(shape: readonly number[], layout: Layout): (i: number) => number {
  const axis = layout === 'NCHW' ? 1 : shape.length - 1;
  const stride = product(shape.slice(axis + 1));
  const C = shape[axis];
  return (i) => Math.floor(i / stride) % C;
}

/** Flat indices of channel c's values, for either layout. */
export function channelIndices(shape: readonly number[], layout: Layout, c: number): number[] {
  const ch = channelOf(shape, layout);
  const out: number[] = [];
  const size = product(shape);
  for (let i = 0; i < size; i++) if (ch(i) === c) out.push(i);
  return out;
}

/** Fails with a message naming everything needed to reproduce. */
export function expectClose(actual: number, expected: number, tol: number, what: string): void {
  const ok = Number.isNaN(expected) ? Number.isNaN(actual) : Math.abs(actual - expected) <= tol;
  if (!ok) {
    throw new Error(`${what}: expected ${expected}, got ${actual}, |diff| ${Math.abs(actual - expected)} > tol ${tol}`);
  }
}
