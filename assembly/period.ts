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
 * period accumulators. At most BLOCK_BYTES of each input per group (it stays in cache), and
 * at most 4 rows per L1 set: walking down a group reads one line per row at a stride of
 * rowBytes, and rows 4096 / gcd(rowBytes, 4096) apart fall in the same set of a 4 KiB-way L1
 * (every row when C = 1024 or 2048); past a few lines per set and input they evict each other.
 * Measured here on [256, 1024]: backward sums 285 µs at 16 rows per group, 112–185 µs at 4;
 * statistics unchanged; no change where rows do not alias (C = 96, 960).
 */
export const BLOCK_BYTES: usize = 1 << 16;

// @ts-ignore: decorator
@inline export function groupRowsOf(rowBytes: usize): usize {
  let a = rowBytes, b: usize = 4096; // gcd(rowBytes, 4096)
  while (b != 0) { const t = a % b; a = b; b = t; }
  return max<usize>(1, min<usize>(BLOCK_BYTES / rowBytes, 4 * (4096 / a)));
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
