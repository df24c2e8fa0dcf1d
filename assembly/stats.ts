// Per-channel batch statistics for training: mean and m2 = Σ (x − mean)², in float64.
//
// Contract: x is f32, read-only; mean and m2 are f64[C] outputs. n = values per channel >= 1.
//   NCHW: x is [outer][C][inner]; channel c is the `outer` contiguous planes of `inner` values.
//   NHWC: x is [rows][C]; `work` holds workspaceBytes(C) bytes of scratch (see period.ts).
// Unaligned pointers are fine (4-byte alignment is enough); no size restrictions: SIMD main
// loops, scalar tails.
//
// Shifted one-pass algorithm. With K = the channel's first value (0 if it is not finite):
//   s1 = Σ (x − K),   s2 = Σ (x − K)²,   mean = K + s1 / n,   m2 = max(s2 − s1² / n, 0)
// x − K is exact in f64 (x and K are f32) and its square rounds once, so the only
// cancellation left is s2 − s1²/n, whose relative error is about ((mean − K)/std)² · n · 2^-53.
// K is a sample of the channel, a few std from the mean, so even |mean|/std = 1e4 over 1e6+
// values stays near f64 rounding (the unshifted E[x²] − E[x]² in f32 would lose everything).
// NaN/Inf propagate per channel as IEEE arithmetic does.
import { periodOf, zeroF64, foldPeriodF64 } from './period';

// @ts-ignore: decorator
@inline function shiftOf(v: f32): f64 {
  return isFinite(v) ? <f64>v : 0.0;
}

// @ts-ignore: decorator
@inline function finish(c: i32, k: f64, s1: f64, s2: f64, n: f64, mean: usize, m2: usize): void {
  store<f64>(mean + (<usize>c << 3), k + s1 / n);
  store<f64>(m2 + (<usize>c << 3), max(s2 - (s1 * s1) / n, 0.0));
}

/** High two f32 lanes of v promoted to f64x2. */
// @ts-ignore: decorator
@inline function promoteHigh(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3));
}

export function statsNchwF32Simd(x: usize, outer: i32, C: i32, inner: i32, mean: usize, m2: usize): void {
  const plane = <usize>inner << 2;
  const stride = plane * C;
  const n = <f64>outer * <f64>inner;
  for (let c = 0; c < C; c++) {
    const first = x + plane * c;
    const k = shiftOf(load<f32>(first));
    const kk = f64x2.splat(k);
    // Four independent f64x2 chains per sum hide the add latency.
    let a0 = f64x2.splat(0), a1 = a0, a2 = a0, a3 = a0;
    let q0 = a0, q1 = a0, q2 = a0, q3 = a0;
    let t1 = 0.0, t2 = 0.0;
    for (let o = 0; o < outer; o++) {
      const p = first + stride * o;
      let i = 0;
      for (; i + 8 <= inner; i += 8) {
        const u = v128.load(p + (<usize>i << 2));
        const v = v128.load(p + (<usize>i << 2), 16);
        const d0 = f64x2.sub(f64x2.promote_low_f32x4(u), kk);
        const d1 = f64x2.sub(promoteHigh(u), kk);
        const d2 = f64x2.sub(f64x2.promote_low_f32x4(v), kk);
        const d3 = f64x2.sub(promoteHigh(v), kk);
        a0 = f64x2.add(a0, d0); q0 = f64x2.add(q0, f64x2.mul(d0, d0));
        a1 = f64x2.add(a1, d1); q1 = f64x2.add(q1, f64x2.mul(d1, d1));
        a2 = f64x2.add(a2, d2); q2 = f64x2.add(q2, f64x2.mul(d2, d2));
        a3 = f64x2.add(a3, d3); q3 = f64x2.add(q3, f64x2.mul(d3, d3));
      }
      if (i + 4 <= inner) {
        const u = v128.load(p + (<usize>i << 2));
        const d0 = f64x2.sub(f64x2.promote_low_f32x4(u), kk);
        const d1 = f64x2.sub(promoteHigh(u), kk);
        a0 = f64x2.add(a0, d0); q0 = f64x2.add(q0, f64x2.mul(d0, d0));
        a1 = f64x2.add(a1, d1); q1 = f64x2.add(q1, f64x2.mul(d1, d1));
        i += 4;
      }
      for (; i < inner; i++) {
        const d = <f64>load<f32>(p + (<usize>i << 2)) - k;
        t1 += d; t2 += d * d;
      }
    }
    const a = f64x2.add(f64x2.add(a0, a1), f64x2.add(a2, a3));
    const q = f64x2.add(f64x2.add(q0, q1), f64x2.add(q2, q3));
    const s1 = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1) + t1;
    const s2 = f64x2.extract_lane(q, 0) + f64x2.extract_lane(q, 1) + t2;
    finish(c, k, s1, s2, n, mean, m2);
  }
}

