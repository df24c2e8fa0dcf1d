// Backward of batch normalization (PyTorch's batch_norm_backward), per channel c over its n
// values, with mean and invStd as saved by the forward pass, and g = dy, or with a fused ReLU
// g = (y <= 0 ? 0 : dy) for the forward output y (PyTorch's threshold_backward):
//   reduce:  sumDy[c] = Σ g,   sumDyXmu[c] = Σ g · (x − mean[c])          (f64 accumulators)
//   then, folded once per channel by the caller:
//            k1 = sumDy / n,   k2 = sumDyXmu · invStd² / n,   k3 = gamma · invStd
//   dx, training:  dx = ((g − k1[c]) − (x − mean[c]) · k2[c]) · k3[c]
//       (= gamma·invStd·(g − mean(g) − xhat·mean(g·xhat)); dgamma = sumDyXmu·invStd, dbeta = sumDy)
//   dx, eval (mean and invStd constants, k1 = 0): dx = (g − k1[c]) · k3[c]; x is not read.
//
// Contract: dy, x, y read-only f32 (y = 0: no ReLU); dx may equal dy or x (in place), no other
// overlap. NCHW: [outer][C][inner].  NHWC: [rows][C], `work` holds workspaceBytes(C) bytes.
//   mean, k1, k2, k3 are f32[C]; sumDy, sumDyXmu are f64[C] outputs.
// SIMD lanes, scalar tails and the scalar build do the same f32 operations: bit-identical dx.
import { periodOf, rowPeriodOf, BLOCK_BYTES, tileF32, tileF32AsF64, zeroF64, foldPeriodF64 } from './period';
import { loadF32x2AsF64 } from './stats';

// @ts-ignore: decorator
@inline function grad1(pdy: usize, py: usize, k: usize, masked: bool): f32 {
  const g = load<f32>(pdy + k);
  return masked && load<f32>(py + k) <= 0 ? 0 : g;
}

// @ts-ignore: decorator
@inline function grad4(pdy: usize, py: usize, k: usize, masked: bool): v128 {
  const g = v128.load(pdy + k);
  return masked ? v128.andnot(g, f32x4.le(v128.load(py + k), f32x4.splat(0))) : g;
}

/** grad4's first two lanes at offset k, promoted to f64x2 (two f32 loads, no shuffle). */
// @ts-ignore: decorator
@inline function grad2AsF64(pdy: usize, py: usize, k: usize, masked: bool): v128 {
  const g = v128.load64_zero(pdy + k);
  return f64x2.promote_low_f32x4(masked ? v128.andnot(g, f32x4.le(v128.load64_zero(py + k), f32x4.splat(0))) : g);
}

/** High two f32 lanes of v promoted to f64x2. */
// @ts-ignore: decorator
@inline function promoteHigh(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3));
}

// @ts-ignore: decorator
@inline function dx1(g: f32, px: usize, k: usize, m: f32, k1: f32, k2: f32, k3: f32, training: bool): f32 {
  return training ? ((g - k1) - (load<f32>(px + k) - m) * k2) * k3 : (g - k1) * k3;
}

// @ts-ignore: decorator
@inline function dx4(g: v128, px: usize, k: usize, m: v128, k1: v128, k2: v128, k3: v128, training: bool): v128 {
  return training
    ? f32x4.mul(f32x4.sub(f32x4.sub(g, k1), f32x4.mul(f32x4.sub(v128.load(px + k), m), k2)), k3)
    : f32x4.mul(f32x4.sub(g, k1), k3);
}

/** Results of the inline channel reductions below (AssemblyScript has no tuples). */
export let sumDyRun: f64 = 0;
export let sumDyXmuRun: f64 = 0;

