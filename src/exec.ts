// Executing a call: where each tensor of one call lives in wasm memory, its scratch, and the
// statistics and backward-sum steps shared by the ops.
import type { Arena } from './memory.js';
import { DisposedError } from './errors.js';
import type { Geometry } from './layout.js';
import { blocksNchw, blocksRows, workspaceBytes, type KernelExports } from './wasm/kernels.js';
import type { Pool } from './threads/pool.js';
import { applyThreads, ranges, runJobs } from './threads/split.js';
import { bufferOf, byteOffsetOf, copyInto, lengthOf, rangeF32 } from './typed.js';

/**
 * What an op runs on: one instance's kernels, the arena over its memory, and (a threaded
 * engine) the pool of workers running the same kernels on the same memory (an Engine is one).
 */
export interface Core {
  readonly kernels: KernelExports;
  readonly arena: Arena;
  readonly pool: Pool | null;
}

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
 * offsets are read while the caller's views are still live), then allocate scratch (which may
 * grow memory and detach the callers' views), then read arguments only by their pinned address
 * (place) or through fresh views (live, result). No detached view is ever read. Scratch is
 * released in `finally`.
 */
export class CallScope {
  private readonly held: number[] = [];
  constructor(private readonly engine: Core) {
    if (engine.arena.closed) throw new DisposedError();
  }
  pin(a: Float32Array): Pinned {
    return { ptr: byteOffsetOf(a), length: lengthOf(a), resident: this.engine.arena.holds(bufferOf(a)) };
  }
  /**
   * This call's scratch, in one go: the sizes in order (0: none, pointer 0). One preflight
   * first, so a call that cannot fit in 4 GiB, or whose memory.grow is refused, fails with
   * MemoryError before anything is allocated, and memory grows at most once.
   */
  allocate(requests: ReadonlyArray<readonly [bytes: number, what: string]>): number[] {
    this.engine.arena.reserve(requests);
    const ptrs = new Array<number>(requests.length);
    for (let i = 0; i < requests.length; i++) ptrs[i] = requests[i][0] > 0 ? this.alloc(requests[i][0], requests[i][1]) : 0;
    return ptrs;
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
  /** Copies values in at a byte offset (through the arena's cached view: no view per copy). */
  setF32(ptr: number, values: ArrayLike<number>): void {
    copyInto(this.engine.arena.heapF32, values, ptr >>> 2);
  }
  setF64(ptr: number, values: ArrayLike<number>): void {
    copyInto(this.engine.arena.heapF64, values, ptr >>> 3);
  }
  /** A copy out of wasm memory (element by element when short: slice() of the whole-memory view costs more). */
  readF32(ptr: number, length: number): Float32Array {
    const heap = this.engine.arena.heapF32, i = ptr >>> 2, out = new Float32Array(length);
    if (length <= 256) for (let j = 0; j < length; j++) out[j] = heap[i + j];
    else copyInto(out, rangeF32(heap, i, i + length));
    return out;
  }
  /**
   * Two consecutive f32[length] copied out as two new arrays. V8 keeps a typed array of at most
   * 64 bytes on its own heap and gives a longer one an off-heap backing store, which costs far
   * more (measured here: 32 ns for 16 floats, 470 ns for 32): up to 16 values each array is its
   * own, beyond that both are views of one new buffer (one backing store instead of two).
   */
  readF32Pair(ptr: number, length: number): [Float32Array, Float32Array] {
    if (length <= 16) return [this.readF32(ptr, length), this.readF32(ptr + 4 * length, length)];
    const both = this.readF32(ptr, 2 * length);
    return [rangeF32(both, 0, length), rangeF32(both, length, 2 * length)];
  }
  /**
   * The kernels' pointer for a pinned input (pinned before allocate(): a view that memory growth
   * detaches reads as empty): its own bytes when resident, read in place (nothing copied; the
   * aliasing rules keep every written argument disjoint from it), else `copy`, filled here; 0
   * when absent.
   */
  place(a: Float32Array | null, p: Pinned | null, copy: number): number {
    if (a === null || p === null) return 0;
    if (p.resident) return p.ptr;
    this.setF32(copy, a);
    return copy;
  }
  /** Where the kernels write an output: a resident destination's own bytes, else `scratch`. */
  target(p: Pinned | null, scratch: number): number {
    return p !== null && p.resident ? p.ptr : scratch;
  }
  /**
   * An output the kernels wrote at `ptr` (from target()): the caller's destination `dest` (its
   * pin `p`; filled from `ptr` unless resident; a fresh view if memory grew), else a new copy.
   */
  result(dest: Float32Array | null, p: Pinned | null, ptr: number, length: number): Float32Array {
    if (dest === null || p === null) return this.readF32(ptr, length);
    const view = this.live(dest, p);
    if (!p.resident) copyInto(view, this.f32(ptr, length));
    return view;
  }
  /**
   * Two outputs of `length` values each, as result(); with neither destination given and the two
   * adjacent in scratch, copied out in one allocation (readF32Pair).
   */
  results(
    a: Float32Array | null, pa: Pinned | null, ptrA: number, b: Float32Array | null, pb: Pinned | null, ptrB: number, length: number,
  ): [Float32Array, Float32Array] {
    if (pa === null && pb === null && ptrB === ptrA + 4 * length) return this.readF32Pair(ptrA, length);
    return [this.result(a, pa, ptrA, length), this.result(b, pb, ptrB, length)];
  }
  /**
   * Two outputs of `length` values that the call fills in JavaScript: live views of the
   * destinations given, new arrays for the others (both new: one allocation, as readF32Pair).
   */
  fillTargets(a: Float32Array | null, pa: Pinned | null, b: Float32Array | null, pb: Pinned | null, length: number): [Float32Array, Float32Array] {
    if (pa === null && pb === null && length > 16) {
      const both = new Float32Array(2 * length);
      return [rangeF32(both, 0, length), rangeF32(both, length, 2 * length)];
    }
    return [this.liveOf(a, pa) ?? new Float32Array(length), this.liveOf(b, pb) ?? new Float32Array(length)];
  }
  /**
   * A live view of a caller's array (pinned before allocate()): itself, or a fresh view over its
   * bytes if memory grew (a shared memory never detaches: its views stay as they are).
   */
  live(a: Float32Array, p: Pinned): Float32Array {
    return p.resident && bufferOf(a) !== this.engine.arena.buffer && !this.engine.arena.isShared ? this.f32(p.ptr, p.length) : a;
  }
  /** live() of an optional argument. */
  liveOf(a: Float32Array | null, p: Pinned | null): Float32Array | null {
    return a === null || p === null ? null : this.live(a, p);
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
  return channelsLast(g) ? blocksRows(g.count, block) : blocksNchw(g.outer, g.inner, block);
}

export { workspaceBytes } from './wasm/kernels.js';

// The steps below take the call's thread count T (threadsFor, src/threads/split.ts) and split
// over the pool when T > 1; T = 1 calls the kernel directly. Channels-last kernels get their own
// workspace per thread: T copies, `workStride` bytes apart from the plan's `work` region (the
// last region of every plan that has one, so the extra copies follow it: `threadWorkBytes`).

/** Bytes between the per-thread copies of a channels-last kernel's workspace. */
export function workStride(C: number): number {
  return Math.ceil(workspaceBytes(C) / 64) * 64;
}

/** Workspace bytes beyond the plan's for a call on T threads. */
export function threadWorkBytes(g: Geometry, T: number): number {
  return T > 1 && channelsLast(g) ? (T - 1) * workStride(g.channels) : 0;
}

/**
 * Per-channel mean and m2 of x (f64[C] at stats and stats + 8·C): the layout's statistics
 * kernel writes the partial of each of the `blocks` blocks (statsBlocks(g)), on T threads by
 * block ranges; mergeMomentsF64 folds them in block order.
 */
export function batchStats(core: Core, g: Geometry, blocks: number, x: number, partials: number, stats: number, work: number, T = 1): void {
  const k = core.kernels, C = g.channels;
  if (T > 1 && blocks > 1) {
    const parts = ranges(blocks, T);
    if (channelsLast(g)) {
      const ws = workStride(C);
      runJobs(k, core.pool, 'statsNhwcF32', parts.map(([b0, b1], t) => [x, g.outer, C, STATS_BLOCK, b0, b1, partials, work + t * ws]));
    } else {
      runJobs(k, core.pool, 'statsNchwF32', parts.map(([b0, b1]) => [x, g.outer, C, g.inner, STATS_BLOCK, b0, b1, partials]));
    }
  } else if (channelsLast(g)) k.statsNhwcF32(x, g.outer, C, STATS_BLOCK, 0, blocks, partials, work);
  else k.statsNchwF32(x, g.outer, C, g.inner, STATS_BLOCK, 0, blocks, partials);
  k.mergeMomentsF64(partials, blocks, C, stats, stats + 8 * C);
}

/**
 * Per-channel Σg and Σg·(x − mean) (f64[C] at sums and sums + 8·C): the layout's backward
 * reduction kernel writes the partial of each of the `blocks` blocks (the statistics partition),
 * on T threads by block ranges; mergeSumsF64 adds them in block order; g = dy, masked by the
 * fused ReLU's output y unless y is 0.
 */
export function backwardSums(
  core: Core, g: Geometry, blocks: number, dy: number, x: number, mean: number, partials: number, sums: number,
  work: number, y: number, T = 1,
): void {
  const k = core.kernels, C = g.channels;
  if (T > 1 && blocks > 1) {
    const parts = ranges(blocks, T);
    if (channelsLast(g)) {
      const ws = workStride(C);
      runJobs(k, core.pool, 'backwardReduceNhwcF32',
        parts.map(([b0, b1], t) => [dy, x, g.outer, C, mean, STATS_BLOCK, b0, b1, partials, work + t * ws, y]));
    } else {
      runJobs(k, core.pool, 'backwardReduceNchwF32', parts.map(([b0, b1]) => [dy, x, g.outer, C, g.inner, mean, STATS_BLOCK, b0, b1, partials, y]));
    }
  } else if (channelsLast(g)) k.backwardReduceNhwcF32(dy, x, g.outer, C, mean, STATS_BLOCK, 0, blocks, partials, work, y);
  else k.backwardReduceNchwF32(dy, x, g.outer, C, g.inner, mean, STATS_BLOCK, 0, blocks, partials, y);
  k.mergeSumsF64(partials, blocks, C, sums, sums + 8 * C);
}

/**
 * A channel-at-a-time kernel (assembly/fused.ts) over channels [0, C), on T threads by channel
 * ranges (each channel's bits depend on that channel alone); `args(c0, c1)` is one call's arguments.
 */
export function runChannels(
  core: Core, name: 'forwardTrainNchwF32' | 'backwardNchwF32', C: number, T: number, args: (c0: number, c1: number) => number[],
): void {
  runJobs(core.kernels, core.pool, name, T > 1 ? ranges(C, T).map(([c0, c1]) => args(c0, c1)) : [args(0, C)]);
}

/**
 * Where one thread's part of an elementwise pass lies: channels-last by row ranges (multiples of
 * 4 rows, so every part starts 16-byte aligned); NCHW by ranges of samples, or of channels when
 * there is one sample. `offset` is the part's first value, `channel` its first channel.
 */
function applyParts(g: Geometry, T: number): { offset: number; rows: number; channel: number; channels: number }[] {
  const C = g.channels;
  if (channelsLast(g)) return ranges(g.outer, T, 4).map(([lo, hi]) => ({ offset: lo * C, rows: hi - lo, channel: 0, channels: C }));
  if (g.outer > 1) return ranges(g.outer, T).map(([lo, hi]) => ({ offset: lo * C * g.inner, rows: hi - lo, channel: 0, channels: C }));
  return ranges(C, T).map(([lo, hi]) => ({ offset: lo * g.inner, rows: 1, channel: lo, channels: hi - lo }));
}

/** y = max((x − meanHi)·scale + shift, lower) over the tensor (assembly/normalize.ts), on up to T threads (applyThreads) by applyParts. */
export function normalize(
  core: Core, g: Geometry, x: number, y: number, meanHi: number, scale: number, shift: number, work: number, lower: number, T = 1,
): void {
  const k = core.kernels, C = g.channels;
  T = applyThreads(T, g.size);
  if (T > 1) {
    const parts = applyParts(g, T);
    if (channelsLast(g)) {
      const ws = workStride(C);
      runJobs(k, core.pool, 'normalizeNhwcF32',
        parts.map((p, t) => [x + 4 * p.offset, y + 4 * p.offset, p.rows, C, meanHi, scale, shift, work + t * ws, lower]));
    } else {
      runJobs(k, core.pool, 'normalizeNchwF32', parts.map((p) => {
        const c = 4 * p.channel;
        return [x + 4 * p.offset, y + 4 * p.offset, p.rows, p.channels, g.inner, meanHi + c, scale + c, shift + c, lower];
      }));
    }
  } else if (channelsLast(g)) k.normalizeNhwcF32(x, y, g.outer, C, meanHi, scale, shift, work, lower);
  else k.normalizeNchwF32(x, y, g.outer, C, g.inner, meanHi, scale, shift, lower);
}

/** dx from the folded k1, k2, k3 (assembly/backward.ts), on up to T threads (applyThreads) by applyParts; y = 0: no ReLU mask. */
export function backwardDx(
  core: Core, g: Geometry, dy: number, x: number, dx: number, mean: number, k1: number, k2: number, k3: number,
  work: number, training: boolean, y: number, T = 1,
): void {
  const k = core.kernels, C = g.channels;
  T = applyThreads(T, g.size);
  if (T > 1) {
    const parts = applyParts(g, T), t1 = training ? 1 : 0;
    if (channelsLast(g)) {
      const ws = workStride(C);
      runJobs(k, core.pool, 'backwardDxNhwcF32', parts.map((p, t) => {
        const o = 4 * p.offset;
        return [dy + o, x + o, dx + o, p.rows, C, mean, k1, k2, k3, work + t * ws, t1, y === 0 ? 0 : y + o];
      }));
    } else {
      runJobs(k, core.pool, 'backwardDxNchwF32', parts.map((p) => {
        const o = 4 * p.offset, c = 4 * p.channel;
        return [dy + o, x + o, dx + o, p.rows, p.channels, g.inner, mean + c, k1 + c, k2 + c, k3 + c, t1, y === 0 ? 0 : y + o];
      }));
    }
  } else if (channelsLast(g)) k.backwardDxNhwcF32(dy, x, dx, g.outer, C, mean, k1, k2, k3, work, training, y);
  else k.backwardDxNchwF32(dy, x, dx, g.outer, C, g.inner, mean, k1, k2, k3, training, y);
}
