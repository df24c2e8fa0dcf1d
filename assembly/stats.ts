// Per-channel batch statistics for training: count, mean and m2 = Σ (x − mean)², in float64,
// as mergeable block partials.
//
// Partition (a function of the shape and `block` alone, never of the call path or thread
// count): each channel's values are cut into blocks of at most `block` values.
//   NCHW [outer][C][inner]: a plane longer than `block` is cut into S = ceil(inner / block)
//     segments (block b = plane b / S, segment b % S); shorter planes are grouped P =
//     floor(block / inner) at a time (block b = planes [bP, bP + P)). Blocks: S·ceil(outer / P).
//   Channels-last [rows][C]: block b = rows [b·block, (b + 1)·block). Blocks: ceil(rows / block).
// Block b of every channel is one partial, f64 at partials + ((4b + f)·C + c)·8 for field
// f = 0 count n_b, 1 pivot K, 2 offset mean_b − K, 3 m2_b: a call computes the partials of
// blocks [b0, b1) for all channels, so a range split over several calls (threads) gives the
// same bits as one call. The backward sums (backward.ts) use the same partition and numbering.
//
// Within a block, a shifted one-pass sum with K = the block's first value (0 if not finite):
//   s1 = Σ (x − K),  s2 = Σ (x − K)²,  mean_b − K = s1 / n_b,  m2_b = max(s2 − s1² / n_b, 0).
// The block's mean is kept as K plus an offset, never rounded to one f64: merging blocks then
// loses nothing to a huge |mean| (K_b − K_0 is exact: both are f32 values).
// x − K is exact in f64 and its square rounds once; the cancellation in s2 − s1²/n_b grows with
// ((mean_b − K)/std_b)² ≤ n_b − 1 (K is one of the block's values), so however adversarial the
// order of the data (an outlier first, a sparse post-ReLU channel), the relative error of m2_b
// stays below about n_b · (chain length) · 2^-53 ≤ block² · 2^-53 (2^-31 at block = 2048).
// mergeMomentsF64 then folds the partials of each channel in block order with Chan's update
// (no cancellation: every term of m2 is >= 0), every mean taken relative to K_0 (block 0's
// pivot), mean_b − K_0 = (K_b − K_0) + offset_b:
//   n = na + nb,  δ = mean_b − mean_a,  mean = mean_a + δ·(nb / n),  m2 = m2_a + m2_b + δ²·(na·(nb / n))
// (mean = mean_a + mean_b when δ is not finite, so ±Inf survive as the oracle's Σx/n does),
// and finally mean = K_0 + the merged offset.
// NaN/Inf propagate per channel as IEEE arithmetic does.
//
// Contract: x is f32, read-only, 4-byte aligned; partials f64; channels-last kernels use `work`
// (workspace, see period.ts), both twins alike. SIMD main loops, scalar tails; each build
// computes a block's sums in its own fixed order (the NCHW runs add their sums straight into
// the block's partial slots, zeroed at its first plane: slot + run, plane by plane); the
// relaxed-SIMD build's squares round once where the hardware fuses them into their sum
// (maddF64x2, simd.ts).
import { periodOf, groupRowsOf, tileF64InPlace, zeroF64, foldPeriodF64 } from './period';
import { addF64x2x4, loadF32x2AsF64, maddF64x2 } from './simd';

// @ts-ignore: decorator
@inline export function shiftOf(v: f32): f64 {
  return isFinite(v) ? <f64>v : 0.0;
}

/** NCHW partition: segments per plane (planes longer than `block`), else 1. */
// @ts-ignore: decorator
@inline export function segmentsOf(inner: i32, block: i32): i32 {
  return inner > block ? (inner - 1) / block + 1 : 1;
}

/** NCHW partition: whole planes per block (planes of at most `block` values), else 1. */
// @ts-ignore: decorator
@inline export function planesOf(inner: i32, block: i32): i32 {
  return inner >= block ? 1 : block / inner;
}

