// Backward of batch normalization in training mode (PyTorch's batch_norm_backward), per
// channel c over its n values, with mean and invStd as saved by the forward pass:
//   reduce:  sumDy[c] = Σ dy,   sumDyXmu[c] = Σ dy · (x − mean[c])        (f64 accumulators)
//   then, folded once per channel by the caller:
//            k1 = sumDy / n,   k2 = sumDyXmu · invStd² / n,   k3 = gamma · invStd
//   dx:      dx = ((dy − k1[c]) − (x − mean[c]) · k2[c]) · k3[c]
//   (= gamma·invStd·(dy − mean(dy) − xhat·mean(dy·xhat)); dgamma = sumDyXmu·invStd, dbeta = sumDy)
// Eval-mode backward (mean and invStd constants) is dx = dy · k3: normalize.ts with x := dy.
//
// Contract: dy, x read-only f32; dx may equal dy or x (in place), no other overlap.
//   NCHW: [outer][C][inner].  NHWC: [rows][C], `work` holds workspaceBytes(C) bytes.
//   mean, k1, k2, k3 are f32[C]; sumDy, sumDyXmu are f64[C] outputs.
import { periodOf, tileF32, tileF32AsF64, zeroF64, foldPeriodF64 } from './period';
import { promoteHigh } from './stats';


// @ts-ignore: decorator
@inline function dx1(dy: f32, x: f32, m: f32, k1: f32, k2: f32, k3: f32): f32 {
  return ((dy - k1) - (x - m) * k2) * k3;
}

// @ts-ignore: decorator
@inline function dx4(dy: v128, x: v128, m: v128, k1: v128, k2: v128, k3: v128): v128 {
  return f32x4.mul(f32x4.sub(f32x4.sub(dy, k1), f32x4.mul(f32x4.sub(x, m), k2)), k3);
}

/** Results of the inline channel reductions below (AssemblyScript has no tuples). */
export let sumDyRun: f64 = 0;
export let sumDyXmuRun: f64 = 0;

/** Σdy and Σdy·(x − m) over one channel's `outer` planes of `inner` values, `stride` bytes apart. */
// @ts-ignore: decorator
@inline export function reducePlanesSimd(pdy: usize, px: usize, outer: i32, stride: usize, inner: i32, m: f64): void {
  const mm = f64x2.splat(m);
  let a0 = f64x2.splat(0), a1 = a0, b0 = a0, b1 = a0;
  let t1 = 0.0, t2 = 0.0;
  for (let o = 0; o < outer; o++) {
    const pg = pdy + stride * o, pxo = px + stride * o;
    let i = 0;
    for (; i + 4 <= inner; i += 4) {
      const k = <usize>i << 2;
      const g = v128.load(pg + k), u = v128.load(pxo + k);
      const g0 = f64x2.promote_low_f32x4(g), g1 = promoteHigh(g);
      const d0 = f64x2.sub(f64x2.promote_low_f32x4(u), mm), d1 = f64x2.sub(promoteHigh(u), mm);
      a0 = f64x2.add(a0, g0); b0 = f64x2.add(b0, f64x2.mul(g0, d0));
      a1 = f64x2.add(a1, g1); b1 = f64x2.add(b1, f64x2.mul(g1, d1));
    }
    for (; i < inner; i++) {
      const k = <usize>i << 2;
      const g = <f64>load<f32>(pg + k);
      t1 += g; t2 += g * (<f64>load<f32>(pxo + k) - m);
    }
  }
  const a = f64x2.add(a0, a1), b = f64x2.add(b0, b1);
  sumDyRun = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1) + t1;
  sumDyXmuRun = f64x2.extract_lane(b, 0) + f64x2.extract_lane(b, 1) + t2;
}

