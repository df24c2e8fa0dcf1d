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
// Both kernels take stats.ts's `block` and compute, per channel, the partials of that partition
// block by block (each block's planes in memory order) and merge them in block order as the
// separate kernels do: the same bits as the separate reduction + merge for the same `block`.
//
// Contract: f32 tensors [outer][C][inner]; y may equal x, dx may equal dy or x (in place).
// Only channels [c0, c1) are read and written (0 <= c0 <= c1 <= C): each channel's result
// depends on that channel alone, so calls on disjoint channel ranges (threads) compose to the
// bits of one call on all of them.
// gamma, beta, mean, invStd are f32[C] (a gamma or beta of 0: no array, gamma = 1, beta = 0, as in
// fold.ts); the f64[C] outputs are written for every channel (each channel's two f64 output slots
// hold its running block sums until the channel is done), and overlap nothing else.
import { shiftOf as referenceOf, segmentsOf, planesOf, blockOffset, blockM2, mergedMean, mergedM2, sumShiftedRun } from './stats';
import { normalizeRunSimd, normalizeRunScalar } from './normalize';
import { gammaAt, invStdOf, shiftOf } from './fold';
import { reduceRun, dxRunSimd, dxRunScalar } from './backward';

/**
 * Training forward: per channel, the block partials of stats.ts's NCHW partition (the same
 * per-plane sums in the same order as statsNchwF32) merged in block order as mergeMomentsF64
 * does, so mean and m2 (f64) are bit-identical to those kernels'; invStd = 1/sqrt(m2/n + eps);
 * then y = max'((x − meanHi)·scale + shift, lower) with meanHi, scale, shift folded as in
 * fold.ts (normalize.ts: lower = 0 fuses ReLU, −Inf is the identity).
 */
export function forwardTrainNchwF32(
  x: usize, y: usize, outer: i32, C: i32, inner: i32, block: i32, c0: i32, c1: i32, gamma: usize, beta: usize, eps: f64,
  mean: usize, m2: usize, invStd: usize, lower: f32,
): void {
  const plane = <usize>inner << 2;
  const stride = plane * C;
  const S = segmentsOf(inner, block), P = planesOf(inner, block);
  for (let c = c0; c < c1; c++) {
    const oc = <usize>c << 3, pc = <usize>c << 2;
    let n = 0.0, mu = 0.0, q = 0.0, shift = 0.0; // mergeMomentsF64's running state
    for (let first = 0; first < outer; first += P) {
      const last = min(first + P, outer) - 1;
      for (let s = 0; s < S; s++) {
        const i0 = s * block, len = min(block, inner - i0);
        const at = plane * c + (<usize>i0 << 2);
        const k = referenceOf(load<f32>(x + at + stride * first));
        // The block's s1, s2 accumulate in this channel's mean and m2 slots (written last).
        store<f64>(mean + oc, 0);
        store<f64>(m2 + oc, 0);
        for (let o = first; o <= last; o++) sumShiftedRun(x + at + stride * o, len, k, mean + oc, m2 + oc);
        const t1 = load<f64>(mean + oc), t2 = load<f64>(m2 + oc);
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
    store<f64>(mean + oc, mu);
    store<f64>(m2 + oc, q);
    store<f64>(invStd + oc, sd);
    const mh = <f32>mu, a = <f32>(gammaAt(gamma, pc) * sd);
    const b = shiftOf(beta ? load<f32>(beta + pc) : 0, mu, mh, a);
    for (let o = 0; o < outer; o++) {
      const off = plane * c + stride * o;
      if (ASC_FEATURE_SIMD) normalizeRunSimd(x + off, y + off, inner, mh, a, b, lower);
      else normalizeRunScalar(x + off, y + off, inner, mh, a, b, lower);
    }
  }
}

/**
 * Backward: per channel, the block partials of backward.ts's reduce on stats.ts's NCHW
 * partition (the same per-plane run sums in the same order as backwardReduceNchwF32) added in
 * block order as mergeSumsF64 does, so sumDy and sumDyXmu (f64) are bit-identical to those
 * kernels' for the same `block`; then in training dx = ((dy − k1) − (x − mean)·k2)·k3 with
 * k1 = Σdy/n, k2 = Σdy(x − mean)·invStd²/n, k3 = gamma·invStd; in eval dx = dy·k3. With
 * y != 0, dy is masked by the fused ReLU's output first (simd.ts).
 */
export function backwardNchwF32(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32, block: i32, c0: i32, c1: i32,
  mean: usize, invStd: usize, gamma: usize, training: bool, sumDy: usize, sumDyXmu: usize, y: usize,
): void {
  const plane = <usize>inner << 2;
  const stride = plane * C;
  const n = <f64>outer * <f64>inner;
  const S = segmentsOf(inner, block), P = planesOf(inner, block);
  for (let c = c0; c < c1; c++) {
    const pc = <usize>c << 2, oc = <usize>c << 3;
    const m = load<f32>(mean + pc), s = <f64>load<f32>(invStd + pc);
    const base = plane * c;
    let s1 = 0.0, s2 = 0.0; // mergeSumsF64's running sums
    for (let first = 0; first < outer; first += P) {
      const last = min(first + P, outer) - 1;
      for (let sg = 0; sg < S; sg++) {
        const i0 = sg * block, len = min(block, inner - i0);
        const at = base + (<usize>i0 << 2);
        // The block's sums accumulate in this channel's output slots (written last).
        store<f64>(sumDy + oc, 0);
        store<f64>(sumDyXmu + oc, 0);
        for (let o = first; o <= last; o++) {
          const off = at + stride * o;
          reduceRun(dy + off, x + off, y + off, len, <f64>m, sumDy + oc, sumDyXmu + oc, y != 0);
        }
        const t1 = load<f64>(sumDy + oc), t2 = load<f64>(sumDyXmu + oc);
        if (first == 0 && sg == 0) { s1 = t1; s2 = t2; } else { s1 += t1; s2 += t2; }
      }
    }
    store<f64>(sumDy + oc, s1);
    store<f64>(sumDyXmu + oc, s2);
    const k3 = <f32>(gammaAt(gamma, pc) * s);
    const k1 = training ? <f32>(s1 / n) : <f32>0, k2 = training ? <f32>((s2 * s * s) / n) : <f32>0;
    for (let o = 0; o < outer; o++) {
      const off = base + stride * o, yo = y ? y + off : 0;
      if (ASC_FEATURE_SIMD) dxRunSimd(dy + off, x + off, yo, dx + off, inner, m, k1, k2, k3, training);
      else dxRunScalar(dy + off, x + off, yo, dx + off, inner, m, k1, k2, k3, training);
    }
  }
}
