// Channel-last (NHWC) kernels walk the flat tensor as a sequence of "periods": L = lcm(C, 4)
// values, a whole number of rows and of f32x4 vectors. The value at flat index i belongs to
// channel i % C and sits at position i % L of its period, so per-channel parameters are
// tiled once into period-long arrays and every vector of the main loop finds its four
// channels' parameters at the same offset in them, whatever C is.

/** L = lcm(C, 4): C when C % 4 == 0, 2C when C % 4 == 2, 4C when C is odd. */
// @ts-ignore: decorator
@inline export function periodOf(C: i32): i32 {
  return (C & 3) == 0 ? C : (C & 1) == 0 ? C << 1 : C << 2;
}

/**
 * Values per super-row of the channel-last apply loops (normalize, dx): the period repeated up
 * to at least 64 values, so that short periods (small C) still run long inner loops.
 */
// @ts-ignore: decorator
@inline export function rowPeriodOf(C: i32): i32 {
  const L = periodOf(C);
  return L >= 64 ? L : L * ((63 + L) / L);
}

/**
 * Super-rows per group in the channel-last reductions (statistics, backward sums): a group's
 * rows are summed down each vector of period positions in registers before they touch the
 * period accumulators. At most BLOCK_BYTES of each input per group (it stays in cache); and
 * when rows are a multiple of 4 KiB apart (C = 1024, 2048, ...), at most 4 rows: walking down
 * the group then reads every row's line from the same L1 set, and past a few lines per set and
 * input they evict each other. Measured here on [256, 1024]: backward sums 285 µs at 16 rows
 * per group, 112 µs at 4. Elsewhere fewer rows per group measured slower (32×56×56 rows of
 * 256 channels: statistics 1.9× the time at 16 rows per group instead of 64).
 */
export const BLOCK_BYTES: usize = 1 << 16;

/**
 * Largest tensor (bytes of x) for which the channel-last apply loops (normalize, dx) take four
 * super-rows per step, loading each vector of tiled parameters once for the four: in cache the
 * parameter loads bound those loops (four rows per step: 0.65× the time on 49 rows of 960
 * channels, 0.7× on [256, 1024]); from memory the four interleaved row streams measured about
 * 1.7–2× slower than one row after another (6400 rows of 512 channels, 13 MB, and larger).
 */
export const QUAD_ROWS_MAX_BYTES: usize = 2 << 20;

// @ts-ignore: decorator
@inline export function groupRowsOf(rowBytes: usize): usize {
  const rows = max<usize>(1, BLOCK_BYTES / rowBytes);
  return (rowBytes & 4095) == 0 ? min<usize>(rows, 4) : rows;
}

/**
 * Bytes of scratch any channel-last kernel needs for C channels: 3 f64 period arrays
 * (statistics, reductions) or 4 f32 super-row arrays (apply loops). The host computes the
 * same size itself (src/call.ts, workspaceBytes); this one serves the debug build's checks.
 */
export function workspaceBytes(C: i32): u64 {
  return max<u64>(<u64>periodOf(C) * 24, <u64>rowPeriodOf(C) * 16);
}

/** Repeats the first `head` bytes at dst until `total` bytes (a multiple of head): doubling copies. */
// @ts-ignore: decorator
@inline function repeatBytes(dst: usize, head: usize, total: usize): void {
  let done = head;
  while (done < total) {
    const n = min(done, total - done);
    memory.copy(dst + done, dst, n);
    done += n;
  }
}

/** dst[j] = src[j % C] for j < L (f32; L is a multiple of C). */
export function tileF32(src: usize, C: i32, L: i32, dst: usize): void {
  memory.copy(dst, src, <usize>C << 2);
  repeatBytes(dst, <usize>C << 2, <usize>L << 2);
}

/** dst[j] = f64(src[j % C]) for j < L (L is a multiple of C). */
export function tileF32AsF64(src: usize, C: i32, L: i32, dst: usize): void {
  for (let c = 0; c < C; c++) store<f64>(dst + (<usize>c << 3), <f64>load<f32>(src + (<usize>c << 2)));
  repeatBytes(dst, <usize>C << 3, <usize>L << 3);
}

/** dst[j] = dst[j % C] for C <= j < L (f64; L is a multiple of C). */
export function tileF64InPlace(dst: usize, C: i32, L: i32): void {
  repeatBytes(dst, <usize>C << 3, <usize>L << 3);
}

/** dst[j] = 0 for j < L (f64). */
export function zeroF64(dst: usize, L: i32): void {
  memory.fill(dst, 0, <usize>L << 3);
}

/** out[c] = Σ_q acc[c + q*C] over the L / C rows of one period (f64). */
export function foldPeriodF64(acc: usize, C: i32, L: i32, out: usize): void {
  for (let c = 0; c < C; c++) {
    let s = 0.0;
    for (let j = c; j < L; j += C) s += load<f64>(acc + (<usize>j << 3));
    store<f64>(out + (<usize>c << 3), s);
  }
}
