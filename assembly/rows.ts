// Row normalizations, LayerNorm and RMSNorm (PyTorch's layer_norm and RMSNorm), of a tensor
// viewed as [rows][C]: each row is C = prod(normalizedShape) contiguous values, its statistics
// are its own, and the affine parameters are per column (f32[C]).
//
// Forward, per row over its C values v, v = x, or v = f32(x + residual) (the float32 sum, as
// PyTorch adds before normalizing; written to `sum` in the same pass):
//   mean, m2 = Σ(v − mean)²: statsNchwF32(v, 1, rows, C, block) + mergeMomentsF64 (stats.ts),
//     exact f64 statistics from block partials (segments of `block` values, each with its own
//     pivot, merged with Chan's update): long rows and adversarial pivots cost no accuracy.
//   LayerNorm: invStd = 1/sqrt(m2/C + eps), s = f32(invStd), meanHi = f32(mean),
//     meanLo = f32(mean − meanHi):  y = ((((v − meanHi) − meanLo)·s)·w) + b
//     (v − meanHi is exact near the mean, so a large |mean|/std costs no accuracy);
//     saveMean = meanHi, saveInvStd = s.
//   RMSNorm: mean(v²) = Σv²/C, summed in f64 directly (sumSquaresRow: a float32 squared has at
//     most 48 significant bits, so every square is exact in f64, and every term is >= 0, so the
//     sum's relative error is at most C·2^-53; half the work of the moments), invRms =
//     1/sqrt(mean(v²) + eps), s = f32(invRms):  y = (v·s)·w;  saveInvRms = s.
//   w = 1 and b = 0 when their pointer is 0 (left out of the loop).
// The rows go in chunks of about CHUNK_VALUES values (at least one row): the residual add,
// the statistics and the apply of a chunk run back to back, so the chunk is read from memory
// once and then from cache. The partition of a row (segments of `block` values) depends on C
// and `block` alone, so the statistics are the bits of one statsNchwF32 call over all rows.
//
// Backward, per row, xhat = (x − mean)·invStd (LayerNorm) or x·invRms (RMSNorm, mean = 0),
// g = w·dy (exact in f64):
//   f64 row sums  s1 = Σ g,  s2 = Σ g·(x − mean)
//   LayerNorm: dx = invStd·(g − s1/C − xhat·Σ(g·xhat)/C) = ((g − k1) − (x − mean)·k2)·k3,
//     k1 = f32(s1/C), k2 = f32(invStd²·s2/C), k3 = invStd, g = f32(w·dy)
//   RMSNorm:   dx = invRms·(g − x·invRms²·Σ(g·x)/C) = (g − x·k2)·k3 (k1 = 0, mean = 0)
//   column sums, f64, per block of `blockRows` rows (row order within a block): the block's
//     partial of dweight = Σ dy·(x − mean)·invStd and dbias = Σ dy (0 for RMSNorm), written to
//     partials + b·2·C f64 as [dweight | dbias]; mergeSumsF64 (backward.ts) adds the blocks in
//     block order. The partition depends on the shape alone (src/plan.ts), so blocks [b0, b1)
//     computed by separate calls (threads) give the bits of one call over all blocks.
//
// Contract: x, residual, dy f32[rows·C], read-only, 4-byte aligned; y may be x or residual,
// sum may be x or residual (never y); dx may be dy or x; no other overlap. Row arrays (mean,
// m2 f64; saved statistics f32) have `rows` elements, column arrays C. Forward partials hold
// 4·blocks f64 per row (blocks = segments of a row); backward partials 2·C f64 per row block. SIMD lanes, scalar tails and the scalar build do
// the same f32 operations for y and dx: both builds give the same y and dx for the same
// statistics; the f64 row sums of the backward are added in a build-specific order (the
// relaxed-SIMD build fuses their products where the hardware can: maddF64x2, simd.ts).
import { statsNchwF32, mergeMomentsF64, segmentsOf } from './stats';
import { zeroF64 } from './period';
import { loadF32x2AsF64, promoteHigh, maddF64x2 } from './simd';

