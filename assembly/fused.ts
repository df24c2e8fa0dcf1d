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
import {
  shiftOf as referenceOf, segmentsOf, planesOf, blockOffset, blockM2, mergedMean, mergedM2, sumShiftedRun, sumShifted, sumShiftedSq,
} from './stats';
import { normalizeRunSimd, normalizeRunScalar } from './normalize';
import { invStdOf, shiftOf } from './fold';
import { reducePlanesSimd, reducePlanesScalar, dxRunSimd, dxRunScalar, sumDyRun, sumDyXmuRun } from './backward';

/**
 * Training forward: per channel, the block partials of stats.ts's NCHW partition (the same
 * per-plane sums in the same order as statsNchwF32) merged in block order as mergeMomentsF64
 * does, so mean and m2 (f64) are bit-identical to those kernels'; invStd = 1/sqrt(m2/n + eps);
 * then y = max'((x − meanHi)·scale + shift, lower) with meanHi, scale, shift folded as in
 * fold.ts (normalize.ts: lower = 0 fuses ReLU, −Inf is the identity).
 */
export function forwardTrainNchwF32(
  x: usize, y: usize, outer: i32, C: i32, inner: i32, block: i32, gamma: usize, beta: usize, eps: f64,
  mean: usize, m2: usize, invStd: usize, lower: f32,
): void {
  const plane = <usize>inner << 2;
  const stride = plane * C;
  const S = segmentsOf(inner, block), P = planesOf(inner, block);
  for (let c = 0; c < C; c++) {
    let n = 0.0, mu = 0.0, q = 0.0, shift = 0.0; // mergeMomentsF64's running state
    for (let first = 0; first < outer; first += P) {
      const last = min(first + P, outer) - 1;
      for (let s = 0; s < S; s++) {
        const i0 = s * block, len = min(block, inner - i0);
        const at = plane * c + (<usize>i0 << 2);
        const k = referenceOf(load<f32>(x + at + stride * first));
        let t1 = 0.0, t2 = 0.0;
        for (let o = first; o <= last; o++) {
          sumShiftedRun(x + at + stride * o, len, k);
          if (o == first) { t1 = sumShifted; t2 = sumShiftedSq; } else { t1 += sumShifted; t2 += sumShiftedSq; }
        }
        const nb = <f64>(last - first + 1) * <f64>len;
        const off = blockOffset(t1, nb), qb = blockM2(t1, t2, nb);
        if (n == 0) {
          shift = k;
          n = nb; mu = off; q = qb;
        } else {
          const total = n + nb, w = nb / total, mb = (k - shift) + off;
          q = mergedM2(q, qb, mu, mb, n, w);
          mu = mergedMean(mu, mb, w);
          n = total;
        }
      }
    }
    mu = shift + mu;
    const sd = invStdOf(q, n, eps);
    const oc = <usize>c << 3, pc = <usize>c << 2;
    store<f64>(mean + oc, mu);
    store<f64>(m2 + oc, q);
    store<f64>(invStd + oc, sd);
    const mh = <f32>mu, a = <f32>(<f64>load<f32>(gamma + pc) * sd);
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
