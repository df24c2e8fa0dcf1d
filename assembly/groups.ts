// GroupNorm and InstanceNorm kernels (statistics per (n, group) or (n, c)); the ops reuse the
// batch-norm kernels for everything else (src/ops/groupnorm.ts). Here:
//
// mergeGroupMomentsF64: channels-last statistics of a group. statsNhwcF32 gives one sample's
// per-channel block partials (stats.ts: count | pivot | offset | m2 per block and channel); a
// group's moments merge the partials of its C channels, channel by channel and within a channel
// block by block (a fixed order), with Chan's update of stats.ts (mergedM2, mergedMean), every
// mean relative to the first partial's pivot K_0: mean_b − K_0 = (K_b − K_0) + offset_b.
//
// Elementwise kernels over per-(n, c) parameters, NCHW runs ([outer][C][inner]) and channels-last
// rows ([rows][C], parameters tiled over the super-row as normalize.ts does, `work` holds
// workspaceBytes(C) bytes; the scalar twins ignore it):
//   normalizeSilu:  z = (x − meanHi)·scale + shift (normalize.ts's folding, fold.ts),  y = z·σ(z)
//   siluBackward:   dz = dy·σ'(z),  σ'(z) = d(z·σ(z))/dz = σ(z)·(1 + z·(1 − σ(z)))   (z as above)
//   groupNormDx:    dx = (dy·k3 − k1) − (x − mean)·k2
//     with k3 = w_c·invStd, k1 = invStd·S1/M, k2 = invStd³·S2/M per (n, c) of group g (the op
//     folds them in f64 and rounds once): dx = invStd·(w_c·dy − S1/M − (x − μ)·invStd²·S2/M),
//     the gradient through the group's statistics. backward.ts's dx, ((dy − k1) − (x − m)·k2)·k3,
//     cannot express it: its dy coefficient k3 also scales the group terms, which do not vanish
//     when w_c = 0 (a channel whose weight is 0 still moves its group's mean and variance).
//
// σ without overflow: e = exp(−|z|) ∈ (0, 1], u = 1/(1 + e), v = e·u; σ(z) = u and 1 − σ(z) = v
// for z >= 0, the other way round for z < 0, so neither is computed as 1 − (something near 1).
// exp(t) for t <= 0: 0 below T_MIN = −112 (there |z|·e^z < 2^-150 rounds to 0 anyway; t is clamped
// there first, so the exponent arithmetic stays in range),
// n = nearest(t·log2 e) (see big1), r = (t − n·C1) − n·C2 (Cody–Waite: C1 = 355/512 has 9 bits, so n·C1
// and t − n·C1 are exact; C2 = ln 2 − C1), exp(r) = 1 + r + r²·P(r) with P of degree 5 (the
// Cephes expf minimax coefficients), then ·2^n as hi·lo, hi = exp(r)·2^⌊n/2⌋ and lo =
// 2^(n − ⌊n/2⌋) both normal floats (hi exact), so hi·lo rounds once, also into the subnormals.
// For z < 0 the SiLU forward takes y = ((z·u)·hi)·lo: where e is subnormal but y is not
// (z in (−104, −87)), y keeps its precision. Measured (test/groupnorm.test.ts, every 97th float32
// of [−110, 110], both builds): y within 3.4 ulp of the exact z·σ(z) (bound tested: 4 ulp).
// NaN propagates (through z itself: a NaN t gives e = 0); z = +Inf gives +Inf, −Inf gives NaN
// (−Inf·0, as PyTorch's x·sigmoid(x)).
//
// Every SIMD lane does the same f32 operations in the same order as the scalar twin and the
// scalar tails (no FMA), so both builds give bit-identical results. Outputs may equal an input
// (in place: each value is read before it is written).
import { rowPeriodOf, tileF32 } from './period';
import { mergedM2, mergedMean } from './stats';

const LOG2E: f32 = 1.44269504088896341;
const C1: f32 = 0.693359375;
const C2: f32 = -2.12194440e-4;
const P0: f32 = 1.9875691500e-4;
const P1: f32 = 1.3981999507e-3;
const P2: f32 = 8.3334519073e-3;
const P3: f32 = 4.1665795894e-2;
const P4: f32 = 1.6666665459e-1;
const P5: f32 = 5.0000001201e-1;
const T_MIN: f32 = -112;