export function statsNchwF32Scalar(x: usize, outer: i32, C: i32, inner: i32, mean: usize, m2: usize): void {
  const plane = <usize>inner << 2;
  const stride = plane * C;
  const n = <f64>outer * <f64>inner;
  for (let c = 0; c < C; c++) {
    const first = x + plane * c;
    const k = shiftOf(load<f32>(first));
    let s1 = 0.0, s2 = 0.0;
    for (let o = 0; o < outer; o++) {
      const p = first + stride * o;
      for (let i = 0; i < inner; i++) {
        const d = <f64>load<f32>(p + (<usize>i << 2)) - k;
        s1 += d; s2 += d * d;
      }
    }
    finish(c, k, s1, s2, n, mean, m2);
  }
}

export function statsNhwcF32Simd(x: usize, rows: i32, C: i32, mean: usize, m2: usize, work: usize): void {
  const L = periodOf(C);
  const shift = work, acc1 = work + (<usize>L << 3), acc2 = acc1 + (<usize>L << 3);
  for (let j = 0, c = 0; j < L; j++) {
    store<f64>(shift + (<usize>j << 3), shiftOf(load<f32>(x + (<usize>c << 2))));
    if (++c == C) c = 0;
  }
  zeroF64(acc1, L);
  zeroF64(acc2, L);
  const total = <usize>rows * C;
  const vectors = total & ~3;
  let i: usize = 0, j: usize = 0;
  for (; i < vectors; i += 4) {
    const u = v128.load(x + (i << 2));
    const o = j << 3;
    const d0 = f64x2.sub(f64x2.promote_low_f32x4(u), v128.load(shift + o));
    const d1 = f64x2.sub(promoteHigh(u), v128.load(shift + o, 16));
    v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o), d0));
    v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o, 16), d1), 16);
    v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o), f64x2.mul(d0, d0)));
    v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o, 16), f64x2.mul(d1, d1)), 16);
    j += 4;
    if (j == <usize>L) j = 0;
  }
  for (; i < total; i++, j++) {
    const o = j << 3;
    const d = <f64>load<f32>(x + (i << 2)) - load<f64>(shift + o);
    store<f64>(acc1 + o, load<f64>(acc1 + o) + d);
    store<f64>(acc2 + o, load<f64>(acc2 + o) + d * d);
  }
  finishPeriod(C, L, <f64>rows, shift, acc1, acc2, mean, m2);
}

export function statsNhwcF32Scalar(x: usize, rows: i32, C: i32, mean: usize, m2: usize, work: usize): void {
  // Per-channel accumulators in work: shift[C], acc1[C], acc2[C] (f64); channel c at index c.
  const shift = work, acc1 = work + (<usize>C << 3), acc2 = acc1 + (<usize>C << 3);
  for (let c = 0; c < C; c++) store<f64>(shift + (<usize>c << 3), shiftOf(load<f32>(x + (<usize>c << 2))));
  zeroF64(acc1, C);
  zeroF64(acc2, C);
  for (let r = 0; r < rows; r++) {
    const p = x + ((<usize>r * C) << 2);
    for (let c = 0; c < C; c++) {
      const o = <usize>c << 3;
      const d = <f64>load<f32>(p + (<usize>c << 2)) - load<f64>(shift + o);
      store<f64>(acc1 + o, load<f64>(acc1 + o) + d);
      store<f64>(acc2 + o, load<f64>(acc2 + o) + d * d);
    }
  }
  finishPeriod(C, C, <f64>rows, shift, acc1, acc2, mean, m2);
}

/** Folds period accumulators into channels (shift[c] is shift[j] for every j ≡ c mod C). */
function finishPeriod(C: i32, L: i32, n: f64, shift: usize, acc1: usize, acc2: usize, mean: usize, m2: usize): void {
  // mean and m2 receive the folded s1 and s2 first, then are finished in place.
  foldPeriodF64(acc1, C, L, mean);
  foldPeriodF64(acc2, C, L, m2);
  for (let c = 0; c < C; c++) {
    const o = <usize>c << 3;
    finish(c, load<f64>(shift + o), load<f64>(mean + o), load<f64>(m2 + o), n, mean, m2);
  }
}
