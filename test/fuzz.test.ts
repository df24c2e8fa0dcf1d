// Fuzzing the public API: fast-check generates small, often invalid argument combinations for
// engine.forward and engine.backward, and each run must end in exactly one of:
// - a BatchNormError (one of the exported classes) naming an argument that really is invalid,
//   with every input, output, running statistic, live tensor, the arena and the memory size
//   byte-identical to before the call; or
// - a result equal to the float64 oracle within the tolerances of test/helpers/tolerance.ts,
//   inputs untouched (except `out`, and the running statistics in training).
// Validity is decided by an independent model of the requirement (validity() below), not by
// asking the implementation. Arguments live in plain arrays, in offset views of larger buffers,
// in engine tensors (sometimes flush with the end of wasm memory, sometimes with no free memory
// left so that the call itself must grow memory and detach them), or in another engine.
//
// Runs: FUZZ_RUNS (default 10 000) forward runs and half as many backward runs on the SIMD build,
// a tenth of each on the scalar build and on the debug build (kernel assertions on: an
// out-of-bounds access is an error, not garbage). Seed: FUZZ_SEED (a number, or 'random'), else
// a fixed one; it is printed first, and fast-check prints it (with the failing path) on failure. Reproduce a failure with
//   FUZZ_SEED=<seed> npx vitest run test/fuzz.test.ts
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  BatchNormError, InvalidArgumentError, MemoryError, ShapeError, createEngine, oracleBackward, oracleForward, type Tensor,
} from '../src/index.js';
import { readFile } from 'node:fs/promises';
import loader from '@assemblyscript/loader';
import { Engine } from '../src/engine.js';
import type { KernelExports } from '../src/wasm/kernels.js';
import { ALIGN } from '../src/memory.js';
import { skipBuild, unsupported, type BuildName } from './helpers/engines.js';
import { channelOf as channelFn, gauss, product, rng, ulp32 } from './helpers/numeric.js';
import { tolDbias, tolDweight, tolDx, tolSaveInvStd, tolSaveMean, tolY, type BackwardFacts, type ChannelFacts } from './helpers/tolerance.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
// CI runs a fixed seed so a landing is reproducible; FUZZ_SEED=random explores new ones locally.
const SEED = process.env.FUZZ_SEED === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.FUZZ_SEED ?? 20261126);
const REPRO = `FUZZ_SEED=${SEED} npx vitest run test/fuzz.test.ts`;

type Layout = 'NCHW' | 'NHWC';
type Where = 'plain' | 'offset' | 'tensor' | 'other-engine';
type Flush = 'none' | 'end' | 'end-grow';
const ERROR_CLASSES = [InvalidArgumentError, ShapeError, MemoryError];

// ---------------------------------------------------------------------------------------------
// Bad-input classes. Each run picks up to two; the tally is printed and checked at the end.
// ---------------------------------------------------------------------------------------------
const X_BAD = ['f64', 'array', 'int32', 'null', 'undefined', 'len+1', 'len-1', 'detached', 'foreign', 'freed'] as const;
const SHAPE_BAD = ['string', 'null', 'rank0', 'rank1', 'dim0', 'dimNeg', 'dimFrac', 'dimNaN', 'dimStr', 'huge'] as const;
const PARAM_BAD = ['len+1', 'len-1', 'f64', 'array', 'detached', 'foreign'] as const;
const FORWARD_BAD = [
  ...X_BAD.map((b) => `x:${b}`), ...SHAPE_BAD.map((b) => `shape:${b}`),
  'opts:null', 'opts:string', 'layout:lowercase', 'layout:number', 'training:string', 'training:undefined', 'training:number',
  ...PARAM_BAD.flatMap((b) => ['weight', 'bias', 'runningMean', 'runningVar'].map((p) => `${p}:${b}`)),
  'running:meanOnly', 'running:varOnly',
  'momentum:negative', 'momentum:>1', 'momentum:NaN', 'momentum:string', 'eps:0', 'eps:negative', 'eps:<2^-126', 'eps:NaN', 'eps:Infinity', 'eps:string',
  'unbiased:string', 'out:len+1', 'out:f64', 'out:detached', 'out:overlaps-x', 'out:overlaps-weight', 'out:overlaps-runningMean',
  'alias:runningMean=runningVar', 'alias:runningVar-overlaps-x', 'nper:1', 'activation:bogus',
  'saveMeanOut:len+1', 'saveMeanOut:f64', 'saveInvStdOut:detached', 'saveMeanOut:overlaps-x', 'saveInvStdOut:overlaps-runningMean',
  'alias:saveMeanOut=saveInvStdOut',
  // Valid twists (tallied like the others; the model decides validity):
  'valid:weight=bias', 'valid:x-overlaps-weight', 'valid:out-alias-of-x',
] as const;
const BACKWARD_BAD = [
  ...X_BAD.map((b) => `dy:${b}`), ...X_BAD.map((b) => `x:${b}`), ...SHAPE_BAD.map((b) => `shape:${b}`),
  'opts:null', 'opts:string', 'layout:lowercase', 'training:string', 'training:undefined',
  ...PARAM_BAD.flatMap((b) => ['weight', 'saveMean', 'saveInvStd'].map((p) => `${p}:${b}`)),
  'saveMean:missing', 'saveInvStd:missing', 'out:len+1', 'out:f64', 'out:overlaps-dy', 'out:overlaps-x', 'out:overlaps-saveMean',
  'activation:bogus', 'y:missing', 'y:len+1', 'y:f64', 'y:detached', // y: checked only with activation 'relu'
  'dweightOut:len-1', 'dbiasOut:array', 'dweightOut:overlaps-saveMean', 'dbiasOut:overlaps-dy', 'alias:dweightOut=dbiasOut',
  'valid:out=dy', 'valid:out=x', 'valid:dy=x', 'valid:out=y',
] as const;

/** Per class: runs that tried it, how many were rejected, and the same for runs where it was the only corruption. */
const tally = new Map<string, { tried: number; rejected: number; alone: number; aloneRejected: number }>();
function count(labels: ReadonlySet<string>, prefix: string, rejected: boolean): void {
  for (const label of labels.size ? labels : ['none']) {
    const key = `${prefix} ${label}`;
    const t = tally.get(key) ?? { tried: 0, rejected: 0, alone: 0, aloneRejected: 0 };
    t.tried++;
    if (rejected) t.rejected++;
    if (labels.size === 1) {
      t.alone++;
      if (rejected) t.aloneRejected++;
    }
    tally.set(key, t);
  }
}

// ---------------------------------------------------------------------------------------------
// Argument placement
// ---------------------------------------------------------------------------------------------

/** Builds the Float32Array arguments of one call in the places asked for, and frees them. */
class Placement {
  readonly tensors: Tensor[] = [];
  private pending: Array<{ values: Float32Array; set: (view: Float32Array) => void; slack: number }> = [];
  private readonly after: Array<() => void> = [];
  constructor(readonly engine: Engine, readonly other: Engine, private readonly next: () => number) {}

  /** An array argument: `set` receives the view once every allocation is done. */
  put(values: Float32Array, where: Where, set: (view: Float32Array) => void): void {
    if (where === 'tensor') {
      this.pending.push({ values, set, slack: Math.floor(this.next() * 3) });
    } else if (where === 'offset') {
      const before = 1 + Math.floor(this.next() * 3), after = Math.floor(this.next() * 3);
      const buf = new Float32Array(before + values.length + after).fill(-7);
      buf.set(values, before);
      set(buf.subarray(before, before + values.length));
    } else if (where === 'other-engine') {
      const t = this.other.tensor(values);
      this.after.push(() => t.free());
      set(t.data);
    } else {
      set(values.slice());
    }
  }