// exp(t) = hi·lo for t <= 0 (or NaN): hi = exp(r)·2^⌊n/2⌋ (normal, exact product), lo = 2^(n − ⌊n/2⌋).
// n = nearest(t·log2 e) by the 1.5·2^23 trick: big = t·log2 e + 1.5·2^23 rounds to an integer
// (to nearest even, |t·log2 e| < 2^22), n = big − 1.5·2^23 exactly, and n as an i32 is
// bits(big) − bits(1.5·2^23) (wasm's nearest and trunc_sat cost far more in V8).
const MAGIC: f32 = 12582912;
// @ts-ignore: decorator
@inline function big1(t: f32): f32 {
  return (t < T_MIN ? T_MIN : t) * LOG2E + MAGIC;
}
// @ts-ignore: decorator
@inline export function expNegHi1(t: f32): f32 {
  const s = t < T_MIN ? T_MIN : t, big = big1(t), n = big - MAGIC;
  const r = (s - n * C1) - n * C2;
  const p = (((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5) * (r * r) + r + <f32>1;
  const k = reinterpret<i32>(big) - reinterpret<i32>(MAGIC);
  return t >= T_MIN ? p * reinterpret<f32>(((k >> 1) + 127) << 23) : 0;
}
// @ts-ignore: decorator
@inline export function expNegLo1(t: f32): f32 {
  const k = reinterpret<i32>(big1(t)) - reinterpret<i32>(MAGIC);
  return reinterpret<f32>((k - (k >> 1) + 127) << 23);
}

/** Four lanes of expNegHi1 and expNegLo1. */
// @ts-ignore: decorator
@inline function big4(t: v128): v128 {
  return f32x4.add(f32x4.mul(f32x4.pmax(t, f32x4.splat(T_MIN)), f32x4.splat(LOG2E)), f32x4.splat(MAGIC));
}
// @ts-ignore: decorator
@inline export function expNegHi4(t: v128): v128 {
  const s = f32x4.pmax(t, f32x4.splat(T_MIN)), big = big4(t), n = f32x4.sub(big, f32x4.splat(MAGIC));
  const r = f32x4.sub(f32x4.sub(s, f32x4.mul(n, f32x4.splat(C1))), f32x4.mul(n, f32x4.splat(C2)));
  let p = f32x4.add(f32x4.mul(f32x4.splat(P0), r), f32x4.splat(P1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P4));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P5));
  p = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1));
  const k = i32x4.sub(big, f32x4.splat(MAGIC));
  const hi = f32x4.mul(p, i32x4.shl(i32x4.add(i32x4.shr_s(k, 1), i32x4.splat(127)), 23));
  return v128.and(hi, f32x4.ge(t, f32x4.splat(T_MIN)));
}
// @ts-ignore: decorator
@inline export function expNegLo4(t: v128): v128 {
  const k = i32x4.sub(big4(t), f32x4.splat(MAGIC));
  return i32x4.shl(i32x4.add(i32x4.sub(k, i32x4.shr_s(k, 1)), i32x4.splat(127)), 23);
}

// The three elementwise operations, one lane and four lanes: g is dy (unused by SILU), v is x,
// p0..p3 the parameters (meanHi, scale, shift for SILU and DSILU; mean, k1, k2, k3 for DX).
const SILU = 0, DSILU = 1, DX = 2;

// @ts-ignore: decorator
@inline function op1(kind: i32, g: f32, v: f32, p0: f32, p1: f32, p2: f32, p3: f32): f32 {
  if (kind == DX) return (g * p3 - p1) - (v - p0) * p2;
  const z = (v - p0) * p1 + p2, t = -abs<f32>(z);
  const hi = expNegHi1(t), lo = expNegLo1(t), e = hi * lo;
  const u = <f32>1 / (<f32>1 + e), pos = z >= 0;
  if (kind == SILU) return pos ? z * u : ((z * u) * hi) * lo;
  const w = e * u, s = pos ? u : w;
  return g * (s * (<f32>1 + z * (pos ? w : u)));
}

