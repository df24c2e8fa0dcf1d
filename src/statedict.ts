// State dicts: the layer's parameters and buffers as a plain, JSON-serializable object, with
// PyTorch's names or Keras' names.
//
//   PyTorch (BatchNorm{1,2,3}d.state_dict()): weight, bias, running_mean, running_var, num_batches_tracked
//   Keras (BatchNormalization weights):       gamma,  beta, moving_mean,  moving_variance
//
// Values are plain arrays of numbers (float32 values survive JSON exactly: JSON.stringify writes
// the shortest decimal that parses back to the same double, which is the float32 value) and
// num_batches_tracked a plain integer. Parameters are present iff the layer is affine, buffers
// iff it tracks running statistics (PyTorch leaves out None buffers the same way). Keras has no
// batch counter: a Keras dict has no num_batches_tracked, and loading its moving statistics sets
// numBatchesTracked to 0 (it only matters for momentum null, where the next training batch then
// restarts the cumulative average).
// The running variance is stored as the layer holds it (its convention: PyTorch's unbiased
// estimate, ONNX/Keras the biased one); loading never converts it.
import { InvalidArgumentError, ShapeError, describe } from './errors.js';
import { isObject, readElements, readOptions } from './args.js';
import { copyInto, hasOwn, isArray, isRevokedProxy, snapshotTyped } from './typed.js';
import type { Convention } from './conventions.js';

export type StateDictFormat = 'pytorch' | 'keras';

/** A state dict: key -> per-channel values (plain array) or, for num_batches_tracked, an integer. */
export type StateDict = Record<string, number[] | number>;

export interface PyTorchStateDict {
  weight?: number[];
  bias?: number[];
  running_mean?: number[];
  running_var?: number[];
  num_batches_tracked?: number;
}

export interface KerasStateDict {
  gamma?: number[];
  beta?: number[];
  moving_mean?: number[];
  moving_variance?: number[];
}

export interface StateDictOptions {
  /** Key names: 'pytorch' or 'keras'; default: 'keras' for a layer with the keras convention, else 'pytorch'. */
  format?: StateDictFormat;
  /** Prepended to every key (e.g. 'features.1.' as in a PyTorch model's state dict). */
  prefix?: string;
}

export interface LoadStateDictOptions {
  /** Default 'auto': the format whose names the dict's keys use (the layer's own format if unclear). */
  format?: StateDictFormat | 'auto';
  /**
   * true (default): every expected key present and no other key under `prefix`, else an error
   * naming the missing and unexpected keys (PyTorch's strict load). false: load the keys that
   * match, report the rest.
   */
  strict?: boolean;
  /** Only keys starting with `prefix` are considered; it is stripped before matching. */
  prefix?: string;
}

export interface LoadStateDictResult {
  format: StateDictFormat;
  /** Expected keys the dict did not have (non-strict only; those values are left unchanged). */
  missingKeys: string[];
  /** Keys under the prefix that the layer does not have (non-strict only; ignored). */
  unexpectedKeys: string[];
}

/** What a state dict reads and writes: the BatchNorm layer satisfies it. */
export interface StateDictTarget {
  readonly numFeatures: number;
  readonly convention: Convention;
  readonly weight: Float32Array | null;
  readonly bias: Float32Array | null;
  readonly runningMean: Float32Array | null;
  readonly runningVar: Float32Array | null;
  numBatchesTracked: number;
}

type Slot = 'weight' | 'bias' | 'runningMean' | 'runningVar' | 'numBatchesTracked';

const NAMES: Record<StateDictFormat, ReadonlyArray<readonly [string, Slot]>> = {
  pytorch: [['weight', 'weight'], ['bias', 'bias'], ['running_mean', 'runningMean'], ['running_var', 'runningVar'],
    ['num_batches_tracked', 'numBatchesTracked']],
  keras: [['gamma', 'weight'], ['beta', 'bias'], ['moving_mean', 'runningMean'], ['moving_variance', 'runningVar']],
};

function defaultFormat(target: StateDictTarget): StateDictFormat {
  return target.convention === 'keras' ? 'keras' : 'pytorch';
}

function checkFormat(value: unknown, name: string, allowAuto: boolean): StateDictFormat | 'auto' | undefined {
  if (value === undefined) return undefined;
  if (value === 'pytorch' || value === 'keras' || (allowAuto && value === 'auto')) return value;
  throw new InvalidArgumentError(name, `'pytorch' or 'keras'${allowAuto ? " or 'auto'" : ''}`, describe(value));
}

