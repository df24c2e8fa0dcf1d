// Backward of batch normalization (PyTorch's batch_norm_backward), per channel c over its n
// values, with mean and invStd as saved by the forward pass, and g = dy, or with a fused ReLU
// g = (y <= 0 ? 0 : dy) for the forward output y (PyTorch's threshold_backward, simd.ts):
//   reduce:  sumDy[c] = Σ g,   sumDyXmu[c] = Σ g · (x − mean[c])          (f64 accumulators)
//   then, folded once per channel by the caller (fold.ts, foldBackwardF32):
//            k1 = sumDy / n,   k2 = sumDyXmu · invStd² / n,   k3 = gamma · invStd
//   dx, training:  dx = ((g − k1[c]) − (x − mean[c]) · k2[c]) · k3[c]
//       (= gamma·invStd·(g − mean(g) − xhat·mean(g·xhat)); dgamma = sumDyXmu·invStd, dbeta = sumDy)
//   dx, eval (mean and invStd constants, k1 = 0): dx = (g − k1[c]) · k3[c]; x is not read.
//
// The reduce is a mergeable block reduction on the statistics partition of stats.ts (the same
// `block` argument, the same block numbering: NCHW segments of long planes or groups of short
// planes, channels-last groups of `block` rows; a function of the shape and `block` alone).
// Block b of every channel is one partial, f64 at partials + ((2b + f)·C + c)·8 for field
// f = 0 Σg, 1 Σg·(x − mean) over the block's values. A call computes the partials of blocks
// [b0, b1) for all channels, so a range split over several calls (threads) gives the same bits
// as one call; mergeSumsF64 then adds each channel's partials in block order
// (sum = p_0 + p_1 + … + p_{B−1}, left to right) in both builds alike. backwardNchwF32 (fused.ts)
// computes the same per-block sums in the same order and adds them in the same order: its sums
// are bit-identical to backwardReduceNchwF32 + mergeSumsF64 for the same `block`.
// Within a block: NCHW plane by plane (a run of at most `block` contiguous values per plane and
// channel, f64x2 chains in the SIMD builds), each run's sums added to the block's (slot + run,
// the slots zeroed at the block's first plane); channels-last as statsNhwcF32Simd (period
// accumulators, see period.ts). x − mean and g·(x − mean) round at most once each in f64,
// every addition once (the relaxed-SIMD build may fuse a product into its addition, one rounding
// fewer: maddF64x2, simd.ts): whatever the order, each sum of m terms is within γ_{m+2}·Σ|terms|
// of the exact sum (Higham 4.2).
//
// Contract: dy, x, y read-only f32, 4-byte aligned (y = 0: no ReLU); dx may equal dy or x (in
// place), no other overlap. NCHW: [outer][C][inner].  NHWC: [rows][C], `work` holds
// workspaceBytes(C) bytes (the scalar twins take it too, for one argument list; the scalar dx
// ignores it). mean, k1, k2, k3 are f32[C]; partials f64[blocks][2][C]; sumDy, sumDyXmu f64[C].
// dx: SIMD lanes, scalar tails and the scalar build do the same f32 operations: bit-identical.
import { periodOf, rowPeriodOf, groupRowsOf, QUAD_ROWS_MAX_BYTES, tileF32, tileF32AsF64, zeroF64, foldPeriodF64 } from './period';
import { segmentsOf, planesOf } from './stats';
import { addF64x2x4, loadF32x2AsF64, promoteHigh, grad1, grad4, grad2AsF64, maddF64x2 } from './simd';

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

/**
 * Σg and Σg·(x − m) over one run of `n` contiguous values (dy, x, y at pdy, px, py; y is read
 * only when `masked`), added to the f64 values at s1At and s2At (slot + run): the results go
 * straight into the caller's partial slots, zeroed by the caller at a block's first plane
 * (0 + s is s: a run's sums start from +0, so they are never −0). Four f64x2 chains per sum over 8-value
 * steps, then one 4-value step, folded pairwise, then the scalar tail.
 */