/** Σg and Σg·(x − m) over one channel's `outer` planes of `inner` values, `stride` bytes apart. */
// @ts-ignore: decorator
@inline export function reducePlanesSimd(
  pdy: usize, px: usize, py: usize, outer: i32, stride: usize, inner: i32, m: f64,
): void {
  const masked = py != 0;
  const mm = f64x2.splat(m);
  let a0 = f64x2.splat(0), a1 = a0, b0 = a0, b1 = a0;
  let t1 = 0.0, t2 = 0.0;
  for (let o = 0; o < outer; o++) {
    const off = stride * o;
    let i = 0;
    for (; i + 4 <= inner; i += 4) {
      const k = off + (<usize>i << 2);
      const gp = pdy + k, xp = px + k, yp = py + k; // immediate offsets below
      let h0 = v128.load64_zero(gp), h1 = v128.load64_zero(gp, 8);
      if (masked) {
        h0 = v128.andnot(h0, f32x4.le(v128.load64_zero(yp), f32x4.splat(0)));
        h1 = v128.andnot(h1, f32x4.le(v128.load64_zero(yp, 8), f32x4.splat(0)));
      }
      const g0 = f64x2.promote_low_f32x4(h0), g1 = f64x2.promote_low_f32x4(h1);
      const d0 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(xp)), mm);
      const d1 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(xp, 8)), mm);
      a0 = f64x2.add(a0, g0); b0 = f64x2.add(b0, f64x2.mul(g0, d0));
      a1 = f64x2.add(a1, g1); b1 = f64x2.add(b1, f64x2.mul(g1, d1));
    }
    for (; i < inner; i++) {
      const k = off + (<usize>i << 2);
      const g = <f64>grad1(pdy, py, k, masked);
      t1 += g; t2 += g * (<f64>load<f32>(px + k) - m);
    }
  }
  const a = f64x2.add(a0, a1), b = f64x2.add(b0, b1);
  sumDyRun = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1) + t1;
  sumDyXmuRun = f64x2.extract_lane(b, 0) + f64x2.extract_lane(b, 1) + t2;
}

// @ts-ignore: decorator
@inline export function reducePlanesScalar(
  pdy: usize, px: usize, py: usize, outer: i32, stride: usize, inner: i32, m: f64,
): void {
  const masked = py != 0;
  let s1 = 0.0, s2 = 0.0;
  for (let o = 0; o < outer; o++) {
    const off = stride * o;
    for (let i = 0; i < inner; i++) {
      const k = off + (<usize>i << 2);
      const g = <f64>grad1(pdy, py, k, masked);
      s1 += g; s2 += g * (<f64>load<f32>(px + k) - m);
    }
  }
  sumDyRun = s1;
  sumDyXmuRun = s2;
}

/** NCHW reduce in memory order, plane by plane (as statsNchwF32 in stats.ts); one source for both builds. */
export function backwardReduceNchwF32(
  dy: usize, x: usize, outer: i32, C: i32, inner: i32, mean: usize, sumDy: usize, sumDyXmu: usize, y: usize,
): void {
  const plane = <usize>inner << 2;
  zeroF64(sumDy, C);
  zeroF64(sumDyXmu, C);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), oc = <usize>c << 3;
      const m = <f64>load<f32>(mean + (<usize>c << 2));
      if (ASC_FEATURE_SIMD) reducePlanesSimd(dy + off, x + off, y ? y + off : 0, 1, 0, inner, m);
      else reducePlanesScalar(dy + off, x + off, y ? y + off : 0, 1, 0, inner, m);
      store<f64>(sumDy + oc, load<f64>(sumDy + oc) + sumDyRun);
      store<f64>(sumDyXmu + oc, load<f64>(sumDyXmu + oc) + sumDyXmuRun);
    }
  }
}

/**
 * NHWC reduce, blocked like statsNhwcF32Simd: super-rows of one period (L = lcm(C, 4) values)
 * in cache-sized blocks; per vector of 4 period positions the block's rows are summed in f64x2
 * registers, then added to the period accumulators once; the tail (< one period) goes element
 * by element; the period is folded into channels.
 */
