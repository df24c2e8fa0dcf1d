// f32x4 / f64x2 helpers shared by the kernels (SIMD builds only: the scalar build never
// references them, so they are never compiled there), with the one-lane twin of each lane
// operation beside it. Every helper is @inline: no call, no spill, the same instructions as if
// written at the call site.
//
// The multiply-add of the f64 reductions, maddF64x2(a, b, c) = a·b + c per lane, is where the
// relaxed-SIMD build differs from the SIMD build: ASC_FEATURE_RELAXED_SIMD (a compile-time
// constant, like ASC_FEATURE_SIMD) makes it f64x2.relaxed_madd, which rounds once where the
// hardware fuses it (FMA) and twice where it does not; elsewhere it is f64x2.mul then f64x2.add,
// the operations the SIMD build did before the helper existed (the same bits). Only the
// SIMD twins of sums whose order is already build-specific use it (statistics, backward sums):
// a fused product-sum is never less accurate than mul + add (the product's rounding goes), so
// every bound of those sums holds, but the bits are the hardware's. Folds, merges of partials
// and the elementwise applies never use it: they stay bit-identical across builds.
//
// The ReLU mask of the backward pass (PyTorch's threshold_backward): g = (y <= 0 ? 0 : dy) for
// the fused ReLU's forward output y, lane by lane; y = 0 (null pointer) means no mask. The
// vector form clears the lanes where y <= 0 (andnot), so a masked lane is +0 as in the
// one-lane form; NaN in y keeps dy, as NaN <= 0 is false in both.

/** a·b + c on both f64 lanes: relaxed_madd in the relaxed-SIMD build, mul then add in the SIMD build. */
// @ts-ignore: decorator
@inline export function maddF64x2(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f64x2.relaxed_madd(a, b, c);
  return f64x2.add(c, f64x2.mul(a, b));
}

/** Adds four f64x2 sums to the 64 bytes at p (register chains flushed into their accumulators). */
// @ts-ignore: decorator
@inline export function addF64x2x4(p: usize, a0: v128, a1: v128, a2: v128, a3: v128): void {
  v128.store(p, f64x2.add(v128.load(p), a0));
  v128.store(p, f64x2.add(v128.load(p, 16), a1), 16);
  v128.store(p, f64x2.add(v128.load(p, 32), a2), 32);
  v128.store(p, f64x2.add(v128.load(p, 48), a3), 48);
}

/** The two f32 values at p (8 bytes) promoted to f64x2: a load and a convert, no shuffle. */
// @ts-ignore: decorator
@inline export function loadF32x2AsF64(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

/** Rounds both f64 lanes to f32 and stores them at p (8 bytes). */
// @ts-ignore: decorator
@inline export function storeF64x2AsF32(p: usize, v: v128): void {
  v128.store64_lane(p, f32x4.demote_f64x2_zero(v), 0);
}

/** High two f32 lanes of v promoted to f64x2. */
// @ts-ignore: decorator
@inline export function promoteHigh(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3));
}

/** g at byte offset k of dy, masked by y at the same offset when `masked` (one lane). */
// @ts-ignore: decorator
@inline export function grad1(pdy: usize, py: usize, k: usize, masked: bool): f32 {
  const g = load<f32>(pdy + k);
  return masked && load<f32>(py + k) <= 0 ? 0 : g;
}

/** Four lanes of g at byte offset k (grad1 lane by lane). */
// @ts-ignore: decorator
@inline export function grad4(pdy: usize, py: usize, k: usize, masked: bool): v128 {
  const g = v128.load(pdy + k);
  return masked ? v128.andnot(g, f32x4.le(v128.load(py + k), f32x4.splat(0))) : g;
}

/** Two lanes of g at byte offset k, promoted to f64x2 (two f32 loads each, no shuffle). */
// @ts-ignore: decorator
@inline export function grad2AsF64(pdy: usize, py: usize, k: usize, masked: bool): v128 {
  const g = v128.load64_zero(pdy + k);
  return f64x2.promote_low_f32x4(masked ? v128.andnot(g, f32x4.le(v128.load64_zero(py + k), f32x4.splat(0))) : g);
}
