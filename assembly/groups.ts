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
// exp(t) for t <= 0, scaled by 2^K (K = 40): 0 below T_MIN = −112 (there |z|·e^z < 2^-150 rounds
// to 0 anyway; t is clamped there first, so the exponent arithmetic stays in range),
// n = nearest(t·log2 e) (see EXP_MAGIC), r = (t − n·C1) − n·C2 (Cody–Waite: C1 = 355/512 has 9
// bits, so n·C1 and t − n·C1 are exact; C2 = ln 2 − C1), exp(r) = (1 + r) + r²·P(r) with P of
// degree 5 (the Cephes expf minimax coefficients) evaluated by Estrin's scheme (a dependency chain
// half as long as Horner's), then eK = exp(r)·2^(n+K), exact and normal for every n >= −162, and
// e = eK·2^−K, which rounds once, also into the subnormals. For z < 0 the SiLU forward takes
// y = ((z·u)·eK)·2^−K: where e is subnormal but y is not (z in (−104, −87)), y keeps its precision.
// Measured (test/groupnorm.test.ts, every 97th float32 of [−110, 110], both builds): y within 3.14
// ulp of the exact z·σ(z) (bound tested: 4 ulp).
// NaN propagates (through z itself: a NaN t gives e = 0); z = +Inf gives +Inf, −Inf gives NaN
// (−Inf·0, as PyTorch's x·sigmoid(x)).
//
// Every SIMD lane does the same f32 operations in the same order as the scalar twin and the
// scalar tails (no FMA), so both builds give bit-identical results. The SIMD loops take 8 vectors
// per step (the exp's dependency chain is long: 8 independent ones keep the core busy) and load
// the constants from EXP_TABLE (V8 rebuilds a v128.const at every use): 1.75× the throughput of
// one vector per step with inline constants (AMD EPYC, Node 24; 4 vectors per step: 1.5×).
// Outputs may equal an input (in place: each value is read before it is written).
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
// n = nearest(t·log2 e) by the 1.5·2^23 trick: big = t·log2 e + 1.5·2^23 rounds to an integer
// (to nearest even, |t·log2 e| < 2^22), n = big − 1.5·2^23 exactly, and n as an i32 is
// bits(big) − bits(1.5·2^23) (wasm's nearest and trunc_sat cost far more in V8); the bits of
// 2^(n+K) are (n + K + 127) << 23 = (bits(big) + EXP_BIAS) << 23.
const EXP_MAGIC: f32 = 12582912;
const EXP_K = 40;
const EXP_BIAS: i32 = EXP_K + 127 - 0x4B400000;
const EXP_DOWN: f32 = 9.094947017729282e-13; // 2^−K
// Each constant splatted to 16 bytes, at offset 16·i: loaded where used, never rebuilt.
const EXP_TABLE = memory.data<f32>([
  T_MIN, T_MIN, T_MIN, T_MIN, LOG2E, LOG2E, LOG2E, LOG2E, EXP_MAGIC, EXP_MAGIC, EXP_MAGIC, EXP_MAGIC,
  C1, C1, C1, C1, C2, C2, C2, C2, P0, P0, P0, P0, P1, P1, P1, P1, P2, P2, P2, P2, P3, P3, P3, P3,
  P4, P4, P4, P4, P5, P5, P5, P5, 1, 1, 1, 1, -0.0, -0.0, -0.0, -0.0, EXP_DOWN, EXP_DOWN, EXP_DOWN, EXP_DOWN,
], 16);
const AT_TMIN = 0, AT_LOG2E = 16, AT_MAGIC = 32, AT_C1 = 48, AT_C2 = 64, AT_P0 = 80, AT_P1 = 96, AT_P2 = 112;
const AT_P3 = 128, AT_P4 = 144, AT_P5 = 160, AT_ONE = 176, AT_SIGN = 192, AT_DOWN = 208;

// @ts-ignore: decorator
@inline function table(at: usize): v128 {
  return v128.load(EXP_TABLE + at);
}

