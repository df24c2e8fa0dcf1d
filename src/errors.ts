import { isRevokedProxy, snapshotTyped } from './typed.js';

/**
 * One error hierarchy for every public entry point. Every error names the
 * argument, what was expected and what was received, and is thrown before
 * any buffer or running statistic is touched.
 */
export class BatchNormError extends Error {
  /** Name of the offending argument, e.g. `opts.weight` or `shape[2]`. */
  readonly argument: string;
  readonly expected: string;
  readonly received: string;
  constructor(argument: string, expected: string, received: string, detail?: string) {
    super(`${argument}: expected ${expected}, got ${received}${detail ? ` (${detail})` : ''}`);
    this.name = new.target.name;
    this.argument = argument;
    this.expected = expected;
    this.received = received;
  }
}

/** Wrong type, or a value outside its domain (layout, eps, momentum, ...). */
export class InvalidArgumentError extends BatchNormError {}

/** A shape that is not a valid tensor shape, or a length or channel count that disagrees with it. */
export class ShapeError extends BatchNormError {}

/** Wasm memory: a request beyond 4 GiB, a failed grow, a detached or foreign view. */
export class MemoryError extends BatchNormError {}

/**
 * A threaded engine's worker failed, ended or hung during a call (argument: the kernel). The
 * call returns no result; after a lost worker the engine runs later calls on the calling thread.
 */
export class ThreadError extends BatchNormError {
  constructor(kernel: string, what: string, detail?: string) {
    super(kernel, 'every worker to finish its range of the call', what, detail);
  }
}

/** A call on an engine after engine.dispose(). */
export class DisposedError extends BatchNormError {
  constructor() {
    super('engine', 'an engine that has not been disposed', 'a disposed engine', 'create another with createEngine()');
  }
}

/**
 * Renders a received value for an error message, briefly. Typed arrays are described through
 * the intrinsic getters; for other objects a throwing getter (a hostile Proxy, say) cannot
 * replace the error being built.
 */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n (a BigInt)`;
  if (typeof value === 'boolean') return String(value);
  if (isRevokedProxy(value)) return 'a revoked Proxy';
  const typed = snapshotTyped(value);
  if (typed !== null) return `${typed.tag}(${typed.length})`;
  try {
    if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${value.byteLength})`;
    if (Array.isArray(value)) return `Array(${value.length})`;
    if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  } catch {
    return 'an object whose properties throw';
  }
  return typeof value;
}