/** Values per chunk of rows (16 KiB of f32: the chunk stays in L1/L2 between its passes). */
const CHUNK_VALUES = 4096;

// @ts-ignore: decorator
@inline function chunkRows(C: i32): i32 {
  return C >= CHUNK_VALUES ? 1 : CHUNK_VALUES / C;
}

/** sum = f32(x + r) over n contiguous values. */
// @ts-ignore: decorator
@inline function addRun(x: usize, r: usize, sum: usize, n: usize): void {
  const bytes = n << 2;
  let k: usize = 0;
  if (ASC_FEATURE_SIMD) {
    for (; k + 16 <= bytes; k += 16) v128.store(sum + k, f32x4.add(v128.load(x + k), v128.load(r + k)));
  }
  for (; k < bytes; k += 4) store<f32>(sum + k, load<f32>(x + k) + load<f32>(r + k));
}

// One value of the apply: t = centered ? ((v − mh) − ml)·s : v·s, then ·w, then + b.
// @ts-ignore: decorator
@inline function apply1(v: f32, mh: f32, ml: f32, s: f32, w: f32, b: f32, centered: bool, hasW: bool, hasB: bool): f32 {
  let t = centered ? ((v - mh) - ml) * s : v * s;
  if (hasW) t = t * w;
  if (hasB) t = t + b;
  return t;
}

// @ts-ignore: decorator
@inline function apply4(v: v128, mh: v128, ml: v128, s: v128, w: v128, b: v128, centered: bool, hasW: bool, hasB: bool): v128 {
  let t = centered ? f32x4.mul(f32x4.sub(f32x4.sub(v, mh), ml), s) : f32x4.mul(v, s);
  if (hasW) t = f32x4.mul(t, w);
  if (hasB) t = f32x4.add(t, b);
  return t;
}

/** Four values of the apply at byte offset o from p, q, w, b (a constant o folds into the loads' offsets). */
// @ts-ignore: decorator
@inline function applyAt(
  p: usize, q: usize, w: usize, b: usize, o: usize, mh: v128, ml: v128, s: v128, centered: bool, hasW: bool, hasB: bool,
): void {
  const zero = f32x4.splat(0);
  const w4 = hasW ? v128.load(w + o) : zero, b4 = hasB ? v128.load(b + o) : zero;
  v128.store(q + o, apply4(v128.load(p + o), mh, ml, s, w4, b4, centered, hasW, hasB));
}

/** The apply over one row of C values at p into q (q may be p): 16 values per step, then vectors of 4, then the scalar tail. */
// @ts-ignore: decorator
@inline function applyRow(
  p: usize, q: usize, C: i32, mh: f32, ml: f32, s: f32, w: usize, b: usize, centered: bool, hasW: bool, hasB: bool,
): void {
  const bytes = <usize>C << 2;
  let k: usize = 0;
  if (ASC_FEATURE_SIMD) {
    const mh4 = f32x4.splat(mh), ml4 = f32x4.splat(ml), s4 = f32x4.splat(s);
    for (; k + 64 <= bytes; k += 64) {
      const pk = p + k, qk = q + k, wk = w + k, bk = b + k;
      applyAt(pk, qk, wk, bk, 0, mh4, ml4, s4, centered, hasW, hasB);
      applyAt(pk, qk, wk, bk, 16, mh4, ml4, s4, centered, hasW, hasB);
      applyAt(pk, qk, wk, bk, 32, mh4, ml4, s4, centered, hasW, hasB);
      applyAt(pk, qk, wk, bk, 48, mh4, ml4, s4, centered, hasW, hasB);
    }
    for (; k + 16 <= bytes; k += 16) applyAt(p + k, q + k, w + k, b + k, 0, mh4, ml4, s4, centered, hasW, hasB);
  }
  for (; k < bytes; k += 4) {
    const wk = hasW ? load<f32>(w + k) : <f32>1, bk = hasB ? load<f32>(b + k) : <f32>0;
    store<f32>(q + k, apply1(load<f32>(p + k), mh, ml, s, wk, bk, centered, hasW, hasB));
  }
}

