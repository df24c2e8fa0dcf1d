// Argument checks shared by every public entry point. Each throws a BatchNormError naming
// the argument, what was expected and what was received; all run before any buffer is touched.
import type { Arena } from './memory.js';
import { InvalidArgumentError, MemoryError, ShapeError, describe } from './errors.js';
import { MAX_ELEMENTS, MAX_RANK, type Geometry } from './layout.js';
import {
  bufferOf, byteLengthOf, byteOffsetOf, hasOwn, isArray, isRevokedProxy, numericView, snapshotTyped, typedArrayTag, float32View,
} from './typed.js';


// The reading layer. Every public entry point runs in two phases:
//
//  1. Reading: each options object is read by readOptions (own properties only, each known key
//     exactly once, unknown keys recorded), each shape by readShape (each element once, own
//     only), each array of numbers by readElements. This is the only phase in which user code
//     (getters, Proxy traps, array element getters) can run.
//  2. Checking, then work, on the values read: nothing of the caller's is read again. A
//     Float32Array argument is recorded by checkF32 through the intrinsic %TypedArray% getters
//     (after phase 1, so no getter can resize or detach it afterwards) and replaced by a view
//     the engine makes itself over exactly the recorded bytes; every length check, residency and
//     aliasing test, copy in and copy out uses those views, never a method or getter of the
//     caller's object. The functional cores (runForward, runBackward, the sync kernels) receive
//     only such views.

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object';
}

/** A genuine Float32Array (a subclass counts; a Proxy around one does not). Runs no user code. */
export function isFloat32Array(value: unknown): value is Float32Array {
  return typedArrayTag(value) === 'Float32Array';
}

/** Options read once: a null-prototype record of the known keys that were own properties. */
export type Options<K extends string> = { readonly [P in K]?: unknown };