/** A block's mean − K and m2 from its shifted sums s1, s2 over n values. */
// @ts-ignore: decorator
@inline export function blockOffset(s1: f64, n: f64): f64 {
  return s1 / n;
}
// @ts-ignore: decorator
@inline export function blockM2(s1: f64, s2: f64, n: f64): f64 {
  return max(s2 - (s1 * s1) / n, 0.0);
}

/**
 * Chan's update of (na, mean, m2) by a block (nb, mb, qb), w = nb / (na + nb), means relative
 * to block 0's pivot; m2 first, then the mean.
 */
// @ts-ignore: decorator
@inline export function mergedM2(q: f64, qb: f64, mean: f64, mb: f64, na: f64, w: f64): f64 {
  const d = mb - mean;
  return (q + qb) + (d * d) * (na * w);
}
// @ts-ignore: decorator
@inline export function mergedMean(mean: f64, mb: f64, w: f64): f64 {
  const d = mb - mean;
  return isFinite(d) ? mean + d * w : mean + mb;
}

/**
 * The shifted sums s1 = Σ (x − k), s2 = Σ (x − k)² of `n` contiguous values at p, added to the
 * f64 values at s1At and s2At (slot + run): the results go straight into the caller's partial
 * slots, zeroed by the caller at a block's first plane (0 + s is s: a run's sums start from +0,
 * so they are never −0). Four independent f64x2 chains per sum over 8-value steps, then one
 * 4-value step, folded pairwise, then the scalar tail.
 */
// @ts-ignore: decorator
@inline export function sumShiftedRunSimd(p: usize, n: i32, k: f64, s1At: usize, s2At: usize): void {
  const kk = f64x2.splat(k);
  let a0 = f64x2.splat(0), a1 = a0, a2 = a0, a3 = a0;
  let q0 = a0, q1 = a0, q2 = a0, q3 = a0;
  let t1 = 0.0, t2 = 0.0;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const q = p + (<usize>i << 2); // immediate offsets below: no address arithmetic per load
    const d0 = f64x2.sub(loadF32x2AsF64(q), kk);
    const d1 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(q, 8)), kk);
    const d2 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(q, 16)), kk);
    const d3 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(q, 24)), kk);
    a0 = f64x2.add(a0, d0); q0 = maddF64x2(d0, d0, q0);
    a1 = f64x2.add(a1, d1); q1 = maddF64x2(d1, d1, q1);
    a2 = f64x2.add(a2, d2); q2 = maddF64x2(d2, d2, q2);
    a3 = f64x2.add(a3, d3); q3 = maddF64x2(d3, d3, q3);
  }
  if (i + 4 <= n) {
    const q = p + (<usize>i << 2);
    const d0 = f64x2.sub(loadF32x2AsF64(q), kk);
    const d1 = f64x2.sub(loadF32x2AsF64(q + 8), kk);
    a0 = f64x2.add(a0, d0); q0 = maddF64x2(d0, d0, q0);
    a1 = f64x2.add(a1, d1); q1 = maddF64x2(d1, d1, q1);
    i += 4;
  }
  for (; i < n; i++) {
    const d = <f64>load<f32>(p + (<usize>i << 2)) - k;
    t1 += d; t2 += d * d;
  }
  const a = f64x2.add(f64x2.add(a0, a1), f64x2.add(a2, a3));
  const q = f64x2.add(f64x2.add(q0, q1), f64x2.add(q2, q3));
  const s1 = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1) + t1;
  const s2 = f64x2.extract_lane(q, 0) + f64x2.extract_lane(q, 1) + t2;
  store<f64>(s1At, load<f64>(s1At) + s1);
  store<f64>(s2At, load<f64>(s2At) + s2);
}

/** The scalar twin: the same contract, one chain per sum in index order. */
// @ts-ignore: decorator
@inline export function sumShiftedRunScalar(p: usize, n: i32, k: f64, s1At: usize, s2At: usize): void {
  let s1 = 0.0, s2 = 0.0;
  for (let i = 0; i < n; i++) {
    const d = <f64>load<f32>(p + (<usize>i << 2)) - k;
    s1 += d; s2 += d * d;
  }
  store<f64>(s1At, load<f64>(s1At) + s1);
  store<f64>(s2At, load<f64>(s2At) + s2);
}