// @ts-ignore: decorator
@inline export function reduceRunSimd(
  pdy: usize, px: usize, py: usize, n: i32, m: f64, s1At: usize, s2At: usize, masked: bool,
): void {
  const mm = f64x2.splat(m);
  let a0 = f64x2.splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  let t1 = 0.0, t2 = 0.0;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const k = <usize>i << 2;
    const gp = pdy + k, xp = px + k, yp = py + k; // immediate offsets below
    let g0: v128, g1: v128, g2: v128, g3: v128;
    if (masked) { // one mask per 4 values, then the high halves by a shuffle
      const g = grad4(gp, yp, 0, true), h = grad4(gp, yp, 16, true);
      g0 = f64x2.promote_low_f32x4(g); g1 = promoteHigh(g); g2 = f64x2.promote_low_f32x4(h); g3 = promoteHigh(h);
    } else { // two values per load, no shuffle
      g0 = loadF32x2AsF64(gp); g1 = f64x2.promote_low_f32x4(v128.load64_zero(gp, 8));
      g2 = f64x2.promote_low_f32x4(v128.load64_zero(gp, 16)); g3 = f64x2.promote_low_f32x4(v128.load64_zero(gp, 24));
    }
    const d0 = f64x2.sub(loadF32x2AsF64(xp), mm);
    const d1 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(xp, 8)), mm);
    const d2 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(xp, 16)), mm);
    const d3 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(xp, 24)), mm);
    a0 = f64x2.add(a0, g0); b0 = maddF64x2(g0, d0, b0);
    a1 = f64x2.add(a1, g1); b1 = maddF64x2(g1, d1, b1);
    a2 = f64x2.add(a2, g2); b2 = maddF64x2(g2, d2, b2);
    a3 = f64x2.add(a3, g3); b3 = maddF64x2(g3, d3, b3);
  }
  if (i + 4 <= n) {
    const k = <usize>i << 2;
    const g0 = grad2AsF64(pdy, py, k, masked), g1 = grad2AsF64(pdy, py, k + 8, masked);
    a0 = f64x2.add(a0, g0); b0 = maddF64x2(g0, f64x2.sub(loadF32x2AsF64(px + k), mm), b0);
    a1 = f64x2.add(a1, g1); b1 = maddF64x2(g1, f64x2.sub(loadF32x2AsF64(px + k + 8), mm), b1);
    i += 4;
  }
  for (; i < n; i++) {
    const k = <usize>i << 2;
    const g = <f64>grad1(pdy, py, k, masked);
    t1 += g; t2 += g * (<f64>load<f32>(px + k) - m);
  }
  const a = f64x2.add(f64x2.add(a0, a1), f64x2.add(a2, a3)), b = f64x2.add(f64x2.add(b0, b1), f64x2.add(b2, b3));
  const s1 = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1) + t1;
  const s2 = f64x2.extract_lane(b, 0) + f64x2.extract_lane(b, 1) + t2;
  store<f64>(s1At, load<f64>(s1At) + s1);
  store<f64>(s2At, load<f64>(s2At) + s2);
}

/** The scalar twin: the same contract, one chain per sum in index order. */
// @ts-ignore: decorator
@inline export function reduceRunScalar(
  pdy: usize, px: usize, py: usize, n: i32, m: f64, s1At: usize, s2At: usize, masked: bool,
): void {
  let s1 = 0.0, s2 = 0.0;
  for (let i = 0; i < n; i++) {
    const k = <usize>i << 2;
    const g = <f64>grad1(pdy, py, k, masked);
    s1 += g; s2 += g * (<f64>load<f32>(px + k) - m);
  }
  store<f64>(s1At, load<f64>(s1At) + s1);
  store<f64>(s2At, load<f64>(s2At) + s2);
}

/** The build's own run sums (the SIMD twin in the SIMD builds). */
// @ts-ignore: decorator
@inline export function reduceRun(
  pdy: usize, px: usize, py: usize, n: i32, m: f64, s1At: usize, s2At: usize, masked: bool,
): void {
  if (ASC_FEATURE_SIMD) reduceRunSimd(pdy, px, py, n, m, s1At, s2At, masked);
  else reduceRunScalar(pdy, px, py, n, m, s1At, s2At, masked);
}

/**
 * NCHW partials of blocks [b0, b1), in memory order as statsNchwF32: plane by plane ((n, c)
 * order), each segment's run sums added into the block's two slots (zeroed at the block's first
 * plane). One source for both builds; the body is specialized for y = 0 and y != 0.
 */
export function backwardReduceNchwF32(
  dy: usize, x: usize, outer: i32, C: i32, inner: i32, mean: usize,
  block: i32, b0: i32, b1: i32, partials: usize, y: usize,
): void {
  if (y) reduceNchwAs(dy, x, outer, C, inner, mean, block, b0, b1, partials, y, true);
  else reduceNchwAs(dy, x, outer, C, inner, mean, block, b0, b1, partials, 0, false);
}

