// Kernel plumbing: where each tensor of one call lives in wasm memory.
import type { Engine, KernelExports } from './engine.js';
import type { Geometry } from './layout.js';

/** Where a tensor argument's values are for the kernels: its own bytes, or scratch. */
export interface Pinned {
  /** Byte offset in wasm memory, recorded before any allocation could detach the view. */
  readonly ptr: number;
  readonly length: number;
  /** The caller's array lives in this engine's memory (zero-copy). */
  readonly resident: boolean;
}

/**
 * One call's use of wasm memory. Order matters: pin every argument first (residency and byte
 * offsets are read while the caller's views are still live) and make per-channel arguments
 * `stable`, then allocate scratch (which may grow memory and detach the callers' views), then
 * take fresh views. No detached view is ever read. Scratch is released in `finally`.
 */
export class CallScope {
  private readonly held: number[] = [];
  constructor(private readonly engine: Engine) {}
  pin(a: Float32Array): Pinned {
    return { ptr: a.byteOffset, length: a.length, resident: a.buffer === this.engine.arena.buffer };
  }
  /**
   * This call's scratch, in one go: the sizes in order (0: none, pointer 0). One preflight
   * first, so a call that cannot fit in 4 GiB, or whose memory.grow is refused, fails with
   * MemoryError before anything is allocated, and memory grows at most once.
   */
  allocate(requests: ReadonlyArray<readonly [bytes: number, what: string]>): number[] {
    this.engine.arena.reserve(requests);
    return requests.map(([bytes, what]) => (bytes > 0 ? this.alloc(bytes, what) : 0));
  }
  private alloc(bytes: number, what: string): number {
    const ptr = this.engine.arena.alloc(bytes, what);
    this.held.push(ptr);
    return ptr;
  }
  /** Scratch bytes a pinned input needs: none if resident, else room for a copy. */
  copyBytes(p: Pinned | null): number {
    return p === null || p.resident ? 0 : 4 * p.length;
  }
  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.engine.arena.buffer, ptr, length);
  }
  f64(ptr: number, length: number): Float64Array {
    return new Float64Array(this.engine.arena.buffer, ptr, length);
  }
  /** A per-channel argument that stays readable whatever memory does: a copy if it lives in wasm memory. */
  stable(a: Float32Array | null): Float32Array | null {
    return a !== null && a.buffer === this.engine.arena.buffer ? new Float32Array(a) : a;
  }
  /** A live view of a caller's array: itself, or a fresh view over its bytes if memory grew. */
  live(a: Float32Array, p: Pinned): Float32Array {
    return p.resident && a.buffer !== this.engine.arena.buffer ? this.f32(p.ptr, p.length) : a;
  }
  release(): void {
    for (const ptr of this.held) this.engine.arena.release(ptr);
  }
}

/**
 * Channel-last kernels serve NHWC and also NCHW with one value per (n, c) plane (inner == 1:
 * [N, C] is the same memory as channels-last with N rows).
 */
export function channelsLast(g: Geometry): boolean {
  return g.layout === 'NHWC' || g.inner === 1;
}

// Scratch sizes are computed here, in float64 from the shape, never read back from wasm (a
// 32-bit size could wrap); the arena turns anything beyond 4 GiB into a MemoryError.

/**
 * Values of one channel per statistics block (assembly/stats.ts: each block has its own pivot,
 * so the shifted sums' cancellation is bounded by the block's length, not the channel's; the
 * partials merge with Chan's update). 2048 keeps the bound at 2^-31 relative while the merge
 * costs well under 1% of the sums.
 */
export const STATS_BLOCK = 2048;

/** Blocks per channel of the statistics partition (assembly/stats.ts), for `block` values per block. */
export function statsBlocks(g: Geometry, block = STATS_BLOCK): number {
  if (channelsLast(g)) return Math.ceil(g.count / block);
  const segments = g.inner > block ? Math.ceil(g.inner / block) : 1;
  const planes = g.inner >= block ? 1 : Math.floor(block / g.inner);
  return segments * Math.ceil(g.outer / planes);
}

/** Bytes of the partials of every block: count | pivot | offset | m2, f64[C] each, per block. */
export function partialsBytes(g: Geometry): number {
  return 32 * g.channels * statsBlocks(g);
}

/** Bytes of the backward partials of every block: Σg | Σg·(x − mean), f64[C] each, per block. */
export function sumsPartialsBytes(g: Geometry): number {
  return 16 * g.channels * statsBlocks(g);
}

/**
 * Bytes of scratch a channel-last kernel needs (assembly/period.ts): 3 f64 arrays of the period
 * L = lcm(C, 4) (statistics, reductions) or 4 f32 arrays of the apply loops' super-row (the
 * period repeated to at least 64 values).
 */
export function workspaceBytes(C: number): number {
  const L = C % 4 === 0 ? C : C % 2 === 0 ? 2 * C : 4 * C;
  const row = L >= 64 ? L : L * Math.floor((63 + L) / L);
  return Math.max(24 * L, 16 * row);
}

/**
 * Per-channel mean and m2 of x (f64[C] at stats and stats + 8·C): the layout's statistics
 * kernel writes every block's partial, mergeMomentsF64 folds them in block order.
 */
export function batchStats(k: KernelExports, g: Geometry, x: number, partials: number, stats: number, work: number): void {
  const C = g.channels, blocks = statsBlocks(g);
  if (channelsLast(g)) k.statsNhwcF32(x, g.outer, C, STATS_BLOCK, 0, blocks, partials, work);
  else k.statsNchwF32(x, g.outer, C, g.inner, STATS_BLOCK, 0, blocks, partials);
  k.mergeMomentsF64(partials, blocks, C, stats, stats + 8 * C);
}

/**
 * Per-channel Σg and Σg·(x − mean) (f64[C] at sums and sums + 8·C): the layout's backward
 * reduction kernel writes every block's partial (sumsPartialsBytes(g) bytes), mergeSumsF64 adds
 * them in block order; g = dy, masked by the fused ReLU's output y unless y is 0.
 */
export function backwardSums(
  k: KernelExports, g: Geometry, dy: number, x: number, mean: number, partials: number, sums: number, work: number, y: number,
): void {
  const C = g.channels, blocks = statsBlocks(g);
  if (channelsLast(g)) k.backwardReduceNhwcF32(dy, x, g.outer, C, mean, STATS_BLOCK, 0, blocks, partials, work, y);
  else k.backwardReduceNchwF32(dy, x, g.outer, C, g.inner, mean, STATS_BLOCK, 0, blocks, partials, y);
  k.mergeSumsF64(partials, blocks, C, sums, sums + 8 * C);
}
