// How a call's steps split over a threaded engine's threads (src/threads/pool.ts). Every split is
// by independent units whose results do not depend on the split: statistics and backward-sum
// blocks (each writes its own partial; the merge runs afterwards, in block order), channels of
// the channel-at-a-time kernels, and ranges of rows or planes of the elementwise applies. So
// the bits of every output are those of one call on the calling thread, for any thread count.
import type { KernelExports, KernelName } from '../wasm/kernels.js';
import type { Pool } from './pool.js';

/**
 * Fewest values of a call per thread. Below 2× this a call stays on the calling thread: waking a
 * parked worker and waiting for it costs tens of µs here (4–90 µs measured), which a share of
 * fewer values does not repay. Set with bench/threads.mjs (the scaling table in the README): at
 * 2^17, 1×32×112×112 (0.4 M values) and 256×1024 ran at 0.46–0.98× of one thread; at 2^19 they
 * stay on the calling thread, and 8×3×224×224 (1.2 M) trains 1.4× faster on two.
 */
export const MIN_VALUES_PER_THREAD = 1 << 19;

/**
 * Fewest values per thread of an elementwise pass (the applies: y, dx). One read-and-write pass
 * is memory-bound and short: measured here (bench/threads.mjs), splitting 8×3×224×224 (1.2 M
 * values, mostly in cache) made inference 0.8× as fast, 32×2048×7×7 (3.2 M) 1.2–1.4× faster.
 */
export const MIN_APPLY_VALUES_PER_THREAD = 1 << 20;

/** Threads for an elementwise pass of a call on T threads (threadsFor) over `values` values. */
export function applyThreads(T: number, values: number): number {
  return T > 1 ? Math.max(1, Math.min(T, Math.floor(values / MIN_APPLY_VALUES_PER_THREAD))) : 1;
}

/** Threads for a call over `values` values: 1 (the calling thread alone) unless the pool is ready and the call big enough. */
export function threadsFor(pool: Pool | null, values: number): number {
  if (pool === null || values < 2 * MIN_VALUES_PER_THREAD) return 1;
  return Math.min(pool.ready(), Math.floor(values / MIN_VALUES_PER_THREAD));
}

/**
 * [lo, hi) ranges splitting [0, n) into at most `parts` near-equal pieces whose inner bounds are
 * multiples of `align` (row ranges of channels-last tensors keep 16-byte alignment).
 */
export function ranges(n: number, parts: number, align = 1): [number, number][] {
  const units = Math.ceil(n / align), p = Math.max(1, Math.min(parts, units));
  const out: [number, number][] = [];
  for (let t = 0, lo = 0; t < p; t++) {
    const hi = t === p - 1 ? n : Math.min(n, Math.round(((t + 1) * units) / p) * align);
    if (hi > lo) out.push([lo, hi]);
    lo = hi;
  }
  return out;
}

/** Runs one job per range: on the calling thread when there is one, else split over the pool. */
export function runJobs(k: KernelExports, pool: Pool | null, name: KernelName, jobs: readonly (readonly number[])[]): void {
  if (jobs.length === 1 || pool === null) {
    const kernel = k[name] as unknown as (...a: readonly number[]) => void;
    for (const job of jobs) kernel(...job);
  } else {
    pool.run(k, name, jobs);
  }
}
