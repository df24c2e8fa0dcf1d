import { DisposedError, MemoryError } from './errors.js';
import { lengthOf } from './typed.js';

// WebAssembly.Memory's buffer getter, captured at load (as src/typed.ts does for typed arrays):
// what a caller later puts on WebAssembly.Memory.prototype never decides which buffer is read.
// memory.grow is called as the memory's own method (tests make it refuse), and what it did is
// then read off that buffer: a grow that did not grow enough is a refusal.
const memoryBuffer = Function.prototype.call.bind(Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, 'buffer')!.get!) as
  (memory: WebAssembly.Memory) => ArrayBuffer;
/** Bytes in a buffer (the length of a byte view: an intrinsic getter, whatever the buffer's kind). */
const bytesOf = (buffer: ArrayBufferLike): number => lengthOf(new Uint8Array(buffer));

/** Wasm32 linear memory tops out at 65536 pages of 64 KiB = 4 GiB. */
export const MAX_MEMORY_BYTES = 65536 * 65536;
const PAGE = 65536;
/** Allocations start and end on cache-line boundaries. */
export const ALIGN = 64;

interface Block { ptr: number; bytes: number }

/**
 * First-fit allocator over the module's linear memory, bookkept on the JS side (nothing of
 * it lives in wasm memory, so a kernel bug cannot corrupt it). Freed blocks coalesce with
 * their neighbours and are reused before the top grows; the top grows the memory on demand.
 *
 * Invariant: `free` is sorted by ptr, disjoint, never adjacent (adjacent blocks merge), and
 * every block lies in [base, top). Views into memory.buffer stay valid only until the next
 * memory.grow, which detaches the old buffer: re-read `buffer` after any allocation.
 */
export class Arena {
  readonly memory: WebAssembly.Memory;
  private readonly base: number;
  private top: number;
  private readonly free: Block[] = [];
  /**
   * The live blocks, sorted by start (parallel arrays): lookups by binary search. Blocks are
   * mostly taken and given back at the top, so keeping them sorted is a push or a pop. (A Map
   * keyed by start was O(1) in theory, but its insert/delete churn cost ~1 µs per call with
   * 10 000 live tensors in V8.)
   */
  private readonly starts: number[] = [];
  private readonly sizes: number[] = [];
  private inUse = 0;

  private cached: ArrayBuffer;
  private f32view: Float32Array;
  private f64view: Float64Array;
  /**
   * Shared memory (threaded engines): growing never detaches, and each `memory.buffer` read
   * after a grow is a new SharedArrayBuffer object over the same memory, so the views callers
   * hold may be over any of them. Every buffer object this arena handed out is remembered here
   * (one per growth): residency is `holds(view.buffer)`, O(1) whatever the number of tensors.
   */
  private readonly shared: WeakSet<ArrayBufferLike> | null;

  constructor(memory: WebAssembly.Memory, heapBase: number) {
    this.memory = memory;
    this.cached = memoryBuffer(memory);
    this.f32view = new Float32Array(this.cached);
    this.f64view = new Float64Array(this.cached);
    this.shared = isShared(this.cached) ? new WeakSet([this.cached]) : null;
    this.base = roundUp(heapBase, ALIGN);
    this.top = this.base;
  }

  /**
   * The memory's current buffer. Cached: memory.grow detaches the old buffer, which is what
   * refreshes the cache, whoever grew the memory. Detachment is read off the whole-memory view
   * (length 0 once detached; the intrinsic getter, src/typed.ts).
   * Shared memory never detaches: only this arena grows it, and ensure() refreshes the cache.
   */
  get buffer(): ArrayBuffer {
    if (lengthOf(this.f32view) === 0) this.refresh();
    return this.cached;
  }

  /** Views of the whole memory (index = byte offset / 4 or / 8), current like `buffer`. */
  get heapF32(): Float32Array {
    if (lengthOf(this.f32view) === 0) this.refresh();
    return this.f32view;
  }
  get heapF64(): Float64Array {
    if (lengthOf(this.f32view) === 0) this.refresh();
    return this.f64view;
  }

