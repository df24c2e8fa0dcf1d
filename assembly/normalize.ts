// Normalize-and-affine apply, for training and inference, with an optional fused ReLU:
//   y = max'((x − meanHi[c]) · scale[c] + shift[c], lower)
// folded once per channel by the caller (fold.ts) from the f64 mean, with meanHi = f32(mean),
// meanLo = f32(mean − meanHi), scale = f32(gamma · invStd) and shift = f32(beta − meanLo · scale):
// the low part of the mean moves into the shift, so a large |mean|/std costs no accuracy
// (x − meanHi is exact near the mean, Sterbenz) and the loop does three f32 operations.
// max'(r, lower) = r < lower ? lower : r (wasm's pmax): lower = 0 is ReLU (NaN stays NaN, as
// in PyTorch); lower = −Inf is the identity, and then the clamp is left out of the loop.
// Every lane does the same f32 operations in the same order as the scalar twin and the
// scalar tails, so SIMD and scalar results are bit-identical.
//
// Contract: x, y are f32 (y may equal x: in-place; no other overlap); params are f32[C].
//   NCHW: [outer][C][inner].  NHWC: [rows][C], `work` holds workspaceBytes(C) bytes.
import { rowPeriodOf, tileF32, QUAD_ROWS_MAX_BYTES } from './period';

// @ts-ignore: decorator
@inline function apply1(v: f32, mh: f32, a: f32, b: f32, lo: f32, relu: bool): f32 {
  const r = (v - mh) * a + b;
  return relu && r < lo ? lo : r;
}

// @ts-ignore: decorator
@inline function apply4(v: v128, mh: v128, a: v128, b: v128, lo: v128, relu: bool): v128 {
  const r = f32x4.add(f32x4.mul(f32x4.sub(v, mh), a), b);
  return relu ? f32x4.pmax(r, lo) : r;
}

/**
 * y = max'((x − mh)·a + b, lo) over one contiguous run of n values. A run of 4 or more whose
 * length is not a multiple of 4 ends with one vector over its last 4 values, computed before
 * the loop (so in place it reads x before anything is written) and stored after it: the values
 * it shares with the loop's last vector get the same result twice.
 */
// @ts-ignore: decorator
@inline function normalizeRunSimdAs(p: usize, q: usize, n: i32, mh: f32, a: f32, b: f32, lo: f32, relu: bool): void {
  const mh4 = f32x4.splat(mh), a4 = f32x4.splat(a), b4 = f32x4.splat(b), lo4 = f32x4.splat(lo);
  if (n < 4) {
    for (let i = 0; i < n; i++) {
      const k = <usize>i << 2;
      store<f32>(q + k, apply1(load<f32>(p + k), mh, a, b, lo, relu));
    }
    return;
  }
  const lastK = <usize>(n - 4) << 2;
  const last = apply4(v128.load(p + lastK), mh4, a4, b4, lo4, relu);
  const body = <usize>(n & ~3) << 2;
  let k: usize = 0;
  for (; k + 64 <= body; k += 64) {
    const u0 = v128.load(p + k), u1 = v128.load(p + k, 16), u2 = v128.load(p + k, 32), u3 = v128.load(p + k, 48);
    v128.store(q + k, apply4(u0, mh4, a4, b4, lo4, relu));
    v128.store(q + k, apply4(u1, mh4, a4, b4, lo4, relu), 16);
    v128.store(q + k, apply4(u2, mh4, a4, b4, lo4, relu), 32);
    v128.store(q + k, apply4(u3, mh4, a4, b4, lo4, relu), 48);
  }
  for (; k < body; k += 16) v128.store(q + k, apply4(v128.load(p + k), mh4, a4, b4, lo4, relu));
  v128.store(q + lastK, last);
}

/** normalizeRunSimdAs with the clamp only when lower is not −Inf. */
// @ts-ignore: decorator
@inline export function normalizeRunSimd(p: usize, q: usize, n: i32, mh: f32, a: f32, b: f32, lo: f32): void {
  if (lo == -Infinity) normalizeRunSimdAs(p, q, n, mh, a, b, lo, false);
  else normalizeRunSimdAs(p, q, n, mh, a, b, lo, true);
}

// @ts-ignore: decorator
@inline export function normalizeRunScalar(p: usize, q: usize, n: i32, mh: f32, a: f32, b: f32, lo: f32): void {
  for (let i = 0; i < n; i++) {
    const k = <usize>i << 2;
    store<f32>(q + k, apply1(load<f32>(p + k), mh, a, b, lo, true));
  }
}

export function normalizeNchwF32Simd(
  x: usize, y: usize, outer: i32, C: i32, inner: i32,
  meanHi: usize, scale: usize, shift: usize, lower: f32,
): void {
  const plane = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      normalizeRunSimd(x + off, y + off, inner, load<f32>(meanHi + pc), load<f32>(scale + pc), load<f32>(shift + pc), lower);
    }
  }
}

export function normalizeNchwF32Scalar(
  x: usize, y: usize, outer: i32, C: i32, inner: i32,
  meanHi: usize, scale: usize, shift: usize, lower: f32,
): void {
  const plane = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      normalizeRunScalar(x + off, y + off, inner, load<f32>(meanHi + pc), load<f32>(scale + pc), load<f32>(shift + pc), lower);
    }
  }
}