// @ts-ignore: decorator
@inline function reduceNchwAs(
  dy: usize, x: usize, outer: i32, C: i32, inner: i32, mean: usize,
  block: i32, b0: i32, b1: i32, partials: usize, y: usize, masked: bool,
): void {
  if (b1 <= b0) return;
  const S = segmentsOf(inner, block), P = planesOf(inner, block);
  const plane = <usize>inner << 2;
  const row = <usize>C << 3; // one field of one block's partials
  const o0 = (b0 / S) * P, o1 = min(((b1 - 1) / S + 1) * P, outer);
  for (let o = o0; o < o1; o++) {
    const g = o / P, first = g * P;
    const s0 = max(b0 - g * S, 0), s1 = min(b1 - g * S, S);
    for (let c = 0; c < C; c++) {
      const off = plane * (<usize>o * C + c);
      const m = <f64>load<f32>(mean + (<usize>c << 2));
      for (let s = s0; s < s1; s++) {
        const i0 = s * block, len = min(block, inner - i0);
        const at = off + (<usize>i0 << 2);
        const part = partials + <usize>(g * S + s) * 2 * row + (<usize>c << 3);
        if (o == first) {
          store<f64>(part, 0);
          store<f64>(part + row, 0);
        }
        reduceRun(dy + at, x + at, y + at, len, m, part, part + row, masked);
      }
    }
  }
}

/**
 * Channels-last partials of blocks [b0, b1), blocked like statsNhwcF32Simd: a block of rows is
 * `total / L` super-rows of one period (L = lcm(C, 4) values) plus a short tail. Super-rows are
 * taken in groups that stay in cache (BLOCK_BYTES); within a group, each vector of 4 period
 * positions is summed down the group's rows in f64x2 registers, then added to the period
 * accumulators once; the tail (< one period) goes element by element; the period is then
 * folded into the block's channels.
 */
