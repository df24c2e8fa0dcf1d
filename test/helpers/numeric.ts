// Float32 rounding facts used to derive test tolerances.
// u = 2^-24 is the unit roundoff of float32 (half an ulp of 1); every correctly rounded f32
// operation returns op(a, b) · (1 + δ) with |δ| <= u. ulp32(v) is the gap between |v| and the
// next float32 away from zero; u·|v| < ulp32(v) for normal v.

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

/** Small seeded PRNG (mulberry32) for data; fast-check supplies the seeds. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal deviates from a uniform source (Box-Muller). */
export function gauss(next: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}

export function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Flat indices of channel c's values, for either layout. */
export function channelIndices(shape: readonly number[], layout: 'NCHW' | 'NHWC', c: number): number[] {
  const axis = layout === 'NCHW' ? 1 : shape.length - 1;
  const C = shape[axis];
  const stride = product(shape.slice(axis + 1));
  const out: number[] = [];
  const size = product(shape);
  for (let i = 0; i < size; i++) if (Math.floor(i / stride) % C === c) out.push(i);
  return out;
}

/** Fails with a message naming everything needed to reproduce. */
export function expectClose(actual: number, expected: number, tol: number, what: string): void {
  const ok = Number.isNaN(expected) ? Number.isNaN(actual) : Math.abs(actual - expected) <= tol;
  if (!ok) {
    throw new Error(`${what}: expected ${expected}, got ${actual}, |diff| ${Math.abs(actual - expected)} > tol ${tol}`);
  }
}