export function normalizeNhwcF32Simd(
  x: usize, y: usize, rows: i32, C: i32,
  meanHi: usize, scale: usize, shift: usize, work: usize, lower: f32,
): void {
  const L = rowPeriodOf(C);
  const bytes = <usize>L << 2;
  const mhP = work, aP = work + bytes, bP = aP + bytes;
  tileF32(meanHi, C, L, mhP);
  tileF32(scale, C, L, aP);
  tileF32(shift, C, L, bP);
  if (lower == -Infinity) normalizeRowsAs(x, y, <usize>rows * C, L, mhP, aP, bP, lower, false);
  else normalizeRowsAs(x, y, <usize>rows * C, L, mhP, aP, bP, lower, true);
}

/**
 * The flat tensor of `total` values as super-rows of L values (a multiple of the period) with
 * the parameters tiled to L, then the tail (< L values, from a period boundary) by vectors and
 * value by value. A tensor in cache goes four super-rows at a time: each vector of tiled
 * parameters is loaded once for the four rows (three parameter loads per four data vectors
 * instead of per one; in cache the loads, not the arithmetic, bound this loop); a larger one
 * row after row (QUAD_ROWS_MAX_BYTES, period.ts), four vectors per step at constant offsets
 * from one address per stream (the per-vector address additions measured 1.01-1.17x of the
 * time, 3 MB to 51 MB NHWC inference). The tiled parameters stay in L1.
 */
// @ts-ignore: decorator
@inline function normalizeRowsAs(
  x: usize, y: usize, total: usize, L: i32, mhP: usize, aP: usize, bP: usize, lower: f32, relu: bool,
): void {
  const lo4 = f32x4.splat(lower);
  const rowBytes = <usize>L << 2;
  const end = (total / <usize>L) * rowBytes;
  const quads: usize = (total << 2) <= QUAD_ROWS_MAX_BYTES ? end / (4 * rowBytes) * (4 * rowBytes) : 0;
  let k: usize = 0;
  for (; k < quads; k += 4 * rowBytes) {
    const p = x + k, q = y + k;
    for (let o: usize = 0; o < rowBytes; o += 16) {
      const m = v128.load(mhP + o), a = v128.load(aP + o), b = v128.load(bP + o);
      const u = p + o, v = q + o;
      const u1 = u + rowBytes, u2 = u1 + rowBytes, u3 = u2 + rowBytes;
      const r0 = apply4(v128.load(u), m, a, b, lo4, relu), r1 = apply4(v128.load(u1), m, a, b, lo4, relu);
      const r2 = apply4(v128.load(u2), m, a, b, lo4, relu), r3 = apply4(v128.load(u3), m, a, b, lo4, relu);
      const v1 = v + rowBytes, v2 = v1 + rowBytes, v3 = v2 + rowBytes;
      v128.store(v, r0); v128.store(v1, r1); v128.store(v2, r2); v128.store(v3, r3);
    }
  }
  const body = rowBytes & ~(<usize>63);
  for (; k < end; k += rowBytes) {
    const p = x + k, q = y + k;
    let o: usize = 0;
    for (; o < body; o += 64) {
      const u = p + o, v = q + o, m = mhP + o, a = aP + o, b = bP + o;
      v128.store(v, apply4(v128.load(u), v128.load(m), v128.load(a), v128.load(b), lo4, relu));
      v128.store(v, apply4(v128.load(u, 16), v128.load(m, 16), v128.load(a, 16), v128.load(b, 16), lo4, relu), 16);
      v128.store(v, apply4(v128.load(u, 32), v128.load(m, 32), v128.load(a, 32), v128.load(b, 32), lo4, relu), 32);
      v128.store(v, apply4(v128.load(u, 48), v128.load(m, 48), v128.load(a, 48), v128.load(b, 48), lo4, relu), 48);
    }
    for (; o < rowBytes; o += 16) {
      v128.store(q + o, apply4(v128.load(p + o), v128.load(mhP + o), v128.load(aP + o), v128.load(bP + o), lo4, relu));
    }
  }
  const tail = (total << 2) - end;
  const p = x + end, q = y + end;
  let o: usize = 0;
  for (; o + 16 <= tail; o += 16) {
    v128.store(q + o, apply4(v128.load(p + o), v128.load(mhP + o), v128.load(aP + o), v128.load(bP + o), lo4, relu));
  }
  for (; o < tail; o += 4) {
    store<f32>(q + o, apply1(load<f32>(p + o), load<f32>(mhP + o), load<f32>(aP + o), load<f32>(bP + o), lower, relu));
  }
}

/** The scalar twin, row by row; `work` is not used (one argument list for both twins). */
export function normalizeNhwcF32Scalar(
  x: usize, y: usize, rows: i32, C: i32,
  meanHi: usize, scale: usize, shift: usize, work: usize, lower: f32,
): void {
  for (let r = 0; r < rows; r++) {
    const row = (<usize>r * C) << 2;
    for (let c = 0; c < C; c++) {
      const k = row + (<usize>c << 2), pc = <usize>c << 2;
      store<f32>(y + k, apply1(load<f32>(x + k), load<f32>(meanHi + pc), load<f32>(scale + pc), load<f32>(shift + pc), lower, true));
    }
  }
}