export function backwardReduceNhwcF32Simd(
  dy: usize, x: usize, rows: i32, C: i32, mean: usize, sumDy: usize, sumDyXmu: usize, work: usize, y: usize,
): void {
  const masked = y != 0;
  const L = periodOf(C);
  const rowBytes = <usize>L << 2;
  const meanP = work, acc1 = work + (<usize>L << 3), acc2 = acc1 + (<usize>L << 3);
  tileF32AsF64(mean, C, L, meanP);
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
      const m0 = v128.load(meanP + o), m1 = v128.load(meanP + o, 16);
      let a0 = f64x2.splat(0), a1 = a0, c0 = a0, c1 = a0;
      let b0 = a0, b1 = a0, e0 = a0, e1 = a0;
      let k = r0 * rowBytes + (j << 2);
      let r = r0;
      for (; r + 2 <= r1; r += 2, k += rowBytes << 1) {
        const l = k + rowBytes;
        const g = grad4(dy, y, k, masked), h = grad4(dy, y, l, masked);
        const g0 = f64x2.promote_low_f32x4(g), g1 = promoteHigh(g), h0 = f64x2.promote_low_f32x4(h), h1 = promoteHigh(h);
        a0 = f64x2.add(a0, g0); b0 = f64x2.add(b0, f64x2.mul(g0, f64x2.sub(loadF32x2AsF64(x + k), m0)));
        a1 = f64x2.add(a1, g1); b1 = f64x2.add(b1, f64x2.mul(g1, f64x2.sub(loadF32x2AsF64(x + k + 8), m1)));
        c0 = f64x2.add(c0, h0); e0 = f64x2.add(e0, f64x2.mul(h0, f64x2.sub(loadF32x2AsF64(x + l), m0)));
        c1 = f64x2.add(c1, h1); e1 = f64x2.add(e1, f64x2.mul(h1, f64x2.sub(loadF32x2AsF64(x + l + 8), m1)));
      }
      if (r < r1) {
        const g0 = grad2AsF64(dy, y, k, masked), g1 = grad2AsF64(dy, y, k + 8, masked);
        a0 = f64x2.add(a0, g0); b0 = f64x2.add(b0, f64x2.mul(g0, f64x2.sub(loadF32x2AsF64(x + k), m0)));
        a1 = f64x2.add(a1, g1); b1 = f64x2.add(b1, f64x2.mul(g1, f64x2.sub(loadF32x2AsF64(x + k + 8), m1)));
      }
      v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o), f64x2.add(a0, c0)));
      v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o, 16), f64x2.add(a1, c1)), 16);
      v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o), f64x2.add(b0, e0)));
      v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o, 16), f64x2.add(b1, e1)), 16);
    }
  }
  for (let i = superRows * <usize>L, j: usize = 0; i < total; i++, j++) {
    const k = i << 2, o = j << 3;
    const g = <f64>grad1(dy, y, k, masked);
    store<f64>(acc1 + o, load<f64>(acc1 + o) + g);
    store<f64>(acc2 + o, load<f64>(acc2 + o) + g * (<f64>load<f32>(x + k) - load<f64>(meanP + o)));
  }
  foldPeriodF64(acc1, C, L, sumDy);
  foldPeriodF64(acc2, C, L, sumDyXmu);
}

export function backwardReduceNhwcF32Scalar(
  dy: usize, x: usize, rows: i32, C: i32, mean: usize, sumDy: usize, sumDyXmu: usize, y: usize,
): void {
  const masked = y != 0;
  zeroF64(sumDy, C);
  zeroF64(sumDyXmu, C);
  for (let r = 0; r < rows; r++) {
    const row = (<usize>r * C) << 2;
    for (let c = 0; c < C; c++) {
      const k = row + (<usize>c << 2), o = <usize>c << 3;
      const g = <f64>grad1(dy, y, k, masked);
      store<f64>(sumDy + o, load<f64>(sumDy + o) + g);
      store<f64>(sumDyXmu + o, load<f64>(sumDyXmu + o) + g * (<f64>load<f32>(x + k) - <f64>load<f32>(mean + (<usize>c << 2))));
    }
  }
}

/** dx over one contiguous run of n values (offsets relative to pdy, px, py, pdx alike). */
// @ts-ignore: decorator
@inline export function dxRunSimd(
  pdy: usize, px: usize, py: usize, pdx: usize, n: i32, m: f32, a: f32, b: f32, s: f32, training: bool,
): void {
  const masked = py != 0;
  const m4 = f32x4.splat(m), a4 = f32x4.splat(a), b4 = f32x4.splat(b), s4 = f32x4.splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const k = <usize>i << 2;
    v128.store(pdx + k, dx4(grad4(pdy, py, k, masked), px, k, m4, a4, b4, s4, training));
  }
  for (; i < n; i++) {
    const k = <usize>i << 2;
    store<f32>(pdx + k, dx1(grad1(pdy, py, k, masked), px, k, m, a, b, s, training));
  }
}

