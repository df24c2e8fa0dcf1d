/**
 * Argument validation of engine.forward, engine.backward and the BatchNorm layer.
 *
 * Requirement: wrong shape/length, C mismatch in weight/bias/running stats, rank < 2,
 * non-integer or negative dimensions, zero-size tensors, unknown layout, eps <= 0 or NaN,
 * momentum outside [0, 1], a training call with one value per channel: each throws a typed
 * error naming the argument and what was expected, and leaves runningMean, runningVar, out and
 * every input unchanged.
 *
 * Every bad case below snapshots every buffer reachable from the call's arguments (the whole
 * underlying ArrayBuffer, so a neighbouring view of the same buffer counts too, and the whole
 * wasm memory for zero-copy tensors) and every plain array, and checks them byte for byte after
 * the throw. It also checks that the throw left no scratch allocation behind (bytesInUse).
 */
import { describe, it, expect, beforeAll } from 'vitest';
import fc from 'fast-check';
import {
  createEngine, BatchNorm, BatchNormError, InvalidArgumentError, ShapeError, MemoryError,
  type Engine,
} from '../src/index.js';
import { rng as mulberry32 } from './helpers/numeric.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type ErrorClass = typeof InvalidArgumentError | typeof ShapeError | typeof MemoryError | typeof BatchNormError;

const BUILDS = [
  { name: 'simd', simd: true },
  { name: 'scalar', simd: false },
] as const;


/** Deterministic values in [lo, hi); element 0 is -0 when lo < 0 so sign-of-zero changes show up. */
function f32(n: number, seed = 1, lo = -4, hi = 4): Float32Array {
  const r = mulberry32(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  if (n > 0 && lo < 0) a[0] = -0;
  return a;
}
/** Strictly positive values (running variances). */
const pos = (n: number, seed = 7) => f32(n, seed, 0.5, 2);

function prod(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** The engine's wasm memory (the buffer zero-copy tensors live in). */
function wasmBuffer(engine: Engine): ArrayBuffer {
  return engine.kernels.memory.buffer;
}

interface Snapshot {
  check(): void;
}

/**
 * Snapshots every ArrayBuffer (whole buffer) and plain array reachable from `values`, one level
 * into plain option objects. Views into the engine's wasm memory are compared against the
 * engine's current memory. Plain arrays are compared element-wise with Object.is.
 */
function snapshot(engine: Engine, values: readonly unknown[]): Snapshot {
  const buffers = new Map<ArrayBufferLike, Uint8Array>();
  const arrays: Array<[unknown[], unknown[]]> = [];
  const memoryBefore = new Uint8Array(wasmBuffer(engine)).slice();
  const bytesInUse = engine.info().bytesInUse;
  const visit = (v: unknown, depth: number): void => {
    if (ArrayBuffer.isView(v)) {
      const buffer = v.buffer;
      if (buffer !== wasmBuffer(engine) && !buffers.has(buffer) && buffer.byteLength > 0) {
        buffers.set(buffer, new Uint8Array(buffer).slice());
      }
    } else if (Array.isArray(v)) {
      arrays.push([v, [...v]]);
      if (depth === 0) for (const item of v) visit(item, depth + 1);
    } else if (v !== null && typeof v === 'object' && depth === 0) {
      for (const item of Object.values(v)) visit(item, depth + 1);
    }
  };
  for (const v of values) visit(v, 0);
  return {
    check() {
      for (const [buffer, before] of buffers) {
        expect(buffer.byteLength, 'a buffer argument was detached or resized').toBe(before.byteLength);
        expect(Buffer.compare(new Uint8Array(buffer), before), 'an argument buffer changed').toBe(0);
      }
      for (const [array, before] of arrays) {
        expect(array.length, 'a plain array argument changed length').toBe(before.length);
        array.forEach((item, i) => expect(Object.is(item, before[i]), `plain array element ${i} changed`).toBe(true));
      }
      const memoryAfter = new Uint8Array(wasmBuffer(engine));
      expect(memoryAfter.byteLength, 'wasm memory grew during a rejected call').toBe(memoryBefore.byteLength);
      expect(Buffer.compare(memoryAfter, memoryBefore), 'wasm memory changed during a rejected call').toBe(0);
      expect(engine.info().bytesInUse, 'a rejected call leaked scratch memory').toBe(bytesInUse);
    },
  };
}

/** Runs `call`, requires a throw of exactly `cls`, with `message` and (optionally) `argument`. */
function expectError(call: () => unknown, cls: ErrorClass, message: RegExp, argument?: string): BatchNormError {
  let thrown: unknown = undefined;
  let threw = false;
  try {
    call();
  } catch (error) {
    thrown = error;
    threw = true;
  }
  expect(threw, `expected ${cls.name} matching ${message}, but the call returned`).toBe(true);
  if (!(thrown instanceof BatchNormError)) {
    throw new Error(`expected ${cls.name}, got a non-BatchNormError: ${String(thrown)}`, { cause: thrown });
  }
  expect(thrown).toBeInstanceOf(cls);
  expect(thrown).toBeInstanceOf(Error);
  expect(thrown.name).toBe(cls.name);
  expect(thrown.message).toMatch(message);
  if (argument !== undefined) expect(thrown.argument).toBe(argument);
  expect(thrown.message.startsWith(`${thrown.argument}: expected ${thrown.expected}, got ${thrown.received}`)).toBe(true);
  return thrown;
}

function expectBytesEqual(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  expect(Buffer.compare(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), new Uint8Array(b.buffer, b.byteOffset, b.byteLength)), what).toBe(0);
}

function expectAllFinite(a: ArrayLike<number>, what: string): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) expect.fail(`${what}[${i}] = ${a[i]} is not finite`);
  }
}

/** Moves the arena top to the end of the current memory so the next allocation must grow it. */
function fillToEndOfMemory(engine: Engine) {
  const probe = engine.tensor(1);
  const top = probe.byteOffset;
  probe.free();
  const rest = (engine.info().memoryBytes - top) / 4;
  return rest >= 1 ? engine.tensor(rest) : null;
}

// ---------------------------------------------------------------------------------------------
// Bad-argument table: engine.forward
// ---------------------------------------------------------------------------------------------

interface ForwardArgs { x: unknown; shape: unknown; opts: unknown }

interface BadCase<A> {
  name: string;
  category: string;
  make: (engine: Engine) => A;
  error: ErrorClass;
  argument: string;
  message: RegExp;
}

/** NCHW [2, 3, 4]: C = 3, 24 values; the same shape in NHWC has C = 4. */
const S = [2, 3, 4];
const N_S = 24;

function fwd(overrides: Partial<ForwardArgs> & { o?: Record<string, unknown> } = {}): ForwardArgs {
  return {
    x: 'x' in overrides ? overrides.x : f32(N_S, 1),
    shape: 'shape' in overrides ? overrides.shape : [...S],
    opts: 'opts' in overrides ? overrides.opts : {
      training: true,
      weight: f32(3, 2),
      bias: f32(3, 3),
      runningMean: f32(3, 4),
      runningVar: pos(3, 5),
      ...overrides.o,
    },
  };
}

/** Options for NHWC with C channels (all per-channel arrays of length C), plus overrides. */
function nhwcOpts(C: number, o: Record<string, unknown> = {}): Record<string, unknown> {
  return { layout: 'NHWC', training: true, weight: f32(C, 2), bias: f32(C, 3), runningMean: f32(C, 4), runningVar: pos(C, 5), ...o };
}

const forwardCases: BadCase<ForwardArgs>[] = [];
function fc_(category: string, name: string, make: (engine: Engine) => ForwardArgs, error: ErrorClass, argument: string, message: RegExp) {
  forwardCases.push({ category, name, make, error, argument, message });
}

// x length != prod(shape)
fc_('length', 'x length 23 for [2, 3, 4]', () => fwd({ x: f32(23) }), ShapeError, 'x', /^x: expected length 24 \(shape \[2, 3, 4\]\), got length 23$/);
fc_('length', 'x length 25 for [2, 3, 4]', () => fwd({ x: f32(25) }), ShapeError, 'x', /^x: expected length 24 .*got length 25$/);
fc_('length', 'x length 12 for NHWC [2, 4, 3]', () => fwd({ x: f32(12), shape: [2, 4, 3], opts: nhwcOpts(3) }), ShapeError, 'x', /^x: expected length 24 \(shape \[2, 4, 3\]\), got length 12$/);
fc_('length', 'empty x for [2, 3]', () => fwd({ x: new Float32Array(0), shape: [2, 3] }), ShapeError, 'x', /^x: expected length 6 .*got length 0$/);

// rank < 2
fc_('rank', 'shape [] (rank 0)', () => fwd({ shape: [] }), ShapeError, 'shape', /^shape: expected rank >= 2 .*got rank 0 \[\]$/);
fc_('rank', 'shape [24] (rank 1)', () => fwd({ shape: [24] }), ShapeError, 'shape', /^shape: expected rank >= 2 \(N, C, \.\.\.\), got rank 1 \[24\]$/);

// dimensions: zero-size, negative, non-integer, NaN, strings
fc_('dims', 'shape [2, 0, 4] (zero-size C)', () => fwd({ shape: [2, 0, 4] }), ShapeError, 'shape[1]', /^shape\[1\]: expected a positive integer, got 0$/);
fc_('dims', 'shape [0, 3, 4] (zero-size batch)', () => fwd({ shape: [0, 3, 4], x: new Float32Array(0) }), ShapeError, 'shape[0]', /^shape\[0\]: expected a positive integer, got 0$/);
fc_('dims', 'shape [2, 3, 0] (zero-size spatial)', () => fwd({ shape: [2, 3, 0] }), ShapeError, 'shape[2]', /^shape\[2\]: expected a positive integer, got 0$/);
fc_('dims', 'shape [2, -1, 4]', () => fwd({ shape: [2, -1, 4] }), ShapeError, 'shape[1]', /^shape\[1\]: expected a positive integer, got -1$/);
fc_('dims', 'shape [-2, -3, 4] (two negative: first reported)', () => fwd({ shape: [-2, -3, 4] }), ShapeError, 'shape[0]', /^shape\[0\]: expected a positive integer, got -2$/);
fc_('dims', 'shape [2, 3, 2.5]', () => fwd({ shape: [2, 3, 2.5] }), ShapeError, 'shape[2]', /^shape\[2\]: expected a positive integer, got 2\.5$/);
fc_('dims', 'shape [2, NaN, 4]', () => fwd({ shape: [2, NaN, 4] }), ShapeError, 'shape[1]', /^shape\[1\]: expected a positive integer, got NaN$/);
fc_('dims', "shape [2, '3', 4]", () => fwd({ shape: [2, '3', 4] }), ShapeError, 'shape[1]', /^shape\[1\]: expected a positive integer, got "3"$/);
fc_('dims', 'shape [2, 3, Infinity]', () => fwd({ shape: [2, 3, Infinity] }), ShapeError, 'shape[2]', /^shape\[2\]: expected a positive integer, got Infinity$/);
fc_('dims', 'shape [2, null, 4]', () => fwd({ shape: [2, null, 4] }), ShapeError, 'shape[1]', /^shape\[1\]: expected a positive integer, got null$/);
fc_('dims', 'shape with more than 2^30 elements', () => fwd({ shape: [2 ** 16, 3, 2 ** 15] }), ShapeError, 'shape', /^shape: expected at most 1073741824 elements .*got 6442450944 elements$/);