/** eK = exp(t)·2^K for t <= 0 (0 below T_MIN or for a NaN t), one lane. */
// @ts-ignore: decorator
@inline function expScaled1(t: f32): f32 {
  const s = t < T_MIN ? T_MIN : t, big = s * LOG2E + EXP_MAGIC, n = big - EXP_MAGIC;
  const r = (s - n * C1) - n * C2, r2 = r * r;
  const a = P4 * r + P5, b = P2 * r + P3, c = P0 * r + P1;
  const p = (r + <f32>1) + r2 * (a + r2 * (b + r2 * c));
  const eK = p * reinterpret<f32>((reinterpret<i32>(big) + EXP_BIAS) << 23);
  return t >= T_MIN ? eK : 0;
}

/** Four lanes of expScaled1. */
// @ts-ignore: decorator
@inline function expScaled4(t: v128): v128 {
  const tmin = table(AT_TMIN);
  const s = f32x4.pmax(t, tmin), big = f32x4.add(f32x4.mul(s, table(AT_LOG2E)), table(AT_MAGIC));
  const n = f32x4.sub(big, table(AT_MAGIC));
  const r = f32x4.sub(f32x4.sub(s, f32x4.mul(n, table(AT_C1))), f32x4.mul(n, table(AT_C2))), r2 = f32x4.mul(r, r);
  const a = f32x4.add(f32x4.mul(table(AT_P4), r), table(AT_P5));
  const b = f32x4.add(f32x4.mul(table(AT_P2), r), table(AT_P3));
  const c = f32x4.add(f32x4.mul(table(AT_P0), r), table(AT_P1));
  const p = f32x4.add(f32x4.add(r, table(AT_ONE)), f32x4.mul(r2, f32x4.add(a, f32x4.mul(r2, f32x4.add(b, f32x4.mul(r2, c))))));
  const eK = f32x4.mul(p, i32x4.shl(i32x4.add(big, i32x4.splat(EXP_BIAS)), 23));
  return v128.and(eK, f32x4.ge(t, tmin));
}

// The three elementwise operations, one lane and four lanes: g is dy (unused by SILU), v is x,
// p0..p3 the parameters (meanHi, scale, shift for SILU and DSILU; mean, k1, k2, k3 for DX).
const SILU = 0, DSILU = 1, DX = 2;

// @ts-ignore: decorator
@inline function op1(kind: i32, g: f32, v: f32, p0: f32, p1: f32, p2: f32, p3: f32): f32 {
  if (kind == DX) return (g * p3 - p1) - (v - p0) * p2;
  const z = (v - p0) * p1 + p2, eK = expScaled1(-abs<f32>(z)), e = eK * EXP_DOWN;
  const u = <f32>1 / (<f32>1 + e), pos = z >= 0;
  if (kind == SILU) return pos ? z * u : ((z * u) * eK) * EXP_DOWN;
  const w = e * u, s = pos ? u : w;
  return g * (s * (<f32>1 + z * (pos ? w : u)));
}

// @ts-ignore: decorator
@inline function op4(kind: i32, g: v128, v: v128, p0: v128, p1: v128, p2: v128, p3: v128): v128 {
  if (kind == DX) return f32x4.sub(f32x4.sub(f32x4.mul(g, p3), p1), f32x4.mul(f32x4.sub(v, p0), p2));
  const z = f32x4.add(f32x4.mul(f32x4.sub(v, p0), p1), p2);
  const eK = expScaled4(v128.or(z, table(AT_SIGN))), down = table(AT_DOWN), one = table(AT_ONE); // −|z|: the sign bit set
  const e = f32x4.mul(eK, down);
  const u = f32x4.div(one, f32x4.add(one, e)), pos = f32x4.ge(z, f32x4.splat(0));
  const zu = f32x4.mul(z, u);
  if (kind == SILU) return v128.bitselect(zu, f32x4.mul(f32x4.mul(zu, eK), down), pos);
  const w = f32x4.mul(e, u), s = v128.bitselect(u, w, pos);
  return f32x4.mul(g, f32x4.mul(s, f32x4.add(one, f32x4.mul(z, v128.bitselect(w, u, pos)))));
}

