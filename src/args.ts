// Argument checks shared by every public entry point. Each throws a BatchNormError naming
// the argument, what was expected and what was received; all run before any buffer is touched.
import type { Engine } from './engine.js';
import { InvalidArgumentError, MemoryError, ShapeError, describe } from './errors.js';
import type { Geometry } from './layout.js';


export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object';
}

export function isFloat32Array(value: unknown): value is Float32Array {
  return value instanceof Float32Array || Object.prototype.toString.call(value) === '[object Float32Array]';
}

/** A view whose buffer was detached (wasm memory grew) reads as empty; probing it throws. */
export function isDetached(a: ArrayBufferView): boolean {
  if (a.byteLength !== 0) return false;
  try {
    new Uint8Array(a.buffer, 0, 0);
    return false;
  } catch {
    return true;
  }
}

/** What an argument's length is checked against, for messages (built only when one is thrown). */
export type What = string | (() => string);

const text = (what: What): string => (typeof what === 'string' ? what : what());

/** A Float32Array of exactly `length`; views into this engine's memory must lie in one tensor. */
export function checkF32(engine: Engine, value: unknown, name: string, length: number, what: What): Float32Array {
  if (!isFloat32Array(value)) {
    throw new InvalidArgumentError(name, `a Float32Array of length ${length} (${text(what)})`, describe(value),
      ArrayBuffer.isView(value) || Array.isArray(value) ? 'convert with Float32Array.from() first' : undefined);
  }
  if (isDetached(value)) {
    throw new MemoryError(name, 'a live Float32Array', 'a detached view',
      'wasm memory grew after the view was taken; read tensor.data again');
  }
  if (value.length !== length) {
    throw new ShapeError(name, `length ${length} (${text(what)})`, `length ${value.length}`);
  }
  if (value.buffer === engine.arena.buffer && !engine.arena.owns(value.byteOffset, value.byteLength)) {
    throw new MemoryError(name, 'a view inside a tensor allocated by this engine', `bytes [${value.byteOffset}, ${value.byteOffset + value.byteLength}) of its memory`);
  }
  return value;
}

export function checkOptionalF32(engine: Engine, value: unknown, name: string, length: number, what: What): Float32Array | null {
  return value === undefined || value === null ? null : checkF32(engine, value, name, length, what);
}

export function checkBoolean(value: unknown, name: string, fallback?: boolean): boolean {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(name, 'true or false', describe(value));
  return value;
}

/**
 * Smallest eps accepted: 2^-126, the smallest normal float32 (eps is a float32 attribute in ONNX
 * and Keras). invStd = 1/sqrt(var + eps) and gamma·invStd are float32 in the kernels: with a
 * smaller eps they overflow for a constant channel (var = 0), which would then give NaN instead
 * of beta. From 2^-126 up, 1/sqrt(eps) <= 2^63, so gamma·invStd stays finite for |gamma| < 2^65.
 */
export const MIN_EPS = 2 ** -126;

export function checkEps(value: unknown, name: string): number {
  if (value === undefined) return 1e-5;
  if (typeof value !== 'number' || !Number.isFinite(value) || !(value >= MIN_EPS)) {
    throw new InvalidArgumentError(name, 'a finite number >= 2^-126 (1.1754943508222875e-38, the smallest normal float32)', describe(value));
  }
  return value;
}

export function checkMomentum(value: unknown, name: string): number {
  if (value === undefined) return 0.1;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new InvalidArgumentError(name, 'a number in [0, 1] (weight of the new batch)', describe(value));
  }
  return value;
}

function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

function sameMemory(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.byteLength === b.byteLength;
}

/**
 * Written arrays must not overlap any other argument, except `inPlace`: an output may be
 * exactly one of those inputs (elementwise kernels read each value before writing it).
 */
export function checkAliasing(
  writes: ReadonlyArray<[string, Float32Array | null]>,
  reads: ReadonlyArray<[string, Float32Array | null]>,
  inPlace: ReadonlySet<string>,
): void {
  for (const [wName, w] of writes) {
    if (!w) continue;
    for (const list of [writes, reads]) {
      for (const [rName, r] of list) {
        if (!r || rName === wName || !overlaps(w, r)) continue;
        if (inPlace.has(`${wName}=${rName}`) && sameMemory(w, r)) continue;
        throw new InvalidArgumentError(wName, `memory disjoint from ${rName}${inPlace.has(`${wName}=${rName}`) ? ` or exactly ${rName}` : ''}`, 'an overlapping view');
      }
    }
  }
}

export function checkEnoughValues(g: Geometry): void {
  if (g.count < 2) {
    throw new ShapeError('x', 'more than 1 value per channel when training', `input size [${g.shape.join(', ')}]`);
  }
}

/**
 * Values to copy into wasm memory (engine.tensor, Tensor.set): a typed array of numbers or an
 * array of numbers, converted to float32 on copy (the one place the API converts). Rejected:
 * anything else (strings, array-likes, BigInt arrays), detached views, non-number elements.
 */
export function checkNumbers(value: unknown, name: string): ArrayLike<number> {
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    if (value instanceof BigInt64Array || value instanceof BigUint64Array) {
      throw new InvalidArgumentError(name, 'a typed array or an array of numbers', describe(value), 'BigInt values: convert with Float32Array.from(values, Number)');
    }
    if (isDetached(value)) {
      throw new MemoryError(name, 'a live typed array', 'a detached view', 'wasm memory grew after the view was taken; read tensor.data again');
    }
    return value as unknown as ArrayLike<number>;
  }
  if (!Array.isArray(value)) {
    throw new InvalidArgumentError(name, 'a typed array or an array of numbers', describe(value));
  }
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== 'number') throw new InvalidArgumentError(`${name}[${i}]`, 'a number', describe(value[i]));
  }
  return value as number[];
}
