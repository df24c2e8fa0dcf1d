// Channel-at-a-time NCHW training kernels: each channel's statistics and then its apply, while
// the channel's values are still in cache. A channel is `outer` planes of `inner` contiguous
// values, `C·inner` values apart. Against the separate passes (statistics over the whole
// tensor, then the apply over the whole tensor) this reads x from memory once instead of
// twice whenever one channel's slice (outer·inner·4 bytes) fits in L2; when it does not, it
// costs the same as the separate passes. The per-channel folding is fold.ts's; the arithmetic
// per value is exactly that of stats.ts, normalize.ts and backward.ts, whose run loops these
// kernels reuse.
//
// One source for both builds: the SIMD build composes the f32x4 run loops, the scalar build
// their scalar twins (ASC_FEATURE_SIMD is a compile-time constant).
//
// Contract: f32 tensors [outer][C][inner]; y may equal x, dx may equal dy or x (in place).
// gamma, beta, mean, invStd are f32[C]; the f64[C] outputs are written for every channel.
import { shiftOf as referenceOf, finishMean, finishM2, sumShiftedPlanesSimd, sumShiftedPlanesScalar } from './stats';
import { normalizeRunSimd, normalizeRunScalar } from './normalize';
import { invStdOf, shiftOf } from './fold';
import { reducePlanesSimd, reducePlanesScalar, dxRunSimd, dxRunScalar, sumDyRun, sumDyXmuRun } from './backward';

/**
 * Training forward: mean, m2 (f64) and invStd = 1/sqrt(m2/n + eps) per channel, then
 * y = max'((x − meanHi)·scale + shift, lower) with meanHi, scale, shift folded as in fold.ts
 * (normalize.ts: lower = 0 fuses ReLU, −Inf is the identity).
 */
export function forwardTrainNchwF32(
  x: usize, y: usize, outer: i32, C: i32, inner: i32, gamma: usize, beta: usize, eps: f64,
  mean: usize, m2: usize, invStd: usize, lower: f32,
): void {
  const plane = <usize>inner << 2;
  const stride = plane * C;
  const n = <f64>outer * <f64>inner;
  for (let c = 0; c < C; c++) {
    const first = x + plane * c;
    const k = referenceOf(load<f32>(first));
    if (ASC_FEATURE_SIMD) sumShiftedPlanesSimd(first, outer, stride, inner, k);
    else sumShiftedPlanesScalar(first, outer, stride, inner, k);
    const mu = finishMean(k, n), q = finishM2(n);
    const s = invStdOf(q, n, eps);
    const oc = <usize>c << 3, pc = <usize>c << 2;
    store<f64>(mean + oc, mu);
    store<f64>(m2 + oc, q);
    store<f64>(invStd + oc, s);
    const mh = <f32>mu, a = <f32>(<f64>load<f32>(gamma + pc) * s);
    const b = shiftOf(load<f32>(beta + pc), mu, mh, a);
    for (let o = 0; o < outer; o++) {
      const off = plane * c + stride * o;
      if (ASC_FEATURE_SIMD) normalizeRunSimd(x + off, y + off, inner, mh, a, b, lower);
      else normalizeRunScalar(x + off, y + off, inner, mh, a, b, lower);
    }
  }
}

/**
 * Backward: Σdy and Σdy·(x − mean) (f64) per channel, then in training
 * dx = ((dy − k1) − (x − mean)·k2)·k3 with k1 = Σdy/n, k2 = Σdy(x − mean)·invStd²/n,
 * k3 = gamma·invStd; in eval dx = dy·k3. With y != 0, dy is masked by the fused ReLU's output
 * first (backward.ts).
 */
export function backwardNchwF32(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32,
  mean: usize, invStd: usize, gamma: usize, training: bool, sumDy: usize, sumDyXmu: usize, y: usize,
): void {
  const plane = <usize>inner << 2;
  const stride = plane * C;
  const n = <f64>outer * <f64>inner;
  for (let c = 0; c < C; c++) {
    const pc = <usize>c << 2, oc = <usize>c << 3;
    const m = load<f32>(mean + pc), s = <f64>load<f32>(invStd + pc);
    const base = plane * c;
    const yb = y ? y + base : 0;
    if (ASC_FEATURE_SIMD) reducePlanesSimd(dy + base, x + base, yb, outer, stride, inner, <f64>m);
    else reducePlanesScalar(dy + base, x + base, yb, outer, stride, inner, <f64>m);
    const s1 = sumDyRun, s2 = sumDyXmuRun;
    store<f64>(sumDy + oc, s1);
    store<f64>(sumDyXmu + oc, s2);
    const k3 = <f32>(<f64>load<f32>(gamma + pc) * s);
    const k1 = training ? <f32>(s1 / n) : <f32>0, k2 = training ? <f32>((s2 * s * s) / n) : <f32>0;
    for (let o = 0; o < outer; o++) {
      const off = base + stride * o, yo = y ? y + off : 0;
      if (ASC_FEATURE_SIMD) dxRunSimd(dy + off, x + off, yo, dx + off, inner, m, k1, k2, k3, training);
      else dxRunScalar(dy + off, x + off, yo, dx + off, inner, m, k1, k2, k3, training);
    }
  }
}