/** The build's own run sums (the SIMD twin in the SIMD builds). */
// @ts-ignore: decorator
@inline export function sumShiftedRun(p: usize, n: i32, k: f64, s1At: usize, s2At: usize): void {
  if (ASC_FEATURE_SIMD) sumShiftedRunSimd(p, n, k, s1At, s2At);
  else sumShiftedRunScalar(p, n, k, s1At, s2At);
}

/**
 * NCHW partials of blocks [b0, b1), in memory order: plane by plane ((n, c) order), each
 * segment's shifted sums stored (first plane of its block) or added (later planes) into the
 * block's mean and m2 slots, and the block finished at its last plane. The pivot of a block is
 * its first value, re-read from x. The same per-plane sums in the same order as
 * forwardTrainNchwF32 (fused.ts), so both give the same bits.
 */
export function statsNchwF32(x: usize, outer: i32, C: i32, inner: i32, block: i32, b0: i32, b1: i32, partials: usize): void {
  if (b1 <= b0) return;
  const S = segmentsOf(inner, block), P = planesOf(inner, block);
  const plane = <usize>inner << 2;
  const row = <usize>C << 3; // one field of one block's partials
  // Until a block's last plane, its offset and m2 slots hold the running s1 and s2.
  const o0 = (b0 / S) * P, o1 = min(((b1 - 1) / S + 1) * P, outer);
  for (let o = o0; o < o1; o++) {
    const g = o / P, first = g * P, last = min(first + P, outer) - 1;
    const s0 = max(b0 - g * S, 0), s1 = min(b1 - g * S, S);
    for (let c = 0; c < C; c++) {
      const p = x + plane * (<usize>o * C + c), pk = x + plane * (<usize>first * C + c);
      for (let s = s0; s < s1; s++) {
        const i0 = s * block, len = min(block, inner - i0);
        const at = <usize>i0 << 2;
        const k = shiftOf(load<f32>(pk + at));
        const part = partials + <usize>(g * S + s) * 4 * row + (<usize>c << 3);
        if (o == first) {
          store<f64>(part + 2 * row, 0);
          store<f64>(part + 3 * row, 0);
        }
        sumShiftedRun(p + at, len, k, part + 2 * row, part + 3 * row);
        if (o == last) {
          const n = <f64>(last - first + 1) * <f64>len;
          const t1 = load<f64>(part + 2 * row), t2 = load<f64>(part + 3 * row);
          store<f64>(part, n);
          store<f64>(part + row, k);
          store<f64>(part + 2 * row, blockOffset(t1, n));
          store<f64>(part + 3 * row, blockM2(t1, t2, n));
        }
      }
    }
  }
}

/**
 * Channels-last partials of blocks [b0, b1). A block of rows is `total / L` super-rows of one
 * period each (period.ts) plus a short tail. Super-rows are taken in groups that stay in cache
 * (BLOCK_BYTES); within a group, each vector of 4 period positions is summed down the group's
 * rows in f64x2 registers, then added to the period accumulators once. The tail (< one period)
 * goes element by element into the same accumulators; the period is then folded into channels.
 * The pivots are the block's first row, tiled to the period.
 */
