// Kernel plumbing: where each tensor of one call lives in wasm memory.
import type { Engine } from './engine.js';
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
 * offsets are read while the caller's views are still live), then allocate scratch (any
 * allocation may grow memory and detach those views), then take fresh views. Per-channel
 * arguments are copied to JS before the first allocation, so no detached view is ever read.
 * Scratch is released in `finally`.
 */
export class CallScope {
  private readonly held: number[] = [];
  constructor(private readonly engine: Engine) {}
  pin(a: Float32Array): Pinned {
    return { ptr: a.byteOffset, length: a.length, resident: a.buffer === this.engine.arena.buffer };
  }
  /**
   * Preflight for this call's scratch, before the first alloc(): the sizes of the alloc() calls
   * that follow, in order (0 for one that will not be made). A call that cannot fit in 4 GiB
   * then fails with MemoryError before anything is allocated, and memory grows at most once.
   */
  reserve(requests: ReadonlyArray<readonly [bytes: number, what: string]>): void {
    this.engine.arena.reserve(requests);
  }
  alloc(bytes: number, what: string): number {
    const ptr = this.engine.arena.alloc(bytes, what);
    this.held.push(ptr);
    return ptr;
  }
  /** Pointer for a pinned input: its own bytes, or fresh scratch to copy it into. */
  place(p: Pinned, what: string): number {
    return p.resident ? p.ptr : this.alloc(4 * p.length, what);
  }
  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.engine.arena.buffer, ptr, length);
  }
  f64(ptr: number, length: number): Float64Array {
    return new Float64Array(this.engine.arena.buffer, ptr, length);
  }
  /** A live view of a caller's array: itself, or a fresh view over its bytes if memory grew. */
  live(a: Float32Array, p: Pinned): Float32Array {
    return p.resident && a.buffer !== this.engine.arena.buffer ? this.f32(p.ptr, p.length) : a;
  }
  release(): void {
    for (const ptr of this.held) this.engine.arena.release(ptr);
  }
}

/** Per-channel values copied out of the caller's array (null stays null). */
export function snapshot(a: Float32Array | null): Float64Array | null {
  return a === null ? null : new Float64Array(a);
}

/**
 * Channel-last kernels serve NHWC and also NCHW with one value per (n, c) plane (inner == 1:
 * [N, C] is the same memory as channels-last with N rows).
 */
export function channelsLast(g: Geometry): boolean {
  return g.layout === 'NHWC' || g.inner === 1;
}