/** Σ v² over one row of C values at p, in f64 (see the header: exact squares, no cancellation). */
// @ts-ignore: decorator
@inline function sumSquaresRow(p: usize, C: i32): f64 {
  const bytes = <usize>C << 2;
  let k: usize = 0, s = 0.0;
  if (ASC_FEATURE_SIMD) {
    let a0 = f64x2.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (; k + 32 <= bytes; k += 32) {
      const u = v128.load(p + k), v = v128.load(p + k, 16);
      const u0 = f64x2.promote_low_f32x4(u), u1 = promoteHigh(u), v0 = f64x2.promote_low_f32x4(v), v1 = promoteHigh(v);
      a0 = maddF64x2(u0, u0, a0); a1 = maddF64x2(u1, u1, a1); a2 = maddF64x2(v0, v0, a2); a3 = maddF64x2(v1, v1, a3);
    }
    const a = f64x2.add(f64x2.add(a0, a1), f64x2.add(a2, a3));
    s = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1);
  }
  for (; k < bytes; k += 4) {
    const v = <f64>load<f32>(p + k);
    s += v * v;
  }
  return s;
}

// LayerNorm (centered): the moments, then the apply; RMSNorm: Σv² per row, then the apply
// (block, mean, m2, partials unused).
// @ts-ignore: decorator
@inline function forwardRowsAs(
  x: usize, residual: usize, sum: usize, y: usize, rows: i32, C: i32, block: i32, w: usize, b: usize, eps: f64,
  mean: usize, m2: usize, partials: usize, saveMean: usize, saveInv: usize, centered: bool, hasW: bool, hasB: bool,
): void {
  const blocks = centered ? segmentsOf(C, block) : 0;
  const rowBytes = <usize>C << 2;
  const per = chunkRows(C);
  const src = residual ? sum : x;
  for (let r0 = 0; r0 < rows; r0 += per) {
    const n = min(per, rows - r0);
    const off = <usize>r0 * rowBytes;
    if (residual) addRun(x + off, residual + off, sum + off, <usize>n * <usize>C);
    if (centered) {
      const part = partials + <usize>r0 * <usize>blocks * 32;
      statsNchwF32(src + off, 1, n, C, block, 0, blocks, part);
      mergeMomentsF64(part, blocks, n, mean + (<usize>r0 << 3), m2 + (<usize>r0 << 3));
    }
    for (let r = r0; r < r0 + n; r++) {
      const p = src + <usize>r * rowBytes, dst = y + <usize>r * rowBytes;
      if (centered) {
        const mu = load<f64>(mean + (<usize>r << 3)), q = load<f64>(m2 + (<usize>r << 3));
        const s = <f32>(1.0 / Math.sqrt(q / <f64>C + eps));
        const mh = <f32>mu, ml = isFinite(mh) ? <f32>(mu - <f64>mh) : <f32>0; // an infinite mean has no low part
        store<f32>(saveMean + (<usize>r << 2), mh);
        store<f32>(saveInv + (<usize>r << 2), s);
        applyRow(p, dst, C, mh, ml, s, w, b, true, hasW, hasB);
      } else {
        const s = <f32>(1.0 / Math.sqrt(sumSquaresRow(p, C) / <f64>C + eps));
        store<f32>(saveInv + (<usize>r << 2), s);
        applyRow(p, dst, C, 0, 0, s, w, 0, false, hasW, false);
      }
    }
  }
}

/** LayerNorm forward over [rows][C] (see the header); weight, bias, residual (and sum) nullable. */
export function layerNormRowsF32(
  x: usize, residual: usize, sum: usize, y: usize, rows: i32, C: i32, block: i32, weight: usize, bias: usize, eps: f64,
  mean: usize, m2: usize, partials: usize, saveMean: usize, saveInvStd: usize,
): void {
  if (weight && bias) forwardRowsAs(x, residual, sum, y, rows, C, block, weight, bias, eps, mean, m2, partials, saveMean, saveInvStd, true, true, true);
  else if (weight) forwardRowsAs(x, residual, sum, y, rows, C, block, weight, 0, eps, mean, m2, partials, saveMean, saveInvStd, true, true, false);
  else if (bias) forwardRowsAs(x, residual, sum, y, rows, C, block, 0, bias, eps, mean, m2, partials, saveMean, saveInvStd, true, false, true);
  else forwardRowsAs(x, residual, sum, y, rows, C, block, 0, 0, eps, mean, m2, partials, saveMean, saveInvStd, true, false, false);
}

