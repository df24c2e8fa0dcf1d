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
import { isObject } from './args.js';
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
  if (!isObject(options)) throw new InvalidArgumentError('options', 'an options object', describe(options));
  const format = (checkFormat(options.format, 'options.format', false) ?? defaultFormat(target)) as StateDictFormat;
  const prefix = checkPrefix(options.prefix, 'options.prefix');
  const dict: StateDict = {};
  for (const [key, slot] of expectedKeys(target, format)) {
    dict[prefix + key] = slot === 'numBatchesTracked' ? target.numBatchesTracked : Array.from(target[slot]!);
  }
  return dict;
}

function keyList(keys: readonly string[]): string {
  return keys.length === 0 ? 'none' : keys.map((k) => JSON.stringify(k)).join(', ');
}

/** Per-channel values of a key: an array (or typed array) of C finite numbers in float32 range. */
function checkValues(value: unknown, key: string, slot: Slot, C: number): Float32Array {
  const name = `stateDict[${JSON.stringify(key)}]`;
  const arrayLike = Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
  if (!arrayLike) {
    throw new InvalidArgumentError(name, `an array of ${C} numbers (numFeatures)`, describe(value));
  }
  const values = value as ArrayLike<unknown>;
  if (values.length !== C) {
    throw new ShapeError(name, `length ${C} (numFeatures)`, `length ${values.length}`);
  }
  const out = new Float32Array(C);
  for (let i = 0; i < C; i++) {
    const v = values[i];
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

/**
 * Loads `dict` into `target`. Everything is validated first; a failed load changes nothing.
 * Errors: InvalidArgumentError for a non-object dict, missing/unexpected keys (strict) or bad
 * values, ShapeError for a length other than numFeatures; each names the key.
 */
export function loadStateDict(target: StateDictTarget, dict: unknown, options: LoadStateDictOptions = {}): LoadStateDictResult {
  if (!isObject(options)) throw new InvalidArgumentError('options', 'an options object', describe(options));
  if (!isObject(dict) || Array.isArray(dict) || ArrayBuffer.isView(dict)) {
    throw new InvalidArgumentError('stateDict', 'a plain object of named arrays (a state dict)', describe(dict));
  }
  const requested = checkFormat(options.format, 'options.format', true) ?? 'auto';
  const strict = options.strict === undefined ? true : options.strict;
  if (typeof strict !== 'boolean') throw new InvalidArgumentError('options.strict', 'true or false', describe(strict));
  const prefix = checkPrefix(options.prefix, 'options.prefix');

  const keys = Object.keys(dict).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  let format: StateDictFormat;
  if (requested !== 'auto') format = requested;
  else {
    const uses = (f: StateDictFormat) => keys.some((k) => NAMES[f].some(([name]) => name === k));
    const p = uses('pytorch'), k = uses('keras');
    format = p && !k ? 'pytorch' : k && !p ? 'keras' : defaultFormat(target);
  }

  const expected = expectedKeys(target, format);
  const missing = expected.filter(([key]) => !keys.includes(key)).map(([key]) => prefix + key);
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
    const full = prefix + key;
    if (!Object.prototype.hasOwnProperty.call(dict, full)) continue;
    const value = (dict as Record<string, unknown>)[full];
    if (slot === 'numBatchesTracked') {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new InvalidArgumentError(`stateDict[${JSON.stringify(full)}]`, 'a non-negative integer', describe(value));
      }
      writes.push(() => { target.numBatchesTracked = value; });
    } else {
      const values = checkValues(value, full, slot, target.numFeatures);
      const dest = target[slot]!;
      writes.push(() => dest.set(values));
      if (slot === 'runningMean' || slot === 'runningVar') runningLoaded = true;
    }
  }
  // Keras has no batch counter: loading Keras moving statistics starts counting afresh.
  if (format === 'keras' && runningLoaded) {
    writes.push(() => { target.numBatchesTracked = 0; });
  }
  for (const write of writes) write();
  return { format, missingKeys: missing, unexpectedKeys: unexpected };
}