// shape not an array
fc_('shape type', "shape '2,3,4'", () => fwd({ shape: '2,3,4' }), InvalidArgumentError, 'shape', /^shape: expected an array of dimensions, got "2,3,4"$/);
fc_('shape type', 'shape null', () => fwd({ shape: null }), InvalidArgumentError, 'shape', /^shape: expected an array of dimensions, got null$/);
fc_('shape type', 'shape undefined', () => fwd({ shape: undefined }), InvalidArgumentError, 'shape', /^shape: expected an array of dimensions, got undefined$/);
fc_('shape type', 'shape 24 (a number)', () => fwd({ shape: 24 }), InvalidArgumentError, 'shape', /^shape: expected an array of dimensions, got 24$/);
fc_('shape type', 'shape array-like object', () => fwd({ shape: { 0: 2, 1: 3, 2: 4, length: 3 } }), InvalidArgumentError, 'shape', /^shape: expected an array of dimensions, got Object$/);

// C mismatch, NCHW (channel axis 1: C = 3 for [2, 3, 4]) and NHWC (channel axis last: C = 4)
for (const param of ['weight', 'bias', 'runningMean', 'runningVar'] as const) {
  const arg = `opts.${param}`;
  const re = (c: number, got: number) => new RegExp(`^opts\\.${param}: expected length ${c} \\(C = ${c} channels\\), got length ${got}$`);
  fc_('C mismatch', `${param} of length 4 with NCHW [2, 3, 4] (C = 3)`, () => fwd({ o: { [param]: param === 'runningVar' ? pos(4) : f32(4) } }), ShapeError, arg, re(3, 4));
  fc_('C mismatch', `${param} of length 2 with NCHW [2, 3, 4] (C = 3)`, () => fwd({ o: { [param]: pos(2) } }), ShapeError, arg, re(3, 2));
  fc_('C mismatch', `${param} of length 3 with NHWC [2, 3, 4] (C = 4)`, () => fwd({ opts: nhwcOpts(4, { [param]: pos(3) }) }), ShapeError, arg, re(4, 3));
  fc_('C mismatch', `${param} of length 3 with NHWC [2, 2, 2, 5] (C = 5)`, () => fwd({ x: f32(40), shape: [2, 2, 2, 5], opts: nhwcOpts(5, { [param]: pos(3) }) }), ShapeError, arg, re(5, 3));
  fc_('C mismatch', `${param} of length 3 with NCHW [2, 5] (C = 5), eval`, () => fwd({ x: f32(10), shape: [2, 5], o: { training: false, weight: f32(5), bias: f32(5), runningMean: f32(5), runningVar: pos(5), [param]: pos(3) } }), ShapeError, arg, re(5, 3));
}

// running statistics: both or neither
fc_('running stats pair', 'runningMean without runningVar (training)', () => fwd({ o: { runningVar: undefined } }), InvalidArgumentError, 'opts.runningVar', /^opts\.runningVar: expected a Float32Array when the other running statistic is given, got null$/);
fc_('running stats pair', 'runningMean with runningVar null (eval)', () => fwd({ o: { training: false, runningVar: null } }), InvalidArgumentError, 'opts.runningVar', /^opts\.runningVar: expected a Float32Array when the other/);
fc_('running stats pair', 'runningVar without runningMean', () => fwd({ o: { runningMean: undefined } }), InvalidArgumentError, 'opts.runningMean', /^opts\.runningMean: expected a Float32Array when the other running statistic is given, got null$/);

// element types
fc_('x type', 'x as Float64Array', () => fwd({ x: Float64Array.from(f32(N_S)) }), InvalidArgumentError, 'x', /^x: expected a Float32Array of length 24 \(shape \[2, 3, 4\]\), got Float64Array\(24\) \(convert with Float32Array\.from\(\) first\)$/);
fc_('x type', 'x as number[]', () => fwd({ x: Array.from(f32(N_S)) }), InvalidArgumentError, 'x', /^x: expected a Float32Array of length 24 .*got Array\(24\)/);
fc_('x type', 'x as Int32Array', () => fwd({ x: new Int32Array(N_S) }), InvalidArgumentError, 'x', /^x: expected a Float32Array of length 24 .*got Int32Array\(24\)/);
fc_('x type', 'x as Uint8Array (byteLength 96)', () => fwd({ x: new Uint8Array(96) }), InvalidArgumentError, 'x', /^x: expected a Float32Array .*got Uint8Array\(96\)/);
fc_('x type', 'x as DataView', () => fwd({ x: new DataView(new ArrayBuffer(96)) }), InvalidArgumentError, 'x', /^x: expected a Float32Array .*got DataView\(96\)/);
fc_('x type', 'x undefined', () => fwd({ x: undefined }), InvalidArgumentError, 'x', /^x: expected a Float32Array of length 24 .*got undefined$/);
fc_('x type', 'x null', () => fwd({ x: null }), InvalidArgumentError, 'x', /^x: expected a Float32Array .*got null$/);
fc_('x type', 'weight as Float64Array', () => fwd({ o: { weight: new Float64Array(3) } }), InvalidArgumentError, 'opts.weight', /^opts\.weight: expected a Float32Array of length 3 \(C = 3 channels\), got Float64Array\(3\)/);
fc_('x type', 'bias as number[]', () => fwd({ o: { bias: [0, 0, 0] } }), InvalidArgumentError, 'opts.bias', /^opts\.bias: expected a Float32Array of length 3 .*got Array\(3\)/);
fc_('x type', 'runningMean as Int32Array', () => fwd({ o: { runningMean: new Int32Array(3) } }), InvalidArgumentError, 'opts.runningMean', /^opts\.runningMean: expected a Float32Array .*got Int32Array\(3\)/);
fc_('x type', 'runningVar as number[]', () => fwd({ o: { runningVar: [1, 1, 1] } }), InvalidArgumentError, 'opts.runningVar', /^opts\.runningVar: expected a Float32Array .*got Array\(3\)/);
fc_('x type', 'out as Float64Array', () => fwd({ o: { out: new Float64Array(N_S) } }), InvalidArgumentError, 'opts.out', /^opts\.out: expected a Float32Array of length 24 \(same as x\), got Float64Array\(24\)/);

// layout
fc_('layout', "layout 'nchw'", () => fwd({ o: { layout: 'nchw' } }), InvalidArgumentError, 'opts.layout', /^opts\.layout: expected 'NCHW' or 'NHWC', got "nchw"$/);
fc_('layout', "layout 'NCW'", () => fwd({ o: { layout: 'NCW' } }), InvalidArgumentError, 'opts.layout', /^opts\.layout: expected 'NCHW' or 'NHWC', got "NCW"$/);
fc_('layout', 'layout 5', () => fwd({ o: { layout: 5 } }), InvalidArgumentError, 'opts.layout', /^opts\.layout: expected 'NCHW' or 'NHWC', got 5$/);
fc_('layout', 'layout null', () => fwd({ o: { layout: null } }), InvalidArgumentError, 'opts.layout', /^opts\.layout: expected 'NCHW' or 'NHWC', got null$/);

// eps
for (const [label, eps, got] of [
  ['0', 0, '0'], ['-0', -0, '0'], ['-1', -1, '-1'], ['NaN', NaN, 'NaN'], ['Infinity', Infinity, 'Infinity'],
  ['-Infinity', -Infinity, '-Infinity'], ["'1e-5'", '1e-5', '"1e-5"'], ['null', null, 'null'],
  // Positive but below the smallest normal float32: gamma/sqrt(eps) could overflow float32.
  ['1e-39', 1e-39, '1e-39'], ['2^-127', 2 ** -127, '5.877471754111438e-39'], ['5e-324', 5e-324, '5e-324'],
] as const) {
  fc_('eps', `eps ${label}`, () => fwd({ o: { eps } }), InvalidArgumentError, 'opts.eps',
    new RegExp(`^opts\\.eps: expected a finite number >= 2\\^-126 \\(1\\.1754943508222875e-38, the smallest normal float32\\), got ${got.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')}$`));
}
fc_('eps', 'eps NaN in eval', () => fwd({ o: { eps: NaN, training: false } }), InvalidArgumentError, 'opts.eps', /^opts\.eps: expected a finite number >= 2\^-126 \(1\.1754943508222875e-38, the smallest normal float32\), got NaN$/);

// momentum
for (const [label, momentum, got] of [
  ['-0.1', -0.1, '-0\\.1'], ['1.5', 1.5, '1\\.5'], ['NaN', NaN, 'NaN'], ['Infinity', Infinity, 'Infinity'],
  ["'0.1'", '0.1', '"0\\.1"'], ['null', null, 'null'], ['1 + 2^-52', 1 + 2 ** -52, '1\\.0000000000000002'],
] as const) {
  fc_('momentum', `momentum ${label}`, () => fwd({ o: { momentum } }), InvalidArgumentError, 'opts.momentum',
    new RegExp(`^opts\\.momentum: expected a number in \\[0, 1\\] \\(weight of the new batch\\), got ${got}$`));
}
fc_('momentum', 'momentum 1.5 in eval (checked in every mode)', () => fwd({ o: { momentum: 1.5, training: false } }), InvalidArgumentError, 'opts.momentum', /^opts\.momentum: .*got 1\.5$/);

// training / unbiasedRunningVar / opts
fc_('training', 'training missing', () => fwd({ o: { training: undefined } }), InvalidArgumentError, 'opts.training', /^opts\.training: expected true or false, got undefined$/);
fc_('training', "training 'yes'", () => fwd({ o: { training: 'yes' } }), InvalidArgumentError, 'opts.training', /^opts\.training: expected true or false, got "yes"$/);
fc_('training', 'training 1', () => fwd({ o: { training: 1 } }), InvalidArgumentError, 'opts.training', /^opts\.training: expected true or false, got 1$/);
fc_('training', 'training null', () => fwd({ o: { training: null } }), InvalidArgumentError, 'opts.training', /^opts\.training: expected true or false, got null$/);
fc_('training', "unbiasedRunningVar 'yes'", () => fwd({ o: { unbiasedRunningVar: 'yes' } }), InvalidArgumentError, 'opts.unbiasedRunningVar', /^opts\.unbiasedRunningVar: expected true or false, got "yes"$/);
fc_('opts', 'opts missing', () => fwd({ opts: undefined }), InvalidArgumentError, 'opts', /^opts: expected an options object with `training`, got undefined$/);
fc_('opts', 'opts null', () => fwd({ opts: null }), InvalidArgumentError, 'opts', /^opts: expected an options object .*got null$/);
fc_('opts', "opts 'training'", () => fwd({ opts: 'training' }), InvalidArgumentError, 'opts', /^opts: expected an options object .*got "training"$/);