function checkPrefix(value: unknown, name: string): string {
  if (value === undefined) return '';
  if (typeof value !== 'string') throw new InvalidArgumentError(name, 'a string', describe(value));
  return value;
}

/** The keys this layer has in `format`, with the layer slot each one maps to. */
function expectedKeys(target: StateDictTarget, format: StateDictFormat): Array<readonly [string, Slot]> {
  return NAMES[format].filter(([, slot]) => (slot === 'weight' || slot === 'bias'
    ? target[slot] !== null
    : target.runningMean !== null));
}

export function stateDict(target: StateDictTarget, options: StateDictOptions = {}): StateDict {
  const o = readOptions(options, 'options', ['format', 'prefix'] as const);
  const format = (checkFormat(o.format, 'options.format', false) ?? defaultFormat(target)) as StateDictFormat;
  const prefix = checkPrefix(o.prefix, 'options.prefix');
  const dict: StateDict = {};
  for (const [key, slot] of expectedKeys(target, format)) {
    dict[prefix + key] = slot === 'numBatchesTracked' ? target.numBatchesTracked : Array.from(target[slot]!);
  }
  return dict;
}

function keyList(keys: readonly string[]): string {
  return keys.length === 0 ? 'none' : keys.map((k) => JSON.stringify(k)).join(', ');
}

/** Per-channel values of a key (its elements read once): C finite numbers in float32 range. */
function checkValues(value: unknown, elements: ArrayLike<unknown> | null, key: string, slot: Slot, C: number): Float32Array {
  const name = `stateDict[${JSON.stringify(key)}]`;
  if (elements === null) {
    throw new InvalidArgumentError(name, `an array of ${C} numbers (numFeatures)`, describe(value));
  }
  if (elements.length !== C) {
    throw new ShapeError(name, `length ${C} (numFeatures)`, `length ${elements.length}`);
  }
  const out = new Float32Array(C);
  for (let i = 0; i < C; i++) {
    const v = elements[i];
    const f = typeof v === 'number' ? Math.fround(v) : NaN;
    if (typeof v !== 'number' || !Number.isFinite(f)) {
      throw new InvalidArgumentError(`${name}[${i}]`, 'a finite number within float32 range', describe(v));
    }
    if (slot === 'runningVar' && f < 0) {
      throw new InvalidArgumentError(`${name}[${i}]`, 'a variance >= 0', describe(v));
    }
    out[i] = f;
  }
  return out;
}

const INTEGER_ARRAYS: ReadonlySet<string> = new Set([
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'BigInt64Array', 'BigUint64Array',
]);

const COUNTER_EXPECTED = 'a non-negative integer at most 2^53 − 1: a number, a bigint, or the one element of an integer typed array '
  + '(BigInt64Array(1), Int32Array(1), ...) or of an array [n]';

/**
 * num_batches_tracked, an int64 in PyTorch: a number, a bigint, or a one-element integer typed
 * array or array of either (a tensor exported as such), non-negative and within 2^53 − 1 (the
 * largest integer a number holds exactly).
 */
function checkCounter(value: unknown, elements: ArrayLike<unknown> | null, key: string): number {
  const name = `stateDict[${JSON.stringify(key)}]`;
  let n: unknown = value;
  if (elements !== null) {
    const typed = snapshotTyped(value);
    if (typed !== null && !INTEGER_ARRAYS.has(typed.tag)) {
      throw new InvalidArgumentError(name, COUNTER_EXPECTED, describe(value), 'a counter is an integer tensor');
    }
    if (elements.length !== 1) throw new InvalidArgumentError(name, COUNTER_EXPECTED, `${describe(value)} (length ${elements.length})`);
    n = elements[0];
  }
  if (typeof n === 'bigint') {
    if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new InvalidArgumentError(name, COUNTER_EXPECTED, describe(n), n < 0n ? undefined : 'beyond 2^53 a number cannot hold the count exactly');
    }
    return Number(n);
  }
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new InvalidArgumentError(name, COUNTER_EXPECTED, describe(n),
      typeof n === 'number' && Number.isInteger(n) && n > 0 ? 'beyond 2^53 a number cannot hold the count exactly' : undefined);
  }
  return n;
}

const LOAD_KEYS = ['format', 'strict', 'prefix'] as const;

