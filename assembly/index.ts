// The module's ABI: byte pointers into linear memory and element counts, nothing else.
// Kernels never allocate; the host owns the memory layout. One source, three builds
// (asconfig.json): `simd` and `debug` export the f32x4 kernels, `scalar` their scalar twins
// (same contracts) for engines without SIMD. ASC_FEATURE_SIMD is a compile-time constant, so
// each build contains only its own variant. The debug build also checks every range
// against the memory size and traps with a message (release builds drop the asserts).
import { workspaceBytes } from './period';
import { foldF32 as fold, narrowF64 as narrow, widenF32 as widen, updateRunningF32 as updateRunning, foldBackwardF32 as foldBackward } from './fold';
import {
  statsNchwF32 as statsNchw, statsNhwcF32Simd, statsNhwcF32Scalar, mergeMomentsF64 as mergeMoments, segmentsOf, planesOf,
} from './stats';
import { normalizeNchwF32Simd, normalizeNchwF32Scalar, normalizeNhwcF32Simd, normalizeNhwcF32Scalar } from './normalize';
import {
  backwardReduceNchwF32 as backwardReduceNchw, backwardReduceNhwcF32Simd, backwardReduceNhwcF32Scalar, mergeSumsF64 as mergeSums,
  backwardDxNchwF32Simd, backwardDxNchwF32Scalar, backwardDxNhwcF32Simd, backwardDxNhwcF32Scalar,
} from './backward';
import { forwardTrainNchwF32 as forwardTrainNchw, backwardNchwF32 as backwardNchw } from './fused';
import {
  layerNormRowsF32 as layerNormRows, rmsNormRowsF32 as rmsNormRows,
  layerNormBackwardRowsF32 as layerNormBackwardRows, rmsNormBackwardRowsF32 as rmsNormBackwardRows,
} from './rows';
import {
  normalizeSiluNchwF32 as normalizeSiluNchw, normalizeSiluNhwcF32 as normalizeSiluNhwc, siluBackwardNchwF32 as siluBackwardNchw,
  siluBackwardNhwcF32 as siluBackwardNhwc, groupNormDxNchwF32 as groupNormDxNchw, groupNormDxNhwcF32 as groupNormDxNhwc,
  mergeGroupMomentsF64 as mergeGroupMoments,
} from './groups';

/** First byte the host may use. */
export function heapBase(): usize {
  return __heap_base;
}

/** The SIMD level of the build: 2 relaxed-simd (SIMD and relaxed SIMD), 1 simd and debug, 0 scalar. */
export function simdEnabled(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 2 : ASC_FEATURE_SIMD ? 1 : 0;
}

// Debug-build preconditions: positive counts, 4-byte alignment, [ptr, ptr + bytes) in memory.
function checkCounts(a: i32, b: i32, c: i32): void {
  assert(a > 0 && b > 0 && c > 0, 'kernel: counts must be positive');
}
// Byte counts in u64: a range that ends exactly at 4 GiB, or a count that a bad call makes
// larger, must not wrap around.
// (The memory.size read is skipped outright without asserts: on a shared memory it counts as a
// side effect, so a release build would otherwise keep it.)
function checkRange(ptr: usize, bytes: u64): void {
  if (ASC_NO_ASSERT) return;
  assert((ptr & 3) == 0, 'kernel: pointer not 4-byte aligned');
  assert(ptr >= __heap_base, 'kernel: pointer below the heap');
  assert(<u64>ptr + bytes <= (<u64>memory.size() << 16), 'kernel: range past the end of memory');
}
// @ts-ignore: decorator
@inline function f32s(n: u64): u64 { return n << 2; }
// @ts-ignore: decorator
@inline function f64s(n: u64): u64 { return n << 3; }

function checkBlock(block: i32): void {
  assert(block > 0 && block <= (1 << 30), 'kernel: block must be in [1, 2^30]');
}

/** Blocks per channel of the NCHW partition (stats.ts); `block` checked first. */
function nchwBlocks(outer: i32, inner: i32, block: i32): i32 {
  return segmentsOf(inner, block) * ((outer - 1) / planesOf(inner, block) + 1);
}

/** Channel ranges: 0 <= c0 <= c1 <= C. */
function checkChannels(c0: i32, c1: i32, C: i32): void {
  assert(c0 >= 0 && c0 <= c1 && c1 <= C, 'kernel: channel range outside [0, C]');
}

/**
 * Block ranges: 0 <= b0 <= b1 <= blocks, partials of b1 blocks in memory, `fields` f64[C] per
 * block (statistics: 4, backward sums: 2).
 */