  /**
   * Allocates the pending tensors. flush 'end': the last one ends exactly at the end of wasm
   * memory, with a free hole before them for the call's scratch; 'end-grow': no hole, so the
   * call's scratch must grow memory (detaching the views it was given).
   */
  commit(flush: Flush, scratchBytes: number): void {
    const { engine } = this;
    const arena = engine.arena;
    const sizes = this.pending.map((p) => Math.ceil((4 * (p.values.length + p.slack) || 4) / ALIGN) * ALIGN);
    const total = sizes.reduce((a, b) => a + b, 0);
    let hole = -1, filler = -1;
    if (flush !== 'none' && this.pending.length) {
      if (flush === 'end') hole = arena.alloc(scratchBytes, 'hole');
      let { top } = arena.layout();
      if (engine.info().memoryBytes - top < total) {
        arena.release(arena.alloc(total + 65536, 'grow'));
        top = arena.layout().top;
      }
      const gap = engine.info().memoryBytes - top - total;
      if (gap > 0) filler = arena.alloc(gap, 'filler');
    }
    const made = sizes.map((bytes) => {
      const t = engine.tensor(bytes / 4); // the whole block: the view at its end ends where the block does
      this.tensors.push(t);
      return t;
    });
    if (filler >= 0) this.after.push(() => arena.release(filler));
    if (hole >= 0) arena.release(hole);
    // Views after every allocation (an allocation may grow memory); each ends at its block's end.
    this.pending.forEach((p, i) => {
      const t = made[i];
      const view = t.data.subarray(t.length - p.values.length);
      view.set(p.values);
      p.set(view);
    });
    if (flush !== 'none' && made.length) {
      const last = made[made.length - 1];
      must(last.byteOffset + 4 * last.length === engine.info().memoryBytes, 'flush placement');
    }
    this.pending = [];
  }

  /** A tensor view whose tensor is then freed (the view stays attached but is no longer owned). */
  freedView(length: number): Float32Array {
    const t = this.engine.tensor(Math.max(length, 1));
    const view = t.data.subarray(0, length);
    t.free();
    return view;
  }

  /** A view into this engine's memory that no tensor owns: below the heap. */
  foreignView(length: number): Float32Array {
    return new Float32Array(this.engine.arena.buffer, 0, length);
  }

  release(): void {
    for (const t of this.tensors) t.free();
    for (const f of this.after) f();
  }
}

/** A detached Float32Array (its buffer transferred away). */
function detached(length: number): Float32Array {
  const buffer = new ArrayBuffer(4 * Math.max(length, 1));
  const view = new Float32Array(buffer, 0, length);
  structuredClone(buffer, { transfer: [buffer] });
  return view;
}

// ---------------------------------------------------------------------------------------------
// The validity model: the requirement, written independently of src/.
// ---------------------------------------------------------------------------------------------
interface Ranges { buffer: ArrayBufferLike; start: number; end: number }
function rangeOf(a: Float32Array): Ranges {
  return { buffer: a.buffer, start: a.byteOffset, end: a.byteOffset + a.byteLength };
}
function overlaps(a: Float32Array, b: Float32Array): boolean {
  const p = rangeOf(a), q = rangeOf(b);
  return p.buffer === q.buffer && p.start < q.end && q.start < p.end;
}
function sameMemory(a: Float32Array, b: Float32Array): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.length === b.length;
}

class Model {
  readonly invalid = new Set<string>();
  constructor(private readonly engine: Engine, private readonly live: readonly Tensor[]) {}
  bad(...names: string[]): void {
    for (const n of names) this.invalid.add(n);
  }
  /** A Float32Array argument of exactly `length` values, live, and inside one live tensor if it is in wasm memory. */
  f32(value: unknown, name: string, length: number | null, optional = false): Float32Array | null {
    if (optional && (value === undefined || value === null)) return null;
    if (!(value instanceof Float32Array)) return this.bad(name), null;
    const isDetached = value.length === 0 && value.byteLength === 0 && (() => { try { new Uint8Array(value.buffer, 0, 0); return false; } catch { return true; } })();
    if (isDetached || value.length === 0 || (length !== null && value.length !== length)) return this.bad(name), null;
    if (value.buffer === this.engine.arena.buffer) {
      const inside = this.live.some((t) => value.byteOffset >= t.byteOffset && value.byteOffset + value.byteLength <= t.byteOffset + 4 * t.length);
      if (!inside) return this.bad(name), null;
    }
    return value;
  }
  /** shape: an array of >= 2 positive integers with at most 2^30 elements. */
  shape(value: unknown, layout: Layout): { C: number; numel: number } | null {
    if (!Array.isArray(value)) return this.bad('shape'), null;
    if (value.length < 2 || !value.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 1)) return this.bad('shape'), null;
    const numel = product(value as number[]);
    if (numel > 2 ** 30) return this.bad('shape'), null;
    return { C: value[layout === 'NCHW' ? 1 : value.length - 1] as number, numel };
  }
  layout(value: unknown): Layout | null {
    if (value === undefined) return 'NCHW';
    if (value === 'NCHW' || value === 'NHWC') return value;
    return this.bad('opts.layout'), null;
  }
  /** Written arrays overlap nothing else, except the allowed exact aliases. */
  aliasing(writes: Array<[string, Float32Array | null]>, reads: Array<[string, Float32Array | null]>, exact: Set<string>): void {
    for (const [w, wa] of writes) {
      if (!wa) continue;
      for (const [r, ra] of [...writes, ...reads]) {
        if (!ra || r === w || !overlaps(wa, ra)) continue;
        if (exact.has(`${w}=${r}`) && sameMemory(wa, ra)) continue;
        this.bad(w, r);
      }
    }
  }
}

function matchesArgument(thrown: string, invalid: Set<string>): boolean {
  return invalid.has(thrown) || [...invalid].some((name) => thrown.startsWith(`${name}[`));
}

// ---------------------------------------------------------------------------------------------
// State snapshots: everything a call may not change when it throws.
// ---------------------------------------------------------------------------------------------
function snapshotState(engine: Engine, arrays: ReadonlyArray<unknown>, live: readonly Tensor[]) {
  const js = new Map<ArrayBufferLike, Uint8Array>();
  for (const a of arrays) {
    if (a instanceof Float32Array || a instanceof Float64Array || a instanceof Int32Array) {
      if (a.buffer !== engine.arena.buffer && a.buffer.byteLength > 0 && !js.has(a.buffer)) js.set(a.buffer, new Uint8Array(a.buffer).slice());
    }
  }
  const plain = arrays.filter(Array.isArray).map((a) => [a, [...(a as unknown[])]] as const);
  const tensors = live.map((t) => [t, t.toArray()] as const);
  const heapBase = engine.kernels.heapBase();
  const low = new Uint8Array(engine.arena.buffer, 0, heapBase).slice();
  const layout = JSON.stringify(engine.arena.layout());
  const memoryBytes = engine.info().memoryBytes;
  return () => {
    for (const [buffer, bytes] of js) {
      if (buffer.byteLength !== bytes.byteLength || Buffer.compare(new Uint8Array(buffer), bytes) !== 0) throw new Error('a JS argument buffer changed');
    }
    for (const [a, before] of plain) if (a.length !== before.length || a.some((v, i) => !Object.is(v, before[i]))) throw new Error('a plain array argument changed');
    for (const [t, before] of tensors) if (Buffer.compare(Buffer.from(t.toArray().buffer), Buffer.from(before.buffer)) !== 0) throw new Error('a live tensor changed');
    if (Buffer.compare(new Uint8Array(engine.arena.buffer, 0, heapBase), low) !== 0) throw new Error('bytes below the heap base changed');
    if (JSON.stringify(engine.arena.layout()) !== layout) throw new Error('the arena changed (an allocation was left behind or made)');
    if (engine.info().memoryBytes !== memoryBytes) throw new Error('wasm memory grew during a rejected call');
  };
}

