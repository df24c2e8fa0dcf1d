import { InvalidArgumentError, MemoryError } from './errors.js';
import { checkNumbers } from './args.js';
import type { Arena } from './memory.js';
import { bufferOf, copyInto, lengthOf } from './typed.js';

/** A float32 tensor allocated in the engine's wasm memory: the zero-copy path. */
export class Tensor {
  readonly byteOffset: number;
  readonly length: number;
  private readonly arena: Arena;
  private view: Float32Array | null = null;
  private freed = false;

  /** @internal */
  constructor(arena: Arena, byteOffset: number, length: number) {
    this.arena = arena;
    this.byteOffset = byteOffset;
    this.length = length;
  }

  /**
   * A live Float32Array over the tensor's memory. Pass it to forward/backward for zero-copy
   * calls. It is valid until wasm memory grows (an allocation may grow it); this getter always
   * returns a current view, so read `tensor.data` again rather than keeping an old one.
   */
  get data(): Float32Array {
    if (this.freed) throw new MemoryError('tensor', 'a live tensor', 'a freed tensor');
    if (this.view === null || bufferOf(this.view) !== this.arena.buffer) {
      this.view = new Float32Array(this.arena.buffer, this.byteOffset, this.length);
    }
    return this.view;
  }

  /** Copies `values` in (copy-in helper): a typed array or an array of numbers, converted to float32. */
  set(values: ArrayLike<number>): this {
    const source = checkNumbers(values, 'values'); // read (and checked) before anything is written
    const data = this.data;
    if (lengthOf(source) !== this.length) {
      throw new InvalidArgumentError('values', `length ${this.length}`, `length ${lengthOf(source)}`);
    }
    copyInto(data, source);
    return this;
  }

  /** A plain Float32Array copy (copy-out helper, safe across memory growth). */
  toArray(): Float32Array {
    return new Float32Array(this.data);
  }

  /** Returns the memory to the engine; the tensor is unusable afterwards. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.view = null;
    this.arena.release(this.byteOffset);
  }
}