function checkBlocks(b0: i32, b1: i32, blocks: i32, partials: usize, C: i32, fields: i32): void {
  assert(b0 >= 0 && b0 <= b1 && b1 <= blocks, 'kernel: block range outside the partition');
  checkRange(partials, f64s(<u64>b1 * fields * C));
}

export function statsNchwF32(x: usize, outer: i32, C: i32, inner: i32, block: i32, b0: i32, b1: i32, partials: usize): void {
  checkCounts(outer, C, inner);
  checkRange(x, f32s(<u64>outer * C * inner));
  checkBlock(block);
  checkBlocks(b0, b1, nchwBlocks(outer, inner, block), partials, C, 4);
  statsNchw(x, outer, C, inner, block, b0, b1, partials);
}

export function statsNhwcF32(x: usize, rows: i32, C: i32, block: i32, b0: i32, b1: i32, partials: usize, work: usize): void {
  checkCounts(rows, C, 1);
  checkRange(x, f32s(<u64>rows * C));
  checkBlock(block);
  checkBlocks(b0, b1, (rows - 1) / block + 1, partials, C, 4);
  checkRange(work, workspaceBytes(C));
  if (ASC_FEATURE_SIMD) statsNhwcF32Simd(x, rows, C, block, b0, b1, partials, work);
  else statsNhwcF32Scalar(x, rows, C, block, b0, b1, partials, work);
}

export function mergeMomentsF64(partials: usize, blocks: i32, C: i32, mean: usize, m2: usize): void {
  checkCounts(blocks, C, 1);
  checkRange(partials, f64s(<u64>blocks * 4 * C)); checkRange(mean, f64s(C)); checkRange(m2, f64s(C));
  mergeMoments(partials, blocks, C, mean, m2);
}

export function normalizeNchwF32(
  x: usize, y: usize, outer: i32, C: i32, inner: i32,
  meanHi: usize, scale: usize, shift: usize, lower: f32,
): void {
  checkCounts(outer, C, inner);
  const n = f32s(<u64>outer * C * inner);
  checkRange(x, n); checkRange(y, n);
  checkRange(meanHi, f32s(C)); checkRange(scale, f32s(C)); checkRange(shift, f32s(C));
  if (ASC_FEATURE_SIMD) normalizeNchwF32Simd(x, y, outer, C, inner, meanHi, scale, shift, lower);
  else normalizeNchwF32Scalar(x, y, outer, C, inner, meanHi, scale, shift, lower);
}

export function normalizeNhwcF32(
  x: usize, y: usize, rows: i32, C: i32,
  meanHi: usize, scale: usize, shift: usize, work: usize, lower: f32,
): void {
  checkCounts(rows, C, 1);
  const n = f32s(<u64>rows * C);
  checkRange(x, n); checkRange(y, n);
  checkRange(meanHi, f32s(C)); checkRange(scale, f32s(C)); checkRange(shift, f32s(C));
  checkRange(work, workspaceBytes(C));
  if (ASC_FEATURE_SIMD) normalizeNhwcF32Simd(x, y, rows, C, meanHi, scale, shift, work, lower);
  else normalizeNhwcF32Scalar(x, y, rows, C, meanHi, scale, shift, work, lower);
}

export function backwardReduceNchwF32(
  dy: usize, x: usize, outer: i32, C: i32, inner: i32, mean: usize,
  block: i32, b0: i32, b1: i32, partials: usize, y: usize,
): void {
  checkCounts(outer, C, inner);
  const n = f32s(<u64>outer * C * inner);
  checkRange(dy, n); checkRange(x, n); if (y) checkRange(y, n);
  checkRange(mean, f32s(C));
  checkBlock(block);
  checkBlocks(b0, b1, nchwBlocks(outer, inner, block), partials, C, 2);
  backwardReduceNchw(dy, x, outer, C, inner, mean, block, b0, b1, partials, y);
}

export function backwardReduceNhwcF32(
  dy: usize, x: usize, rows: i32, C: i32, mean: usize,
  block: i32, b0: i32, b1: i32, partials: usize, work: usize, y: usize,
): void {
  checkCounts(rows, C, 1);
  const n = f32s(<u64>rows * C);
  checkRange(dy, n); checkRange(x, n); if (y) checkRange(y, n);
  checkRange(mean, f32s(C));
  checkBlock(block);
  checkBlocks(b0, b1, (rows - 1) / block + 1, partials, C, 2);
  checkRange(work, workspaceBytes(C));
  if (ASC_FEATURE_SIMD) backwardReduceNhwcF32Simd(dy, x, rows, C, mean, block, b0, b1, partials, work, y);
  else backwardReduceNhwcF32Scalar(dy, x, rows, C, mean, block, b0, b1, partials, work, y);
}