function expectTypedError(thrown: unknown, invalid: Set<string>): BatchNormError {
  if (!(thrown instanceof BatchNormError) || !ERROR_CLASSES.some((cls) => thrown instanceof cls)) {
    throw new Error(`expected a BatchNormError subclass for invalid ${[...invalid].join(', ')}, got ${thrown === undefined ? 'a result' : String(thrown)}`, { cause: thrown });
  }
  if (!thrown.message.startsWith(`${thrown.argument}: expected ${thrown.expected}, got ${thrown.received}`)) throw new Error(`malformed message: ${thrown.message}`);
  if (!matchesArgument(thrown.argument, invalid)) {
    throw new Error(`the error names ${thrown.argument}, which is valid; invalid: ${[...invalid].join(', ')} (${thrown.message})`);
  }
  return thrown;
}

// ---------------------------------------------------------------------------------------------
// Data and tolerances
// ---------------------------------------------------------------------------------------------
/** Tiny logical shapes (at most 135 values): N, C and up to two spatial dims. */
const dims = fc.record({
  n: fc.integer({ min: 1, max: 3 }),
  C: fc.integer({ min: 1, max: 5 }),
  spatial: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
});

/** A plain assertion: vitest's expect() is too slow for the fuzz loop's hot path. */
function must(condition: boolean, message: string | (() => string)): void {
  if (!condition) throw new Error(typeof message === 'string' ? message : message());
}

function shapeOf(d: { n: number; C: number; spatial: number[] }, layout: Layout): number[] {
  return layout === 'NCHW' ? [d.n, d.C, ...d.spatial] : [d.n, ...d.spatial, d.C];
}

/** Values with per-channel offsets, sometimes a constant channel, at a random overall scale. */
function values(shape: number[], layout: Layout, seed: number, scale: number, constantChannel: boolean): Float32Array {
  const next = rng(seed);
  const g = gauss(next);
  const ch = channelFn(shape, layout);
  const C = shape[layout === 'NCHW' ? 1 : shape.length - 1];
  const center = Array.from({ length: C }, () => (next() - 0.5) * 10 ** (3 * next()));
  return Float32Array.from({ length: product(shape) }, (_, i) => (constantChannel && ch(i) === 0 ? 1.25 * scale : scale * (center[ch(i)] + g())));
}
function perChannel(C: number, seed: number, lo: number, hi: number): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: C }, () => lo + (hi - lo) * next());
}

function facts(x: ArrayLike<number>, ch: (i: number) => number, mean: Float64Array): ChannelFacts[] {
  const fs = Array.from(mean, (m) => ({ n: x.length / mean.length, mean: m, m2: 0, maxDev: 0 }));
  for (let i = 0; i < x.length; i++) {
    const f = fs[ch(i)];
    const d = x[i] - f.mean;
    f.m2 += d * d;
    f.maxDev = Math.max(f.maxDev, Math.abs(d));
  }
  return fs;
}
const gammaN = (f: ChannelFacts) => (f.n + 4) * 2 ** -53 * 1.0001;
function close(actual: number, expected: number, tol: number, what: string | (() => string)): void {
  // An expected value beyond float32 is matched by its float32 rounding (±Infinity), e.g. a
  // running variance of 1e40 in a float32 buffer.
  const ok = Number.isNaN(expected) ? Number.isNaN(actual)
    : !Number.isFinite(Math.fround(expected)) ? actual === Math.fround(expected)
      : Math.abs(actual - expected) <= tol;
  if (!ok) {
    throw new Error(`${typeof what === 'string' ? what : what()}: expected ${expected}, got ${actual}, |diff| ${Math.abs(actual - expected)} > tol ${tol}`);
  }
}

