// Per-channel folding of statistics and affine parameters into the apply kernel's inputs,
// for C channels at once (the JS side would otherwise loop over typed arrays per call):
//   invStd = 1 / sqrt(v / divisor + eps)      v = m2 with divisor = n (batch statistics),
//                                             or v = running var with divisor = 1
//   meanHi = f32(mean),  meanLo = f32(mean − meanHi)  (0 when meanHi is not finite)
//   scale = f32(gamma · invStd),  shift = f32(beta − meanLo · scale)
// so that y = (x − meanHi)·scale + shift (normalize.ts) is (x − mean)·gamma·invStd + beta with
// the mean's low part carried in the shift: meanLo·scale is below 2^-24·|mean·scale|, and one
// rounding of the shift adds at most 2^-24·(|beta| + that).
// This is the folding forwardTrainNchwF32 (fused.ts) does channel by channel, in one place.
//
// Contract: mean, v, invStd are f64[C]; gamma, beta, meanHi, scale, shift are f32[C]. A gamma or
// beta pointer of 0 means no array: gamma = 1, beta = 0 for every channel (the same bits as arrays
// of ones and zeros: 1·s and 0 − lo·a are exact), so callers without weights copy nothing in.
//
// Every per-channel loop here runs two channels per f64x2 step in the SIMD builds (a scalar
// step for an odd last channel): the same IEEE operations in the same order as the scalar
// step, so both builds give bit-identical results.
import { loadF32x2AsF64, storeF64x2AsF32 } from './simd';

// @ts-ignore: decorator
@inline export function invStdOf(v: f64, divisor: f64, eps: f64): f64 {
  return 1.0 / Math.sqrt(v / divisor + eps);
}

// @ts-ignore: decorator
@inline export function meanLoOf(mean: f64, hi: f32): f32 {
  return isFinite(hi) ? <f32>(mean - <f64>hi) : <f32>0; // an infinite mean has no low part
}

/** gamma[c] as f64 (byte offset p), 1 when gamma is 0 (no array). */
// @ts-ignore: decorator
@inline export function gammaAt(gamma: usize, p: usize): f64 {
  return gamma ? <f64>load<f32>(gamma + p) : 1.0;
}

/** shift = f32(beta − meanLo · scale), from the f64 mean and its f32 high part. */
// @ts-ignore: decorator
@inline export function shiftOf(beta: f32, mean: f64, hi: f32, scale: f32): f32 {
  return <f32>(<f64>beta - <f64>meanLoOf(mean, hi) * <f64>scale);
}

export function foldF32(
  C: i32, mean: usize, v: usize, divisor: f64, eps: f64, gamma: usize, beta: usize,
  meanHi: usize, scale: usize, shift: usize, invStd: usize,
): void {
  // v / 1 is v: the running statistics' fold (divisor 1) leaves the division out, the same bits.
  if (divisor == 1) foldAs(C, mean, v, divisor, eps, gamma, beta, meanHi, scale, shift, invStd, true);
  else foldAs(C, mean, v, divisor, eps, gamma, beta, meanHi, scale, shift, invStd, false);
}

// @ts-ignore: decorator
@inline function foldAs(
  C: i32, mean: usize, v: usize, divisor: f64, eps: f64, gamma: usize, beta: usize,
  meanHi: usize, scale: usize, shift: usize, invStd: usize, unit: bool,
): void {
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    const one = f64x2.splat(1), dv = f64x2.splat(divisor), ep = f64x2.splat(eps), inf = f64x2.splat(Infinity);
    for (; c + 2 <= C; c += 2) {
      const o = <usize>c << 3, p = <usize>c << 2;
      const mu = v128.load(mean + o), vv = v128.load(v + o);
      const s = f64x2.div(one, f64x2.sqrt(f64x2.add(unit ? vv : f64x2.div(vv, dv), ep)));
      const hi = f32x4.demote_f64x2_zero(mu), hi64 = f64x2.promote_low_f32x4(hi);
      // meanLoOf: f32(mean − hi) where hi is finite, else 0.
      const lo = f32x4.demote_f64x2_zero(v128.and(f64x2.sub(mu, hi64), f64x2.lt(f64x2.abs(hi64), inf)));
      const a = f32x4.demote_f64x2_zero(gamma ? f64x2.mul(loadF32x2AsF64(gamma + p), s) : s);
      const b = f64x2.sub(beta ? loadF32x2AsF64(beta + p) : f64x2.splat(0), f64x2.mul(f64x2.promote_low_f32x4(lo), f64x2.promote_low_f32x4(a)));
      v128.store(invStd + o, s);
      v128.store64_lane(meanHi + p, hi, 0);
      v128.store64_lane(scale + p, a, 0);
      storeF64x2AsF32(shift + p, b);
    }
  }
  for (; c < C; c++) {
    const o = <usize>c << 3, p = <usize>c << 2;
    const mu = load<f64>(mean + o);
    const s = invStdOf(load<f64>(v + o), divisor, eps);
    const hi = <f32>mu, a = <f32>(gammaAt(gamma, p) * s);
    store<f64>(invStd + o, s);
    store<f32>(meanHi + p, hi);
    store<f32>(scale + p, a);
    store<f32>(shift + p, shiftOf(beta ? load<f32>(beta + p) : 0, mu, hi, a));
  }
}