export function mergeSumsF64(partials: usize, blocks: i32, C: i32, sumDy: usize, sumDyXmu: usize): void {
  checkCounts(blocks, C, 1);
  checkRange(partials, f64s(<u64>blocks * 2 * C)); checkRange(sumDy, f64s(C)); checkRange(sumDyXmu, f64s(C));
  mergeSums(partials, blocks, C, sumDy, sumDyXmu);
}

export function backwardDxNchwF32(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32,
  mean: usize, k1: usize, k2: usize, k3: usize, training: bool, y: usize,
): void {
  checkCounts(outer, C, inner);
  const n = f32s(<u64>outer * C * inner);
  checkRange(dy, n); checkRange(x, n); checkRange(dx, n); if (y) checkRange(y, n);
  checkRange(mean, f32s(C)); checkRange(k1, f32s(C)); checkRange(k2, f32s(C)); checkRange(k3, f32s(C));
  if (ASC_FEATURE_SIMD) backwardDxNchwF32Simd(dy, x, dx, outer, C, inner, mean, k1, k2, k3, training, y);
  else backwardDxNchwF32Scalar(dy, x, dx, outer, C, inner, mean, k1, k2, k3, training, y);
}

export function backwardDxNhwcF32(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32,
  mean: usize, k1: usize, k2: usize, k3: usize, work: usize, training: bool, y: usize,
): void {
  checkCounts(rows, C, 1);
  const n = f32s(<u64>rows * C);
  checkRange(dy, n); checkRange(x, n); checkRange(dx, n); if (y) checkRange(y, n);
  checkRange(mean, f32s(C)); checkRange(k1, f32s(C)); checkRange(k2, f32s(C)); checkRange(k3, f32s(C));
  checkRange(work, workspaceBytes(C));
  if (ASC_FEATURE_SIMD) backwardDxNhwcF32Simd(dy, x, dx, rows, C, mean, k1, k2, k3, work, training, y);
  else backwardDxNhwcF32Scalar(dy, x, dx, rows, C, mean, k1, k2, k3, work, training, y);
}

export function forwardTrainNchwF32(
  x: usize, y: usize, outer: i32, C: i32, inner: i32, block: i32, c0: i32, c1: i32, gamma: usize, beta: usize, eps: f64,
  mean: usize, m2: usize, invStd: usize, lower: f32,
): void {
  checkCounts(outer, C, inner);
  checkBlock(block);
  checkChannels(c0, c1, C);
  const n = f32s(<u64>outer * C * inner);
  checkRange(x, n); checkRange(y, n);
  if (gamma) checkRange(gamma, f32s(C));
  if (beta) checkRange(beta, f32s(C));
  checkRange(mean, f64s(C)); checkRange(m2, f64s(C)); checkRange(invStd, f64s(C));
  forwardTrainNchw(x, y, outer, C, inner, block, c0, c1, gamma, beta, eps, mean, m2, invStd, lower);
}

export function backwardNchwF32(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32, block: i32, c0: i32, c1: i32,
  mean: usize, invStd: usize, gamma: usize, training: bool, sumDy: usize, sumDyXmu: usize, y: usize,
): void {
  checkCounts(outer, C, inner);
  checkBlock(block);
  checkChannels(c0, c1, C);
  const n = f32s(<u64>outer * C * inner);
  checkRange(dy, n); checkRange(x, n); checkRange(dx, n); if (y) checkRange(y, n);
  checkRange(mean, f32s(C)); checkRange(invStd, f32s(C)); if (gamma) checkRange(gamma, f32s(C));
  checkRange(sumDy, f64s(C)); checkRange(sumDyXmu, f64s(C));
  backwardNchw(dy, x, dx, outer, C, inner, block, c0, c1, mean, invStd, gamma, training, sumDy, sumDyXmu, y);
}

export function foldF32(
  C: i32, mean: usize, v: usize, divisor: f64, eps: f64, gamma: usize, beta: usize,
  meanHi: usize, scale: usize, shift: usize, invStd: usize,
): void {
  checkCounts(C, 1, 1);
  checkRange(mean, f64s(C)); checkRange(v, f64s(C)); checkRange(invStd, f64s(C));
  if (gamma) checkRange(gamma, f32s(C));
  if (beta) checkRange(beta, f32s(C));
  checkRange(meanHi, f32s(C)); checkRange(scale, f32s(C)); checkRange(shift, f32s(C));
  fold(C, mean, v, divisor, eps, gamma, beta, meanHi, scale, shift, invStd);
}