/** Where a Float32Array argument was, so that it can be read after the call even if the call's growth detached it. */
interface Rec { view: Float32Array; buffer: ArrayBufferLike; resident: boolean; offset: number; length: number }
function rec(engine: Engine, a: unknown): Rec | null {
  return a instanceof Float32Array ? { view: a, buffer: a.buffer, resident: a.buffer === engine.arena.buffer, offset: a.byteOffset, length: a.length } : null;
}
/** Overlap as it was when the records were taken (a call that grows memory detaches resident views). */
function recOverlap(a: Rec | null, b: Rec | null, exact = false): boolean {
  if (!a || !b || a.buffer !== b.buffer) return false;
  return exact ? a.offset === b.offset && a.length === b.length : a.offset < b.offset + 4 * b.length && b.offset < a.offset + 4 * a.length;
}
function now(engine: Engine, r: Rec): Float32Array {
  return r.resident && r.view.byteLength === 0 && r.length > 0 ? new Float32Array(engine.arena.buffer, r.offset, r.length) : r.view;
}
function sameValues(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) if (!Object.is(Math.fround(a[i]), Math.fround(b[i]))) throw new Error(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------
const whereArb = fc.constantFrom<Where>('plain', 'plain', 'offset', 'tensor', 'tensor', 'other-engine');
const forwardArb = fc.record({
  layout: fc.constantFrom<Layout>('NCHW', 'NHWC'),
  layoutGiven: fc.boolean(),
  dims,
  training: fc.boolean(),
  weight: fc.boolean(), bias: fc.boolean(), running: fc.boolean(),
  momentum: fc.oneof(fc.constantFrom(undefined, 0, 0.1, 1), fc.double({ min: 0, max: 1, noNaN: true })),
  eps: fc.constantFrom(undefined, 1e-5, 1e-3, 0.5, 2 ** -126),
  unbiased: fc.constantFrom(undefined, true, false),
  activation: fc.constantFrom(undefined, undefined, 'none', 'relu'),
  out: fc.constantFrom('none', 'none', 'new', 'in-place'),
  saved: fc.constantFrom('none', 'mean', 'both'),
  where: fc.record({ x: whereArb, weight: whereArb, bias: whereArb, runningMean: whereArb, runningVar: whereArb, out: whereArb, saveMeanOut: whereArb, saveInvStdOut: whereArb }),
  flush: fc.constantFrom<Flush>('none', 'none', 'none', 'end', 'end-grow'),
  scale: fc.constantFrom(1, 1, 1, 1, 1e-3, 1e3, 1e20, 1e-20),
  constantChannel: fc.boolean(),
  bad: fc.oneof(fc.constant([] as string[]), fc.array(fc.constantFrom<string>(...FORWARD_BAD), { minLength: 1, maxLength: 2 })),
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
});

function forwardRun(engine: Engine, other: Engine, k: fc.infer<typeof forwardArb>): 'valid' | 'invalid' {
  const { layout } = k;
  const shape = shapeOf(k.dims, layout);
  const C = k.dims.C, numel = product(shape);
  const next = rng(k.seed ^ 0x5bd1);
  const place = new Placement(engine, other, next);
  const bad = new Set(k.bad);
  try {
    // 1. A valid call.
    const xv = values(shape, layout, k.seed, k.scale, k.constantChannel);
    const args: Record<string, unknown> = {};
    const opts: Record<string, unknown> = { training: k.training };
    if (k.layoutGiven || layout === 'NHWC') opts.layout = layout;
    if (k.momentum !== undefined) opts.momentum = k.momentum;
    if (k.eps !== undefined) opts.eps = k.eps;
    if (k.unbiased !== undefined) opts.unbiasedRunningVar = k.unbiased;
    if (k.activation !== undefined) opts.activation = k.activation;
    let callShape: unknown = shape;
    // Overlap corruptions take x (and weight, out) from one shared buffer instead of their own places.
    const ovX = bad.has('out:overlaps-x'), ovW = bad.has('out:overlaps-weight'), xw = ovW || bad.has('valid:x-overlaps-weight');
    if (!ovX && !xw) place.put(xv, k.where.x, (v) => { args.x = v; });
    if (k.weight && !xw) place.put(perChannel(C, k.seed + 1, -2, 2), k.where.weight, (v) => { opts.weight = v; });
    if (k.bias) place.put(perChannel(C, k.seed + 2, -2, 2), k.where.bias, (v) => { opts.bias = v; });
    if (k.running) {
      place.put(perChannel(C, k.seed + 3, -1, 1).map((m) => m * k.scale), k.where.runningMean, (v) => { opts.runningMean = v; });
      place.put(perChannel(C, k.seed + 4, 0.25, 2).map((s) => s * Math.min(k.scale * k.scale, 1e30)), k.where.runningVar, (v) => { opts.runningVar = v; });
    }
    if (k.out === 'new' && !ovX && !ovW) place.put(new Float32Array(numel).fill(3), k.where.out, (v) => { opts.out = v; });
    if (k.saved !== 'none') place.put(new Float32Array(C).fill(7), k.where.saveMeanOut, (v) => { opts.saveMeanOut = v; });
    if (k.saved === 'both') place.put(new Float32Array(C).fill(7), k.where.saveInvStdOut, (v) => { opts.saveInvStdOut = v; });

    // 2. The shared buffer: [x (numel)][weight (C), from x's last value][...]; out starts inside x
    //    (out:overlaps-x; numel = 1 cannot overlap partially: then it is adjacent, and valid) or at
    //    weight's last value (out:overlaps-weight).
    let opaque: unknown = opts;
    if (ovX || xw) {
      const off = 1 + Math.floor(next() * Math.max(1, numel - 1));
      const buf = new Float32Array(2 * numel + C + off);
      buf.set(xv);
      if (xw) buf.fill(0.75, numel - 1, numel - 1 + C);
      place.put(buf, k.where.x === 'tensor' ? 'tensor' : 'plain', (v) => {
        args.x = v.subarray(0, numel);
        if (xw) opts.weight = v.subarray(numel - 1, numel - 1 + C);
        if (ovW) opts.out = v.subarray(numel - 2 + C, 2 * numel - 2 + C);
        else if (ovX) opts.out = v.subarray(off, off + numel);
      });
    }
    place.commit(k.flush, 4 * 3 * numel + 1024 + 48 * C + 64 * 24 * C);
    for (const b of bad) {
      const [what, how] = b.split(':');
      switch (what) {
        case 'x': args.x = corrupt(place, how, args.x, numel); break;
        case 'weight': case 'bias': case 'runningMean': case 'runningVar': opts[what] = corrupt(place, how, opts[what] ?? perChannel(C, 9, 0.5, 1), C); break;
        case 'saveMeanOut': case 'saveInvStdOut':
          if (how === 'overlaps-x') {
            const xa = args.x instanceof Float32Array && args.x.byteLength > 0 ? args.x : new Float32Array(numel);
            opts[what] = xa.subarray(Math.max(0, xa.length - C)).length === C ? xa.subarray(xa.length - C) : new Float32Array(C + 1);
          } else if (how === 'overlaps-runningMean') {
            opts.runningMean = opts[what] = new Float32Array(C).fill(0.25);
            opts.runningVar ??= perChannel(C, 13, 1, 2);
          } else opts[what] = corrupt(place, how, opts[what] ?? new Float32Array(C), C);
          break;
        case 'shape': callShape = badShape(how, shape); break;
        case 'opts': opaque = how === 'null' ? null : 'training'; break;
        case 'layout': opts.layout = how === 'lowercase' ? layout.toLowerCase() : 4; break;
        case 'training': opts.training = how === 'string' ? 'true' : how === 'number' ? 1 : undefined; break;
        case 'running':
          if (how === 'meanOnly') { opts.runningMean ??= perChannel(C, 5, 0, 1); delete opts.runningVar; } else { opts.runningVar ??= perChannel(C, 6, 1, 2); delete opts.runningMean; }
          break;
        case 'momentum': opts.momentum = ({ negative: -0.25, '>1': 1.0000001, NaN: NaN, string: '0.1' } as Record<string, unknown>)[how]; break;
        case 'eps': opts.eps = ({ '0': 0, negative: -1e-5, '<2^-126': 2 ** -127, NaN: NaN, Infinity: Infinity, string: '1e-5' } as Record<string, unknown>)[how]; break;
        case 'unbiased': opts.unbiasedRunningVar = 'yes'; break;
        case 'activation': opts.activation = 'gelu'; break;
        case 'out':
          if (how === 'len+1') opts.out = new Float32Array(numel + 1);
          else if (how === 'f64') opts.out = new Float64Array(numel);
          else if (how === 'detached') opts.out = detached(numel);
          else if (how === 'overlaps-runningMean') {
            const buf = new Float32Array(numel + C);
            opts.out = buf.subarray(0, numel);
            opts.runningMean = buf.subarray(numel - 1, numel - 1 + C).length === C ? buf.subarray(numel - 1, numel - 1 + C) : perChannel(C, 7, 0, 1);
            opts.runningVar ??= perChannel(C, 8, 1, 2);
          }
          break;
        case 'alias':
          if (how === 'saveMeanOut=saveInvStdOut') { opts.saveMeanOut = opts.saveInvStdOut = new Float32Array(C); } else
          if (how === 'runningMean=runningVar') { opts.runningMean = opts.runningVar = perChannel(C, 10, 0.5, 1); } else {
            const buf = new Float32Array(numel + C).fill(1);
            if (args.x instanceof Float32Array && args.x.byteLength > 0) buf.set(args.x.subarray(0, numel));
            args.x = buf.subarray(0, numel);
            opts.runningVar = buf.subarray(numel - 1, numel - 1 + C);
            opts.runningMean ??= perChannel(C, 11, 0, 1);
          }
          break;
        case 'nper': {
          callShape = layout === 'NCHW' ? [1, C] : [1, 1, C];
          const xa = args.x;
          if (xa instanceof Float32Array && xa.length >= C) args.x = xa.subarray(0, C);
          break;
        }
        case 'valid':
          if (how === 'weight=bias') opts.weight = opts.bias = perChannel(C, 12, -1, 1);
          if (how === 'out-alias-of-x') {
            // Another view object over exactly x's memory (when x is still a live Float32Array).
            const x = args.x;
            opts.out = x instanceof Float32Array && x.byteLength > 0 ? new Float32Array(x.buffer, x.byteOffset, x.length) : x;
          }
          break;
      }
    }
    if (k.out === 'in-place' && !('out' in opts)) opts.out = args.x;

    // 3. The model.
    const model = new Model(engine, place.tensors);
    const isObj = opaque !== null && typeof opaque === 'object';
    if (!isObj) model.bad('opts');
    const lay = isObj ? model.layout(opts.layout) : null;
    const geo = lay ? model.shape(callShape, lay) : null;
    const x = model.f32(args.x, 'x', geo?.numel ?? null);
    if (isObj) {
      const training = typeof opts.training === 'boolean' ? opts.training : (model.bad('opts.training'), null);
      const Cc = geo?.C ?? null;
      const weight = model.f32(opts.weight, 'opts.weight', Cc, true);
      const bias = model.f32(opts.bias, 'opts.bias', Cc, true);
      const rm = model.f32(opts.runningMean, 'opts.runningMean', Cc, true);
      const rv = model.f32(opts.runningVar, 'opts.runningVar', Cc, true);
      const rmGiven = opts.runningMean !== undefined && opts.runningMean !== null, rvGiven = opts.runningVar !== undefined && opts.runningVar !== null;
      if (rmGiven !== rvGiven) model.bad('opts.runningMean', 'opts.runningVar');
      const m = opts.momentum;
      if (m !== undefined && !(typeof m === 'number' && m >= 0 && m <= 1)) model.bad('opts.momentum');
      const eps = opts.eps;
      if (eps !== undefined && !(typeof eps === 'number' && Number.isFinite(eps) && eps >= 2 ** -126)) model.bad('opts.eps');
      if (opts.unbiasedRunningVar !== undefined && typeof opts.unbiasedRunningVar !== 'boolean') model.bad('opts.unbiasedRunningVar');
      if (![undefined, 'none', 'relu'].includes(opts.activation as string | undefined)) model.bad('opts.activation');
      const out = model.f32(opts.out, 'opts.out', geo?.numel ?? null, true);
      const sm = model.f32(opts.saveMeanOut, 'opts.saveMeanOut', Cc, true), si = model.f32(opts.saveInvStdOut, 'opts.saveInvStdOut', Cc, true);
      if (geo && training !== null && (training || !rmGiven) && geo.numel / geo.C < 2) model.bad('x');
      const writesRunning = training === true && rmGiven && rvGiven;
      model.aliasing(
        [['opts.out', out], ['opts.saveMeanOut', sm], ['opts.saveInvStdOut', si], ['opts.runningMean', writesRunning ? rm : null],
          ['opts.runningVar', writesRunning ? rv : null]],
        [['x', x], ['opts.weight', weight], ['opts.bias', bias], ['opts.runningMean', writesRunning ? null : rm], ['opts.runningVar', writesRunning ? null : rv]],
        new Set(['opts.out=x']),
      );
    }
    const valid = model.invalid.size === 0;
    count(bad, 'forward', !valid);

    // 4. The call.
    const check = snapshotState(engine, [args.x, callShape, ...Object.values(opts)], place.tensors);
    const recs = {
      x: rec(engine, args.x), out: rec(engine, opts.out), rm: rec(engine, opts.runningMean), rv: rec(engine, opts.runningVar), w: rec(engine, opts.weight),
      b: rec(engine, opts.bias), sm: rec(engine, opts.saveMeanOut), si: rec(engine, opts.saveInvStdOut),
    };
    const before = valid ? {
      x: Float64Array.from(args.x as Float32Array), w: recs.w && Float64Array.from(recs.w.view), b: recs.b && Float64Array.from(recs.b.view),
      rm: recs.rm && Float64Array.from(recs.rm.view), rv: recs.rv && Float64Array.from(recs.rv.view),
    } : null;
    let result: ReturnType<Engine['forward']> | undefined;
    let thrown: unknown;
    try {
      result = engine.forward(args.x as never, callShape as never, opaque as never);
    } catch (error) {
      thrown = error;
    }
    if (!valid) {
      expectTypedError(thrown, model.invalid);
      check();
      return 'invalid';
    }
    if (thrown !== undefined) throw new Error(`a valid call threw: ${String(thrown)}`, { cause: thrown });
    const r = result!, bf = before!;
    const cs = callShape as number[];
    const ch = channelFn(cs, layout);
    const Cc = cs[layout === 'NCHW' ? 1 : cs.length - 1];
    const training = opts.training as boolean;
    const what = () => JSON.stringify({ ...k, bad: [...bad] });
    // y is `out` when given (or a live view of it, if it is a tensor and the call grew memory).
    if (recs.out) {
      if (!recs.out.resident) must(r.y === recs.out.view, 'y is not out');
      sameValues(now(engine, recs.out), r.y, 'out holds y');
    }
    // saveMean, saveInvStd are their destinations when given (the same rule).
    for (const [dest, got, name] of [[recs.sm, r.saveMean, 'saveMeanOut'], [recs.si, r.saveInvStd, 'saveInvStdOut']] as const) {
      if (!dest) continue;
      if (!dest.resident) must(got === dest.view, `${name} is not returned`);
      sameValues(now(engine, dest), got, `${name} holds the result`);
    }
    // Inputs untouched: x (unless in place), weight, bias, running stats in eval.
    const inPlace = recOverlap(recs.out, recs.x, true);
    if (!inPlace) sameValues(now(engine, recs.x!), bf.x, 'x was written');
    if (recs.w) sameValues(now(engine, recs.w), bf.w!, 'weight was written');
    if (recs.b) sameValues(now(engine, recs.b), bf.b!, 'bias was written');
    const oracleOpts = {
      layout, training, weight: bf.w, bias: bf.b, runningMean: bf.rm, runningVar: bf.rv,
      momentum: opts.momentum as number | undefined, unbiasedRunningVar: opts.unbiasedRunningVar as boolean | undefined, eps: opts.eps as number | undefined,
    };
    const o = oracleForward(bf.x, cs, { ...oracleOpts, activation: opts.activation as 'none' | 'relu' | undefined });
    // ReLU is 1-Lipschitz: the tolerance of the value before it bounds the error after it.
    const pre = opts.activation === 'relu' ? oracleForward(bf.x, cs, oracleOpts).y : o.y;
    for (let i = 0; i < r.y.length; i++) close(r.y[i], o.y[i], tolY(pre[i], bf.w?.[ch(i)] ?? 1, bf.b?.[ch(i)] ?? 0), () => `y[${i}] ${what()}`);
    const eps = (opts.eps as number | undefined) ?? 1e-5;
    if (training || !bf.rm) {
      const fs = facts(bf.x, ch, o.mean);
      for (let c = 0; c < Cc; c++) {
        close(r.saveMean[c], o.mean[c], tolSaveMean(fs[c]), () => `saveMean[${c}] ${what()}`);
        close(r.saveInvStd[c], o.invStd[c], tolSaveInvStd(o.invStd[c], fs[c], eps), () => `saveInvStd[${c}] ${what()}`);
      }
      if (training && bf.rm) {
        const m = (opts.momentum as number | undefined) ?? 0.1;
        const rm = now(engine, recs.rm!), rv = now(engine, recs.rv!);
        for (let c = 0; c < Cc; c++) {
          const f = fs[c], div = opts.unbiasedRunningVar === false ? f.n : f.n - 1;
          close(rm[c], o.runningMean![c], ulp32(o.runningMean![c]) / 2 + m * gammaN(f) * (Math.abs(f.mean) + 6 * f.maxDev), () => `runningMean[${c}] ${what()}`);
          close(rv[c], o.runningVar![c], ulp32(o.runningVar![c]) / 2 + (m * gammaN(f) * (8 * f.m2 + 16 * f.n * f.maxDev ** 2)) / div, () => `runningVar[${c}] ${what()}`);
        }
      }
    } else {
      for (let c = 0; c < Cc; c++) {
        must(Object.is(r.saveMean[c], Math.fround(bf.rm[c])), () => `eval saveMean[${c}] ${r.saveMean[c]}`);
        must(Object.is(r.saveInvStd[c], Math.fround(1 / Math.sqrt(bf.rv![c] + eps))), () => `eval saveInvStd[${c}] ${r.saveInvStd[c]}`);
      }
      sameValues(now(engine, recs.rm!), bf.rm, 'eval wrote runningMean');
      sameValues(now(engine, recs.rv!), bf.rv!, 'eval wrote runningVar');
    }
    return 'valid';
  } finally {
    place.release();
  }

}

/** One corrupted tensor argument; a second corruption of it starts from a live Float32Array of the right length. */
function corrupt(place: Placement, how: string, current: unknown, length: number): unknown {
  const a = current instanceof Float32Array && current.byteLength > 0 ? current : new Float32Array(length).fill(0.5);
  switch (how) {
    case 'f64': return Float64Array.from(a);
    case 'array': return Array.from(a);
    case 'int32': return new Int32Array(length);
    case 'null': return null;
    case 'undefined': return undefined;
    case 'len+1': { const t = new Float32Array(length + 1); t.set(a.subarray(0, Math.min(a.length, length))); return t; }
    case 'len-1': return length > 1 ? a.slice(0, length - 1) : new Float32Array(0);
    case 'detached': return detached(length);
    case 'foreign': return place.foreignView(length);
    case 'freed': return place.freedView(length);
    default: throw new Error(how);
  }
}

function badShape(how: string, shape: number[]): unknown {
  switch (how) {
    case 'string': return shape.join(',');
    case 'null': return null;
    case 'rank0': return [];
    case 'rank1': return [product(shape)];
    case 'dim0': return shape.map((d, i) => (i === shape.length - 1 ? 0 : d));
    case 'dimNeg': return shape.map((d, i) => (i === 0 ? -d : d));
    case 'dimFrac': return shape.map((d, i) => (i === 1 ? d + 0.5 : d));
    case 'dimNaN': return shape.map((d, i) => (i === 1 ? NaN : d));
    case 'dimStr': return shape.map((d, i) => (i === 0 ? String(d) : d));
    case 'huge': return [2 ** 16, 2 ** 15, ...shape.slice(2)];
    default: throw new Error(how);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------
const backwardArb = fc.record({
  layout: fc.constantFrom<Layout>('NCHW', 'NHWC'),
  dims,
  training: fc.boolean(),
  weight: fc.boolean(),
  activation: fc.constantFrom(undefined, 'none', 'relu', 'relu'),
  out: fc.constantFrom('none', 'none', 'new'),
  grads: fc.constantFrom('none', 'dbias', 'both'),
  where: fc.record({ dy: whereArb, x: whereArb, weight: whereArb, saveMean: whereArb, saveInvStd: whereArb, out: whereArb, y: whereArb, dweightOut: whereArb, dbiasOut: whereArb }),
  flush: fc.constantFrom<Flush>('none', 'none', 'none', 'end', 'end-grow'),
  scale: fc.constantFrom(1, 1, 1, 1e-3, 1e3, 1e20),
  bad: fc.oneof(fc.constant([] as string[]), fc.array(fc.constantFrom<string>(...BACKWARD_BAD), { minLength: 1, maxLength: 2 })),
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
});

function backwardRun(engine: Engine, other: Engine, k: fc.infer<typeof backwardArb>): 'valid' | 'invalid' {
  const { layout } = k;
  const shape = shapeOf(k.dims, layout);
  const C = k.dims.C, numel = product(shape);
  const next = rng(k.seed ^ 0x77);
  const place = new Placement(engine, other, next);
  const bad = new Set(k.bad);
  try {
    const xv = values(shape, layout, k.seed, k.scale, false);
    const dyv = values(shape, layout, k.seed + 1, 1, false);
    // saveMean / saveInvStd: the oracle's batch statistics in float32 (what forward would save).
    const st = oracleForward(xv, shape, { layout, training: true, activation: 'relu' });
    const args: Record<string, unknown> = {};
    const opts: Record<string, unknown> = { training: k.training, layout };
    if (k.activation !== undefined) opts.activation = k.activation;
    // The forward output that masks dy with ReLU (given whatever the activation; read only with 'relu').
    if (k.activation === 'relu' || bad.has('valid:out=y')) place.put(Float32Array.from(st.y), k.where.y, (v) => { opts.y = v; });
    let callShape: unknown = shape;
    // Overlap corruptions take dy / x / out from one shared buffer instead of their own places.
    const dyx = bad.has('valid:dy=x'), ovDy = bad.has('out:overlaps-dy'), ovX = bad.has('out:overlaps-x');
    const sharedDy = dyx || ovDy, sharedX = dyx || (ovX && !ovDy);
    if (!sharedDy) place.put(dyv, k.where.dy, (v) => { args.dy = v; });
    if (!sharedX) place.put(xv, k.where.x, (v) => { args.x = v; });
    if (k.weight) place.put(perChannel(C, k.seed + 2, -2, 2), k.where.weight, (v) => { opts.weight = v; });
    place.put(Float32Array.from(st.mean), k.where.saveMean, (v) => { opts.saveMean = v; });
    place.put(Float32Array.from(st.invStd), k.where.saveInvStd, (v) => { opts.saveInvStd = v; });
    if (k.out === 'new' && !ovDy && !ovX) place.put(new Float32Array(numel).fill(5), k.where.out, (v) => { opts.out = v; });
    if (k.grads !== 'none') place.put(new Float32Array(C).fill(5), k.where.dbiasOut, (v) => { opts.dbiasOut = v; });
    if (k.grads === 'both') place.put(new Float32Array(C).fill(5), k.where.dweightOut, (v) => { opts.dweightOut = v; });
    let opaque: unknown = opts;
    if (sharedDy || sharedX) {
      // [dy or x (numel)][...]: with dy=x both are the same view; out starts inside it when asked.
      const off = 1 + Math.floor(next() * Math.max(1, numel - 1));
      const buf = new Float32Array(numel + off);
      buf.set(sharedDy ? dyv : xv);
      place.put(buf, (sharedDy ? k.where.dy : k.where.x) === 'tensor' ? 'tensor' : 'plain', (v) => {
        const view = v.subarray(0, numel);
        if (sharedDy) args.dy = view;
        if (sharedX) args.x = view;
        if (ovDy || ovX) opts.out = v.subarray(off, off + numel);
      });
    }
    place.commit(k.flush, 4 * 4 * numel + 1024 + 64 * 24 * C);
    for (const b of bad) {
      const [what, how] = b.split(':');
      switch (what) {
        case 'dy': case 'x': args[what] = corrupt(place, how, args[what], numel); break;
        case 'weight': case 'saveMean': case 'saveInvStd':
          opts[what] = how === 'missing' ? undefined : corrupt(place, how, opts[what] ?? perChannel(C, 9, 0.5, 1), C);
          break;
        case 'dweightOut': case 'dbiasOut': {
          // overlaps-saveMean: the saved mean itself; overlaps-dy: dy's last C values (dy of fewer values: a wrong length).
          const dyv = args.dy instanceof Float32Array && args.dy.byteLength > 0 ? args.dy : null;
          opts[what] = how === 'overlaps-saveMean' ? opts.saveMean
            : how === 'overlaps-dy' ? (dyv && dyv.length >= C ? dyv.subarray(dyv.length - C) : new Float32Array(C + 1))
              : corrupt(place, how, opts[what] ?? new Float32Array(C), C);
          break;
        }
        case 'shape': callShape = badShape(how, shape); break;
        case 'opts': opaque = how === 'null' ? null : 'training'; break;
        case 'layout': opts.layout = layout.toLowerCase(); break;
        case 'training': opts.training = how === 'string' ? 'false' : undefined; break;
        case 'out':
          if (how === 'len+1') opts.out = new Float32Array(numel + 1);
          else if (how === 'f64') opts.out = new Float64Array(numel);
          else if (how === 'overlaps-saveMean') {
            const buf = new Float32Array(numel + C);
            opts.out = buf.subarray(0, numel);
            opts.saveMean = buf.subarray(numel - 1, numel - 1 + C).length === C ? buf.subarray(numel - 1, numel - 1 + C) : opts.saveMean;
            (opts.saveMean as Float32Array).set(st.mean.subarray(0, (opts.saveMean as Float32Array).length));
          }
          break;
        case 'activation': opts.activation = 'gelu'; break;
        case 'y':
          opts.y = how === 'missing' ? undefined : how === 'len+1' ? new Float32Array(numel + 1) : how === 'f64' ? Float64Array.from(st.y) : detached(numel);
          break;
        case 'alias': opts.dweightOut = opts.dbiasOut = new Float32Array(C); break;
        case 'valid':
          if (how === 'out=dy') opts.out = args.dy;
          if (how === 'out=x') opts.out = args.x;
          if (how === 'out=y') opts.out = opts.y;
          break;
      }
    }

    const model = new Model(engine, place.tensors);
    const isObj = opaque !== null && typeof opaque === 'object';
    if (!isObj) model.bad('opts');
    const lay = isObj ? model.layout(opts.layout) : null;
    const geo = lay ? model.shape(callShape, lay) : null;
    const dy = model.f32(args.dy, 'dy', geo?.numel ?? null);
    const x = model.f32(args.x, 'x', geo?.numel ?? null);
    if (isObj) {
      if (typeof opts.training !== 'boolean') model.bad('opts.training');
      const Cc = geo?.C ?? null;
      const weight = model.f32(opts.weight, 'opts.weight', Cc, true);
      const sm = model.f32(opts.saveMean, 'opts.saveMean', Cc);
      const si = model.f32(opts.saveInvStd, 'opts.saveInvStd', Cc);
      const out = model.f32(opts.out, 'opts.out', geo?.numel ?? null, true);
      const act = opts.activation;
      if (![undefined, 'none', 'relu'].includes(act as string | undefined)) model.bad('opts.activation');
      const y = act === 'relu' ? model.f32(opts.y, 'opts.y', geo?.numel ?? null) : null; // the forward output masks dy
      if (act !== 'relu' && opts.y !== undefined && opts.y !== null) model.bad('opts.y'); // rejected, not ignored
      const dw = model.f32(opts.dweightOut, 'opts.dweightOut', Cc, true), db = model.f32(opts.dbiasOut, 'opts.dbiasOut', Cc, true);
      model.aliasing([['opts.out', out], ['opts.dweightOut', dw], ['opts.dbiasOut', db]], [['dy', dy], ['x', x], ['opts.weight', weight], ['opts.saveMean', sm], ['opts.saveInvStd', si], ['opts.y', y]],
        new Set(['opts.out=dy', 'opts.out=x', 'opts.out=opts.y']));
    }
    const valid = model.invalid.size === 0;
    count(bad, 'backward', !valid);

    const check = snapshotState(engine, [args.dy, args.x, callShape, ...Object.values(opts)], place.tensors);
    const recs = {
      dy: rec(engine, args.dy), x: rec(engine, args.x), out: rec(engine, opts.out), w: rec(engine, opts.weight), sm: rec(engine, opts.saveMean),
      si: rec(engine, opts.saveInvStd), dw: rec(engine, opts.dweightOut), db: rec(engine, opts.dbiasOut),
    };
    const before = valid ? {
      dy: Float64Array.from(args.dy as Float32Array), x: Float64Array.from(args.x as Float32Array),
      w: recs.w && Float32Array.from(recs.w.view), sm: Float32Array.from(recs.sm!.view), si: Float32Array.from(recs.si!.view),
      y: opts.activation === 'relu' ? Float32Array.from(opts.y as Float32Array) : null,
    } : null;
    let result: ReturnType<Engine['backward']> | undefined;
    let thrown: unknown;
    try {
      result = engine.backward(args.dy as never, args.x as never, callShape as never, opaque as never);
    } catch (error) {
      thrown = error;
    }
    if (!valid) {
      expectTypedError(thrown, model.invalid);
      check();
      return 'invalid';
    }
    if (thrown !== undefined) throw new Error(`a valid call threw: ${String(thrown)}`, { cause: thrown });
    const r = result!, bf = before!;
    const training = opts.training as boolean;
    const what = () => JSON.stringify({ ...k, bad: [...bad] });
    if (recs.out) {
      if (!recs.out.resident) must(r.dx === recs.out.view, 'dx is not out');
      sameValues(now(engine, recs.out), r.dx, 'out holds dx');
    }
    for (const [dest, got, name] of [[recs.dw, r.dweight, 'dweightOut'], [recs.db, r.dbias, 'dbiasOut']] as const) {
      if (!dest) continue;
      if (!dest.resident) must(got === dest.view, `${name} is not returned`);
      sameValues(now(engine, dest), got, `${name} holds the result`);
    }
    const into = (a: Rec | null) => recOverlap(recs.out, a);
    if (!into(recs.dy)) sameValues(now(engine, recs.dy!), bf.dy, 'dy was written');
    if (!into(recs.x)) sameValues(now(engine, recs.x!), bf.x, 'x was written');
    const relu = bf.y !== null;
    const o = oracleBackward(bf.dy, bf.x, shape, { layout, training, weight: bf.w, mean: bf.sm, invStd: bf.si, activation: relu ? 'relu' : 'none', y: bf.y ?? undefined });
    const g = relu ? bf.dy.map((v, i) => (bf.y![i] <= 0 ? 0 : v)) : bf.dy; // dy as the kernels see it
    const ch = channelFn(shape, layout);
    const n = numel / C;
    const sums = Array.from({ length: C }, () => ({ sumDy: 0, sumDyXmu: 0, sumAbsDy: 0, sumAbsDyXmu: 0 }));
    for (let i = 0; i < numel; i++) {
      const s = sums[ch(i)];
      const t = g[i] * (bf.x[i] - bf.sm[ch(i)]);
      s.sumDy += g[i]; s.sumAbsDy += Math.abs(g[i]);
      s.sumDyXmu += t; s.sumAbsDyXmu += Math.abs(t);
    }
    const facts: BackwardFacts[] = sums.map((s, c) => ({
      n, sumAbsDy: s.sumAbsDy, sumAbsDyXmu: s.sumAbsDyXmu, invStd: bf.si[c],
      k1: training ? s.sumDy / n : 0, k2: training ? (s.sumDyXmu * bf.si[c] * bf.si[c]) / n : 0, k3: (bf.w?.[c] ?? 1) * bf.si[c],
    }));
    for (let i = 0; i < numel; i++) close(r.dx[i], o.dx[i], tolDx(g[i], bf.x[i] - bf.sm[ch(i)], facts[ch(i)]), () => `dx[${i}] ${what()}`);
    for (let c = 0; c < C; c++) {
      close(r.dweight[c], o.dweight[c], tolDweight(o.dweight[c], facts[c]), () => `dweight[${c}] ${what()}`);
      close(r.dbias[c], o.dbias[c], tolDbias(o.dbias[c], facts[c]), () => `dbias[${c}] ${what()}`);
    }
    return 'valid';
  } finally {
    place.release();
  }

}

// ---------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------
const PLAN: ReadonlyArray<{ build: BuildName; forward: number; backward: number; salt: number }> = [
  { build: 'simd', forward: RUNS, backward: Math.ceil(RUNS / 2), salt: 1 },
  { build: 'scalar', forward: Math.ceil(RUNS / 10), backward: Math.ceil(RUNS / 20), salt: 2 },
  { build: 'debug', forward: Math.ceil(RUNS / 10), backward: Math.ceil(RUNS / 20), salt: 3 },
  { build: 'relaxed-simd', forward: Math.ceil(RUNS / 10), backward: Math.ceil(RUNS / 20), salt: 7 },
];

beforeAll(() => {
  console.log(`[fuzz] seed ${SEED}, ${RUNS} forward runs on the SIMD build (+ ${PLAN.slice(1).filter((p) => unsupported(p.build) === null).map((p) => `${p.forward} ${p.build}`).join(', ')}); reproduce: ${REPRO}`);
});

/** Synchronous engines of one build (instances of a module compiled once), for rotating mid-property. */
async function engineFactory(build: BuildName): Promise<() => Engine> {
  const bytes = await readFile(new URL(`../build/batchnorm.${build}.wasm`, import.meta.url));
  const module = new WebAssembly.Module(bytes);
  if (build === 'debug') {
    // The loader's abort handler turns a failed kernel assertion into an Error with its message.
    return () => new Engine(loader.instantiateSync<Record<string, unknown>>(module, {}).exports as unknown as KernelExports, 'simd');
  }
  const imports = { env: { abort(): never { throw new Error('kernel abort'); } } };
  return () => new Engine(new WebAssembly.Instance(module, imports).exports as unknown as KernelExports, build);
}

/** After a run everything was freed: nothing in use, and the free blocks merged back into the top. */
function expectEmptyArena(engine: Engine): void {
  const { base, top, free, live } = engine.arena.layout();
  if (live.length || free.length || top !== base) throw new Error(`arena not empty after a run: top ${top - base} bytes above the base, ${live.length} live, ${free.length} free blocks ${JSON.stringify(free.slice(0, 4))}`);
}

function assertWithSeed(property: fc.IProperty<[unknown]>, numRuns: number, salt: number): void {
  try {
    fc.assert(property, { numRuns, seed: SEED + salt });
  } catch (error) {
    // fast-check's message carries the seed and path; add how to rerun the whole file.
    throw new Error(`${(error as Error).message}\n\nReproduce: ${REPRO}`, { cause: error });
  }
}

describe.each(PLAN)('fuzz: random (often invalid) arguments, $build build', ({ build, forward, backward, salt }) => {
  if (skipBuild(build)) return;
  // Runs placed at the end of memory with no room left make the call grow memory, so memory
  // grows by a page or so per such run; growing a large memory is slow, so the runs move to a
  // fresh engine whenever memory passes 4 MiB (the peak is reported).
  let fresh: () => Engine;
  let other: Engine;
  let current: Engine;
  let peak = 0, engines = 1;
  beforeAll(async () => {
    fresh = await engineFactory(build);
    current = fresh();
    other = await createEngine({ simd: true });
  });
  function engine(): Engine {
    if (current.info().memoryBytes > 4 * 2 ** 20) {
      peak = Math.max(peak, current.info().memoryBytes);
      current = fresh();
      engines++;
    }
    return current;
  }

  it(`forward: ${forward} runs, a typed error with untouched state, or the oracle's result`, () => {
    const t0 = performance.now();
    const outcome = { valid: 0, invalid: 0 };
    assertWithSeed(fc.property(forwardArb, (k) => {
      const e = engine();
      outcome[forwardRun(e, other, k)]++;
      expectEmptyArena(e);
    }) as fc.IProperty<[unknown]>, forward, salt);
    console.log(`[fuzz] ${build} forward: ${forward} runs (${outcome.valid} valid, ${outcome.invalid} invalid) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(outcome.valid).toBeGreaterThan(forward / 5);
    expect(outcome.invalid).toBeGreaterThan(forward / 5);
  });

  it(`backward: ${backward} runs, a typed error with untouched state, or the oracle's result`, () => {
    const t0 = performance.now();
    const outcome = { valid: 0, invalid: 0 };
    assertWithSeed(fc.property(backwardArb, (k) => {
      const e = engine();
      outcome[backwardRun(e, other, k)]++;
      expectEmptyArena(e);
    }) as fc.IProperty<[unknown]>, backward, salt + 3);
    peak = Math.max(peak, current.info().memoryBytes);
    console.log(`[fuzz] ${build} backward: ${backward} runs (${outcome.valid} valid, ${outcome.invalid} invalid) in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${engines} engines, peak memory ${peak} bytes`);
    expect(outcome.valid).toBeGreaterThan(backward / 5);
    expect(outcome.invalid).toBeGreaterThan(backward / 5);
  });
});

afterAll(() => {
  // Every class of bad input was tried; alone (the only corruption of its run), each one that
  // always makes a call invalid was always rejected. Conditional classes are valid in some runs:
  // aliasing of running statistics (invalid only in training, where they are written), one value
  // per channel (invalid only with batch statistics), partial overlaps (impossible with one
  // value), and the valid twists.
  const rows = [...tally].sort(([a], [b]) => a.localeCompare(b));
  console.log(`[fuzz] bad-input classes: tried (rejected), alone: tried (rejected)\n${rows.map(([k, v]) => `  ${k.padEnd(42)} ${String(v.tried).padStart(6)} (${v.rejected})   alone ${String(v.alone).padStart(5)} (${v.aloneRejected})`).join('\n')}`);
  if (RUNS >= 5000) {
    for (const label of [...FORWARD_BAD.map((b) => `forward ${b}`), ...BACKWARD_BAD.map((b) => `backward ${b}`)]) {
      const t = tally.get(label);
      if (!t || t.tried < 10 || t.alone < 3) throw new Error(`bad-input class ${label} was tried only ${t?.tried ?? 0} times (${t?.alone ?? 0} alone)`);
      const conditional = /( valid:| alias:| y:|nper:1|overlaps-(x|dy)$)/.test(label);
      if (!conditional && t.aloneRejected !== t.alone) throw new Error(`bad-input class ${label} alone was rejected only ${t.aloneRejected} of ${t.alone} times`);
    }
  }
});