/** dst[c] = f32(src[c]) for c < C (f64 to f32, round to nearest). */
export function narrowF64(src: usize, C: i32, dst: usize): void {
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    for (; c + 2 <= C; c += 2) storeF64x2AsF32(dst + (<usize>c << 2), v128.load(src + (<usize>c << 3)));
  }
  for (; c < C; c++) store<f32>(dst + (<usize>c << 2), <f32>load<f64>(src + (<usize>c << 3)));
}

/** dst[c] = f64(src[c]) for c < C (f32 to f64, exact). */
export function widenF32(src: usize, C: i32, dst: usize): void {
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    for (; c + 2 <= C; c += 2) v128.store(dst + (<usize>c << 3), loadF32x2AsF64(src + (<usize>c << 2)));
  }
  for (; c < C; c++) store<f64>(dst + (<usize>c << 3), <f64>load<f32>(src + (<usize>c << 2)));
}

/**
 * Running statistics after a training step, in place, m = momentum (the new batch's weight):
 *   runningMean = (1 − m) · runningMean + m · mean
 *   runningVar  = (1 − m) · runningVar  + m · m2 / divisor
 * divisor = n − 1 stores the unbiased batch variance (PyTorch), n the biased one (ONNX, Keras).
 * Computed in f64, rounded once to the f32 arrays. mean, m2 are f64[C]; rm, rv are f32[C].
 */
export function updateRunningF32(C: i32, mean: usize, m2: usize, divisor: f64, m: f64, rm: usize, rv: usize): void {
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    const keep = f64x2.splat(1.0 - m), mm = f64x2.splat(m), dv = f64x2.splat(divisor);
    for (; c + 2 <= C; c += 2) {
      const o = <usize>c << 3, p = <usize>c << 2;
      storeF64x2AsF32(rm + p, f64x2.add(f64x2.mul(keep, loadF32x2AsF64(rm + p)), f64x2.mul(mm, v128.load(mean + o))));
      storeF64x2AsF32(rv + p, f64x2.add(f64x2.mul(keep, loadF32x2AsF64(rv + p)), f64x2.mul(mm, f64x2.div(v128.load(m2 + o), dv))));
    }
  }
  for (; c < C; c++) {
    const o = <usize>c << 3, p = <usize>c << 2;
    store<f32>(rm + p, <f32>((1.0 - m) * <f64>load<f32>(rm + p) + m * load<f64>(mean + o)));
    store<f32>(rv + p, <f32>((1.0 - m) * <f64>load<f32>(rv + p) + m * (load<f64>(m2 + o) / divisor)));
  }
}

/**
 * Backward folding per channel (backward.ts), from the sums Σg and s2 in f64 and the saved f32
 * invStd: sumDyXhat = Σg·xhat = s2 · invStd when s2 is Σg·(x − mean) (xmu), or s2 itself when
 * it is already Σg·xhat (all-reduced by synchronized BN); then
 *   dbias = Σg,  dweight = sumDyXhat,  k3 = gamma · invStd,
 *   training: k1 = Σg / n, k2 = sumDyXhat · invStd / n;  eval: k1 = k2 = 0.
 * sumDy, s2 are f64[C]; invStd, gamma, k1, k2, k3, dweight, dbias are f32[C] (gamma 0: all ones).
 */
export function foldBackwardF32(
  C: i32, sumDy: usize, s2: usize, xmu: bool, invStd: usize, gamma: usize, n: f64, training: bool,
  k1: usize, k2: usize, k3: usize, dweight: usize, dbias: usize,
): void {
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    const nn = f64x2.splat(n), zero = f64x2.splat(0);
    for (; c + 2 <= C; c += 2) {
      const o = <usize>c << 3, p = <usize>c << 2;
      const s = loadF32x2AsF64(invStd + p), sg = v128.load(sumDy + o);
      const sx = xmu ? f64x2.mul(v128.load(s2 + o), s) : v128.load(s2 + o);
      storeF64x2AsF32(dbias + p, sg);
      storeF64x2AsF32(dweight + p, sx);
      storeF64x2AsF32(k1 + p, training ? f64x2.div(sg, nn) : zero);
      storeF64x2AsF32(k2 + p, training ? f64x2.div(f64x2.mul(sx, s), nn) : zero);
      storeF64x2AsF32(k3 + p, gamma ? f64x2.mul(loadF32x2AsF64(gamma + p), s) : s);
    }
  }
  for (; c < C; c++) {
    const o = <usize>c << 3, p = <usize>c << 2;
    const s = <f64>load<f32>(invStd + p), sg = load<f64>(sumDy + o);
    const sx = xmu ? load<f64>(s2 + o) * s : load<f64>(s2 + o);
    store<f32>(dbias + p, <f32>sg);
    store<f32>(dweight + p, <f32>sx);
    store<f32>(k1 + p, training ? <f32>(sg / n) : <f32>0);
    store<f32>(k2 + p, training ? <f32>((sx * s) / n) : <f32>0);
    store<f32>(k3 + p, <f32>(gammaAt(gamma, p) * s));
  }
}