// @ts-ignore: decorator
@inline export function dxRunScalar(
  pdy: usize, px: usize, py: usize, pdx: usize, n: i32, m: f32, a: f32, b: f32, s: f32, training: bool,
): void {
  const masked = py != 0;
  for (let i = 0; i < n; i++) {
    const k = <usize>i << 2;
    store<f32>(pdx + k, dx1(grad1(pdy, py, k, masked), px, k, m, a, b, s, training));
  }
}

export function backwardDxNchwF32Simd(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32,
  mean: usize, k1: usize, k2: usize, k3: usize, training: bool, y: usize,
): void {
  const plane = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      dxRunSimd(dy + off, x + off, y ? y + off : 0, dx + off, inner,
        load<f32>(mean + pc), load<f32>(k1 + pc), load<f32>(k2 + pc), load<f32>(k3 + pc), training);
    }
  }
}

export function backwardDxNchwF32Scalar(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32,
  mean: usize, k1: usize, k2: usize, k3: usize, training: bool, y: usize,
): void {
  const plane = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      dxRunScalar(dy + off, x + off, y ? y + off : 0, dx + off, inner,
        load<f32>(mean + pc), load<f32>(k1 + pc), load<f32>(k2 + pc), load<f32>(k3 + pc), training);
    }
  }
}

export function backwardDxNhwcF32Simd(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32,
  mean: usize, k1: usize, k2: usize, k3: usize, work: usize, training: bool, y: usize,
): void {
  const masked = y != 0;
  const L = rowPeriodOf(C);
  const bytes = <usize>L << 2;
  const mP = work, aP = work + bytes, bP = aP + bytes, sP = bP + bytes;
  tileF32(mean, C, L, mP);
  tileF32(k1, C, L, aP);
  tileF32(k2, C, L, bP);
  tileF32(k3, C, L, sP);
  // Super-rows of L values (a multiple of the period) streamed row after row, as in
  // normalizeNhwcF32Simd; then the tail (< L values, from a period boundary) by vectors and
  // value by value.
  const total = <usize>rows * C;
  const rowBytes = <usize>L << 2;
  const end = (total / <usize>L) * rowBytes;
  for (let base: usize = 0; base < end; base += rowBytes) {
    for (let o: usize = 0; o < rowBytes; o += 16) {
      const k = base + o;
      v128.store(dx + k, dx4(grad4(dy, y, k, masked), x, k,
        v128.load(mP + o), v128.load(aP + o), v128.load(bP + o), v128.load(sP + o), training));
    }
  }
  const tail = (total << 2) - end;
  let o: usize = 0;
  for (; o + 16 <= tail; o += 16) {
    const k = end + o;
    v128.store(dx + k, dx4(grad4(dy, y, k, masked), x, k,
      v128.load(mP + o), v128.load(aP + o), v128.load(bP + o), v128.load(sP + o), training));
  }
  for (; o < tail; o += 4) {
    const k = end + o;
    store<f32>(dx + k, dx1(grad1(dy, y, k, masked), x, k,
      load<f32>(mP + o), load<f32>(aP + o), load<f32>(bP + o), load<f32>(sP + o), training));
  }
}

export function backwardDxNhwcF32Scalar(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32,
  mean: usize, k1: usize, k2: usize, k3: usize, training: bool, y: usize,
): void {
  const masked = y != 0;
  for (let r = 0; r < rows; r++) {
    const row = (<usize>r * C) << 2;
    for (let c = 0; c < C; c++) {
      const k = row + (<usize>c << 2), pc = <usize>c << 2;
      store<f32>(dx + k, dx1(grad1(dy, y, k, masked), x, k,
        load<f32>(mean + pc), load<f32>(k1 + pc), load<f32>(k2 + pc), load<f32>(k3 + pc), training));
    }
  }
}