// @ts-ignore: decorator
@inline function op4(kind: i32, g: v128, v: v128, p0: v128, p1: v128, p2: v128, p3: v128): v128 {
  if (kind == DX) return f32x4.sub(f32x4.sub(f32x4.mul(g, p3), p1), f32x4.mul(f32x4.sub(v, p0), p2));
  const z = f32x4.add(f32x4.mul(f32x4.sub(v, p0), p1), p2), t = f32x4.neg(f32x4.abs(z));
  const hi = expNegHi4(t), lo = expNegLo4(t), e = f32x4.mul(hi, lo);
  const one = f32x4.splat(1);
  const u = f32x4.div(one, f32x4.add(one, e)), pos = f32x4.ge(z, f32x4.splat(0));
  const zu = f32x4.mul(z, u);
  if (kind == SILU) return v128.bitselect(zu, f32x4.mul(f32x4.mul(zu, hi), lo), pos);
  const w = f32x4.mul(e, u), s = v128.bitselect(u, w, pos);
  return f32x4.mul(g, f32x4.mul(s, f32x4.add(one, f32x4.mul(z, v128.bitselect(w, u, pos)))));
}

/**
 * NCHW: for each (o, c) plane, the operation over its `inner` contiguous values with that
 * channel's parameters (pointers to f32[C]; p3 is read only by DX, g only by DSILU and DX).
 * SIMD: vectors of 4, then the scalar tail; scalar build: value by value.
 */
// @ts-ignore: decorator
@inline function runsAs(
  kind: i32, g: usize, x: usize, out: usize, outer: i32, C: i32, inner: i32, q0: usize, q1: usize, q2: usize, q3: usize,
): void {
  const plane = <usize>inner << 2, body = <usize>(inner & ~3) << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      const a0 = load<f32>(q0 + pc), a1 = load<f32>(q1 + pc), a2 = load<f32>(q2 + pc), a3 = kind == DX ? load<f32>(q3 + pc) : 0;
      const pg = g + off, px = x + off, po = out + off;
      let k: usize = 0;
      if (ASC_FEATURE_SIMD) {
        const v0 = f32x4.splat(a0), v1 = f32x4.splat(a1), v2 = f32x4.splat(a2), v3 = f32x4.splat(a3);
        for (; k < body; k += 16) {
          v128.store(po + k, op4(kind, kind == SILU ? v0 : v128.load(pg + k), v128.load(px + k), v0, v1, v2, v3));
        }
      }
      for (; k < plane; k += 4) {
        store<f32>(po + k, op1(kind, kind == SILU ? 0 : load<f32>(pg + k), load<f32>(px + k), a0, a1, a2, a3));
      }
    }
  }
}

/**
 * Channels-last: SIMD over super-rows of L = rowPeriodOf(C) values with the parameters tiled to
 * L in `work` (4 f32 arrays), then the tail (< L values, from a period boundary) by vectors and
 * value by value; scalar build: row by row, channel by channel.
 */
// @ts-ignore: decorator
@inline function rowsAs(
  kind: i32, g: usize, x: usize, out: usize, rows: i32, C: i32, q0: usize, q1: usize, q2: usize, q3: usize, work: usize,
): void {
  if (!ASC_FEATURE_SIMD) {
    for (let r = 0; r < rows; r++) {
      const row = (<usize>r * C) << 2;
      for (let c = 0; c < C; c++) {
        const k = row + (<usize>c << 2), pc = <usize>c << 2;
        store<f32>(out + k, op1(kind, kind == SILU ? 0 : load<f32>(g + k), load<f32>(x + k),
          load<f32>(q0 + pc), load<f32>(q1 + pc), load<f32>(q2 + pc), kind == DX ? load<f32>(q3 + pc) : 0));
      }
    }
    return;
  }
  const L = rowPeriodOf(C);
  const rowBytes = <usize>L << 2;
  const t0 = work, t1 = work + rowBytes, t2 = t1 + rowBytes, t3 = t2 + rowBytes;
  tileF32(q0, C, L, t0);
  tileF32(q1, C, L, t1);
  tileF32(q2, C, L, t2);
  if (kind == DX) tileF32(q3, C, L, t3);
  const bytes = (<usize>rows * C) << 2;
  const tailAt = (bytes / rowBytes) * rowBytes;
  for (let base: usize = 0; base < tailAt; base += rowBytes) {
    for (let o: usize = 0; o < rowBytes; o += 16) {
      const k = base + o;
      v128.store(out + k, op4(kind, kind == SILU ? v128.load(t0 + o) : v128.load(g + k), v128.load(x + k),
        v128.load(t0 + o), v128.load(t1 + o), v128.load(t2 + o), kind == DX ? v128.load(t3 + o) : v128.load(t0 + o)));
    }
  }
  const tail = bytes - tailAt;
  let o: usize = 0;
  for (; o + 16 <= tail; o += 16) {
    const k = tailAt + o;
    v128.store(out + k, op4(kind, kind == SILU ? v128.load(t0 + o) : v128.load(g + k), v128.load(x + k),
      v128.load(t0 + o), v128.load(t1 + o), v128.load(t2 + o), kind == DX ? v128.load(t3 + o) : v128.load(t0 + o)));
  }
  for (; o < tail; o += 4) {
    const k = tailAt + o;
    store<f32>(out + k, op1(kind, kind == SILU ? 0 : load<f32>(g + k), load<f32>(x + k),
      load<f32>(t0 + o), load<f32>(t1 + o), load<f32>(t2 + o), kind == DX ? load<f32>(t3 + o) : 0));
  }
}