export function statsNhwcF32Simd(x: usize, rows: i32, C: i32, block: i32, b0: i32, b1: i32, partials: usize, work: usize): void {
  const L = periodOf(C);
  const rowBytes = <usize>L << 2;
  const shift = work, acc1 = work + (<usize>L << 3), acc2 = acc1 + (<usize>L << 3);
  const groupRows = groupRowsOf(rowBytes);
  for (let b = b0; b < b1; b++) {
    const first = <usize>b * <usize>block, count = min(<usize>rows, first + <usize>block) - first;
    const base = x + ((first * <usize>C) << 2);
    for (let c = 0; c < C; c++) store<f64>(shift + (<usize>c << 3), shiftOf(load<f32>(base + (<usize>c << 2))));
    tileF64InPlace(shift, C, L);
    zeroF64(acc1, L);
    zeroF64(acc2, L);
    const total = count * <usize>C;
    const superRows = total / <usize>L;
    for (let r0: usize = 0; r0 < superRows; r0 += groupRows) {
      const r1 = min(superRows, r0 + groupRows);
      // Per walk down the group's rows, eight period positions (32 bytes of each row) summed in
      // f64x2 registers, one row per step: four independent chains per sum hide the adds'
      // latency. Eight positions rather than four halve the walks over each cache line
      // (measured 1.17-1.28x faster from memory, 6272x1024 to 100352x256; the same in cache).
      // A period of 4 mod 8 positions ends with one four-position walk.
      let j: usize = 0;
      for (; j + 8 <= <usize>L; j += 8) {
        const o = j << 3;
        const k0 = v128.load(shift + o), k1 = v128.load(shift + o, 16), k2 = v128.load(shift + o, 32), k3 = v128.load(shift + o, 48);
        let a0 = f64x2.splat(0), a1 = a0, a2 = a0, a3 = a0;
        let q0 = a0, q1 = a0, q2 = a0, q3 = a0;
        let p = base + r0 * rowBytes + (j << 2);
        for (let r = r0; r < r1; r++, p += rowBytes) {
          const d0 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p)), k0);
          const d1 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p, 8)), k1);
          const d2 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p, 16)), k2);
          const d3 = f64x2.sub(f64x2.promote_low_f32x4(v128.load64_zero(p, 24)), k3);
          a0 = f64x2.add(a0, d0); q0 = maddF64x2(d0, d0, q0);
          a1 = f64x2.add(a1, d1); q1 = maddF64x2(d1, d1, q1);
          a2 = f64x2.add(a2, d2); q2 = maddF64x2(d2, d2, q2);
          a3 = f64x2.add(a3, d3); q3 = maddF64x2(d3, d3, q3);
        }
        addF64x2x4(acc1 + o, a0, a1, a2, a3);
        addF64x2x4(acc2 + o, q0, q1, q2, q3);
      }
      for (; j < <usize>L; j += 4) {
        const o = j << 3;
        const k0 = v128.load(shift + o), k1 = v128.load(shift + o, 16);
        let a0 = f64x2.splat(0), a1 = a0, q0 = a0, q1 = a0;
        let p = base + r0 * rowBytes + (j << 2);
        for (let r = r0; r < r1; r++, p += rowBytes) {
          const d0 = f64x2.sub(loadF32x2AsF64(p), k0), d1 = f64x2.sub(loadF32x2AsF64(p + 8), k1);
          a0 = f64x2.add(a0, d0); q0 = maddF64x2(d0, d0, q0);
          a1 = f64x2.add(a1, d1); q1 = maddF64x2(d1, d1, q1);
        }
        v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o), a0));
        v128.store(acc1 + o, f64x2.add(v128.load(acc1 + o, 16), a1), 16);
        v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o), q0));
        v128.store(acc2 + o, f64x2.add(v128.load(acc2 + o, 16), q1), 16);
      }
    }
    for (let i = superRows * <usize>L, j: usize = 0; i < total; i++, j++) {
      const o = j << 3;
      const d = <f64>load<f32>(base + (i << 2)) - load<f64>(shift + o);
      store<f64>(acc1 + o, load<f64>(acc1 + o) + d);
      store<f64>(acc2 + o, load<f64>(acc2 + o) + d * d);
    }
    finishBlockPeriod(C, L, <f64>count, shift, acc1, acc2, partials + <usize>b * 4 * (<usize>C << 3));
  }
}

/** The scalar twin: the same blocks and pivots, per-channel accumulators (period = C) in row order. */
export function statsNhwcF32Scalar(x: usize, rows: i32, C: i32, block: i32, b0: i32, b1: i32, partials: usize, work: usize): void {
  const shift = work, acc1 = work + (<usize>C << 3), acc2 = acc1 + (<usize>C << 3);
  for (let b = b0; b < b1; b++) {
    const first = <usize>b * <usize>block, count = min(<usize>rows, first + <usize>block) - first;
    const base = x + ((first * <usize>C) << 2);
    for (let c = 0; c < C; c++) store<f64>(shift + (<usize>c << 3), shiftOf(load<f32>(base + (<usize>c << 2))));
    zeroF64(acc1, C);
    zeroF64(acc2, C);
    for (let r: usize = 0; r < count; r++) {
      const p = base + ((r * <usize>C) << 2);
      for (let c = 0; c < C; c++) {
        const o = <usize>c << 3;
        const d = <f64>load<f32>(p + (<usize>c << 2)) - load<f64>(shift + o);
        store<f64>(acc1 + o, load<f64>(acc1 + o) + d);
        store<f64>(acc2 + o, load<f64>(acc2 + o) + d * d);
      }
    }
    finishBlockPeriod(C, C, <f64>count, shift, acc1, acc2, partials + <usize>b * 4 * (<usize>C << 3));
  }
}

