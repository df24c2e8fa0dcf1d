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
// cancellation left is s2 − s1²/n, whose relative error is about ((mean − K)/std)² · n · 2^-53:
// K is a sample of the channel, a few std from the mean, so even |mean|/std = 1e4 over 1e6+
// values stays near f64 rounding (the unshifted E[x²] − E[x]² in f32 would lose everything).
// NaN/Inf propagate per channel as IEEE arithmetic does.
import { periodOf, BLOCK_BYTES, tileF64InPlace, zeroF64, foldPeriodF64 } from './period';

/** Results of the inline channel sums below (AssemblyScript has no tuples). */
export let sumShifted: f64 = 0;
export let sumShiftedSq: f64 = 0;

// @ts-ignore: decorator
@inline export function shiftOf(v: f32): f64 {
  return isFinite(v) ? <f64>v : 0.0;
}

/** mean = K + s1/n, m2 = max(s2 − s1²/n, 0) from sumShifted, sumShiftedSq. */
// @ts-ignore: decorator
@inline export function finishMean(k: f64, n: f64): f64 {
  return k + sumShifted / n;
}
// @ts-ignore: decorator
@inline export function finishM2(n: f64): f64 {
  return max(sumShiftedSq - (sumShifted * sumShifted) / n, 0.0);
}

/** finishMean and finishM2 for two channels, in place (mean, m2 hold s1, s2 at offset o). */
// @ts-ignore: decorator
@inline function finishPair(k: v128, nn: v128, mean: usize, m2: usize, o: usize): void {
  const s1 = v128.load(mean + o), s2 = v128.load(m2 + o);
  v128.store(mean + o, f64x2.add(k, f64x2.div(s1, nn)));
  v128.store(m2 + o, f64x2.max(f64x2.sub(s2, f64x2.div(f64x2.mul(s1, s1), nn)), f64x2.splat(0)));
}

/** The two f32 values at p (8 bytes) promoted to f64x2: a load and a convert, no shuffle. */
// @ts-ignore: decorator
@inline export function loadF32x2AsF64(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

/** s1, s2 of one NCHW channel: `outer` planes of `inner` values, `stride` bytes apart. */
// @ts-ignore: decorator
@inline export function sumShiftedPlanesSimd(first: usize, outer: i32, stride: usize, inner: i32, k: f64): void {
  const kk = f64x2.splat(k);
  // Four independent f64x2 chains per sum hide the add latency.
  let a0 = f64x2.splat(0), a1 = a0, a2 = a0, a3 = a0;
  let q0 = a0, q1 = a0, q2 = a0, q3 = a0;
  let t1 = 0.0, t2 = 0.0;
  for (let o = 0; o < outer; o++) {
    const p = first + stride * o;
    let i = 0;
    for (; i + 8 <= inner; i += 8) {
      const q = p + (<usize>i << 2); // immediate offsets below: no address arithmetic per load
      const d0 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(q)), kk);
      const d1 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(q, 8)), kk);
      const d2 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(q, 16)), kk);
      const d3 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(q, 24)), kk);
      a0 = f64x2.add(a0, d0); q0 = f64x2.add(q0, f64x2.mul(d0, d0));
      a1 = f64x2.add(a1, d1); q1 = f64x2.add(q1, f64x2.mul(d1, d1));
      a2 = f64x2.add(a2, d2); q2 = f64x2.add(q2, f64x2.mul(d2, d2));
      a3 = f64x2.add(a3, d3); q3 = f64x2.add(q3, f64x2.mul(d3, d3));
    }
    if (i + 4 <= inner) {
      const q = p + (<usize>i << 2);
      const d0 = f64x2.sub(loadF32x2AsF64(q), kk);
      const d1 = f64x2.sub(loadF32x2AsF64(q + 8), kk);
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
  sumShifted = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1) + t1;
  sumShiftedSq = f64x2.extract_lane(q, 0) + f64x2.extract_lane(q, 1) + t2;
}

// @ts-ignore: decorator
@inline export function sumShiftedPlanesScalar(first: usize, outer: i32, stride: usize, inner: i32, k: f64): void {
  let s1 = 0.0, s2 = 0.0;
  for (let o = 0; o < outer; o++) {
    const p = first + stride * o;
    for (let i = 0; i < inner; i++) {
      const d = <f64>load<f32>(p + (<usize>i << 2)) - k;
      s1 += d; s2 += d * d;
    }
  }
  sumShifted = s1;
  sumShiftedSq = s2;
}

/**
 * NCHW statistics in memory order: plane by plane ((n, c) order), each plane's shifted sums
 * added to its channel's f64 accumulators (mean and m2 hold s1 and s2 until finished). This
 * streams x once front to back whatever the plane size; the channel-major order of fused.ts
 * would jump C·inner·4 bytes between a channel's planes. One source for both builds: the SIMD
 * build sums each plane with f32x4 loads, the scalar build with its scalar twin.
 */