// @ts-ignore: decorator
@inline export function reducePlanesScalar(pdy: usize, px: usize, outer: i32, stride: usize, inner: i32, m: f64): void {
  let s1 = 0.0, s2 = 0.0;
  for (let o = 0; o < outer; o++) {
    const pg = pdy + stride * o, pxo = px + stride * o;
    for (let i = 0; i < inner; i++) {
      const k = <usize>i << 2;
      const g = <f64>load<f32>(pg + k);
      s1 += g; s2 += g * (<f64>load<f32>(pxo + k) - m);
    }
  }
  sumDyRun = s1;
  sumDyXmuRun = s2;
}

export function backwardReduceNchwF32Simd(
  dy: usize, x: usize, outer: i32, C: i32, inner: i32, mean: usize, sumDy: usize, sumDyXmu: usize,
): void {
  const plane = <usize>inner << 2;
  for (let c = 0; c < C; c++) {
    reducePlanesSimd(dy + plane * c, x + plane * c, outer, plane * C, inner, <f64>load<f32>(mean + (<usize>c << 2)));
    store<f64>(sumDy + (<usize>c << 3), sumDyRun);
    store<f64>(sumDyXmu + (<usize>c << 3), sumDyXmuRun);
  }
}

export function backwardReduceNchwF32Scalar(
  dy: usize, x: usize, outer: i32, C: i32, inner: i32, mean: usize, sumDy: usize, sumDyXmu: usize,
): void {
  const plane = <usize>inner << 2;
  for (let c = 0; c < C; c++) {
    reducePlanesScalar(dy + plane * c, x + plane * c, outer, plane * C, inner, <f64>load<f32>(mean + (<usize>c << 2)));
    store<f64>(sumDy + (<usize>c << 3), sumDyRun);
    store<f64>(sumDyXmu + (<usize>c << 3), sumDyXmuRun);
  }
}

export function backwardReduceNhwcF32Simd(
  dy: usize, x: usize, rows: i32, C: i32, mean: usize, sumDy: usize, sumDyXmu: usize, work: usize,
): void {
  const L = periodOf(C);
  const meanP = work, acc1 = work + (<usize>L << 3), acc2 = acc1 + (<usize>L << 3);
  tileF32AsF64(mean, C, L, meanP);
  zeroF64(acc1, L);
  zeroF64(acc2, L);
  const total = <usize>rows * C;
  const vectors = total & ~3;
  let i: usize = 0, j: usize = 0;
  for (; i < vectors; i += 4) {
    const k = i << 2, o = j << 3;
    const g = v128.load(dy + k), u = v128.load(x + k);
    const g0 = f64x2.promote_low_f32x4(g), g1 = promoteHigh(g);
    const d0 = f64x2.sub(f64x2.promote_low_f32x4(u), v128.load(meanP + o));
    const d1 = f64x2.sub(promoteHigh(u), v128.load(meanP + o, 16));
    v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o), g0));
    v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o, 16), g1), 16);
    v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o), f64x2.mul(g0, d0)));
    v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o, 16), f64x2.mul(g1, d1)), 16);
    j += 4;
    if (j == <usize>L) j = 0;
  }
  for (; i < total; i++, j++) {
    const k = i << 2, o = j << 3;
    const g = <f64>load<f32>(dy + k);
    store<f64>(acc1 + o, load<f64>(acc1 + o) + g);
    store<f64>(acc2 + o, load<f64>(acc2 + o) + g * (<f64>load<f32>(x + k) - load<f64>(meanP + o)));
  }
  foldPeriodF64(acc1, C, L, sumDy);
  foldPeriodF64(acc2, C, L, sumDyXmu);
}

export function backwardReduceNhwcF32Scalar(
  dy: usize, x: usize, rows: i32, C: i32, mean: usize, sumDy: usize, sumDyXmu: usize,
): void {
  zeroF64(sumDy, C);
  zeroF64(sumDyXmu, C);
  for (let r = 0; r < rows; r++) {
    const row = (<usize>r * C) << 2;
    for (let c = 0; c < C; c++) {
      const k = row + (<usize>c << 2), o = <usize>c << 3;
      const g = <f64>load<f32>(dy + k);
      store<f64>(sumDy + o, load<f64>(sumDy + o) + g);
      store<f64>(sumDyXmu + o, load<f64>(sumDyXmu + o) + g * (<f64>load<f32>(x + k) - <f64>load<f32>(mean + (<usize>c << 2))));
    }
  }
}

