// Typed arrays read through the intrinsic getters of %TypedArray%.prototype, captured once at
// module load. A subclass cannot override what these return (they read the internal slots), a
// Proxy has no slots (the tag getter yields undefined for it), and none of them runs user code.
// The engine's own views are read and written the same way (offsetOf, bufferOf, copyInto,
// rangeF32 below), never through their prototype chain: an accessor or method a caller adds to
// Float32Array.prototype or %TypedArray%.prototype is never what computes a pointer or writes.

const TypedArrayPrototype = Object.getPrototypeOf(Int8Array.prototype) as object;

/** The getter as a plain function of the receiver (uncurried: the fastest form V8 inlines). */
function intrinsicGetter<T>(key: PropertyKey): (view: unknown) => T {
  const get = Object.getOwnPropertyDescriptor(TypedArrayPrototype, key)!.get!;
  return Function.prototype.call.bind(get) as (view: unknown) => T;
}

/** The element type's name ('Float32Array', ...) of a genuine typed array, else undefined. Never throws. */
export const typedArrayTag = intrinsicGetter<string | undefined>(Symbol.toStringTag);
export const lengthOf = intrinsicGetter<number>('length');
export const byteOffsetOf = intrinsicGetter<number>('byteOffset');
export const byteLengthOf = intrinsicGetter<number>('byteLength');
export const bufferOf = intrinsicGetter<ArrayBufferLike>('buffer');

/** f as a plain function of its receiver (captured now: later changes to Function.prototype do not reach it). */
function uncurry<F extends (...args: never[]) => unknown>(f: F): (self: unknown, ...args: Parameters<F>) => ReturnType<F> {
  return Function.prototype.call.bind(f) as (self: unknown, ...args: Parameters<F>) => ReturnType<F>;
}
const intrinsicSet = uncurry((TypedArrayPrototype as Float32Array).set);
const intrinsicFill = uncurry((TypedArrayPrototype as Float32Array).fill);
const F32 = Float32Array, F64 = Float64Array;

/** target.set(source, offset) by the intrinsic method (source: a typed array, or an engine-made array of numbers). */
export function copyInto(target: ArrayBufferView, source: ArrayLike<number>, offset = 0): void {
  intrinsicSet(target, source, offset);
}

/** target.fill(value) by the intrinsic method. */
export function fillWith<T extends ArrayBufferView>(target: T, value: number): T {
  intrinsicFill(target, value);
  return target;
}

/** view.subarray(begin, end) of a Float32Array, as a view made here (no species constructor, no prototype lookup). */
export function rangeF32(view: Float32Array, begin: number, end: number): Float32Array {
  return new F32(bufferOf(view), byteOffsetOf(view) + 4 * begin, end - begin);
}

/** A copy of [begin, end) of a Float64Array (view.slice without its species constructor). */
export function sliceF64(view: Float64Array, begin: number, end: number): Float64Array {
  return new F64(new F64(bufferOf(view), byteOffsetOf(view) + 8 * begin, end - begin));
}
const hasOwnProperty = Object.prototype.hasOwnProperty;
const arrayIsArray = Array.isArray;

/**
 * A revoked Proxy: every operation on it throws a TypeError, and Array.isArray is the one test
 * that says so without running user code (it throws for a revoked Proxy only).
 */
export function isRevokedProxy(value: unknown): boolean {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false;
  try {
    arrayIsArray(value);
    return false;
  } catch {
    return true;
  }
}

/** Array.isArray, false for a revoked Proxy (which the callers then reject as not an array). */
function isArray(value: unknown): value is unknown[] {
  return !isRevokedProxy(value) && arrayIsArray(value);
}

/** `key` is an own property of `value` (for a Proxy: its getOwnPropertyDescriptor trap runs). */
export function hasOwn(value: object, key: PropertyKey): boolean {
  return Reflect.apply(hasOwnProperty, value, [key]) as boolean;
}

export { isArray };

/**
 * What a genuine typed array is, recorded once: its buffer, where it lies in it, and its length
 * (the current one for a length-tracking view of a resizable buffer; 0 for a view gone out of
 * bounds). `detached`: its buffer was detached (wasm memory grew after the view was taken).
 */
export interface TypedSnapshot {
  readonly tag: string;
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  readonly byteLength: number;
  readonly length: number;
  readonly detached: boolean;
}

/** The snapshot of a genuine typed array, or null for anything else (Proxies, DataViews, arrays). */
export function snapshotTyped(value: unknown): TypedSnapshot | null {
  const tag = typedArrayTag(value);
  if (tag === undefined) return null;
  const buffer = bufferOf(value);
  const byteOffset = byteOffsetOf(value), byteLength = byteLengthOf(value), length = lengthOf(value);
  let detached = false;
  if (byteLength === 0) {
    try {
      new Uint8Array(buffer, 0, 0);
    } catch {
      detached = true;
    }
  }
  return { tag, buffer, byteOffset, byteLength, length, detached };
}

type NumericView = Exclude<ArrayBufferView, DataView | BigInt64Array | BigUint64Array>;
type NumericConstructor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => NumericView;

const NUMERIC: Readonly<Record<string, NumericConstructor>> = Object.freeze({
  __proto__: null,
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array,
} as unknown as Record<string, NumericConstructor>);

/** An engine-made view of a snapshot of a typed array of numbers (not BigInts); null otherwise. */
export function numericView(s: TypedSnapshot): ArrayLike<number> & NumericView | null {
  const Ctor = NUMERIC[s.tag];
  if (Ctor === undefined || s.detached) return null;
  return new Ctor(s.buffer, s.byteOffset, s.length) as ArrayLike<number> & NumericView;
}

/** An engine-made Float32Array over exactly the snapshot's recorded bytes. */
export function float32View(s: TypedSnapshot): Float32Array {
  return new Float32Array(s.buffer, s.byteOffset, s.length);
}

const arrayBufferByteLength = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'byteLength')!.get!;
const sharedByteLength = typeof SharedArrayBuffer === 'function'
  ? Object.getOwnPropertyDescriptor(SharedArrayBuffer.prototype, 'byteLength')!.get!
  : null;

/** A genuine ArrayBuffer or SharedArrayBuffer (the intrinsic getters throw for anything else). */
export function isArrayBufferLike(value: unknown): value is ArrayBufferLike {
  for (const get of [arrayBufferByteLength, sharedByteLength]) {
    if (get === null) continue;
    try {
      Reflect.apply(get, value, []);
      return true;
    } catch {
      // not this kind of buffer
    }
  }
  return false;
}