/** RMSNorm forward over [rows][C] (see the header); weight, residual (and sum) nullable. */
export function rmsNormRowsF32(
  x: usize, residual: usize, sum: usize, y: usize, rows: i32, C: i32, weight: usize, eps: f64, saveInvRms: usize,
): void {
  if (weight) forwardRowsAs(x, residual, sum, y, rows, C, 1, weight, 0, eps, 0, 0, 0, 0, saveInvRms, false, true, false);
  else forwardRowsAs(x, residual, sum, y, rows, C, 1, 0, 0, eps, 0, 0, 0, 0, saveInvRms, false, false, false);
}

// ---------------------------------------------------------------------------------------------
// Backward.

// One value of dx: g = f32(w·dy), dx = ((g − k1) − (x − m)·k2)·k3 (centered) or (g − x·k2)·k3.
// @ts-ignore: decorator
@inline function dx1(g: f32, v: f32, w: f32, m: f32, k1: f32, k2: f32, k3: f32, centered: bool, hasW: bool): f32 {
  const h = hasW ? w * g : g;
  return centered ? ((h - k1) - (v - m) * k2) * k3 : (h - v * k2) * k3;
}

// @ts-ignore: decorator
@inline function dx4(g: v128, v: v128, w: v128, m: v128, k1: v128, k2: v128, k3: v128, centered: bool, hasW: bool): v128 {
  const h = hasW ? f32x4.mul(w, g) : g;
  return centered
    ? f32x4.mul(f32x4.sub(f32x4.sub(h, k1), f32x4.mul(f32x4.sub(v, m), k2)), k3)
    : f32x4.mul(f32x4.sub(h, f32x4.mul(v, k2)), k3);
}

// @ts-ignore: decorator
@inline function dxRow(
  dy: usize, x: usize, dx: usize, C: i32, w: usize, m: f32, k1: f32, k2: f32, k3: f32, centered: bool, hasW: bool,
): void {
  const bytes = <usize>C << 2;
  let k: usize = 0;
  if (ASC_FEATURE_SIMD) {
    const m4 = f32x4.splat(m), a4 = f32x4.splat(k1), b4 = f32x4.splat(k2), c4 = f32x4.splat(k3), one = f32x4.splat(1);
    for (; k + 16 <= bytes; k += 16) {
      const w4 = hasW ? v128.load(w + k) : one;
      v128.store(dx + k, dx4(v128.load(dy + k), v128.load(x + k), w4, m4, a4, b4, c4, centered, hasW));
    }
  }
  for (; k < bytes; k += 4) {
    const wk = hasW ? load<f32>(w + k) : <f32>1;
    store<f32>(dx + k, dx1(load<f32>(dy + k), load<f32>(x + k), wk, m, k1, k2, k3, centered, hasW));
  }
}

/**
 * Row blocks [b0, b1) of `blockRows` rows each (the last one may be shorter). Per row: the f64
 * sums s1 = Σ w·dy, s2 = Σ w·dy·(x − m) and the block's column sums cw[d] += dy·(x − m)·inv,
 * cb[d] += dy (cb stays 0 unless `centered`), in one pass over the row (SIMD: four values per
 * step in two f64x2 chains per sum, then the scalar tail); then dx from the row in cache.
 */