/** Levenshtein distance, for "did you mean" hints. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

/** The valid key closest to `key` (case-insensitive edit distance), if it is close enough to be a likely typo. */
export function closestKey(key: string, keys: readonly string[]): string | null {
  let best: string | null = null, bestDistance = Infinity;
  const lower = key.toLowerCase();
  for (const k of keys) {
    const kl = k.toLowerCase();
    // A key that extends a valid one, or is cut short of it ('epsilon', 'eps'), counts as close.
    const prefix = Math.min(kl.length, lower.length) >= 3 && (kl.startsWith(lower) || lower.startsWith(kl));
    const d = prefix ? 1 : editDistance(lower, kl);
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

/**
 * Per key list: the set of its keys, and the prototype of its records, an object whose own
 * properties are the keys, all undefined, on a chain that ends at null. A record inherits
 * every absent key from it as undefined, so a polluted Object.prototype is never seen, and
 * records of one op share hidden classes (a null-prototype object that gains keys one by one
 * is a dictionary in V8: measured here, several times slower to fill and to read).
 */
interface KeyList { readonly set: ReadonlySet<string>; readonly proto: object }
const keyLists = new WeakMap<readonly string[], KeyList>();
function keyList(keys: readonly string[]): KeyList {
  let list = keyLists.get(keys);
  if (list === undefined) {
    const proto = Object.create(null) as Record<string, undefined>;
    for (const key of keys) proto[key] = undefined;
    keyLists.set(keys, (list = { set: new Set(keys), proto }));
  }
  return list;
}

const isEnumerable = Function.prototype.call.bind(Object.prototype.propertyIsEnumerable) as (o: object, key: PropertyKey) => boolean;

/**
 * Reads an options object: `value` must be an object; each of its own string keys (enumerable
 * or not) that is in `keys` is read exactly once (Object.prototype pollution is never seen);
 * every own enumerable string key not in `keys` is an InvalidArgumentError naming it
 * (`${name}.${key}`) and the closest valid key, as PyTorch rejects an unexpected keyword
 * argument. The unknown keys are judged after every value was read, so no check precedes user
 * code.
 */
export function readOptions<K extends string>(value: unknown, name: string, keys: readonly K[], what = 'an options object'): Options<K> {
  if (!isObject(value) || isRevokedProxy(value)) throw new InvalidArgumentError(name, what, describe(value));
  const names = Object.getOwnPropertyNames(value);
  const { set, proto } = keyList(keys);
  const record = Object.create(proto) as Record<K, unknown>;
  let unknown: string | null = null;
  for (let i = 0; i < names.length; i++) {
    const key = names[i];
    if (set.has(key)) record[key as K] = value[key];
    else if (unknown === null && isEnumerable(value, key)) unknown = key;
  }
  if (unknown !== null) {
    const near = closestKey(unknown, keys);
    throw new InvalidArgumentError(`${name}.${unknown}`, `one of the options ${keys.map((k) => `'${k}'`).join(', ')}`,
      'an unknown option', near === null ? undefined : `did you mean '${near}'?`);
  }
  return record;
}

/**
 * A data record (moments, sums, a batch norm to fold) read once: the own values of `keys`,
 * other keys ignored. Not an object: returned as null for the caller to reject.
 */
export function readRecord<K extends string>(value: unknown, keys: readonly K[]): Options<K> | null {
  if (!isObject(value) || isRevokedProxy(value)) return null;
  const record = Object.create(null) as Record<K, unknown>;
  for (const key of keys) {
    if (hasOwn(value, key)) record[key] = value[key];
  }
  return record;
}

/**
 * The elements of an array or typed array, read once each: an array's `length` once and each
 * index once as an own property, up to the first hole (which reads as undefined, never from
 * Array.prototype, and ends the read: every caller rejects a hole, so a sparse array of length
 * 2^30 costs one step, not 2^30); a typed array by its intrinsic length (reading its elements
 * runs no user code). Anything else (including a Proxy around a typed array, a revoked Proxy,
 * DataViews, and arrays longer than MAX_ELEMENTS): null.
 */
export function readElements(value: unknown): ArrayLike<unknown> | null {
  const typed = snapshotTyped(value);
  if (typed !== null) {
    // An engine-made view: reading a typed array's elements runs no user code, so no copy.
    if (typed.detached) return [];
    if (typed.tag === 'BigInt64Array') return new BigInt64Array(typed.buffer as ArrayBuffer, typed.byteOffset, typed.length) as unknown as unknown[];
    if (typed.tag === 'BigUint64Array') return new BigUint64Array(typed.buffer as ArrayBuffer, typed.byteOffset, typed.length) as unknown as unknown[];
    return (numericView(typed) ?? []) as unknown as unknown[];
  }
  if (!isArray(value)) return null;
  const length: unknown = value.length;
  // More elements than wasm32 memory holds as float32 is no usable input (and would take long to read).
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0 || length > MAX_ELEMENTS) return null;
  const out = new Array<unknown>(length);
  for (let i = 0; i < length; i++) {
    if (!hasOwn(value, i)) return holeyCopy(out, i, length);
    out[i] = value[i];
  }
  return out;
}

/**
 * The read of an array with a hole at `hole`: its length and the values before the hole, as a
 * null-prototype array-like (an index at or past the hole reads as undefined, from no prototype).
 */
function holeyCopy(read: readonly unknown[], hole: number, length: number): ArrayLike<unknown> {
  const out = Object.create(null) as { length: number; [i: number]: unknown };
  for (let i = 0; i < hole; i++) out[i] = read[i];
  out.length = length;
  return out;
}

/**
 * A shape read once into a new plain array (each element read once, own only; a typed array's
 * values copied, so nothing read later can change them); `geometry` checks the copy. More than
 * MAX_RANK elements: a ShapeError naming `name`, before any is read. Not an array: the value
 * itself, for geometry to reject.
 */
export function readShape(value: unknown, name = 'shape'): unknown {
  const typed = snapshotTyped(value);
  if (typed === null && !isArray(value)) return value;
  const length: unknown = typed !== null ? typed.length : (value as unknown[]).length; // read once
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0) return [];
  if (length > MAX_RANK) throw new ShapeError(name, `at most ${MAX_RANK} dimensions`, `${length} dimensions`);
  const source = typed !== null ? readElements(value)! : value as unknown[];
  const out = new Array<unknown>(length);
  for (let i = 0; i < length; i++) out[i] = typed !== null || hasOwn(source, i) ? source[i] : undefined;
  return out;
}

/**
 * An array of numbers read in phase 1 and checked: every element a number (holes, strings,
 * BigInts, objects rejected, naming `${name}[i]`), as a Float64Array.
 */
export function checkNumberElements(elements: ArrayLike<unknown>, name: string): Float64Array {
  const out = new Float64Array(elements.length);
  for (let i = 0; i < elements.length; i++) {
    const v = elements[i];
    if (typeof v !== 'number') throw new InvalidArgumentError(`${name}[${i}]`, 'a number', describe(v));
    out[i] = v;
  }
  return out;
}

/** What an argument's length is checked against, for messages (built only when one is thrown). */
export type What = string | (() => string);

const text = (what: What): string => (typeof what === 'string' ? what : what());

/**
 * An object that claims to be a typed array without being one (a Proxy around one, or an object
 * inheriting from one). Only asked while an error is being built: it may run the caller's traps.
 */
function wrapsTypedArray(value: unknown): boolean {
  try {
    return typeof value === 'object' && value !== null && Object.getPrototypeOf(Int8Array.prototype).isPrototypeOf(value);
  } catch {
    return false;
  }
}

/**
 * A Float32Array of exactly `length`, recorded through the intrinsic getters and returned as a
 * view the engine made over exactly those bytes (see the reading layer above); views into this
 * engine's memory must lie in one tensor. A Proxy is rejected: pass the typed array itself.
 */