/** Folds period accumulators into one block's partials (count | pivot | offset | m2 rows of C f64). */
function finishBlockPeriod(C: i32, L: i32, n: f64, shift: usize, acc1: usize, acc2: usize, part: usize): void {
  const row = <usize>C << 3;
  foldPeriodF64(acc1, C, L, part + 2 * row);
  foldPeriodF64(acc2, C, L, part + 3 * row);
  for (let c = 0; c < C; c++) {
    const o = <usize>c << 3;
    const t1 = load<f64>(part + 2 * row + o), t2 = load<f64>(part + 3 * row + o);
    store<f64>(part + o, n);
    store<f64>(part + row + o, load<f64>(shift + o));
    store<f64>(part + 2 * row + o, blockOffset(t1, n));
    store<f64>(part + 3 * row + o, blockM2(t1, t2, n));
  }
}

/**
 * Merges each channel's `blocks` partials in block order (Chan's update, see the header) into
 * f64 mean[C] and m2[C], means relative to block 0's pivot K_0. Two channels per f64x2 step in
 * the SIMD builds, the same IEEE operations as the scalar step (mergedM2, mergedMean): both
 * builds merge to the same bits.
 */
export function mergeMomentsF64(partials: usize, blocks: i32, C: i32, mean: usize, m2: usize): void {
  const row = <usize>C << 3, stride = row * 4;
  let c = 0;
  if (ASC_FEATURE_SIMD) {
    const inf = f64x2.splat(Infinity);
    for (; c + 2 <= C; c += 2) {
      const pc = partials + (<usize>c << 3);
      const k = v128.load(pc + row);
      let n = v128.load(pc), mu = v128.load(pc + 2 * row), q = v128.load(pc + 3 * row);
      for (let b = 1; b < blocks; b++) {
        const p = pc + <usize>b * stride;
        const nb = v128.load(p), qb = v128.load(p + 3 * row);
        const mb = f64x2.add(f64x2.sub(v128.load(p + row), k), v128.load(p + 2 * row));
        const total = f64x2.add(n, nb), w = f64x2.div(nb, total), d = f64x2.sub(mb, mu);
        q = f64x2.add(f64x2.add(q, qb), f64x2.mul(f64x2.mul(d, d), f64x2.mul(n, w)));
        mu = v128.bitselect(f64x2.add(mu, f64x2.mul(d, w)), f64x2.add(mu, mb), f64x2.lt(f64x2.abs(d), inf));
        n = total;
      }
      v128.store(mean + (<usize>c << 3), f64x2.add(k, mu));
      v128.store(m2 + (<usize>c << 3), q);
    }
  }
  for (; c < C; c++) {
    const pc = partials + (<usize>c << 3);
    const k = load<f64>(pc + row);
    let n = load<f64>(pc), mu = load<f64>(pc + 2 * row), q = load<f64>(pc + 3 * row);
    for (let b = 1; b < blocks; b++) {
      const p = pc + <usize>b * stride;
      const nb = load<f64>(p), qb = load<f64>(p + 3 * row);
      const mb = (load<f64>(p + row) - k) + load<f64>(p + 2 * row);
      const total = n + nb, w = nb / total;
      q = mergedM2(q, qb, mu, mb, n, w);
      mu = mergedMean(mu, mb, w);
      n = total;
    }
    store<f64>(mean + (<usize>c << 3), k + mu);
    store<f64>(m2 + (<usize>c << 3), q);
  }
}