export function backwardReduceNhwcF32Simd(
  dy: usize, x: usize, rows: i32, C: i32, mean: usize,
  block: i32, b0: i32, b1: i32, partials: usize, work: usize, y: usize,
): void {
  const masked = y != 0;
  const L = periodOf(C);
  const rowBytes = <usize>L << 2;
  const meanP = work, acc1 = work + (<usize>L << 3), acc2 = acc1 + (<usize>L << 3);
  tileF32AsF64(mean, C, L, meanP);
  const groupRows = groupRowsOf(rowBytes);
  for (let b = b0; b < b1; b++) {
    const first = <usize>b * <usize>block, count = min(<usize>rows, first + <usize>block) - first;
    const base = (first * <usize>C) << 2; // byte offset of the block in dy, x and y
    zeroF64(acc1, L);
    zeroF64(acc2, L);
    const total = count * <usize>C;
    const superRows = total / <usize>L;
    for (let r0: usize = 0; r0 < superRows; r0 += groupRows) {
      const r1 = min(superRows, r0 + groupRows);
      // Per walk down the group's rows, eight period positions summed in f64x2 registers, one
      // row per step, as in statsNhwcF32Simd (measured 1.2-1.6x faster from memory, 6272x1024 to
      // 25088x512; the same in cache). Groups capped at 4 rows (rows a multiple of 4 KiB apart,
      // groupRowsOf) walk four positions down row pairs instead: eight measured 0.81-0.94x there
      // (32x7x7 rows of 2048 channels). A period of 4 mod 8 positions ends with four-position walks.
      let j: usize = 0;
      for (; groupRows > 4 && j + 8 <= <usize>L; j += 8) {
        const o = j << 3;
        const m0 = v128.load(meanP + o), m1 = v128.load(meanP + o, 16), m2 = v128.load(meanP + o, 32), m3 = v128.load(meanP + o, 48);
        let a0 = f64x2.splat(0), a1 = a0, a2 = a0, a3 = a0;
        let e0 = a0, e1 = a0, e2 = a0, e3 = a0;
        let k = base + r0 * rowBytes + (j << 2);
        for (let r = r0; r < r1; r++, k += rowBytes) {
          const g0 = grad2AsF64(dy, y, k, masked), g1 = grad2AsF64(dy, y, k + 8, masked);
          const g2 = grad2AsF64(dy, y, k + 16, masked), g3 = grad2AsF64(dy, y, k + 24, masked);
          a0 = f64x2.add(a0, g0); e0 = maddF64x2(g0, f64x2.sub(loadF32x2AsF64(x + k), m0), e0);
          a1 = f64x2.add(a1, g1); e1 = maddF64x2(g1, f64x2.sub(loadF32x2AsF64(x + k + 8), m1), e1);
          a2 = f64x2.add(a2, g2); e2 = maddF64x2(g2, f64x2.sub(loadF32x2AsF64(x + k + 16), m2), e2);
          a3 = f64x2.add(a3, g3); e3 = maddF64x2(g3, f64x2.sub(loadF32x2AsF64(x + k + 24), m3), e3);
        }
        addF64x2x4(acc1 + o, a0, a1, a2, a3);
        addF64x2x4(acc2 + o, e0, e1, e2, e3);
      }
      for (; j < <usize>L; j += 4) {
        const o = j << 3;
        const m0 = v128.load(meanP + o), m1 = v128.load(meanP + o, 16);
        let a0 = f64x2.splat(0), a1 = a0, c0 = a0, c1 = a0;
        let e0 = a0, e1 = a0, f0 = a0, f1 = a0;
        let k = base + r0 * rowBytes + (j << 2);
        let r = r0;
        for (; r + 2 <= r1; r += 2, k += rowBytes << 1) {
          const l = k + rowBytes;
          const g = grad4(dy, y, k, masked), h = grad4(dy, y, l, masked);
          const g0 = f64x2.promote_low_f32x4(g), g1 = promoteHigh(g), h0 = f64x2.promote_low_f32x4(h), h1 = promoteHigh(h);
          a0 = f64x2.add(a0, g0); e0 = maddF64x2(g0, f64x2.sub(loadF32x2AsF64(x + k), m0), e0);
          a1 = f64x2.add(a1, g1); e1 = maddF64x2(g1, f64x2.sub(loadF32x2AsF64(x + k + 8), m1), e1);
          c0 = f64x2.add(c0, h0); f0 = maddF64x2(h0, f64x2.sub(loadF32x2AsF64(x + l), m0), f0);
          c1 = f64x2.add(c1, h1); f1 = maddF64x2(h1, f64x2.sub(loadF32x2AsF64(x + l + 8), m1), f1);
        }
        if (r < r1) {
          const g0 = grad2AsF64(dy, y, k, masked), g1 = grad2AsF64(dy, y, k + 8, masked);
          a0 = f64x2.add(a0, g0); e0 = maddF64x2(g0, f64x2.sub(loadF32x2AsF64(x + k), m0), e0);
          a1 = f64x2.add(a1, g1); e1 = maddF64x2(g1, f64x2.sub(loadF32x2AsF64(x + k + 8), m1), e1);
        }
        v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o), f64x2.add(a0, c0)));
        v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o, 16), f64x2.add(a1, c1)), 16);
        v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o), f64x2.add(e0, f0)));
        v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o, 16), f64x2.add(e1, f1)), 16);
      }
    }
    for (let i = superRows * <usize>L, j: usize = 0; i < total; i++, j++) {
      const k = base + (i << 2), o = j << 3;
      const g = <f64>grad1(dy, y, k, masked);
      store<f64>(acc1 + o, load<f64>(acc1 + o) + g);
      store<f64>(acc2 + o, load<f64>(acc2 + o) + g * (<f64>load<f32>(x + k) - load<f64>(meanP + o)));
    }
    const part = partials + <usize>b * 2 * (<usize>C << 3);
    foldPeriodF64(acc1, C, L, part);
    foldPeriodF64(acc2, C, L, part + (<usize>C << 3));
  }
}

/**
 * The scalar twin: the same blocks, the partial slots themselves as per-channel accumulators
 * (period = C) in row order; `work` holds the mean widened to f64.
 */