/** dx = ((dy − k1) − (x − m)·k2)·k3 over one contiguous run of n values. */
// @ts-ignore: decorator
@inline export function dxRunSimd(pdy: usize, px: usize, pdx: usize, n: i32, m: f32, a: f32, b: f32, s: f32): void {
  const m4 = f32x4.splat(m), a4 = f32x4.splat(a), b4 = f32x4.splat(b), s4 = f32x4.splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const k = <usize>i << 2;
    v128.store(pdx + k, dx4(v128.load(pdy + k), v128.load(px + k), m4, a4, b4, s4));
  }
  for (; i < n; i++) {
    const k = <usize>i << 2;
    store<f32>(pdx + k, dx1(load<f32>(pdy + k), load<f32>(px + k), m, a, b, s));
  }
}

// @ts-ignore: decorator
@inline export function dxRunScalar(pdy: usize, px: usize, pdx: usize, n: i32, m: f32, a: f32, b: f32, s: f32): void {
  for (let i = 0; i < n; i++) {
    const k = <usize>i << 2;
    store<f32>(pdx + k, dx1(load<f32>(pdy + k), load<f32>(px + k), m, a, b, s));
  }
}

export function backwardDxNchwF32Simd(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32,
  mean: usize, k1: usize, k2: usize, k3: usize,
): void {
  const plane = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      dxRunSimd(dy + off, x + off, dx + off, inner,
        load<f32>(mean + pc), load<f32>(k1 + pc), load<f32>(k2 + pc), load<f32>(k3 + pc));
    }
  }
}

export function backwardDxNchwF32Scalar(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32,
  mean: usize, k1: usize, k2: usize, k3: usize,
): void {
  const plane = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c), pc = <usize>c << 2;
      dxRunScalar(dy + off, x + off, dx + off, inner,
        load<f32>(mean + pc), load<f32>(k1 + pc), load<f32>(k2 + pc), load<f32>(k3 + pc));
    }
  }
}

export function backwardDxNhwcF32Simd(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32,
  mean: usize, k1: usize, k2: usize, k3: usize, work: usize,
): void {
  const L = periodOf(C);
  const bytes = <usize>L << 2;
  const mP = work, aP = work + bytes, bP = aP + bytes, sP = bP + bytes;
  tileF32(mean, C, L, mP);
  tileF32(k1, C, L, aP);
  tileF32(k2, C, L, bP);
  tileF32(k3, C, L, sP);
  const total = <usize>rows * C;
  const vectors = total & ~3;
  let i: usize = 0, j: usize = 0;
  for (; i < vectors; i += 4) {
    const k = i << 2, o = j << 2;
    v128.store(dx + k, dx4(v128.load(dy + k), v128.load(x + k),
      v128.load(mP + o), v128.load(aP + o), v128.load(bP + o), v128.load(sP + o)));
    j += 4;
    if (j == <usize>L) j = 0;
  }
  for (; i < total; i++, j++) {
    const k = i << 2, o = j << 2;
    store<f32>(dx + k, dx1(load<f32>(dy + k), load<f32>(x + k),
      load<f32>(mP + o), load<f32>(aP + o), load<f32>(bP + o), load<f32>(sP + o)));
  }
}

export function backwardDxNhwcF32Scalar(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32,
  mean: usize, k1: usize, k2: usize, k3: usize,
): void {
  for (let r = 0; r < rows; r++) {
    const row = (<usize>r * C) << 2;
    for (let c = 0; c < C; c++) {
      const k = row + (<usize>c << 2), pc = <usize>c << 2;
      store<f32>(dx + k, dx1(load<f32>(dy + k), load<f32>(x + k),
        load<f32>(mean + pc), load<f32>(k1 + pc), load<f32>(k2 + pc), load<f32>(k3 + pc)));
    }
  }
}