export function narrowF64(src: usize, C: i32, dst: usize): void {
  checkCounts(C, 1, 1);
  checkRange(src, f64s(C)); checkRange(dst, f32s(C));
  narrow(src, C, dst);
}

export function widenF32(src: usize, C: i32, dst: usize): void {
  checkCounts(C, 1, 1);
  checkRange(src, f32s(C)); checkRange(dst, f64s(C));
  widen(src, C, dst);
}

export function updateRunningF32(C: i32, mean: usize, m2: usize, divisor: f64, momentum: f64, rm: usize, rv: usize): void {
  checkCounts(C, 1, 1);
  checkRange(mean, f64s(C)); checkRange(m2, f64s(C)); checkRange(rm, f32s(C)); checkRange(rv, f32s(C));
  updateRunning(C, mean, m2, divisor, momentum, rm, rv);
}

export function foldBackwardF32(
  C: i32, sumDy: usize, s2: usize, xmu: bool, invStd: usize, gamma: usize, n: f64, training: bool,
  k1: usize, k2: usize, k3: usize, dweight: usize, dbias: usize,
): void {
  checkCounts(C, 1, 1);
  checkRange(sumDy, f64s(C)); checkRange(s2, f64s(C)); checkRange(invStd, f32s(C));
  if (gamma) checkRange(gamma, f32s(C));
  checkRange(k1, f32s(C)); checkRange(k2, f32s(C)); checkRange(k3, f32s(C)); checkRange(dweight, f32s(C)); checkRange(dbias, f32s(C));
  foldBackward(C, sumDy, s2, xmu, invStd, gamma, n, training, k1, k2, k3, dweight, dbias);
}

// Row normalizations (rows.ts): [rows][C], statistics per row, parameters per column; a null
// (0) residual, weight or bias is absent, and sum is written (and checked) with a residual.
/** Checks of a row-norm forward's tensors and parameters (RMSNorm: bias 0). */
function checkRowsForward(x: usize, residual: usize, sum: usize, y: usize, rows: i32, C: i32, weight: usize, bias: usize): void {
  checkCounts(rows, C, 1);
  const n = f32s(<u64>rows * C);
  checkRange(x, n); checkRange(y, n);
  if (residual) { checkRange(residual, n); checkRange(sum, n); }
  if (weight) checkRange(weight, f32s(C));
  if (bias) checkRange(bias, f32s(C));
}

export function layerNormRowsF32(
  x: usize, residual: usize, sum: usize, y: usize, rows: i32, C: i32, block: i32, weight: usize, bias: usize, eps: f64,
  mean: usize, m2: usize, partials: usize, saveMean: usize, saveInvStd: usize,
): void {
  checkRowsForward(x, residual, sum, y, rows, C, weight, bias);
  checkBlock(block);
  checkRange(mean, f64s(rows)); checkRange(m2, f64s(rows));
  checkRange(partials, f64s(<u64>4 * segmentsOf(C, block) * rows));
  checkRange(saveMean, f32s(rows)); checkRange(saveInvStd, f32s(rows));
  layerNormRows(x, residual, sum, y, rows, C, block, weight, bias, eps, mean, m2, partials, saveMean, saveInvStd);
}

export function rmsNormRowsF32(
  x: usize, residual: usize, sum: usize, y: usize, rows: i32, C: i32, weight: usize, eps: f64, saveInvRms: usize,
): void {
  checkRowsForward(x, residual, sum, y, rows, C, weight, 0);
  checkRange(saveInvRms, f32s(rows));
  rmsNormRows(x, residual, sum, y, rows, C, weight, eps, saveInvRms);
}

/** Checks of a row-norm backward over row blocks [b0, b1) of `blockRows` rows: 2 f64[C] per block. */
function checkRowsBackward(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32, weight: usize, inv: usize, blockRows: i32, b0: i32, b1: i32, partials: usize,
): void {
  checkCounts(rows, C, 1);
  const n = f32s(<u64>rows * C);
  checkRange(dy, n); checkRange(x, n); checkRange(dx, n);
  if (weight) checkRange(weight, f32s(C));
  checkRange(inv, f32s(rows));
  assert(blockRows >= 1, 'kernel: blockRows must be >= 1');
  checkBlocks(b0, b1, (rows - 1) / blockRows + 1, partials, C, 2);
}

