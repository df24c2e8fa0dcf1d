// Per-channel folding of statistics and affine parameters into the apply kernel's inputs,
// for C channels at once (the JS side would otherwise loop over typed arrays per call):
//   invStd = 1 / sqrt(v / divisor + eps)      v = m2 with divisor = n (batch statistics),
//                                             or v = running var with divisor = 1
//   meanHi = f32(mean),  meanLo = f32(mean − meanHi)  (0 when meanHi is infinite)
//   scale = f32(gamma · invStd),  shift = beta
// This is the folding forwardTrainNchwF32 (fused.ts) does channel by channel, in one place.
//
// Contract: mean, v, invStd are f64[C]; gamma, beta, meanHi, meanLo, scale, shift are f32[C].

// @ts-ignore: decorator
@inline export function invStdOf(v: f64, divisor: f64, eps: f64): f64 {
  return 1.0 / Math.sqrt(v / divisor + eps);
}

// @ts-ignore: decorator
@inline export function meanLoOf(mean: f64, hi: f32): f32 {
  return isFinite(hi) ? <f32>(mean - <f64>hi) : <f32>0; // an infinite mean has no low part
}

export function foldF32(
  C: i32, mean: usize, v: usize, divisor: f64, eps: f64, gamma: usize, beta: usize,
  meanHi: usize, meanLo: usize, scale: usize, shift: usize, invStd: usize,
): void {
  for (let c = 0; c < C; c++) {
    const o = <usize>c << 3, p = <usize>c << 2;
    const mu = load<f64>(mean + o);
    const s = invStdOf(load<f64>(v + o), divisor, eps);
    const hi = <f32>mu;
    store<f64>(invStd + o, s);
    store<f32>(meanHi + p, hi);
    store<f32>(meanLo + p, meanLoOf(mu, hi));
    store<f32>(scale + p, <f32>(<f64>load<f32>(gamma + p) * s));
    store<f32>(shift + p, load<f32>(beta + p));
  }
}