  private refresh(): void {
    this.cached = memoryBuffer(this.memory);
    this.f32view = new Float32Array(this.cached);
    this.f64view = new Float64Array(this.cached);
    this.shared?.add(this.cached);
  }

  /** The memory is a shared one (a threaded engine's). */
  get isShared(): boolean {
    return this.shared !== null;
  }

  /**
   * `buffer` is this memory's: the current buffer, or (shared memory) any buffer object of it
   * from before a growth, whose views stay valid.
   */
  holds(buffer: ArrayBufferLike): boolean {
    return buffer === this.buffer || (this.shared !== null && this.shared.has(buffer));
  }

  /** Set by close() (engine.dispose()): nothing more is allocated. */
  closed = false;

  close(): void {
    this.closed = true;
  }

  /** Bytes currently handed out (live allocations). */
  get bytesInUse(): number {
    return this.inUse;
  }

  /** Allocates `bytes` (rounded up to ALIGN), growing memory if needed. Throws MemoryError. */
  alloc(bytes: number, what = 'allocation'): number {
    if (this.closed) throw new DisposedError();
    const size = roundUp(Math.max(bytes, 1), ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const block = this.free[i];
      if (block.bytes < size) continue;
      const ptr = block.ptr;
      if (block.bytes === size) this.free.splice(i, 1);
      else { block.ptr += size; block.bytes -= size; }
      this.track(ptr, size);
      return ptr;
    }
    const ptr = this.top;
    this.ensure(ptr + size, what, size);
    this.top = ptr + size;
    this.track(ptr, size);
    return ptr;
  }

  private track(ptr: number, size: number): void {
    this.inUse += size;
    const i = this.startIndex(ptr) + 1; // blocks at the top (the common case) go at the end: no move
    if (i === this.starts.length) {
      this.starts.push(ptr);
      this.sizes.push(size);
    } else {
      this.starts.splice(i, 0, ptr);
      this.sizes.splice(i, 0, size);
    }
  }