export function statsNchwF32(x: usize, outer: i32, C: i32, inner: i32, mean: usize, m2: usize): void {
  const plane = <usize>inner << 2;
  const n = <f64>outer * <f64>inner;
  zeroF64(mean, C);
  zeroF64(m2, C);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const oc = <usize>c << 3;
      const k = shiftOf(load<f32>(x + plane * c));
      const p = x + plane * (<usize>o * C + c);
      if (ASC_FEATURE_SIMD) sumShiftedPlanesSimd(p, 1, 0, inner, k);
      else sumShiftedPlanesScalar(p, 1, 0, inner, k);
      store<f64>(mean + oc, load<f64>(mean + oc) + sumShifted);
      store<f64>(m2 + oc, load<f64>(m2 + oc) + sumShiftedSq);
    }
  }
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    const nn = f64x2.splat(n);
    for (; c + 2 <= C; c += 2) {
      const k = f64x2.replace_lane(f64x2.splat(shiftOf(load<f32>(x + plane * c))), 1, shiftOf(load<f32>(x + plane * (c + 1))));
      finishPair(k, nn, mean, m2, <usize>c << 3);
    }
  }
  for (; c < C; c++) {
    const oc = <usize>c << 3;
    sumShifted = load<f64>(mean + oc);
    sumShiftedSq = load<f64>(m2 + oc);
    store<f64>(mean + oc, finishMean(shiftOf(load<f32>(x + plane * c)), n));
    store<f64>(m2 + oc, finishM2(n));
  }
}

/**
 * NHWC: the flat tensor is `total / L` super-rows of one period each (period.ts) plus a short
 * tail. Super-rows are taken in blocks that stay in cache (BLOCK_BYTES); within a block, each
 * vector of 4 period positions is summed down the block's rows in f64x2 registers, then added
 * to the period accumulators once. The tail (< one period) goes element by element into the
 * same accumulators; the period is then folded into channels.
 */
export function statsNhwcF32Simd(x: usize, rows: i32, C: i32, mean: usize, m2: usize, work: usize): void {
  const L = periodOf(C);
  const rowBytes = <usize>L << 2;
  const shift = work, acc1 = work + (<usize>L << 3), acc2 = acc1 + (<usize>L << 3);
  for (let c = 0; c < C; c++) store<f64>(shift + (<usize>c << 3), shiftOf(load<f32>(x + (<usize>c << 2))));
  tileF64InPlace(shift, C, L);
  zeroF64(acc1, L);
  zeroF64(acc2, L);
  const total = <usize>rows * C;
  const superRows = total / <usize>L;
  const blockRows = max<usize>(1, BLOCK_BYTES / rowBytes);
  for (let r0: usize = 0; r0 < superRows; r0 += blockRows) {
    const r1 = min(superRows, r0 + blockRows);
    // Per vector of 4 period positions: the block's rows summed in f64x2 registers, two rows per
    // step into separate chains (even/odd rows) to hide the add latency.
    for (let j: usize = 0; j < <usize>L; j += 4) {
      const o = j << 3;
      const k0 = v128.load(shift + o), k1 = v128.load(shift + o, 16);
      let a0 = f64x2.splat(0), a1 = a0, b0 = a0, b1 = a0;
      let q0 = a0, q1 = a0, r0s = a0, r1s = a0;
      let p = x + r0 * rowBytes + (j << 2);
      let r = r0;
      for (; r + 2 <= r1; r += 2, p += rowBytes << 1) {
        const p2 = p + rowBytes; // immediate offsets below: no address arithmetic per load
        const d0 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p)), k0);
        const d1 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p, 8)), k1);
        const e0 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p2)), k0);
        const e1 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p2, 8)), k1);
        a0 = f64x2.add(a0, d0); q0 = f64x2.add(q0, f64x2.mul(d0, d0));
        a1 = f64x2.add(a1, d1); q1 = f64x2.add(q1, f64x2.mul(d1, d1));
        b0 = f64x2.add(b0, e0); r0s = f64x2.add(r0s, f64x2.mul(e0, e0));
        b1 = f64x2.add(b1, e1); r1s = f64x2.add(r1s, f64x2.mul(e1, e1));
      }
      if (r < r1) {
        const d0 = f64x2.sub(loadF32x2AsF64(p), k0), d1 = f64x2.sub(loadF32x2AsF64(p + 8), k1);
        a0 = f64x2.add(a0, d0); q0 = f64x2.add(q0, f64x2.mul(d0, d0));
        a1 = f64x2.add(a1, d1); q1 = f64x2.add(q1, f64x2.mul(d1, d1));
      }
      v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o), f64x2.add(a0, b0)));
      v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o, 16), f64x2.add(a1, b1)), 16);
      v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o), f64x2.add(q0, r0s)));
      v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o, 16), f64x2.add(q1, r1s)), 16);
    }
  }
  for (let i = superRows * <usize>L, j: usize = 0; i < total; i++, j++) {
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
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    const nn = f64x2.splat(n);
    for (; c + 2 <= C; c += 2) finishPair(v128.load(shift + (<usize>c << 3)), nn, mean, m2, <usize>c << 3);
  }
  for (; c < C; c++) {
    const o = <usize>c << 3;
    sumShifted = load<f64>(mean + o);
    sumShiftedSq = load<f64>(m2 + o);
    store<f64>(mean + o, finishMean(load<f64>(shift + o), n));
    store<f64>(m2 + o, finishM2(n));
  }
}