/** y = silu((x − meanHi)·scale + shift) over NCHW planes. y may be x. */
export function normalizeSiluNchwF32(
  x: usize, y: usize, outer: i32, C: i32, inner: i32, meanHi: usize, scale: usize, shift: usize,
): void {
  runsAs(SILU, 0, x, y, outer, C, inner, meanHi, scale, shift, 0);
}

/** y = silu((x − meanHi)·scale + shift) over [rows][C]. y may be x. */
export function normalizeSiluNhwcF32(
  x: usize, y: usize, rows: i32, C: i32, meanHi: usize, scale: usize, shift: usize, work: usize,
): void {
  rowsAs(SILU, 0, x, y, rows, C, meanHi, scale, shift, 0, work);
}

/** dz = dy·σ'(z), z = (x − meanHi)·scale + shift, over NCHW planes. dz may be dy or x. */
export function siluBackwardNchwF32(
  dy: usize, x: usize, dz: usize, outer: i32, C: i32, inner: i32, meanHi: usize, scale: usize, shift: usize,
): void {
  runsAs(DSILU, dy, x, dz, outer, C, inner, meanHi, scale, shift, 0);
}

/** dz = dy·σ'(z) over [rows][C]. dz may be dy or x. */
export function siluBackwardNhwcF32(
  dy: usize, x: usize, dz: usize, rows: i32, C: i32, meanHi: usize, scale: usize, shift: usize, work: usize,
): void {
  rowsAs(DSILU, dy, x, dz, rows, C, meanHi, scale, shift, 0, work);
}

/** dx = (dy·k3 − k1) − (x − mean)·k2 over NCHW planes. dx may be dy or x. */
export function groupNormDxNchwF32(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32, mean: usize, k1: usize, k2: usize, k3: usize,
): void {
  runsAs(DX, dy, x, dx, outer, C, inner, mean, k1, k2, k3);
}

/** dx = (dy·k3 − k1) − (x − mean)·k2 over [rows][C]. dx may be dy or x. */
export function groupNormDxNhwcF32(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32, mean: usize, k1: usize, k2: usize, k3: usize, work: usize,
): void {
  rowsAs(DX, dy, x, dx, rows, C, mean, k1, k2, k3, work);
}

/**
 * Moments of `outer` groups of C consecutive channels from channels-last block partials
 * f64[blocks][4][outer·C] (statsNhwcF32's layout for outer·C channels): group q merges the
 * partials (c, b) of its channels c in [q·C, (q + 1)·C), c-major then b, into f64 mean[q], m2[q].
 * Scalar in both builds (O(blocks·outer·C)), so both give the same bits.
 */
export function mergeGroupMomentsF64(partials: usize, blocks: i32, outer: i32, C: i32, mean: usize, m2: usize): void {
  const row = (<usize>outer * C) << 3, stride = row << 2;
  const parts = C * blocks;
  for (let q = 0; q < outer; q++) {
    const first = partials + ((<usize>q * C) << 3);
    const k = load<f64>(first + row);
    let n = load<f64>(first), mu = load<f64>(first + 2 * row), s = load<f64>(first + 3 * row);
    for (let i = 1; i < parts; i++) {
      const p = first + (<usize>(i / blocks) << 3) + <usize>(i % blocks) * stride;
      const nb = load<f64>(p), qb = load<f64>(p + 3 * row);
      const mb = (load<f64>(p + row) - k) + load<f64>(p + 2 * row);
      const total = n + nb, w = nb / total;
      s = mergedM2(s, qb, mu, mb, n, w);
      mu = mergedMean(mu, mb, w);
      n = total;
    }
    store<f64>(mean + (<usize>q << 3), k + mu);
    store<f64>(m2 + (<usize>q << 3), s);
  }
}