  /** Index of the last live start <= ptr, or -1 (binary search). */
  private startIndex(ptr: number): number {
    const a = this.starts;
    let lo = 0, hi = a.length - 1, found = -1;
    if (hi >= 0 && a[hi] <= ptr) return hi;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid] <= ptr) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }

  /**
   * Preflight for a group of allocations about to be made in this order (a zero size stands for
   * one that will not be made): checks that all of them fit in wasm32 memory and grows the
   * memory once for all of them. Throws MemoryError, naming the first request that does not fit,
   * before anything is allocated or grown; afterwards, alloc() of exactly these sizes in this
   * order neither grows memory nor fails. It simulates alloc()'s first fit on a copy of the free
   * list, so a group that fits in freed blocks needs no growth at all.
   */
  reserve(requests: ReadonlyArray<readonly [bytes: number, what: string]>): void {
    // The common case: everything fits between the top and the end of memory as it is (free
    // blocks can only lower the top needed), so nothing can grow or fail: nothing to simulate.
    let total = 0;
    for (let r = 0; r < requests.length; r++) {
      const bytes = requests[r][0];
      if (bytes > 0) total += roundUp(bytes, ALIGN);
    }
    if (this.top + total <= 4 * this.heapF32.length) return;
    const free = this.free.map((b) => ({ ptr: b.ptr, bytes: b.bytes }));
    const have = bytesOf(memoryBuffer(this.memory));
    let top = this.top;
    let grower: [string, number] | null = null;
    for (const [bytes, what] of requests) {
      if (!(bytes > 0)) continue;
      const size = roundUp(bytes, ALIGN);
      const i = free.findIndex((b) => b.bytes >= size);
      if (i >= 0) {
        if (free[i].bytes === size) free.splice(i, 1);
        else { free[i].ptr += size; free[i].bytes -= size; }
        continue;
      }
      if (top + size > MAX_MEMORY_BYTES) {
        throw new MemoryError(what, `at most ${MAX_MEMORY_BYTES - top} more bytes (wasm32 memory is 4 GiB)`, `${size} bytes`);
      }
      top += size;
      if (grower === null && top > have) grower = [what, size];
    }
    if (grower !== null) this.ensure(top, grower[0], grower[1]);
  }

  /** Returns a block from alloc() to the free list. */
  release(ptr: number): void {
    const at = this.startIndex(ptr);
    if (at < 0 || this.starts[at] !== ptr) throw new MemoryError('ptr', 'a live allocation of this engine', String(ptr));
    const bytes = this.sizes[at];
    this.inUse -= bytes;
    if (at === this.starts.length - 1) {
      this.starts.pop();
      this.sizes.pop();
      // The newest block at the top (scratch, the common case): the top comes down to it, and
      // further down over a free block that ends there. No block object, no search.
      if (ptr + bytes === this.top) {
        this.top = ptr;
        const last = this.free[this.free.length - 1];
        if (last && last.ptr + last.bytes === ptr) { this.top = last.ptr; this.free.pop(); }
        return;
      }
    } else {
      this.starts.splice(at, 1);
      this.sizes.splice(at, 1);
    }
    let i = 0;
    while (i < this.free.length && this.free[i].ptr < ptr) i++;
    this.free.splice(i, 0, { ptr, bytes });
    // Merge with the right neighbour, then the left one.
    const next = this.free[i + 1];
    if (next && ptr + bytes === next.ptr) { this.free[i].bytes += next.bytes; this.free.splice(i + 1, 1); }
    const prev = this.free[i - 1];
    if (prev && prev.ptr + prev.bytes === ptr) { prev.bytes += this.free[i].bytes; this.free.splice(i, 1); i--; }
    // A free block that reaches the top is given back to the top.
    const last = this.free[this.free.length - 1];
    if (last && last.ptr + last.bytes === this.top) { this.top = last.ptr; this.free.pop(); }
  }

  /** @internal Copies of the bookkeeping (for tests and diagnostics): blocks sorted by ptr. */
  layout(): { base: number; top: number; free: Block[]; live: Block[] } {
    const live = this.starts.map((ptr, i) => ({ ptr, bytes: this.sizes[i] }));
    return { base: this.base, top: this.top, free: this.free.map((b) => ({ ...b })), live };
  }

  /**
   * True when [ptr, ptr + bytes) lies inside one live allocation: the block starting at or
   * before ptr (binary search, O(log n) in the live blocks; O(1) for the newest).
   */
  owns(ptr: number, bytes: number): boolean {
    const i = this.startIndex(ptr);
    return i >= 0 && ptr + bytes <= this.starts[i] + this.sizes[i];
  }

  /** Grows memory so that byte `end` is addressable; a failed grow leaves everything as it was. */
  private ensure(end: number, what: string, size: number): void {
    if (end > MAX_MEMORY_BYTES) {
      throw new MemoryError(what, `at most ${MAX_MEMORY_BYTES - this.top} more bytes (wasm32 memory is 4 GiB)`, `${size} bytes`);
    }
    // The common case first: within the cached buffer (its whole-memory view has length 0 once
    // detached, which falls through to the memory's own buffer).
    if (end <= 4 * lengthOf(this.f32view)) return;
    const have = bytesOf(memoryBuffer(this.memory));
    if (end <= have) {
      // Shared memory grown by someone else (kernels.memory.grow): take the longer buffer.
      if (this.shared !== null && have !== bytesOf(this.cached)) this.refresh();
      return;
    }
    const pages = Math.ceil((end - have) / PAGE);
    let cause: unknown = null;
    try {
      this.memory.grow(pages);
    } catch (error) {
      cause = error;
    }
    const now = bytesOf(memoryBuffer(this.memory));
    if (cause !== null || now < end) {
      const error = new MemoryError(what, `${size} bytes of wasm memory`, `memory.grow(${pages}) refused at ${have} bytes`,
        cause !== null ? String(cause) : `the memory has ${now} bytes after it`);
      if (cause !== null) Object.defineProperty(error, 'cause', { value: cause, configurable: true, writable: true });
      throw error;
    }
    if (this.shared !== null) this.refresh();
  }
}

function isShared(buffer: ArrayBufferLike): boolean {
  return typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer;
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