// @ts-ignore: decorator
@inline function backwardRowsAs(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32, w: usize, mean: usize, inv: usize,
  blockRows: i32, b0: i32, b1: i32, partials: usize, centered: bool, hasW: bool,
): void {
  const bytes = <usize>C << 2;
  const n = <f64>C;
  for (let b = b0; b < b1; b++) {
    const cw = partials + <usize>b * (<usize>C << 4), cb = cw + (<usize>C << 3);
    zeroF64(cw, 2 * C);
    const rEnd = min(rows, (b + 1) * blockRows);
    for (let r = b * blockRows; r < rEnd; r++) {
      const p = dy + <usize>r * bytes, px = x + <usize>r * bytes;
      const mf = centered ? load<f32>(mean + (<usize>r << 2)) : <f32>0;
      const s = load<f32>(inv + (<usize>r << 2));
      const m = <f64>mf, s64 = <f64>s;
      let s1 = 0.0, s2 = 0.0;
      let k: usize = 0;
      if (ASC_FEATURE_SIMD) {
        const mm = f64x2.splat(m), ii = f64x2.splat(s64);
        let a0 = f64x2.splat(0), a1 = a0, q0 = a0, q1 = a0;
        for (; k + 16 <= bytes; k += 16) {
          const g = v128.load(p + k), v = v128.load(px + k);
          const g0 = f64x2.promote_low_f32x4(g), g1 = promoteHigh(g);
          const d0 = f64x2.sub(f64x2.promote_low_f32x4(v), mm), d1 = f64x2.sub(promoteHigh(v), mm);
          let h0 = g0, h1 = g1;
          if (hasW) {
            const ww = v128.load(w + k);
            h0 = f64x2.mul(f64x2.promote_low_f32x4(ww), g0); h1 = f64x2.mul(promoteHigh(ww), g1);
          }
          if (centered) { a0 = f64x2.add(a0, h0); a1 = f64x2.add(a1, h1); }
          q0 = maddF64x2(h0, d0, q0); q1 = maddF64x2(h1, d1, q1);
          const o = k << 1; // byte offset of the same columns in the f64 column sums
          v128.store(cw + o, maddF64x2(f64x2.mul(g0, d0), ii, v128.load(cw + o)));
          v128.store(cw + o, maddF64x2(f64x2.mul(g1, d1), ii, v128.load(cw + o, 16)), 16);
          if (centered) {
            v128.store(cb + o, f64x2.add(v128.load(cb + o), g0));
            v128.store(cb + o, f64x2.add(v128.load(cb + o, 16), g1), 16);
          }
        }
        const a = f64x2.add(a0, a1), q = f64x2.add(q0, q1);
        s1 = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1);
        s2 = f64x2.extract_lane(q, 0) + f64x2.extract_lane(q, 1);
      }
      for (; k < bytes; k += 4) {
        const g = <f64>load<f32>(p + k), d = <f64>load<f32>(px + k) - m;
        const h = hasW ? <f64>load<f32>(w + k) * g : g;
        if (centered) s1 += h;
        s2 += h * d;
        const o = k << 1;
        store<f64>(cw + o, load<f64>(cw + o) + (g * d) * s64);
        if (centered) store<f64>(cb + o, load<f64>(cb + o) + g);
      }
      const k1 = centered ? <f32>(s1 / n) : <f32>0;
      const k2 = <f32>((s64 * s64) * s2 / n);
      dxRow(p, px, dx + <usize>r * bytes, C, w, mf, k1, k2, s, centered, hasW);
    }
  }
}

/** LayerNorm backward of row blocks [b0, b1) of [rows][C] (see the header); weight nullable. */
export function layerNormBackwardRowsF32(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32, weight: usize, mean: usize, invStd: usize,
  blockRows: i32, b0: i32, b1: i32, partials: usize,
): void {
  if (weight) backwardRowsAs(dy, x, dx, rows, C, weight, mean, invStd, blockRows, b0, b1, partials, true, true);
  else backwardRowsAs(dy, x, dx, rows, C, 0, mean, invStd, blockRows, b0, b1, partials, true, false);
}

/** RMSNorm backward of row blocks [b0, b1) of [rows][C] (see the header); weight nullable. */
export function rmsNormBackwardRowsF32(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32, weight: usize, invRms: usize,
  blockRows: i32, b0: i32, b1: i32, partials: usize,
): void {
  if (weight) backwardRowsAs(dy, x, dx, rows, C, weight, 0, invRms, blockRows, b0, b1, partials, false, true);
  else backwardRowsAs(dy, x, dx, rows, C, 0, 0, invRms, blockRows, b0, b1, partials, false, false);
}
