// Normalize-and-affine apply, for training and inference, with an optional fused ReLU:
//   y = max'(((x − meanHi[c]) − meanLo[c]) · scale[c] + shift[c], lower)
// with scale = gamma · invStd and shift = beta folded once per channel by the caller, and the
// mean carried as an f32 pair (meanHi + meanLo = the f64 mean to ~2^-48 relative), so a large
// |mean|/std costs no accuracy: x − meanHi is exact near the mean (Sterbenz).
// max'(r, lower) = r < lower ? lower : r (wasm's pmax): lower = 0 is ReLU (NaN stays NaN, as
// in PyTorch), lower = −Inf is the identity.
// Every lane does the same f32 operations in the same order as the scalar twin and the
// scalar tails, so SIMD and scalar results are bit-identical.
//
// Contract: x, y are f32 (y may equal x: in-place; no other overlap); params are f32[C].
//   NCHW: [outer][C][inner].  NHWC: [rows][C], `work` holds workspaceBytes(C) bytes.
import { periodOf, tileF32 } from './period';

// @ts-ignore: decorator
@inline function apply1(v: f32, mh: f32, ml: f32, a: f32, b: f32, lo: f32): f32 {
  const r = ((v - mh) - ml) * a + b;
  return r < lo ? lo : r;
}

// @ts-ignore: decorator
@inline function apply4(v: v128, mh: v128, ml: v128, a: v128, b: v128, lo: v128): v128 {
  return f32x4.pmax(f32x4.add(f32x4.mul(f32x4.sub(f32x4.sub(v, mh), ml), a), b), lo);
}

/** y = max'(((x − mh) − ml)·a + b, lo) over one contiguous run of n values. */
// @ts-ignore: decorator
@inline export function normalizeRunSimd(p: usize, q: usize, n: i32, mh: f32, ml: f32, a: f32, b: f32, lo: f32): void {
  const mh4 = f32x4.splat(mh), ml4 = f32x4.splat(ml), a4 = f32x4.splat(a), b4 = f32x4.splat(b), lo4 = f32x4.splat(lo);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const k = <usize>i << 2;
    const u = v128.load(p + k), v = v128.load(p + k, 16);
    v128.store(q + k, apply4(u, mh4, ml4, a4, b4, lo4));
    v128.store(q + k, apply4(v, mh4, ml4, a4, b4, lo4), 16);
  }
  if (i + 4 <= n) {
    const k = <usize>i << 2;
    v128.store(q + k, apply4(v128.load(p + k), mh4, ml4, a4, b4, lo4));
    i += 4;
  }
  for (; i < n; i++) {
    const k = <usize>i << 2;
    store<f32>(q + k, apply1(load<f32>(p + k), mh, ml, a, b, lo));
  }
}

// @ts-ignore: decorator
@inline export function normalizeRunScalar(p: usize, q: usize, n: i32, mh: f32, ml: f32, a: f32, b: f32, lo: f32): void {
  for (let i = 0; i < n; i++) {
    const k = <usize>i << 2;
    store<f32>(q + k, apply1(load<f32>(p + k), mh, ml, a, b, lo));
  }
}

export function normalizeNchwF32Simd(
  x: usize, y: usize, outer: i32, C: i32, inner: i32,
  meanHi: usize, meanLo: usize, scale: usize, shift: usize, lower: f32,
): void {
  const plane = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      normalizeRunSimd(x + off, y + off, inner,
        load<f32>(meanHi + pc), load<f32>(meanLo + pc), load<f32>(scale + pc), load<f32>(shift + pc), lower);
    }
  }
}

export function normalizeNchwF32Scalar(
  x: usize, y: usize, outer: i32, C: i32, inner: i32,
  meanHi: usize, meanLo: usize, scale: usize, shift: usize, lower: f32,
): void {
  const plane = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      normalizeRunScalar(x + off, y + off, inner,
        load<f32>(meanHi + pc), load<f32>(meanLo + pc), load<f32>(scale + pc), load<f32>(shift + pc), lower);
    }
  }
}

export function normalizeNhwcF32Simd(
  x: usize, y: usize, rows: i32, C: i32,
  meanHi: usize, meanLo: usize, scale: usize, shift: usize, work: usize, lower: f32,
): void {
  const L = periodOf(C);
  const bytes = <usize>L << 2;
  const mhP = work, mlP = work + bytes, aP = mlP + bytes, bP = aP + bytes;
  tileF32(meanHi, C, L, mhP);
  tileF32(meanLo, C, L, mlP);
  tileF32(scale, C, L, aP);
  tileF32(shift, C, L, bP);
  const lo4 = f32x4.splat(lower);
  // Super-rows of one period, four at a time: each group of parameter vectors is loaded once
  // for four rows. Then single super-rows, then the tail (< one period) value by value.
  const total = <usize>rows * C;
  const rowBytes = <usize>L << 2;
  const superRows = total / <usize>L;
  let r: usize = 0;
  for (; r + 4 <= superRows; r += 4) {
    const p = x + r * rowBytes, q = y + r * rowBytes;
    for (let o: usize = 0; o < rowBytes; o += 16) {
      const mh = v128.load(mhP + o), ml = v128.load(mlP + o), a = v128.load(aP + o), b = v128.load(bP + o);
      v128.store(q + o, apply4(v128.load(p + o), mh, ml, a, b, lo4));
      v128.store(q + rowBytes + o, apply4(v128.load(p + rowBytes + o), mh, ml, a, b, lo4));
      v128.store(q + 2 * rowBytes + o, apply4(v128.load(p + 2 * rowBytes + o), mh, ml, a, b, lo4));
      v128.store(q + 3 * rowBytes + o, apply4(v128.load(p + 3 * rowBytes + o), mh, ml, a, b, lo4));
    }
  }
  for (; r < superRows; r++) {
    const p = x + r * rowBytes, q = y + r * rowBytes;
    for (let o: usize = 0; o < rowBytes; o += 16) {
      v128.store(q + o, apply4(v128.load(p + o), v128.load(mhP + o), v128.load(mlP + o), v128.load(aP + o), v128.load(bP + o), lo4));
    }
  }
  for (let i = superRows * <usize>L, o: usize = 0; i < total; i++, o += 4) {
    const k = i << 2;
    store<f32>(y + k, apply1(load<f32>(x + k), load<f32>(mhP + o), load<f32>(mlP + o), load<f32>(aP + o), load<f32>(bP + o), lower));
  }
}

export function normalizeNhwcF32Scalar(
  x: usize, y: usize, rows: i32, C: i32,
  meanHi: usize, meanLo: usize, scale: usize, shift: usize, lower: f32,
): void {
  for (let r = 0; r < rows; r++) {
    const row = (<usize>r * C) << 2;
    for (let c = 0; c < C; c++) {
      const k = row + (<usize>c << 2), pc = <usize>c << 2;
      store<f32>(y + k, apply1(load<f32>(x + k), load<f32>(meanHi + pc), load<f32>(meanLo + pc), load<f32>(scale + pc), load<f32>(shift + pc), lower));
    }
  }
}