export function checkF32(arena: Arena, value: unknown, name: string, length: number, what: What): Float32Array {
  const s = snapshotTyped(value);
  if (s === null || s.tag !== 'Float32Array') {
    throw new InvalidArgumentError(name, `a Float32Array of length ${length} (${text(what)})`, describe(value),
      s !== null || isArray(value) || ArrayBuffer.isView(value) ? 'convert with Float32Array.from() first'
        : wrapsTypedArray(value) ? 'Proxies and other wrappers of a Float32Array are not accepted: pass the Float32Array itself' : undefined);
  }
  if (s.detached) {
    throw new MemoryError(name, 'a live Float32Array', 'a detached view',
      'wasm memory grew after the view was taken; read tensor.data again');
  }
  if (s.length !== length) {
    throw new ShapeError(name, `length ${length} (${text(what)})`, `length ${s.length}`);
  }
  if (arena.holds(s.buffer)) {
    if (!arena.owns(s.byteOffset, s.byteLength)) {
      throw new MemoryError(name, 'a view inside a tensor allocated by this engine', `bytes [${s.byteOffset}, ${s.byteOffset + s.byteLength}) of its memory`);
    }
    // Shared memory: a view from before a growth is over an older buffer object of the same
    // memory; the call gets one over the current buffer, so identity and overlap checks compare like with like.
    if (s.buffer !== arena.buffer) return new Float32Array(arena.buffer, s.byteOffset, s.length);
  }
  return float32View(s);
}

export function checkOptionalF32(arena: Arena, value: unknown, name: string, length: number, what: What): Float32Array | null {
  return value === undefined || value === null ? null : checkF32(arena, value, name, length, what);
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

/**
 * Which arguments of an op are written and which read, by name, and which outputs may be exactly
 * one of the inputs (`'opts.out=x'`: elementwise kernels read each value before writing it).
 * Built once per op: a call then passes its views in the same order, writes first.
 */
export interface AliasRule {
  readonly names: readonly string[];
  readonly writes: number;
  /** allowed[i·n + j]: write i may be exactly argument j. */
  readonly allowed: readonly boolean[];
}

export function aliasRule(writes: readonly string[], reads: readonly string[], inPlace: readonly string[]): AliasRule {
  const names = [...writes, ...reads], n = names.length;
  for (const pair of inPlace) {
    const [w, r] = pair.split('=');
    if (!writes.includes(w) || !reads.includes(r)) throw new Error(`aliasRule: '${pair}' is not a written=read pair of this rule`);
  }
  const allowed = Array.from({ length: writes.length * n }, (_, k) => inPlace.includes(`${names[Math.floor(k / n)]}=${names[k % n]}`));
  return { names, writes: writes.length, allowed };
}

/**
 * Written arrays must not overlap any other argument (`views`, in the rule's order; null:
 * absent), except where the rule allows an output to be exactly one input. This runs on every
 * call: byte ranges are compared first, and a view's buffer is read only for a pair whose ranges
 * overlap (all through the intrinsic getters, src/typed.ts). An argument named twice (a
 * running statistic read in eval, written in training) is given once, the other slot null.
 */
export function checkAliasing(rule: AliasRule, views: ReadonlyArray<Float32Array | null>): void {
  const n = views.length, names = rule.names;
  for (let i = 0; i < rule.writes; i++) {
    const w = views[i];
    if (w === null) continue;
    const w0 = byteOffsetOf(w), w1 = w0 + byteLengthOf(w);
    for (let j = 0; j < n; j++) {
      const r = views[j];
      if (r === null || j === i) continue;
      const r0 = byteOffsetOf(r), r1 = r0 + byteLengthOf(r);
      if (!(w0 < r1 && r0 < w1) || bufferOf(w) !== bufferOf(r)) continue;
      const allowed = rule.allowed[i * n + j];
      if (allowed && w0 === r0 && w1 === r1) continue;
      throw new InvalidArgumentError(names[i], `memory disjoint from ${names[j]}${allowed ? ` or exactly ${names[j]}` : ''}`, 'an overlapping view');
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
 * anything else (strings, array-likes, Proxies, BigInt arrays), detached views, non-number
 * elements. Returns an engine-made view of a typed array, or a Float32Array copy of an array:
 * all user code (element getters) has run when it returns, so the caller can allocate after.
 */
export function checkNumbers(value: unknown, name: string): ArrayLike<number> & ArrayBufferView {
  const typed = snapshotTyped(value);
  if (typed !== null) {
    if (typed.tag === 'BigInt64Array' || typed.tag === 'BigUint64Array') {
      throw new InvalidArgumentError(name, 'a typed array or an array of numbers', describe(value), 'BigInt values: convert with Float32Array.from(values, Number)');
    }
    if (typed.detached) {
      throw new MemoryError(name, 'a live typed array', 'a detached view', 'wasm memory grew after the view was taken; read tensor.data again');
    }
    return numericView(typed)!;
  }
  const elements = isArray(value) ? readElements(value) : null;
  if (elements === null) {
    throw new InvalidArgumentError(name, 'a typed array or an array of numbers', describe(value),
      typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) ? 'Proxies and array-likes are not accepted: pass the array itself' : undefined);
  }
  return new Float32Array(checkNumberElements(elements, name));
}