// out: length and aliasing
fc_('out', 'out length 23', () => fwd({ o: { out: new Float32Array(23) } }), ShapeError, 'opts.out', /^opts\.out: expected length 24 \(same as x\), got length 23$/);
fc_('out', 'out length 25', () => fwd({ o: { out: new Float32Array(25) } }), ShapeError, 'opts.out', /^opts\.out: expected length 24 .*got length 25$/);
fc_('out', 'out of length C instead of numel', () => fwd({ o: { out: new Float32Array(3) } }), ShapeError, 'opts.out', /^opts\.out: expected length 24 .*got length 3$/);
fc_('aliasing', 'out overlaps x by 23 values (one buffer, offset 1)', () => {
  const buf = f32(N_S + 1, 9);
  return fwd({ x: buf.subarray(0, N_S), o: { out: buf.subarray(1) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from x or exactly x, got an overlapping view$/);
fc_('aliasing', 'out overlaps x by one value (x ends where out starts + 1)', () => {
  const buf = f32(2 * N_S - 1, 9);
  return fwd({ x: buf.subarray(0, N_S), o: { out: buf.subarray(N_S - 1) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from x or exactly x/);
fc_('aliasing', 'out overlaps weight', () => {
  const buf = f32(N_S + 2, 9);
  return fwd({ o: { weight: buf.subarray(0, 3), out: buf.subarray(2) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from opts\.weight, got an overlapping view$/);
fc_('aliasing', 'out overlaps bias', () => {
  const buf = f32(N_S + 3, 9);
  return fwd({ o: { bias: buf.subarray(N_S, N_S + 3), out: buf.subarray(1, N_S + 1) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from opts\.bias/);
fc_('aliasing', 'out overlaps runningMean (training: running stats are written)', () => {
  const buf = f32(N_S + 2, 9);
  return fwd({ o: { runningMean: buf.subarray(N_S - 1, N_S + 2), out: buf.subarray(0, N_S) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from opts\.runningMean/);
fc_('aliasing', 'runningMean and runningVar are the same array (training)', () => {
  const rs = pos(3);
  return fwd({ o: { runningMean: rs, runningVar: rs } });
}, InvalidArgumentError, 'opts.runningMean', /^opts\.runningMean: expected memory disjoint from opts\.runningVar, got an overlapping view$/);
fc_('aliasing', 'runningVar overlaps x (training)', () => {
  const buf = pos(N_S + 2);
  return fwd({ x: buf.subarray(0, N_S), o: { runningVar: buf.subarray(N_S - 1) } });
}, InvalidArgumentError, 'opts.runningVar', /^opts\.runningVar: expected memory disjoint from x, got an overlapping view$/);
fc_('aliasing', 'runningMean is the weight array (training)', () => {
  const w = f32(3);
  return fwd({ o: { weight: w, runningMean: w } });
}, InvalidArgumentError, 'opts.runningMean', /^opts\.runningMean: expected memory disjoint from opts\.weight/);
// Eval reads the running statistics; `out` is written. The documented rule (checkAliasing:
// "Written arrays must not overlap any other argument") and the requirement (a rejected call
// leaves runningMean/runningVar unchanged; an accepted one never writes an input) say this
// overlap must be rejected.
fc_('aliasing', 'out overlaps runningMean (eval: running stats are read)', () => {
  const buf = f32(N_S + 2, 9);
  return fwd({ o: { training: false, runningMean: buf.subarray(N_S - 1, N_S + 2), out: buf.subarray(0, N_S) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from opts\.runningMean/);
fc_('aliasing', 'out overlaps runningVar (eval: running stats are read)', () => {
  const buf = pos(N_S + 2);
  return fwd({ o: { training: false, runningVar: buf.subarray(0, 3), out: buf.subarray(2) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from opts\.runningVar/);

// one value per channel when batch statistics are used
const onePerChannel = /^x: expected more than 1 value per channel when training, got input size \[/;
fc_('one value per channel', 'training [1, 10, 1] NCHW', () => fwd({ x: f32(10), shape: [1, 10, 1], o: { weight: f32(10), bias: f32(10), runningMean: f32(10), runningVar: pos(10) } }),
  ShapeError, 'x', /^x: expected more than 1 value per channel when training, got input size \[1, 10, 1\]$/);
fc_('one value per channel', 'training [1, 5] NCHW', () => fwd({ x: f32(5), shape: [1, 5], o: { weight: f32(5), bias: f32(5), runningMean: f32(5), runningVar: pos(5) } }),
  ShapeError, 'x', /more than 1 value per channel.*\[1, 5\]/);
fc_('one value per channel', 'training [1, 5] NCHW without running stats', () => fwd({ x: f32(5), shape: [1, 5], o: { weight: undefined, bias: undefined, runningMean: undefined, runningVar: undefined } }),
  ShapeError, 'x', /more than 1 value per channel.*\[1, 5\]/);
fc_('one value per channel', 'training NHWC [1, 1, 1, 7]', () => fwd({ x: f32(7), shape: [1, 1, 1, 7], opts: nhwcOpts(7) }),
  ShapeError, 'x', /more than 1 value per channel.*\[1, 1, 1, 7\]/);
fc_('one value per channel', 'training NHWC [1, 7]', () => fwd({ x: f32(7), shape: [1, 7], opts: nhwcOpts(7) }),
  ShapeError, 'x', /more than 1 value per channel.*\[1, 7\]/);
fc_('one value per channel', 'training [1, 1] (one value in all)', () => fwd({ x: f32(1), shape: [1, 1], o: { weight: f32(1), bias: f32(1), runningMean: f32(1), runningVar: pos(1) } }),
  ShapeError, 'x', /more than 1 value per channel.*\[1, 1\]/);
fc_('one value per channel', 'eval WITHOUT running stats [1, 5] (batch statistics)', () => fwd({ x: f32(5), shape: [1, 5], o: { training: false, weight: f32(5), bias: f32(5), runningMean: undefined, runningVar: undefined } }),
  ShapeError, 'x', onePerChannel);
fc_('one value per channel', 'eval WITHOUT running stats NHWC [1, 1, 1, 7]', () => fwd({ x: f32(7), shape: [1, 1, 1, 7], opts: nhwcOpts(7, { training: false, runningMean: null, runningVar: null }) }),
  ShapeError, 'x', /more than 1 value per channel.*\[1, 1, 1, 7\]/);

// ---------------------------------------------------------------------------------------------
// Bad-argument table: engine.backward
// ---------------------------------------------------------------------------------------------

interface BackwardArgs { dy: unknown; x: unknown; shape: unknown; opts: unknown }

function bwd(overrides: Partial<BackwardArgs> & { o?: Record<string, unknown> } = {}): BackwardArgs {
  return {
    dy: 'dy' in overrides ? overrides.dy : f32(N_S, 11),
    x: 'x' in overrides ? overrides.x : f32(N_S, 12),
    shape: 'shape' in overrides ? overrides.shape : [...S],
    opts: 'opts' in overrides ? overrides.opts : {
      training: true,
      weight: f32(3, 13),
      saveMean: f32(3, 14),
      saveInvStd: pos(3, 15),
      ...overrides.o,
    },
  };
}

const backwardCases: BadCase<BackwardArgs>[] = [];
function bc_(category: string, name: string, make: (engine: Engine) => BackwardArgs, error: ErrorClass, argument: string, message: RegExp) {
  backwardCases.push({ category, name, make, error, argument, message });
}

bc_('opts', 'opts missing', () => bwd({ opts: undefined }), InvalidArgumentError, 'opts', /^opts: expected an options object with `training`, `saveMean`, `saveInvStd`, got undefined$/);
bc_('training', 'training missing', () => bwd({ o: { training: undefined } }), InvalidArgumentError, 'opts.training', /^opts\.training: expected true or false, got undefined$/);
bc_('training', "training 'yes'", () => bwd({ o: { training: 'yes' } }), InvalidArgumentError, 'opts.training', /^opts\.training: .*got "yes"$/);
bc_('saved stats', 'saveMean missing', () => bwd({ o: { saveMean: undefined } }), InvalidArgumentError, 'opts.saveMean', /^opts\.saveMean: expected a Float32Array of length 3 \(C = 3 channels, from forward\), got undefined$/);
bc_('saved stats', 'saveMean null', () => bwd({ o: { saveMean: null } }), InvalidArgumentError, 'opts.saveMean', /^opts\.saveMean: expected a Float32Array .*got null$/);
bc_('saved stats', 'saveInvStd missing', () => bwd({ o: { saveInvStd: undefined } }), InvalidArgumentError, 'opts.saveInvStd', /^opts\.saveInvStd: expected a Float32Array .*got undefined$/);
bc_('saved stats', 'saveInvStd length 4 with NCHW [2, 3, 4] (C = 3)', () => bwd({ o: { saveInvStd: pos(4) } }), ShapeError, 'opts.saveInvStd', /^opts\.saveInvStd: expected length 3 \(C = 3 channels, from forward\), got length 4$/);
bc_('saved stats', 'saveInvStd length 3 with NHWC [2, 3, 4] (C = 4)', () => bwd({ o: { layout: 'NHWC', weight: f32(4), saveMean: f32(4), saveInvStd: pos(3) } }), ShapeError, 'opts.saveInvStd', /^opts\.saveInvStd: expected length 4 \(C = 4 channels, from forward\), got length 3$/);
bc_('saved stats', 'saveMean length 2 (C = 3)', () => bwd({ o: { saveMean: f32(2) } }), ShapeError, 'opts.saveMean', /^opts\.saveMean: expected length 3 .*got length 2$/);
bc_('saved stats', 'saveMean as Float64Array', () => bwd({ o: { saveMean: new Float64Array(3) } }), InvalidArgumentError, 'opts.saveMean', /^opts\.saveMean: expected a Float32Array .*got Float64Array\(3\)/);
bc_('C mismatch', 'weight length 4 with NCHW [2, 3, 4]', () => bwd({ o: { weight: f32(4) } }), ShapeError, 'opts.weight', /^opts\.weight: expected length 3 \(C = 3 channels\), got length 4$/);
bc_('C mismatch', 'weight length 3 with NHWC [2, 3, 4]', () => bwd({ o: { layout: 'NHWC', weight: f32(3), saveMean: f32(4), saveInvStd: pos(4) } }), ShapeError, 'opts.weight', /^opts\.weight: expected length 4 \(C = 4 channels\), got length 3$/);
bc_('length', 'dy length 23', () => bwd({ dy: f32(23) }), ShapeError, 'dy', /^dy: expected length 24 \(shape \[2, 3, 4\]\), got length 23$/);
bc_('length', 'dy length 25', () => bwd({ dy: f32(25) }), ShapeError, 'dy', /^dy: expected length 24 .*got length 25$/);
bc_('length', 'x length 23', () => bwd({ x: f32(23) }), ShapeError, 'x', /^x: expected length 24 \(shape \[2, 3, 4\]\), got length 23$/);
bc_('x type', 'dy as Float64Array', () => bwd({ dy: new Float64Array(N_S) }), InvalidArgumentError, 'dy', /^dy: expected a Float32Array of length 24 .*got Float64Array\(24\)/);
bc_('x type', 'dy as number[]', () => bwd({ dy: new Array(N_S).fill(0) }), InvalidArgumentError, 'dy', /^dy: expected a Float32Array .*got Array\(24\)/);
bc_('x type', 'x as Int32Array', () => bwd({ x: new Int32Array(N_S) }), InvalidArgumentError, 'x', /^x: expected a Float32Array .*got Int32Array\(24\)/);
bc_('rank', 'shape [24]', () => bwd({ shape: [24] }), ShapeError, 'shape', /^shape: expected rank >= 2 .*got rank 1 \[24\]$/);
bc_('dims', 'shape [2, 3, 0]', () => bwd({ shape: [2, 3, 0] }), ShapeError, 'shape[2]', /^shape\[2\]: expected a positive integer, got 0$/);
bc_('dims', 'shape [2, 3, 2.5]', () => bwd({ shape: [2, 3, 2.5] }), ShapeError, 'shape[2]', /^shape\[2\]: .*got 2\.5$/);
bc_('dims', 'shape [2, -3, 4]', () => bwd({ shape: [2, -3, 4] }), ShapeError, 'shape[1]', /^shape\[1\]: .*got -3$/);
bc_('shape type', 'shape null', () => bwd({ shape: null }), InvalidArgumentError, 'shape', /^shape: expected an array of dimensions, got null$/);
bc_('layout', "layout 'nhwc'", () => bwd({ o: { layout: 'nhwc' } }), InvalidArgumentError, 'opts.layout', /^opts\.layout: expected 'NCHW' or 'NHWC', got "nhwc"$/);
bc_('out', 'out length 23', () => bwd({ o: { out: new Float32Array(23) } }), ShapeError, 'opts.out', /^opts\.out: expected length 24 \(same as x\), got length 23$/);
bc_('aliasing', 'out overlaps dy partially', () => {
  const buf = f32(N_S + 1, 21);
  return bwd({ dy: buf.subarray(0, N_S), o: { out: buf.subarray(1) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from dy or exactly dy, got an overlapping view$/);
bc_('aliasing', 'out overlaps x partially', () => {
  const buf = f32(2 * N_S - 5, 21);
  return bwd({ x: buf.subarray(N_S - 5), o: { out: buf.subarray(0, N_S) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from x or exactly x, got an overlapping view$/);
bc_('aliasing', 'out overlaps saveMean', () => {
  const buf = f32(N_S + 2, 21);
  return bwd({ o: { saveMean: buf.subarray(0, 3), out: buf.subarray(2) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from opts\.saveMean, got an overlapping view$/);
bc_('aliasing', 'out overlaps saveInvStd', () => {
  const buf = pos(N_S + 3);
  return bwd({ o: { saveInvStd: buf.subarray(N_S), out: buf.subarray(0, N_S + 1).subarray(1) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from opts\.saveInvStd/);
bc_('aliasing', 'out overlaps weight', () => {
  const buf = f32(N_S + 3, 21);
  return bwd({ o: { weight: buf.subarray(1, 4), out: buf.subarray(3, N_S + 3) } });
}, InvalidArgumentError, 'opts.out', /^opts\.out: expected memory disjoint from opts\.weight/);

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

const engines: Record<string, Engine> = {};
beforeAll(async () => {
  for (const b of BUILDS) engines[b.name] = await createEngine({ simd: b.simd, threads: 1 });
  expect(engines.simd.build).toBe('simd');
  expect(engines.scalar.build).toBe('scalar');
});

function runForwardCase(engine: Engine, c: BadCase<ForwardArgs>): void {
  const args = c.make(engine);
  const snap = snapshot(engine, [args.x, args.shape, args.opts]);
  expectError(() => engine.forward(args.x as never, args.shape as never, args.opts as never), c.error, c.message, c.argument);
  snap.check();
}

function runBackwardCase(engine: Engine, c: BadCase<BackwardArgs>): void {
  const args = c.make(engine);
  const snap = snapshot(engine, [args.dy, args.x, args.shape, args.opts]);
  expectError(() => engine.backward(args.dy as never, args.x as never, args.shape as never, args.opts as never), c.error, c.message, c.argument);
  snap.check();
}

/** The same args with every Float32Array moved into engine tensors (zero-copy path). */
function residentCopy<A extends object>(engine: Engine, args: A): { args: A; free(): void } {
  // Allocate every tensor first (an allocation may grow memory and detach earlier views),
  // then take the views.
  const tensors = new Map<Float32Array, ReturnType<Engine['tensor']>>();
  const visit = (v: unknown) => {
    if (v instanceof Float32Array && v.length > 0 && !tensors.has(v)) tensors.set(v, engine.tensor(v));
  };
  for (const v of Object.values(args)) {
    if (v !== null && typeof v === 'object' && !ArrayBuffer.isView(v) && !Array.isArray(v)) Object.values(v).forEach(visit);
    else visit(v);
  }
  const move = (v: unknown): unknown => (v instanceof Float32Array && tensors.has(v) ? tensors.get(v)!.data : v);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) {
    if (v !== null && typeof v === 'object' && !ArrayBuffer.isView(v) && !Array.isArray(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([ok, ov]) => [ok, move(ov)]));
    } else {
      out[k] = move(v);
    }
  }
  return { args: out as A, free: () => tensors.forEach((t) => t.free()) };
}

for (const build of BUILDS) {
  describe(`[${build.name}] engine.forward rejects bad arguments and touches nothing`, () => {
    for (const c of forwardCases) {
      it(`${c.category}: ${c.name} -> ${c.error.name}(${c.argument})`, () => {
        runForwardCase(engines[build.name], c);
      });
    }
  });

  describe(`[${build.name}] engine.backward rejects bad arguments and touches nothing`, () => {
    for (const c of backwardCases) {
      it(`${c.category}: ${c.name} -> ${c.error.name}(${c.argument})`, () => {
        runBackwardCase(engines[build.name], c);
      });
    }
  });

  describe(`[${build.name}] the zero-copy path runs the same validation`, () => {
    // Cases whose buffers can be moved into tensors without changing the expected error
    // (aliasing cases are covered separately: tensors never share memory).
    const movable = forwardCases.filter((c) => c.category !== 'aliasing' && !c.name.startsWith('empty x'));
    it(`all ${movable.length} non-aliasing forward cases, with every Float32Array in an engine tensor`, async () => {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      for (const c of movable) {
        const moved = residentCopy(engine, c.make(engine));
        // Memory may have grown while moving: rebuild the views from the tensors' current memory.
        const snap = snapshot(engine, [moved.args.x, moved.args.shape, moved.args.opts]);
        try {
          expectError(() => engine.forward(moved.args.x as never, moved.args.shape as never, moved.args.opts as never), c.error, c.message, c.argument);
          snap.check();
        } catch (error) {
          throw new Error(`case ${c.category}: ${c.name}: ${(error as Error).message}`, { cause: error });
        } finally {
          moved.free();
        }
      }
      expect(engine.info().bytesInUse).toBe(0);
    });

    it(`all non-aliasing backward cases, with every Float32Array in an engine tensor`, async () => {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      for (const c of backwardCases.filter((k) => k.category !== 'aliasing')) {
        const moved = residentCopy(engine, c.make(engine));
        const snap = snapshot(engine, [moved.args.dy, moved.args.x, moved.args.shape, moved.args.opts]);
        try {
          expectError(() => engine.backward(moved.args.dy as never, moved.args.x as never, moved.args.shape as never, moved.args.opts as never), c.error, c.message, c.argument);
          snap.check();
        } catch (error) {
          throw new Error(`case ${c.category}: ${c.name}: ${(error as Error).message}`, { cause: error });
        } finally {
          moved.free();
        }
      }
      expect(engine.info().bytesInUse).toBe(0);
    });

    it('out partially overlapping x inside one tensor is rejected; out === x (one tensor) is allowed', async () => {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      const t = engine.tensor(f32(N_S + 4, 31));
      const whole = t.data;
      const x = whole.subarray(0, N_S);
      const out = whole.subarray(4, N_S + 4);
      const opts = { training: true, runningMean: f32(3), runningVar: pos(3), out };
      const snap = snapshot(engine, [x, opts]);
      expectError(() => engine.forward(x, S, opts), InvalidArgumentError, /^opts\.out: expected memory disjoint from x or exactly x, got an overlapping view$/, 'opts.out');
      snap.check();

      // Backward: out partially overlapping dy inside one tensor.
      const bsnap = snapshot(engine, [x, out]);
      expectError(() => engine.backward(x, out, S, { training: true, saveMean: f32(3), saveInvStd: pos(3), out: whole.subarray(2, N_S + 2) }),
        InvalidArgumentError, /^opts\.out: expected memory disjoint from dy or exactly dy/, 'opts.out');
      bsnap.check();
      t.free();
    });

    it('a view into engine memory outside every tensor is rejected with MemoryError (each argument)', async () => {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      const a = engine.tensor(N_S);
      const b = engine.tensor(N_S);
      const buffer = a.data.buffer;
      const end = b.byteOffset + 4 * 64; // past the last allocation: never handed out
      const foreign = new Float32Array(buffer, end, N_S);
      const foreign3 = new Float32Array(buffer, end, 3);
      const belowHeap = new Float32Array(buffer, 0, 3);
      const straddling = new Float32Array(buffer, a.byteOffset + 64, N_S); // runs from a into b
      const inside = /expected a view inside a tensor allocated by this engine, got bytes \[\d+, \d+\) of its memory$/;
      const cases: Array<[string, () => unknown, string]> = [
        ['x past the top', () => engine.forward(foreign, S, { training: true }), 'x'],
        ['x straddling two tensors', () => engine.forward(straddling, S, { training: true }), 'x'],
        ['weight below the heap', () => engine.forward(a.data, S, { training: true, weight: belowHeap }), 'opts.weight'],
        ['bias past the top', () => engine.forward(a.data, S, { training: true, bias: foreign3 }), 'opts.bias'],
        ['runningMean past the top', () => engine.forward(a.data, S, { training: false, runningMean: foreign3, runningVar: pos(3) }), 'opts.runningMean'],
        ['out past the top', () => engine.forward(a.data, S, { training: true, out: foreign }), 'opts.out'],
        ['dy straddling', () => engine.backward(straddling, a.data, S, { training: true, saveMean: f32(3), saveInvStd: pos(3) }), 'dy'],
        ['saveInvStd past the top', () => engine.backward(a.data, b.data, S, { training: true, saveMean: f32(3), saveInvStd: foreign3 }), 'opts.saveInvStd'],
      ];
      for (const [label, call, argument] of cases) {
        const snap = snapshot(engine, [a.data, b.data]);
        try {
          const e = expectError(call, MemoryError, inside, argument);
          expect(e.message.startsWith(`${argument}: `)).toBe(true);
          snap.check();
        } catch (error) {
          throw new Error(`${label}: ${(error as Error).message}`, { cause: error });
        }
      }
      // A freed tensor: its old view is still attached but no longer owned.
      const c = engine.tensor(N_S);
      const oldView = c.data;
      c.free();
      expectError(() => engine.forward(oldView, S, { training: true }), MemoryError, inside, 'x');
      expectError(() => c.data, MemoryError, /^tensor: expected a live tensor, got a freed tensor$/, 'tensor');
      a.free();
      b.free();
    });

    it('stale views after memory growth are rejected with MemoryError naming the argument', async () => {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      const x = engine.tensor(f32(N_S, 41));
      const w = engine.tensor(f32(3, 42));
      const rm = engine.tensor(f32(3, 43));
      const rv = engine.tensor(pos(3, 44));
      const out = engine.tensor(N_S);
      const dy = engine.tensor(f32(N_S, 45));
      const sm = engine.tensor(f32(3, 46));
      const si = engine.tensor(pos(3, 47));
      const stale = { x: x.data, w: w.data, rm: rm.data, rv: rv.data, out: out.data, dy: dy.data, sm: sm.data, si: si.data };
      const before = engine.info().memoryBytes;
      const huge = engine.tensor(1 << 20); // 4 MiB: forces memory.grow, which detaches the old buffer
      expect(engine.info().memoryBytes).toBeGreaterThan(before);
      expect(stale.x.length).toBe(0); // detached
      const fresh = () => ({ x: x.data, w: w.data, rm: rm.data, rv: rv.data, out: out.data, dy: dy.data, sm: sm.data, si: si.data });
      const detached = /^(\S+): expected a live Float32Array, got a detached view \(wasm memory grew after the view was taken; read tensor\.data again\)$/;
      const cases: Array<[string, (v: ReturnType<typeof fresh>) => unknown]> = [
        ['x', (v) => engine.forward(stale.x, S, { training: true, weight: v.w, runningMean: v.rm, runningVar: v.rv })],
        ['opts.weight', (v) => engine.forward(v.x, S, { training: true, weight: stale.w })],
        ['opts.runningMean', (v) => engine.forward(v.x, S, { training: true, runningMean: stale.rm, runningVar: v.rv })],
        ['opts.runningVar', (v) => engine.forward(v.x, S, { training: false, runningMean: v.rm, runningVar: stale.rv })],
        ['opts.out', (v) => engine.forward(v.x, S, { training: true, runningMean: v.rm, runningVar: v.rv, out: stale.out })],
        ['dy', (v) => engine.backward(stale.dy, v.x, S, { training: true, saveMean: v.sm, saveInvStd: v.si })],
        ['x', (v) => engine.backward(v.dy, stale.x, S, { training: true, saveMean: v.sm, saveInvStd: v.si })],
        ['opts.saveMean', (v) => engine.backward(v.dy, v.x, S, { training: true, saveMean: stale.sm, saveInvStd: v.si })],
        ['opts.saveInvStd', (v) => engine.backward(v.dy, v.x, S, { training: false, saveMean: v.sm, saveInvStd: stale.si })],
        ['opts.out', (v) => engine.backward(v.dy, v.x, S, { training: true, saveMean: v.sm, saveInvStd: v.si, out: stale.out })],
      ];
      for (const [argument, call] of cases) {
        const v = fresh();
        const snap = snapshot(engine, Object.values(v));
        const e = expectError(() => call(v), MemoryError, detached, argument);
        expect(e.message).toMatch(new RegExp(`^${argument.replace('.', '\\.')}: `));
        snap.check();
      }
      huge.free();
      for (const t of [x, w, rm, rv, out, dy, sm, si]) t.free();
      expect(engine.info().bytesInUse).toBe(0);
    });

    it('training with one value per channel on tensors: rejected, running stats in tensors untouched', async () => {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      const x = engine.tensor(f32(10, 51));
      const rm = engine.tensor(f32(10, 52));
      const rv = engine.tensor(pos(10, 53));
      const out = engine.tensor(10);
      const snap = snapshot(engine, [x.data, rm.data, rv.data, out.data]);
      expectError(() => engine.forward(x.data, [1, 10, 1], { training: true, runningMean: rm.data, runningVar: rv.data, out: out.data }),
        ShapeError, /^x: expected more than 1 value per channel when training, got input size \[1, 10, 1\]$/, 'x');
      snap.check();
    });
  });

  describe(`[${build.name}] accepted edge cases (must NOT throw)`, () => {
    const evalN1: Array<[string, number[], 'NCHW' | 'NHWC', number]> = [
      ['[1, 5]', [1, 5], 'NCHW', 5],
      ['[1, 10, 1]', [1, 10, 1], 'NCHW', 10],
      ['NHWC [1, 1, 1, 7]', [1, 1, 1, 7], 'NHWC', 7],
      ['[1, 1]', [1, 1], 'NCHW', 1],
    ];
    for (const [label, shape, layout, C] of evalN1) {
      it(`eval with running stats and one value per channel ${label} is allowed (PyTorch allows it)`, () => {
        const engine = engines[build.name];
        const x = f32(prod(shape), 61);
        const weight = f32(C, 62);
        const bias = f32(C, 63);
        const runningMean = f32(C, 64);
        const runningVar = pos(C, 65);
        const inputs = [x, weight, bias, runningMean, runningVar].map((a) => a.slice());
        const { y, saveMean, saveInvStd } = engine.forward(x, shape, { layout, training: false, weight, bias, runningMean, runningVar, eps: 1e-5 });
        expect(y.length).toBe(prod(shape));
        for (let i = 0; i < y.length; i++) {
          const c = i % C; // N = 1 and every non-channel dim is 1: flat index = channel
          const expected = ((x[i] - runningMean[c]) / Math.sqrt(runningVar[c] + 1e-5)) * weight[c] + bias[c];
          expect(Math.abs(y[i] - expected)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(expected)));
        }
        expectAllFinite(saveMean, 'saveMean');
        expectAllFinite(saveInvStd, 'saveInvStd');
        // eval never writes its inputs
        [x, weight, bias, runningMean, runningVar].forEach((a, i) => expectBytesEqual(a, inputs[i], `input ${i}`));
      });
    }

    it('out === x (in place) gives byte-identical y and running stats to out-of-place (plain arrays, NCHW and NHWC)', () => {
      const engine = engines[build.name];
      for (const [shape, layout, C] of [[[2, 3, 4], 'NCHW', 3], [[2, 3, 4], 'NHWC', 4], [[5, 3], 'NCHW', 3]] as const) {
        const x = f32(prod(shape), 71);
        const weight = f32(C, 72);
        const bias = f32(C, 73);
        const rmA = f32(C, 74), rvA = pos(C, 75);
        const rmB = rmA.slice(), rvB = rvA.slice();
        const ref = engine.forward(x, shape, { layout, training: true, weight, bias, runningMean: rmA, runningVar: rvA });
        const xi = x.slice();
        const res = engine.forward(xi, shape, { layout, training: true, weight, bias, runningMean: rmB, runningVar: rvB, out: xi });
        expect(res.y).toBe(xi);
        expectBytesEqual(xi, ref.y, 'in-place y');
        expectBytesEqual(rmB, rmA, 'runningMean');
        expectBytesEqual(rvB, rvA, 'runningVar');
        // Another view object over exactly the same memory counts as "exactly x" too.
        const xj = x.slice();
        const alias = new Float32Array(xj.buffer, xj.byteOffset, xj.length);
        const res2 = engine.forward(xj, shape, { layout, training: false, weight, bias, runningMean: rmA, runningVar: rvA, out: alias });
        const ref2 = engine.forward(x, shape, { layout, training: false, weight, bias, runningMean: rmA, runningVar: rvA });
        expect(res2.y).toBe(alias);
        expectBytesEqual(xj, ref2.y, 'in-place y (second view)');
      }
    });

    it('out === x (in place) on an engine tensor gives byte-identical y to out-of-place', async () => {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      const x = f32(N_S, 81);
      const ref = engine.forward(x, S, { training: true });
      const t = engine.tensor(x);
      const res = engine.forward(t.data, S, { training: true, out: t.data });
      expect(res.y).toBe(t.data);
      expectBytesEqual(t.data, ref.y, 'in-place tensor y');
      t.free();
    });

    it('backward: out === dy and out === x are allowed and match out-of-place (plain and tensors)', async () => {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      for (const training of [true, false]) {
        const dy = f32(N_S, 91), x = f32(N_S, 92), weight = f32(3, 93), saveMean = f32(3, 94), saveInvStd = pos(3, 95);
        const ref = engine.backward(dy, x, S, { training, weight, saveMean, saveInvStd });
        const dy1 = dy.slice();
        const r1 = engine.backward(dy1, x, S, { training, weight, saveMean, saveInvStd, out: dy1 });
        expect(r1.dx).toBe(dy1);
        expectBytesEqual(dy1, ref.dx, `dx in dy (training ${training})`);
        expectBytesEqual(r1.dweight, ref.dweight, 'dweight');
        expectBytesEqual(r1.dbias, ref.dbias, 'dbias');
        const x2 = x.slice();
        const r2 = engine.backward(dy, x2, S, { training, weight, saveMean, saveInvStd, out: x2 });
        expect(r2.dx).toBe(x2);
        expectBytesEqual(x2, ref.dx, `dx in x (training ${training})`);
        // tensors
        const tdy = engine.tensor(dy), tx = engine.tensor(x);
        const r3 = engine.backward(tdy.data, tx.data, S, { training, weight, saveMean, saveInvStd, out: tdy.data });
        expectBytesEqual(r3.dx, ref.dx, `dx in dy tensor (training ${training})`);
        tdy.set(dy);
        const r4 = engine.backward(tdy.data, tx.data, S, { training, weight, saveMean, saveInvStd, out: tx.data });
        expectBytesEqual(r4.dx, ref.dx, `dx in x tensor (training ${training})`);
        tdy.free();
        tx.free();
      }
      expect(engine.info().bytesInUse).toBe(0);
    });
  });

  // -------------------------------------------------------------------------------------------
  // Zero-copy calls whose own scratch allocations grow wasm memory (detaching every view the
  // caller passed in). The call must still either succeed with the same result as the copy
  // path, or throw a BatchNormError before touching anything; never a TypeError, never NaN.
  // -------------------------------------------------------------------------------------------
  describe(`[${build.name}] zero-copy calls that grow memory internally`, () => {
    /**
     * A fresh engine whose arena top is moved to the end of memory right before `call`, so the
     * call's own scratch allocations grow memory (detaching every view the caller passed in).
     * Also checks that nothing below the heap base (the module's static data) was written.
     */
    async function withGrowth<T>(setup: (engine: Engine) => () => T): Promise<{ engine: Engine; result: T }> {
      const engine = await createEngine({ simd: build.simd, threads: 1 });
      const call = setup(engine);
      fillToEndOfMemory(engine);
      const before = engine.info().memoryBytes;
      const heapBase = engine.kernels.heapBase();
      const low = new Uint8Array(wasmBuffer(engine), 0, heapBase).slice();
      let result: T;
      try {
        result = call();
      } catch (error) {
        if (!(error instanceof BatchNormError)) throw new Error(`non-BatchNormError thrown: ${String(error)}`, { cause: error });
        throw error;
      }
      expect(engine.info().memoryBytes, 'the call was expected to grow memory').toBeGreaterThan(before);
      expect(Buffer.compare(new Uint8Array(wasmBuffer(engine), 0, heapBase), low), 'bytes below the heap base were written').toBe(0);
      return { engine, result };
    }

    it('forward, x and out in tensors: out receives y', async () => {
      const x = f32(N_S, 101);
      let tout!: ReturnType<Engine['tensor']>, ref!: Float32Array;
      await withGrowth((engine) => {
        ref = engine.forward(x, S, { training: true }).y;
        const tx = engine.tensor(x);
        tout = engine.tensor(N_S);
        return () => engine.forward(tx.data, S, { training: true, out: tout.data });
      });
      expectBytesEqual(tout.data, ref, 'out tensor');
    });

    it('forward, plain x and out in a tensor: out receives y', async () => {
      const x = f32(N_S, 131);
      let tout!: ReturnType<Engine['tensor']>, ref!: Float32Array;
      await withGrowth((engine) => {
        ref = engine.forward(x, S, { training: true }).y;
        tout = engine.tensor(N_S);
        return () => engine.forward(x, S, { training: true, out: tout.data });
      });
      expectBytesEqual(tout.data, ref, 'out tensor');
    });

    it('forward, out in a tensor: the returned y is a live view holding y', async () => {
      const x = f32(N_S, 132);
      let ref!: Float32Array;
      const { result } = await withGrowth((engine) => {
        ref = engine.forward(x, S, { training: true }).y;
        const tx = engine.tensor(x), tout = engine.tensor(N_S);
        return () => engine.forward(tx.data, S, { training: true, out: tout.data });
      });
      expectBytesEqual(result.y, ref, 'returned y');
    });

    it('forward, weight and bias in tensors', async () => {
      const x = f32(N_S, 102), w = f32(3, 103), b = f32(3, 104);
      let ref!: Float32Array;
      const { result } = await withGrowth((engine) => {
        ref = engine.forward(x, S, { training: true, weight: w, bias: b }).y;
        const tw = engine.tensor(w), tb = engine.tensor(b);
        return () => engine.forward(x, S, { training: true, weight: tw.data, bias: tb.data });
      });
      expectAllFinite(result.y, 'y');
      expectBytesEqual(result.y, ref, 'y');
    });

    it('training forward, running statistics in tensors are updated', async () => {
      const x = f32(N_S, 105), rm = f32(3, 106), rv = pos(3, 107);
      const rmRef = rm.slice(), rvRef = rv.slice();
      let trm!: ReturnType<Engine['tensor']>, trv!: ReturnType<Engine['tensor']>;
      await withGrowth((engine) => {
        engine.forward(x, S, { training: true, runningMean: rmRef, runningVar: rvRef });
        trm = engine.tensor(rm);
        trv = engine.tensor(rv);
        return () => engine.forward(x, S, { training: true, runningMean: trm.data, runningVar: trv.data });
      });
      expectBytesEqual(trm.data, rmRef, 'runningMean tensor');
      expectBytesEqual(trv.data, rvRef, 'runningVar tensor');
    });

    it('eval forward, running statistics in tensors', async () => {
      const x = f32(N_S, 108), rm = f32(3, 109), rv = pos(3, 110);
      let ref!: Float32Array;
      const { result } = await withGrowth((engine) => {
        ref = engine.forward(x, S, { training: false, runningMean: rm, runningVar: rv }).y;
        const trm = engine.tensor(rm), trv = engine.tensor(rv);
        return () => engine.forward(x, S, { training: false, runningMean: trm.data, runningVar: trv.data });
      });
      expectAllFinite(result.y, 'y');
      expectBytesEqual(result.y, ref, 'y');
    });

    it('backward, saveMean and saveInvStd in tensors', async () => {
      const dy = f32(N_S, 111), x = f32(N_S, 112), sm = f32(3, 113), si = pos(3, 114);
      let ref!: ReturnType<Engine['backward']>;
      const { result } = await withGrowth((engine) => {
        ref = engine.backward(dy, x, S, { training: true, saveMean: sm, saveInvStd: si });
        const tsm = engine.tensor(sm), tsi = engine.tensor(si);
        return () => engine.backward(dy, x, S, { training: true, saveMean: tsm.data, saveInvStd: tsi.data });
      });
      expectBytesEqual(result.dx, ref.dx, 'dx');
      expectBytesEqual(result.dweight, ref.dweight, 'dweight');
    });

    it('backward, plain dy and out in a tensor: out receives dx', async () => {
      const dy = f32(N_S, 115), x = f32(N_S, 116), sm = f32(3, 117), si = pos(3, 118);
      let tout!: ReturnType<Engine['tensor']>, ref!: Float32Array;
      await withGrowth((engine) => {
        ref = engine.backward(dy, x, S, { training: true, saveMean: sm, saveInvStd: si }).dx;
        tout = engine.tensor(N_S);
        return () => engine.backward(dy, x, S, { training: true, saveMean: sm, saveInvStd: si, out: tout.data });
      });
      expectBytesEqual(tout.data, ref, 'out tensor');
    });

    it('backward, plain dy and x in a tensor', async () => {
      const dy = f32(N_S, 119), x = f32(N_S, 120), sm = f32(3, 121), si = pos(3, 122);
      let ref!: ReturnType<Engine['backward']>;
      const { result } = await withGrowth((engine) => {
        ref = engine.backward(dy, x, S, { training: true, saveMean: sm, saveInvStd: si });
        const tx = engine.tensor(x);
        return () => engine.backward(dy, tx.data, S, { training: true, saveMean: sm, saveInvStd: si });
      });
      expectBytesEqual(result.dx, ref.dx, 'dx');
      expectBytesEqual(result.dweight, ref.dweight, 'dweight');
    });

    it('BatchNorm layer forward with x in a tensor: succeeds, state updated once, backward works', async () => {
      const x = f32(N_S, 141);
      const refLayer = new BatchNorm(engines[build.name], 3);
      const refY = refLayer.forward(x, S);
      let bn!: BatchNorm;
      const { result } = await withGrowth((engine) => {
        bn = new BatchNorm(engine, 3);
        const tx = engine.tensor(x);
        return () => bn.forward(tx.data, S);
      });
      expectBytesEqual(result, refY, 'y');
      expect(bn.numBatchesTracked).toBe(1);
      expectBytesEqual(bn.runningMean!, refLayer.runningMean!, 'runningMean');
      const dy = f32(N_S, 142);
      expectBytesEqual(bn.backward(dy), refLayer.backward(dy), 'dx');
    });
  });

  // -------------------------------------------------------------------------------------------
  // The layer
  // -------------------------------------------------------------------------------------------
  describe(`[${build.name}] BatchNorm layer`, () => {
    function layerState(bn: BatchNorm) {
      return {
        weight: bn.weight?.slice() ?? null,
        bias: bn.bias?.slice() ?? null,
        runningMean: bn.runningMean?.slice() ?? null,
        runningVar: bn.runningVar?.slice() ?? null,
        numBatchesTracked: bn.numBatchesTracked,
        training: bn.training,
        gradWeight: bn.gradWeight?.slice() ?? null,
        gradBias: bn.gradBias?.slice() ?? null,
      };
    }
    function expectSameState(bn: BatchNorm, before: ReturnType<typeof layerState>) {
      const now = layerState(bn);
      expect(now.numBatchesTracked).toBe(before.numBatchesTracked);
      expect(now.training).toBe(before.training);
      for (const key of ['weight', 'bias', 'runningMean', 'runningVar', 'gradWeight', 'gradBias'] as const) {
        const a = now[key], b = before[key];
        if (a === null || b === null) expect(a, key).toBe(b);
        else expectBytesEqual(a, b, key);
      }
    }

    it('constructor rejects bad options', () => {
      const engine = engines[build.name];
      const bad: Array<[() => unknown, ErrorClass, RegExp, string]> = [
        [() => new BatchNorm(engine, 0), InvalidArgumentError, /^numFeatures: expected an integer in \[1, 1073741824\], got 0$/, 'numFeatures'],
        [() => new BatchNorm(engine, -3), InvalidArgumentError, /^numFeatures: .*got -3$/, 'numFeatures'],
        [() => new BatchNorm(engine, 2.5), InvalidArgumentError, /^numFeatures: .*got 2\.5$/, 'numFeatures'],
        [() => new BatchNorm(engine, NaN), InvalidArgumentError, /^numFeatures: .*got NaN$/, 'numFeatures'],
        [() => new BatchNorm(engine, '3' as never), InvalidArgumentError, /^numFeatures: .*got "3"$/, 'numFeatures'],
        // The constructor's parameter is `options` (cf. options.layout, options.affine below).
        [() => new BatchNorm(engine, 3, { eps: 0 }), InvalidArgumentError, /^options\.eps: expected a finite number >= 2\^-126 .*, got 0$/, 'options.eps'],
        [() => new BatchNorm(engine, 3, { eps: NaN }), InvalidArgumentError, /^options\.eps: .*got NaN$/, 'options.eps'],
        [() => new BatchNorm(engine, 3, { momentum: 1.5 }), InvalidArgumentError, /^options\.momentum: expected a number in \[0, 1\].*got 1\.5$/, 'options.momentum'],
        [() => new BatchNorm(engine, 3, { momentum: -0.1 }), InvalidArgumentError, /^options\.momentum: .*got -0\.1$/, 'options.momentum'],
        [() => new BatchNorm(engine, 3, { momentum: NaN }), InvalidArgumentError, /^options\.momentum: .*got NaN$/, 'options.momentum'],
        [() => new BatchNorm(engine, 3, { layout: 'nchw' as never }), InvalidArgumentError, /^options\.layout: expected 'NCHW' or 'NHWC', got "nchw"$/, 'options.layout'],
        [() => new BatchNorm(engine, 3, { affine: 'yes' as never }), InvalidArgumentError, /^options\.affine: expected true or false, got "yes"$/, 'options.affine'],
        [() => new BatchNorm(engine, 3, { trackRunningStats: 1 as never }), InvalidArgumentError, /^options\.trackRunningStats: .*got 1$/, 'options.trackRunningStats'],
        [() => new BatchNorm(engine, 3, null as never), InvalidArgumentError, /^options: expected an options object, got null$/, 'options'],
      ];
      for (const [call, cls, re, argument] of bad) expectError(call, cls, re, argument);
    });

    for (const momentum of [0.1, null] as const) {
      it(`failing forward leaves running stats, numBatchesTracked, parameters and x unchanged (momentum ${momentum})`, () => {
        const engine = engines[build.name];
        const bn = new BatchNorm(engine, 3, { momentum });
        bn.forward(f32(N_S, 121), S); // one good batch: non-trivial state, numBatchesTracked = 1
        bn.backward(f32(N_S, 122));
        expect(bn.numBatchesTracked).toBe(1);
        const cases: Array<[string, unknown, unknown, ErrorClass, RegExp, string]> = [
          ['C mismatch', f32(40), [2, 4, 5], ShapeError, /^shape: expected 3 channels \(numFeatures\) on the channel axis, got \[2, 4, 5\]$/, 'shape'],
          ['x length', f32(23), S, ShapeError, /^x: expected length 24 .*got length 23$/, 'x'],
          ['x Float64Array', new Float64Array(N_S), S, InvalidArgumentError, /^x: expected a Float32Array .*got Float64Array\(24\)/, 'x'],
          ['x number[]', new Array(N_S).fill(1), S, InvalidArgumentError, /^x: expected a Float32Array .*got Array\(24\)/, 'x'],
          ['rank 1', f32(3), [3], ShapeError, /^shape: expected rank >= 2/, 'shape'],
          ['dim 0', f32(0), [0, 3], ShapeError, /^shape\[0\]: expected a positive integer, got 0$/, 'shape[0]'],
          ['dim 2.5', f32(N_S), [2, 3, 2.5], ShapeError, /^shape\[2\]: .*got 2\.5$/, 'shape[2]'],
          ['dim -1', f32(N_S), [-1, 3, 4], ShapeError, /^shape\[0\]: .*got -1$/, 'shape[0]'],
          ["dim '4'", f32(N_S), [2, 3, '4'], ShapeError, /^shape\[2\]: .*got "4"$/, 'shape[2]'],
          ['shape not an array', f32(N_S), '2,3,4', InvalidArgumentError, /^shape: expected an array of dimensions/, 'shape'],
          ['one value per channel [1, 3]', f32(3), [1, 3], ShapeError, /^x: expected more than 1 value per channel when training, got input size \[1, 3\]$/, 'x'],
          ['one value per channel [1, 3, 1, 1]', f32(3), [1, 3, 1, 1], ShapeError, /more than 1 value per channel.*\[1, 3, 1, 1\]/, 'x'],
        ];
        for (const [label, x, shape, cls, re, argument] of cases) {
          const before = layerState(bn);
          const snap = snapshot(engine, [x, shape]);
          try {
            expectError(() => bn.forward(x as never, shape as never), cls, re, argument);
            snap.check();
            expectSameState(bn, before);
          } catch (error) {
            throw new Error(`${label}: ${(error as Error).message}`, { cause: error });
          }
        }
        // The layer still works, and backward still refers to the last good forward.
        const dx = bn.backward(f32(N_S, 123));
        expect(dx.length).toBe(N_S);
        expectAllFinite(dx, 'dx');
      });
    }

    it('NHWC layer: C mismatch and one value per channel are rejected, state unchanged', () => {
      const engine = engines[build.name];
      const bn = new BatchNorm(engine, 7, { layout: 'NHWC' });
      bn.forward(f32(28, 131), [2, 2, 7]);
      const before = layerState(bn);
      expectError(() => bn.forward(f32(28), [2, 7, 2]), ShapeError, /^shape: expected 7 channels .*got \[2, 7, 2\]$/, 'shape');
      expectSameState(bn, before);
      expectError(() => bn.forward(f32(7), [1, 1, 1, 7]), ShapeError, /more than 1 value per channel.*\[1, 1, 1, 7\]/, 'x');
      expectSameState(bn, before);
    });

    it('eval with running stats and N = 1 is allowed; eval without running stats and N = 1 throws', () => {
      const engine = engines[build.name];
      const bn = new BatchNorm(engine, 5);
      bn.forward(f32(20, 141), [4, 5]);
      bn.eval();
      const before = layerState(bn);
      const y = bn.forward(f32(5, 142), [1, 5]);
      expect(y.length).toBe(5);
      expectAllFinite(y, 'y');
      expectSameState(bn, before); // eval never updates running stats

      const untracked = new BatchNorm(engine, 5, { trackRunningStats: false });
      untracked.eval();
      const x = f32(5, 143);
      const snap = snapshot(engine, [x]);
      expectError(() => untracked.forward(x, [1, 5]), ShapeError, /^x: expected more than 1 value per channel when training, got input size \[1, 5\]$/, 'x');
      snap.check();
      expect(untracked.numBatchesTracked).toBe(0);
    });

    it('train() with a non-boolean and backward() misuse throw typed errors', () => {
      const engine = engines[build.name];
      const bn = new BatchNorm(engine, 3);
      expectError(() => bn.train('yes' as never), InvalidArgumentError, /^mode: expected true or false, got "yes"$/, 'mode');
      expect(bn.training).toBe(true);
      expectError(() => bn.backward(f32(N_S)), InvalidArgumentError, /^dy: expected a gradient for a preceding forward\(\), got no forward\(\) yet$/, 'dy');
      bn.forward(f32(N_S, 151), S);
      const before = layerState(bn);
      for (const [dy, cls, re] of [
        [f32(23), ShapeError, /^dy: expected length 24 .*got length 23$/],
        [new Float64Array(N_S), InvalidArgumentError, /^dy: expected a Float32Array .*got Float64Array\(24\)/],
        [undefined, InvalidArgumentError, /^dy: expected a Float32Array .*got undefined$/],
      ] as const) {
        const snap = snapshot(engine, [dy]);
        expectError(() => bn.backward(dy as never), cls, re, 'dy');
        snap.check();
        expectSameState(bn, before);
      }
    });
  });

  // -------------------------------------------------------------------------------------------
  // Properties
  // -------------------------------------------------------------------------------------------
  describe(`[${build.name}] property: random (possibly invalid) arguments`, () => {
    /** Mostly valid choices, sometimes invalid ones, so both outcomes are common. */
    const pick = <V, I>(valid: readonly V[], invalid: readonly I[], weight = 12): fc.Arbitrary<V | I> =>
      fc.oneof({ arbitrary: fc.constantFrom<V | I>(...valid), weight }, { arbitrary: fc.constantFrom<V | I>(...invalid), weight: 1 });
    const validDim = (d: unknown): d is number => typeof d === 'number' && Number.isInteger(d) && d >= 1;
    const isValidLayout = (l: unknown) => l === undefined || l === 'NCHW' || l === 'NHWC';

    /** Length for a per-channel or per-element array: exact, or off by one. */
    const lengthChoice = pick(['ok'] as const, ['plus', 'minus'] as const, 10);

    const forwardArb = fc.record({
      shapeKind: pick(['array'] as const, ['string', 'null'] as const, 25),
      dims: fc.array(pick([1, 2, 3], [-1, 0, 2.5], 18), { minLength: 0, maxLength: 4 }).filter((d) => d.length >= 1),
      rank2Boost: fc.boolean(),
      layout: pick([undefined, 'NCHW', 'NHWC'], ['nchw', 5]),
      x: pick(['ok'] as const, ['plus', 'minus', 'f64', 'array'] as const, 14),
      training: pick([true, false], ['yes', undefined]),
      weight: fc.constantFrom('none', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'plus', 'minus'),
      bias: fc.constantFrom('none', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'plus', 'minus'),
      running: fc.constantFrom('none', 'none', 'both', 'both', 'both', 'both', 'both', 'both', 'meanOnly', 'varOnly', 'meanBad', 'varBad'),
      eps: pick([undefined, 1e-5, 1e-3, 0.5], [0, -1, NaN, Infinity, '1e-5']),
      momentum: pick([undefined, 0, 0.1, 1], [-0.1, 1.5, NaN]),
      unbiased: pick([undefined, true, false], ['yes'], 20),
      out: fc.constantFrom('none', 'none', 'ok', 'ok', 'inplace', 'plus'),
      resident: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
    });

    it('forward: a BatchNormError with untouched inputs exactly when invalid; otherwise finite y of numel', () => {
      const engine = engines[build.name];
      let valid = 0, invalid = 0;
      fc.assert(fc.property(forwardArb, (a) => {
        const dims = a.rank2Boost && a.dims.length < 2 ? [...a.dims, 2] : a.dims;
        const shape: unknown = a.shapeKind === 'array' ? dims : a.shapeKind === 'string' ? dims.join(',') : null;
        const shapeOk = a.shapeKind === 'array' && dims.length >= 2 && dims.every(validDim);
        const layoutOk = isValidLayout(a.layout);
        const layout = a.layout === 'NHWC' ? 'NHWC' : 'NCHW';
        const numel = Math.max(1, prod(dims.map((d) => Math.max(1, Math.round(Math.abs(d))))));
        const C = dims.length >= 2 ? Math.max(1, Math.round(Math.abs(layout === 'NHWC' ? dims[dims.length - 1] : dims[1]))) : 2;
        const len = (choice: string, n: number) => (choice === 'plus' ? n + 1 : choice === 'minus' ? Math.max(0, n - 1) : n);
        const tensors: Array<{ free(): void }> = [];
        const mk = (arr: Float32Array): Float32Array => {
          if (!a.resident || arr.length === 0) return arr;
          const t = engine.tensor(arr);
          tensors.push(t);
          return t.data;
        };
        try {
          let x: unknown = f32(len(a.x, numel), a.seed);
          if (a.x === 'f64') x = Float64Array.from(x as Float32Array);
          if (a.x === 'array') x = Array.from(x as Float32Array);
          if (x instanceof Float32Array) x = mk(x);
          const per = (choice: string, seed: number, positive = false) =>
            choice === 'none' ? undefined : mk((positive ? pos : f32)(len(choice, C), seed));
          const opts: Record<string, unknown> = { training: a.training };
          if (a.layout !== undefined) opts.layout = a.layout;
          if (a.eps !== undefined) opts.eps = a.eps;
          if (a.momentum !== undefined) opts.momentum = a.momentum;
          if (a.unbiased !== undefined) opts.unbiasedRunningVar = a.unbiased;
          opts.weight = per(a.weight, a.seed + 1);
          opts.bias = per(a.bias, a.seed + 2);
          const rmChoice = a.running === 'none' || a.running === 'varOnly' ? 'none' : a.running === 'meanBad' ? 'plus' : 'ok';
          const rvChoice = a.running === 'none' || a.running === 'meanOnly' ? 'none' : a.running === 'varBad' ? 'minus' : 'ok';
          opts.runningMean = per(rmChoice, a.seed + 3);
          opts.runningVar = per(rvChoice, a.seed + 4, true);
          if (a.out === 'ok') opts.out = mk(new Float32Array(numel));
          if (a.out === 'plus') opts.out = mk(new Float32Array(numel + 1));
          if (a.out === 'inplace') opts.out = x;

          // Independent validity oracle (the requirement, not the implementation).
          const hasRunning = opts.runningMean !== undefined && opts.runningVar !== undefined;
          const outLen = opts.out === undefined ? numel : (opts.out as { length: number }).length;
          const isValid = shapeOk && layoutOk
            && a.x === 'ok'
            && typeof a.training === 'boolean'
            && [a.weight, a.bias, rmChoice, rvChoice].every((c) => c === 'none' || c === 'ok')
            && (opts.runningMean === undefined) === (opts.runningVar === undefined)
            && (a.momentum === undefined || (typeof a.momentum === 'number' && a.momentum >= 0 && a.momentum <= 1))
            && (a.eps === undefined || (typeof a.eps === 'number' && Number.isFinite(a.eps) && a.eps > 0))
            && (a.unbiased === undefined || typeof a.unbiased === 'boolean')
            && (a.out === 'inplace' ? a.x === 'ok' : outLen === numel)
            && (!(a.training === true || !hasRunning) || numel / C >= 2);

          const snap = snapshot(engine, [x, shape, opts]);
          let result: ReturnType<Engine['forward']> | undefined;
          let thrown: unknown = undefined;
          try {
            result = engine.forward(x as never, shape as never, opts as never);
          } catch (error) {
            thrown = error;
          }
          if (thrown !== undefined && !(thrown instanceof BatchNormError)) {
            throw new Error(`non-BatchNormError thrown: ${String(thrown)}`, { cause: thrown });
          }
          if (isValid && thrown !== undefined) expect.fail(`valid call rejected: ${(thrown as Error).message}`);
          if (!isValid) {
            expect(thrown, 'invalid call was accepted').toBeInstanceOf(BatchNormError);
            expect((thrown as BatchNormError).message.startsWith(`${(thrown as BatchNormError).argument}: expected `)).toBe(true);
            snap.check();
            invalid++;
          } else {
            const { y, saveMean, saveInvStd } = result!;
            expect(y.length).toBe(numel);
            if (opts.out !== undefined) expect(y).toBe(opts.out);
            expectAllFinite(y, 'y');
            expect(saveMean.length).toBe(C);
            expect(saveInvStd.length).toBe(C);
            expectAllFinite(saveMean, 'saveMean');
            expectAllFinite(saveInvStd, 'saveInvStd');
            if (hasRunning) {
              expectAllFinite(opts.runningMean as Float32Array, 'runningMean');
              expectAllFinite(opts.runningVar as Float32Array, 'runningVar');
            }
            valid++;
          }
        } finally {
          tensors.forEach((t) => t.free());
        }
      }), { numRuns: 300, seed: build.simd ? 0x5eed : 0xbee5 });
      expect(valid).toBeGreaterThanOrEqual(40);
      expect(invalid).toBeGreaterThanOrEqual(40);
      expect(engine.info().bytesInUse).toBe(0);
    });

    const backwardArb = fc.record({
      dims: fc.array(pick([1, 2, 3], [-1, 0, 2.5], 18), { minLength: 2, maxLength: 4 }),
      layout: pick([undefined, 'NCHW', 'NHWC'], ['nhwc', 0]),
      dy: lengthChoice,
      x: lengthChoice,
      training: pick([true, false], ['no', null]),
      weight: fc.constantFrom('none', 'ok', 'ok', 'ok', 'plus'),
      saveMean: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'none', 'minus'),
      saveInvStd: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'none', 'plus'),
      out: fc.constantFrom('none', 'none', 'ok', 'dy', 'x', 'plus', 'overlap'),
      resident: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1 << 30 }),
    });

    it('backward: a BatchNormError with untouched inputs exactly when invalid; otherwise finite dx', () => {
      const engine = engines[build.name];
      let valid = 0, invalid = 0;
      fc.assert(fc.property(backwardArb, (a) => {
        const shapeOk = a.dims.every(validDim);
        const layout = a.layout === 'NHWC' ? 'NHWC' : 'NCHW';
        const numel = prod(a.dims.map((d) => Math.max(1, Math.round(Math.abs(d)))));
        const C = Math.max(1, Math.round(Math.abs(layout === 'NHWC' ? a.dims[a.dims.length - 1] : a.dims[1])));
        const len = (choice: string, n: number) => (choice === 'plus' ? n + 1 : choice === 'minus' ? Math.max(0, n - 1) : n);
        const tensors: Array<{ free(): void }> = [];
        const mk = (arr: Float32Array): Float32Array => {
          if (!a.resident || arr.length === 0) return arr;
          const t = engine.tensor(arr);
          tensors.push(t);
          return t.data;
        };
        try {
          let dy = f32(len(a.dy, numel), a.seed);
          let out: Float32Array | undefined;
          if (a.out === 'overlap') {
            // dy and out: two views of one buffer, offset by one element
            const buf = mk(f32(len(a.dy, numel) + 1, a.seed));
            dy = buf.subarray(0, buf.length - 1);
            out = buf.subarray(1);
          } else {
            dy = mk(dy);
          }
          const x = mk(f32(len(a.x, numel), a.seed + 1));
          const per = (choice: string, seed: number, positive = false) =>
            choice === 'none' ? undefined : mk((positive ? pos : f32)(len(choice, C), seed));
          const opts: Record<string, unknown> = {
            training: a.training,
            weight: per(a.weight, a.seed + 2),
            saveMean: per(a.saveMean, a.seed + 3),
            saveInvStd: per(a.saveInvStd, a.seed + 4, true),
          };
          if (a.layout !== undefined) opts.layout = a.layout;
          if (a.out === 'ok') out = mk(new Float32Array(numel));
          if (a.out === 'plus') out = new Float32Array(numel + 1);
          if (a.out === 'dy') out = dy;
          if (a.out === 'x') out = x;
          if (out !== undefined) opts.out = out;

          const isValid = shapeOk && isValidLayout(a.layout)
            && a.dy === 'ok' && a.x === 'ok'
            && typeof a.training === 'boolean'
            && (a.weight === 'none' || a.weight === 'ok')
            && a.saveMean === 'ok' && a.saveInvStd === 'ok'
            && a.out !== 'plus' && !(a.out === 'overlap' && dy.length >= 2); // views offset by 1 overlap iff length >= 2

          const snap = snapshot(engine, [dy, x, a.dims, opts]);
          let result: ReturnType<Engine['backward']> | undefined;
          let thrown: unknown = undefined;
          try {
            result = engine.backward(dy, x, a.dims, opts as never);
          } catch (error) {
            thrown = error;
          }
          if (thrown !== undefined && !(thrown instanceof BatchNormError)) {
            throw new Error(`non-BatchNormError thrown: ${String(thrown)}`, { cause: thrown });
          }
          if (!isValid) {
            expect(thrown, 'invalid call was accepted').toBeInstanceOf(BatchNormError);
            snap.check();
            invalid++;
          } else {
            expect(thrown, `valid call rejected: ${(thrown as Error | undefined)?.message}`).toBeUndefined();
            const { dx, dweight, dbias } = result!;
            expect(dx.length).toBe(numel);
            if (out !== undefined) expect(dx).toBe(out);
            expectAllFinite(dx, 'dx');
            expect(dweight.length).toBe(C);
            expect(dbias.length).toBe(C);
            expectAllFinite(dweight, 'dweight');
            expectAllFinite(dbias, 'dbias');
            valid++;
          }
        } finally {
          tensors.forEach((t) => t.free());
        }
      }), { numRuns: 300, seed: build.simd ? 0xcafe : 0xf00d });
      expect(valid).toBeGreaterThanOrEqual(40);
      expect(invalid).toBeGreaterThanOrEqual(40);
      expect(engine.info().bytesInUse).toBe(0);
    });
  });
}

describe('error hierarchy', () => {
  it('every error class is a BatchNormError and an Error, with argument/expected/received fields', () => {
    for (const cls of [InvalidArgumentError, ShapeError, MemoryError]) {
      const e = new cls('opts.weight', 'length 3', 'length 4');
      expect(e).toBeInstanceOf(BatchNormError);
      expect(e).toBeInstanceOf(Error);
      expect(e.name).toBe(cls.name);
      expect(e.argument).toBe('opts.weight');
      expect(e.expected).toBe('length 3');
      expect(e.received).toBe('length 4');
      expect(e.message).toBe('opts.weight: expected length 3, got length 4');
    }
  });

  it('table sizes (documentation of coverage)', () => {
    const count = (cases: Array<{ category: string }>) =>
      cases.reduce<Record<string, number>>((m, c) => ({ ...m, [c.category]: (m[c.category] ?? 0) + 1 }), {});
    expect(Object.values(count(forwardCases)).reduce((a, b) => a + b, 0)).toBe(forwardCases.length);
    expect(forwardCases.length).toBeGreaterThanOrEqual(80);
    expect(backwardCases.length).toBeGreaterThanOrEqual(25);
  });
});