/** Stores the 8 vectors of one SIMD step at p. */
// @ts-ignore: decorator
@inline function store8(p: usize, y0: v128, y1: v128, y2: v128, y3: v128, y4: v128, y5: v128, y6: v128, y7: v128): void {
  v128.store(p, y0); v128.store(p, y1, 16); v128.store(p, y2, 32); v128.store(p, y3, 48);
  v128.store(p, y4, 64); v128.store(p, y5, 80); v128.store(p, y6, 96); v128.store(p, y7, 112);
}

/** op4 on the vector at byte offset k of a plane of g and x, with the plane's splatted parameters. */
// @ts-ignore: decorator
@inline function planeOp4(kind: i32, pg: usize, px: usize, k: usize, v0: v128, v1: v128, v2: v128, v3: v128): v128 {
  return op4(kind, kind == SILU ? v0 : v128.load(pg + k), v128.load(px + k), v0, v1, v2, v3);
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
        for (; k + 128 <= body; k += 128) {
          const y0 = planeOp4(kind, pg, px, k, v0, v1, v2, v3), y1 = planeOp4(kind, pg, px, k + 16, v0, v1, v2, v3);
          const y2 = planeOp4(kind, pg, px, k + 32, v0, v1, v2, v3), y3 = planeOp4(kind, pg, px, k + 48, v0, v1, v2, v3);
          const y4 = planeOp4(kind, pg, px, k + 64, v0, v1, v2, v3), y5 = planeOp4(kind, pg, px, k + 80, v0, v1, v2, v3);
          const y6 = planeOp4(kind, pg, px, k + 96, v0, v1, v2, v3), y7 = planeOp4(kind, pg, px, k + 112, v0, v1, v2, v3);
          store8(po + k, y0, y1, y2, y3, y4, y5, y6, y7);
        }
        for (; k < body; k += 16) v128.store(po + k, planeOp4(kind, pg, px, k, v0, v1, v2, v3));
      }
      for (; k < plane; k += 4) {
        store<f32>(po + k, op1(kind, kind == SILU ? 0 : load<f32>(pg + k), load<f32>(px + k), a0, a1, a2, a3));
      }
    }
  }
}

/** op4 on the vector at byte offset base + o of g and x, with the tiled parameters at offset o. */
// @ts-ignore: decorator
@inline function rowOp4(kind: i32, g: usize, x: usize, base: usize, o: usize, t0: usize, t1: usize, t2: usize, t3: usize): v128 {
  const k = base + o;
  return op4(kind, kind == SILU ? v128.load(t0 + o) : v128.load(g + k), v128.load(x + k),
    v128.load(t0 + o), v128.load(t1 + o), v128.load(t2 + o), kind == DX ? v128.load(t3 + o) : v128.load(t0 + o));
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
    let o: usize = 0;
    for (; o + 128 <= rowBytes; o += 128) {
      const y0 = rowOp4(kind, g, x, base, o, t0, t1, t2, t3), y1 = rowOp4(kind, g, x, base, o + 16, t0, t1, t2, t3);
      const y2 = rowOp4(kind, g, x, base, o + 32, t0, t1, t2, t3), y3 = rowOp4(kind, g, x, base, o + 48, t0, t1, t2, t3);
      const y4 = rowOp4(kind, g, x, base, o + 64, t0, t1, t2, t3), y5 = rowOp4(kind, g, x, base, o + 80, t0, t1, t2, t3);
      const y6 = rowOp4(kind, g, x, base, o + 96, t0, t1, t2, t3), y7 = rowOp4(kind, g, x, base, o + 112, t0, t1, t2, t3);
      store8(out + base + o, y0, y1, y2, y3, y4, y5, y6, y7);
    }
    for (; o < rowBytes; o += 16) v128.store(out + base + o, rowOp4(kind, g, x, base, o, t0, t1, t2, t3));
  }
  const tail = bytes - tailAt;
  let o: usize = 0;
  for (; o + 16 <= tail; o += 16) v128.store(out + tailAt + o, rowOp4(kind, g, x, tailAt, o, t0, t1, t2, t3));
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