export function backwardReduceNhwcF32Scalar(
  dy: usize, x: usize, rows: i32, C: i32, mean: usize,
  block: i32, b0: i32, b1: i32, partials: usize, work: usize, y: usize,
): void {
  const masked = y != 0;
  const row = <usize>C << 3;
  const meanP = work;
  tileF32AsF64(mean, C, C, meanP);
  for (let b = b0; b < b1; b++) {
    const first = <usize>b * <usize>block, count = min(<usize>rows, first + <usize>block) - first;
    const base = (first * <usize>C) << 2;
    const s1 = partials + <usize>b * 2 * row, s2 = s1 + row;
    zeroF64(s1, C);
    zeroF64(s2, C);
    for (let r: usize = 0; r < count; r++) {
      const p = base + ((r * <usize>C) << 2);
      for (let c = 0; c < C; c++) {
        const k = p + (<usize>c << 2), o = <usize>c << 3;
        const g = <f64>grad1(dy, y, k, masked);
        store<f64>(s1 + o, load<f64>(s1 + o) + g);
        store<f64>(s2 + o, load<f64>(s2 + o) + g * (<f64>load<f32>(x + k) - load<f64>(meanP + o)));
      }
    }
  }
}

/**
 * Adds each channel's `blocks` partials in block order into f64 sumDy[C] and sumDyXmu[C]:
 * sum = p_0, then sum = sum + p_b for b = 1 … blocks − 1. Two channels per f64x2 step in the
 * SIMD builds (lane-wise the same additions as the scalar step): both builds merge to the same
 * bits.
 */
export function mergeSumsF64(partials: usize, blocks: i32, C: i32, sumDy: usize, sumDyXmu: usize): void {
  const row = <usize>C << 3, stride = row * 2;
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    for (; c + 2 <= C; c += 2) {
      const pc = partials + (<usize>c << 3);
      let s1 = v128.load(pc), s2 = v128.load(pc + row);
      for (let b = 1; b < blocks; b++) {
        const p = pc + <usize>b * stride;
        s1 = f64x2.add(s1, v128.load(p));
        s2 = f64x2.add(s2, v128.load(p + row));
      }
      v128.store(sumDy + (<usize>c << 3), s1);
      v128.store(sumDyXmu + (<usize>c << 3), s2);
    }
  }
  for (; c < C; c++) {
    const pc = partials + (<usize>c << 3);
    let s1 = load<f64>(pc), s2 = load<f64>(pc + row);
    for (let b = 1; b < blocks; b++) {
      const p = pc + <usize>b * stride;
      s1 += load<f64>(p);
      s2 += load<f64>(p + row);
    }
    store<f64>(sumDy + (<usize>c << 3), s1);
    store<f64>(sumDyXmu + (<usize>c << 3), s2);
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
  // Super-rows of L values (a multiple of the period): in cache four at a time with each vector
  // of tiled constants loaded once for the four, as in normalizeNhwcF32Simd (QUAD_ROWS_MAX_BYTES,
  // period.ts); then single super-rows; then the tail (< L values, from a period boundary) by
  // vectors and value by value. A row's dx is stored before the next row is read: in place
  // (dx = dy, x or y) each value is read before it is written. Not with the ReLU mask when rows
  // are a multiple of 4 KiB apart: the four rows of four streams then share one L1 set (see
  // groupRowsOf), measured slower (dx over [256, 1024] masked: 97 µs row by row, 115 µs four
  // rows at a time; unmasked 84 → 72).
  const total = <usize>rows * C;
  const rowBytes = <usize>L << 2;
  const end = (total / <usize>L) * rowBytes;
  const quad = (total << 2) <= QUAD_ROWS_MAX_BYTES && !(masked && (rowBytes & 4095) == 0);
  const quads: usize = quad ? end / (4 * rowBytes) * (4 * rowBytes) : 0;
  let base: usize = 0;
  for (; base < quads; base += 4 * rowBytes) {
    for (let o: usize = 0; o < rowBytes; o += 16) {
      const m = v128.load(mP + o), a = v128.load(aP + o), b = v128.load(bP + o), t = v128.load(sP + o);
      const k = base + o, k1 = k + rowBytes, k2 = k1 + rowBytes, k3 = k2 + rowBytes;
      v128.store(dx + k, dx4(grad4(dy, y, k, masked), x, k, m, a, b, t, training));
      v128.store(dx + k1, dx4(grad4(dy, y, k1, masked), x, k1, m, a, b, t, training));
      v128.store(dx + k2, dx4(grad4(dy, y, k2, masked), x, k2, m, a, b, t, training));
      v128.store(dx + k3, dx4(grad4(dy, y, k3, masked), x, k3, m, a, b, t, training));
    }
  }
  for (; base < end; base += rowBytes) {
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
  mean: usize, k1: usize, k2: usize, k3: usize, work: usize, training: bool, y: usize,
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