export function layerNormBackwardRowsF32(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32, weight: usize, mean: usize, invStd: usize,
  blockRows: i32, b0: i32, b1: i32, partials: usize,
): void {
  checkRowsBackward(dy, x, dx, rows, C, weight, invStd, blockRows, b0, b1, partials);
  checkRange(mean, f32s(rows));
  layerNormBackwardRows(dy, x, dx, rows, C, weight, mean, invStd, blockRows, b0, b1, partials);
}

export function rmsNormBackwardRowsF32(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32, weight: usize, invRms: usize,
  blockRows: i32, b0: i32, b1: i32, partials: usize,
): void {
  checkRowsBackward(dy, x, dx, rows, C, weight, invRms, blockRows, b0, b1, partials);
  rmsNormBackwardRows(dy, x, dx, rows, C, weight, invRms, blockRows, b0, b1, partials);
}

// GroupNorm / InstanceNorm (groups.ts): elementwise kernels over per-(n, c) parameters, and the
// channels-last group merge. `a` and `b` are the read (dy or x) and written tensors' checks.

/** Checks of an NCHW elementwise kernel: tensors of outer·C·inner values, `params` f32[C] arrays. */
function checkRuns(outer: i32, C: i32, inner: i32, a: usize, x: usize, out: usize, p0: usize, p1: usize, p2: usize, p3: usize): void {
  checkCounts(outer, C, inner);
  const n = f32s(<u64>outer * C * inner);
  if (a) checkRange(a, n);
  checkRange(x, n); checkRange(out, n);
  checkRange(p0, f32s(C)); checkRange(p1, f32s(C)); checkRange(p2, f32s(C)); if (p3) checkRange(p3, f32s(C));
}

/** Checks of a channels-last elementwise kernel: tensors of rows·C values, f32[C] parameters, the workspace. */
function checkRows(rows: i32, C: i32, a: usize, x: usize, out: usize, p0: usize, p1: usize, p2: usize, p3: usize, work: usize): void {
  checkRuns(1, C, rows, a, x, out, p0, p1, p2, p3);
  checkRange(work, workspaceBytes(C));
}

export function normalizeSiluNchwF32(x: usize, y: usize, outer: i32, C: i32, inner: i32, meanHi: usize, scale: usize, shift: usize): void {
  checkRuns(outer, C, inner, 0, x, y, meanHi, scale, shift, 0);
  normalizeSiluNchw(x, y, outer, C, inner, meanHi, scale, shift);
}

export function normalizeSiluNhwcF32(x: usize, y: usize, rows: i32, C: i32, meanHi: usize, scale: usize, shift: usize, work: usize): void {
  checkRows(rows, C, 0, x, y, meanHi, scale, shift, 0, work);
  normalizeSiluNhwc(x, y, rows, C, meanHi, scale, shift, work);
}

export function siluBackwardNchwF32(
  dy: usize, x: usize, dz: usize, outer: i32, C: i32, inner: i32, meanHi: usize, scale: usize, shift: usize,
): void {
  checkRuns(outer, C, inner, dy, x, dz, meanHi, scale, shift, 0);
  siluBackwardNchw(dy, x, dz, outer, C, inner, meanHi, scale, shift);
}

export function siluBackwardNhwcF32(
  dy: usize, x: usize, dz: usize, rows: i32, C: i32, meanHi: usize, scale: usize, shift: usize, work: usize,
): void {
  checkRows(rows, C, dy, x, dz, meanHi, scale, shift, 0, work);
  siluBackwardNhwc(dy, x, dz, rows, C, meanHi, scale, shift, work);
}

export function groupNormDxNchwF32(
  dy: usize, x: usize, dx: usize, outer: i32, C: i32, inner: i32, mean: usize, k1: usize, k2: usize, k3: usize,
): void {
  checkRuns(outer, C, inner, dy, x, dx, mean, k1, k2, k3);
  groupNormDxNchw(dy, x, dx, outer, C, inner, mean, k1, k2, k3);
}

export function groupNormDxNhwcF32(
  dy: usize, x: usize, dx: usize, rows: i32, C: i32, mean: usize, k1: usize, k2: usize, k3: usize, work: usize,
): void {
  checkRows(rows, C, dy, x, dx, mean, k1, k2, k3, work);
  groupNormDxNhwc(dy, x, dx, rows, C, mean, k1, k2, k3, work);
}

export function mergeGroupMomentsF64(partials: usize, blocks: i32, outer: i32, C: i32, mean: usize, m2: usize): void {
  checkCounts(blocks, outer, C);
  checkRange(partials, f64s(<u64>blocks * 4 * outer * C)); checkRange(mean, f64s(outer)); checkRange(m2, f64s(outer));
  mergeGroupMoments(partials, blocks, outer, C, mean, m2);
}