/** Every key name of either format (only these are read from a dict). */
const KNOWN_NAMES: ReadonlySet<string> = new Set([...NAMES.pytorch, ...NAMES.keras].map(([name]) => name));

/**
 * Loads `dict` into `target`. The options and the dict are read first (own properties only,
 * each value and each element once), then everything is validated; a failed load changes
 * nothing. Errors: InvalidArgumentError for a non-object dict, missing/unexpected keys (strict)
 * or bad values, ShapeError for a length other than numFeatures; each names the key. A PyTorch
 * dict without num_batches_tracked (an old checkpoint) loads in strict mode with the counter 0.
 */
export function loadStateDict(target: StateDictTarget, dict: unknown, options: LoadStateDictOptions = {}): LoadStateDictResult {
  // Reading.
  const o = readOptions(options, 'options', LOAD_KEYS);
  if (!isObject(dict) || isRevokedProxy(dict) || isArray(dict) || ArrayBuffer.isView(dict) || snapshotTyped(dict) !== null) {
    throw new InvalidArgumentError('stateDict', 'a plain object of named arrays (a state dict)', describe(dict));
  }
  const readPrefix = typeof o.prefix === 'string' ? o.prefix : '';
  const keys = Object.keys(dict).filter((k) => k.startsWith(readPrefix)).map((k) => k.slice(readPrefix.length));
  const values = new Map<string, { value: unknown; elements: ArrayLike<unknown> | null }>();
  for (const key of keys) {
    if (!KNOWN_NAMES.has(key) || !hasOwn(dict, readPrefix + key)) continue;
    const value: unknown = dict[readPrefix + key];
    values.set(key, { value, elements: readElements(value) });
  }

  // Checking.
  const requested = checkFormat(o.format, 'options.format', true) ?? 'auto';
  const strict = o.strict === undefined ? true : o.strict;
  if (typeof strict !== 'boolean') throw new InvalidArgumentError('options.strict', 'true or false', describe(strict));
  const prefix = checkPrefix(o.prefix, 'options.prefix');
  let format: StateDictFormat;
  if (requested !== 'auto') format = requested;
  else {
    const uses = (f: StateDictFormat) => keys.some((k) => NAMES[f].some(([name]) => name === k));
    const p = uses('pytorch'), k = uses('keras');
    format = p && !k ? 'pytorch' : k && !p ? 'keras' : defaultFormat(target);
  }

  const expected = expectedKeys(target, format);
  // PyTorch fills a missing num_batches_tracked with 0 (checkpoints from before it existed).
  const counterDefault = strict && !values.has('num_batches_tracked') && expected.some(([, slot]) => slot === 'numBatchesTracked');
  const missing = expected.filter(([key]) => !values.has(key) && !(counterDefault && key === 'num_batches_tracked')).map(([key]) => prefix + key);
  const unexpected = keys.filter((key) => !expected.some(([name]) => name === key)).map((key) => prefix + key);
  if (strict && (missing.length > 0 || unexpected.length > 0)) {
    throw new InvalidArgumentError(
      'stateDict',
      `exactly the ${format} keys ${keyList(expected.map(([key]) => prefix + key))}`,
      `missing keys: ${keyList(missing)}; unexpected keys: ${keyList(unexpected)}`,
      'pass { strict: false } to load only the keys that match',
    );
  }

  // Validate every present key before writing anything.
  const writes: Array<() => void> = [];
  let runningLoaded = false;
  for (const [key, slot] of expected) {
    const read = values.get(key);
    if (read === undefined) continue;
    const full = prefix + key;
    if (slot === 'numBatchesTracked') {
      const count = checkCounter(read.value, read.elements, full);
      writes.push(() => { target.numBatchesTracked = count; });
    } else {
      const checked = checkValues(read.value, read.elements, full, slot, target.numFeatures);
      const dest = target[slot]!;
      writes.push(() => copyInto(dest, checked));
      if (slot === 'runningMean' || slot === 'runningVar') runningLoaded = true;
    }
  }
  if (counterDefault) writes.push(() => { target.numBatchesTracked = 0; });
  // Keras has no batch counter: loading Keras moving statistics starts counting afresh.
  if (format === 'keras' && runningLoaded) {
    writes.push(() => { target.numBatchesTracked = 0; });
  }
  for (const write of writes) write();
  return { format, missingKeys: missing, unexpectedKeys: unexpected };
}
