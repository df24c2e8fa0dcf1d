// Hostile and odd callers (the hardening issue, items 3–7 and 9): all-or-nothing must hold
// whatever the caller's objects do while they are read.
//
//   3  time-of-check/time-of-use: getters on every option that resize, detach or swap x's
//      buffer; Proxies around x, weight, out and options; Float32Array subclasses whose length,
//      byteOffset, buffer or slice lie; shapes read exactly once per element.
//   4  prototype pollution: every option key set on Object.prototype, shape holes filled from
//      Array.prototype.
//   5  unknown option names on every entry point, with "did you mean".
//   6  non-number elements (strings, holes, BigInts, objects) in folding and merging, named by
//      the caller's own argument path.
//   7  engine.tensor(values) / Tensor.set(values) whose reading throws: nothing leaked or written.
//   9  num_batches_tracked as an int64 (bigint, BigInt64Array(1), integer typed arrays, [n]).
//
// After every rejected call a live neighbour tensor from engine.tensor() is byte-identical, the
// running statistics are untouched and no scratch is leaked.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine, type Tensor } from '../src/engine.js';
import { BatchNormError, InvalidArgumentError, MemoryError, ShapeError } from '../src/errors.js';
import { BatchNorm } from '../src/layer.js';
import { functionalOptions } from '../src/conventions.js';
import { foldIntoConv, foldIntoLinear, foldedAffine } from '../src/fold.js';
import { mergeBackwardSums, mergeMoments, reduceMoments } from '../src/ops/sync.js';
import { BACKWARD_KEYS, FORWARD_KEYS } from '../src/ops/batchnorm.js';
import { layerNorm } from '../src/layers/layernorm.js';
import { groupNorm } from '../src/layers/groupnorm.js';
import { BUILDS, makeEngine, skipBuild, unsupported, type BuildName } from './helpers/engines.js';

type ErrorClass = typeof InvalidArgumentError | typeof ShapeError | typeof MemoryError;

const SHAPE = [2, 3, 2, 2] as const;
const C = 3;
const SIZE = 24;

interface ResizableBuffer extends ArrayBuffer { resize(byteLength: number): void }
const ResizableArrayBuffer = ArrayBuffer as unknown as new (byteLength: number, options: { maxByteLength: number }) => ResizableBuffer;

function values(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(seed * 7.3 + i * 1.7) * 3 + (i % C) * 0.5;
  return a;
}

function bytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

/** The caller's arrays for one forward call, fresh each time, and the neighbour's guard. */
class World {
  readonly x = values(SIZE, 1);
  readonly dy = values(SIZE, 2);
  readonly weight = Float32Array.of(1.5, -0.5, 2);
  readonly bias = Float32Array.of(0.25, 0, -1);
  readonly runningMean = Float32Array.of(0.1, 0.2, 0.3);
  readonly runningVar = Float32Array.of(1, 2, 3);
  private readonly before: { neighbour: Uint8Array; rm: Uint8Array; rv: Uint8Array; inUse: number };
  constructor(readonly engine: Engine, readonly neighbour: Tensor) {
    this.before = { neighbour: bytes(neighbour.data), rm: bytes(this.runningMean), rv: bytes(this.runningVar), inUse: engine.info().bytesInUse };
  }
  opts(): Record<string, unknown> {
    return {
      layout: 'NCHW', training: true, weight: this.weight, bias: this.bias, runningMean: this.runningMean,
      runningVar: this.runningVar, momentum: 0.1, unbiasedRunningVar: true, eps: 1e-5, out: undefined, activation: 'none',
    };
  }
  /** Nothing of the caller's or the engine's changed (after a rejected call). */
  untouched(): void {
    expect(bytes(this.neighbour.data), 'the neighbour tensor changed').toEqual(this.before.neighbour);
    expect(bytes(this.runningMean), 'runningMean changed').toEqual(this.before.rm);
    expect(bytes(this.runningVar), 'runningVar changed').toEqual(this.before.rv);
    expect(this.engine.info().bytesInUse, 'scratch leaked').toBe(this.before.inUse);
  }
  neighbourIntact(): void {
    expect(bytes(this.neighbour.data), 'the neighbour tensor changed').toEqual(this.before.neighbour);
  }
}

function rejects(call: () => unknown, cls: ErrorClass, argument?: string, message?: RegExp): BatchNormError {
  let thrown: unknown = null;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `expected ${cls.name}${argument ? ` on ${argument}` : ''}, but the call returned`).not.toBeNull();
  if (!(thrown instanceof BatchNormError)) throw new Error(`expected ${cls.name}, got ${String(thrown)}`, { cause: thrown });
  expect(thrown.name).toBe(cls.name);
  if (argument !== undefined) expect(thrown.argument).toBe(argument);
  if (message !== undefined) expect(thrown.message).toMatch(message);
  return thrown;
}

/** Runs `call` with `key` set on `proto` (put back as it was, or removed, before anything is asserted). */
function polluted<T>(proto: object, key: PropertyKey, value: unknown, call: () => T): { result?: T; error?: unknown } {
  const original = Object.getOwnPropertyDescriptor(proto, key);
  Object.defineProperty(proto, key, { value, configurable: true, writable: true, enumerable: false });
  try {
    return { result: call() };
  } catch (error) {
    return { error };
  } finally {
    if (original) Object.defineProperty(proto, key, original);
    else delete (proto as Record<PropertyKey, unknown>)[key];
  }
}


/** Options whose `key` is a getter that runs `effect` and then yields the plain value. */
function withGetter(opts: Record<string, unknown>, key: string, effect: () => void): Record<string, unknown> {
  const value = opts[key];
  const o = { ...opts };
  delete o[key];
  Object.defineProperty(o, key, { enumerable: true, configurable: true, get() { effect(); return value; } });
  return o;
}

for (const build of BUILDS) {
  describe(`hostile callers, ${build} build`, () => {
    if (skipBuild(build)) return;
    let engine: Engine;
    let neighbour: Tensor;
    const fresh = () => new World(engine, neighbour);
    beforeAll(async () => {
      engine = await makeEngine(build as BuildName);
      neighbour = engine.tensor(values(64, 9));
    });

    /** The clean result of w's forward (training, running stats updated on copies). */
    const reference = (w: World) => {
      const rm = w.runningMean.slice(), rv = w.runningVar.slice();
      const r = engine.forward(w.x.slice(), [...SHAPE], { ...w.opts(), runningMean: rm, runningVar: rv } as never);
      return { ...r, runningMean: rm, runningVar: rv };
    };

    describe('3. time of check / time of use', () => {
      for (const key of FORWARD_KEYS) {
        it(`a getter on opts.${key} that shrinks x's resizable buffer: ShapeError on x, nothing touched`, () => {
          const w = fresh();
          const buffer = new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 });
          const x = new Float32Array(buffer); // length-tracking
          x.set(w.x);
          const out = new Float32Array(SIZE);
          const opts = withGetter({ ...w.opts(), out }, key, () => buffer.resize(SIZE * 2));
          rejects(() => engine.forward(x, [...SHAPE], opts as never), ShapeError, 'x', /length 12/);
          w.untouched();
          expect(out.every((v) => v === 0), 'out was written').toBe(true);
        });

        it(`a getter on opts.${key} that grows x's resizable buffer (fixed view out of bounds after a shrink) or detaches it`, () => {
          const w = fresh();
          const tracking = new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 });
          const xTracking = new Float32Array(tracking);
          xTracking.set(w.x);
          rejects(() => engine.forward(xTracking, [...SHAPE], withGetter(w.opts(), key, () => tracking.resize(SIZE * 8)) as never), ShapeError, 'x');
          w.untouched();
          const fixed = new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 });
          const xFixed = new Float32Array(fixed, 0, SIZE);
          xFixed.set(w.x);
          rejects(() => engine.forward(xFixed, [...SHAPE], withGetter(w.opts(), key, () => fixed.resize(8)) as never), ShapeError, 'x');
          w.untouched();
          const plain = w.x.slice();
          rejects(() => engine.forward(plain, [...SHAPE], withGetter(w.opts(), key, () => structuredClone(plain.buffer, { transfer: [plain.buffer] })) as never),
            MemoryError, 'x', /detached/);
          w.untouched();
        });
      }

      it('a getter that grows wasm memory under a resident x: MemoryError (detached), not a TypeError', () => {
        const w = fresh();
        const t = engine.tensor(w.x);
        const x = t.data;
        let big: Tensor | null = null;
        const opts = withGetter(w.opts(), 'eps', () => { big = engine.tensor(engine.info().memoryBytes / 4 + 1024); });
        try {
          rejects(() => engine.forward(x, [...SHAPE], opts as never), MemoryError, 'x', /detached/);
        } finally {
          (big as Tensor | null)?.free();
        }
        t.free();
        w.untouched();
      });

      for (const key of BACKWARD_KEYS) {
        it(`backward: a getter on opts.${key} that shrinks dy's resizable buffer: ShapeError on dy`, () => {
          const w = fresh();
          const f = reference(w);
          const buffer = new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 });
          const dy = new Float32Array(buffer);
          dy.set(w.dy);
          const base = { layout: 'NCHW', training: true, weight: w.weight, saveMean: f.saveMean, saveInvStd: f.saveInvStd, out: undefined, activation: 'relu', y: f.y };
          rejects(() => engine.backward(dy, w.x, [...SHAPE], withGetter(base, key, () => buffer.resize(SIZE * 2)) as never), ShapeError, 'dy');
          w.untouched();
        });
      }

      it('sync entry points: getters shrinking x or dy are seen before anything is checked', () => {
        const w = fresh();
        const f = reference(w);
        const moments = engine.moments(w.x, [...SHAPE]);
        const shrinking = () => {
          const buffer = new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 });
          const a = new Float32Array(buffer);
          a.set(w.x);
          return { a, shrink: () => buffer.resize(SIZE * 2) };
        };
        let s = shrinking();
        rejects(() => engine.moments(s.a, [...SHAPE], withGetter({ layout: 'NCHW' }, 'layout', s.shrink) as never), ShapeError, 'x');
        s = shrinking();
        rejects(() => engine.forwardWithMoments(s.a, [...SHAPE], withGetter({ moments, runningMean: w.runningMean, runningVar: w.runningVar }, 'moments', s.shrink) as never), ShapeError, 'x');
        s = shrinking();
        rejects(() => engine.backwardReduce(s.a, w.x, [...SHAPE], withGetter({ saveMean: f.saveMean, saveInvStd: f.saveInvStd }, 'saveInvStd', s.shrink) as never), ShapeError, 'dy');
        s = shrinking();
        const sums = engine.backwardReduce(w.dy, w.x, [...SHAPE], { saveMean: f.saveMean, saveInvStd: f.saveInvStd });
        rejects(() => engine.backwardWithSums(w.dy, s.a, [...SHAPE], withGetter({ ...sums, count: 8, saveMean: f.saveMean, saveInvStd: f.saveInvStd }, 'count', s.shrink) as never), ShapeError, 'x');
        w.untouched();
      });

      it('a getter that swaps another option is read once: the value read is the value used', () => {
        const w = fresh();
        const ref = reference(w);
        const opts = w.opts();
        const o = withGetter(opts, 'eps', () => { (o as Record<string, unknown>).weight = new Float32Array(C + 5); });
        // weight is read before or after eps, exactly once: either it is the swapped (bad) one and
        // the call fails cleanly, or the original one and the result is the clean result.
        let error: unknown = null, y: Float32Array | null = null;
        try { y = engine.forward(w.x, [...SHAPE], o as never).y; } catch (e) { error = e; }
        if (error !== null) {
          expect(error).toBeInstanceOf(ShapeError);
          w.untouched();
        } else {
          expect(bytes(y!)).toEqual(bytes(ref.y));
        }
      });

      it('a Proxy around x, weight, bias, running statistics, out, dy or saveMean is rejected, naming it', () => {
        const w = fresh();
        const f = reference(w);
        const proxy = <T extends object>(target: T) => new Proxy(target, {});
        for (const key of ['weight', 'bias', 'runningMean', 'runningVar', 'out']) {
          const opts = w.opts();
          opts[key] = proxy(key === 'out' ? new Float32Array(SIZE) : (opts[key] as Float32Array).slice());
          rejects(() => engine.forward(w.x, [...SHAPE], opts as never), InvalidArgumentError, `opts.${key}`, /Prox/);
          w.untouched();
        }
        rejects(() => engine.forward(proxy(w.x), [...SHAPE], w.opts() as never), InvalidArgumentError, 'x', /Proxies .* pass the Float32Array itself/);
        const bopts = { training: true, weight: w.weight, saveMean: f.saveMean, saveInvStd: f.saveInvStd };
        rejects(() => engine.backward(proxy(w.dy), w.x, [...SHAPE], bopts), InvalidArgumentError, 'dy', /Prox/);
        rejects(() => engine.backward(w.dy, w.x, [...SHAPE], { ...bopts, saveMean: proxy(f.saveMean) }), InvalidArgumentError, 'opts.saveMean', /Prox/);
        rejects(() => engine.moments(proxy(w.x), [...SHAPE]), InvalidArgumentError, 'x', /Prox/);
        const layer = new BatchNorm(engine, C);
        rejects(() => layer.forward(proxy(w.x), [...SHAPE]), InvalidArgumentError, 'x', /Prox/);
        expect(layer.numBatchesTracked).toBe(0);
        w.untouched();
      });

      it('a Proxy around the options reads each option at most once and gives the clean result', () => {
        const w = fresh();
        const ref = reference(w);
        const reads = new Map<PropertyKey, number>();
        const rm = w.runningMean.slice(), rv = w.runningVar.slice();
        const opts = new Proxy({ ...w.opts(), runningMean: rm, runningVar: rv }, {
          get(target, key, receiver) { reads.set(key, (reads.get(key) ?? 0) + 1); return Reflect.get(target, key, receiver); },
        });
        const r = engine.forward(w.x, [...SHAPE], opts as never);
        for (const [key, n] of reads) expect(n, `opts.${String(key)} read ${n} times`).toBe(1);
        expect(bytes(r.y)).toEqual(bytes(ref.y));
        expect(bytes(rm)).toEqual(bytes(ref.runningMean));
        // ... and one whose get trap shrinks x after x was (once) looked at is caught.
        const buffer = new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 });
        const x = new Float32Array(buffer);
        x.set(w.x);
        const shrinking = new Proxy(w.opts(), {
          get(target, key, receiver) { if (key === 'activation') buffer.resize(SIZE * 2); return Reflect.get(target, key, receiver); },
        });
        rejects(() => engine.forward(x, [...SHAPE], shrinking as never), ShapeError, 'x');
        w.untouched();
      });

      it('a subclass whose length lies (as x, as out): ShapeError from the real length, nothing written', () => {
        const w = fresh();
        class LongLiar extends Float32Array { override get length() { return SIZE; } }
        const x = new LongLiar(SIZE / 2);
        x.set(w.x.subarray(0, SIZE / 2));
        rejects(() => engine.forward(x, [...SHAPE], w.opts() as never), ShapeError, 'x', /length 12/);
        w.untouched();
        const out = new LongLiar(SIZE / 2);
        rejects(() => engine.forward(w.x, [...SHAPE], { ...w.opts(), out } as never), ShapeError, 'opts.out');
        w.untouched();
        class ShortLiar extends Float32Array { override get length() { return C; } }
        rejects(() => engine.forward(w.x, [...SHAPE], { ...w.opts(), weight: new ShortLiar(C + 1) } as never), ShapeError, 'opts.weight');
        w.untouched();
      });

      it('a subclass over tensor A whose byteOffset points at the neighbour: A is written, the neighbour is not', () => {
        const w = fresh();
        const ref = reference(w);
        const a = engine.tensor(SIZE);
        const target = neighbour;
        class OffsetLiar extends Float32Array { override get byteOffset() { return target.byteOffset; } }
        const out = new OffsetLiar(a.data.buffer, a.byteOffset, SIZE);
        const rm = w.runningMean.slice(), rv = w.runningVar.slice();
        const r = engine.forward(w.x, [...SHAPE], { ...w.opts(), runningMean: rm, runningVar: rv, out } as never);
        w.neighbourIntact();
        expect(bytes(a.data)).toEqual(bytes(ref.y));
        expect(r.y).toBe(out);
        // As x: the values read are A's own.
        a.data.set(w.x);
        const x = new OffsetLiar(a.data.buffer, a.byteOffset, SIZE);
        const r2 = engine.forward(x, [...SHAPE], { ...w.opts(), runningMean: w.runningMean.slice(), runningVar: w.runningVar.slice() } as never);
        expect(bytes(r2.y)).toEqual(bytes(ref.y));
        a.free();
        w.untouched();
      });

      it('a subclass whose buffer getter claims wasm memory (and byteOffset the neighbour): treated by its real bytes', () => {
        const w = fresh();
        const ref = reference(w);
        const memory = neighbour.data.buffer, at = neighbour.byteOffset;
        class BufferLiar extends Float32Array {
          override get buffer() { return memory as ArrayBuffer; }
          override get byteOffset() { return at; }
        }
        const real = new ArrayBuffer(SIZE * 4);
        const out = new BufferLiar(real);
        const r = engine.forward(w.x, [...SHAPE], { ...w.opts(), runningMean: w.runningMean.slice(), runningVar: w.runningVar.slice(), out } as never);
        w.neighbourIntact();
        expect(new Uint8Array(real)).toEqual(bytes(ref.y));
        expect(r.y).toBe(out);
        w.untouched();
      });

      it('the layer never calls the caller\'s slice or species: its copy of x is made from the real bytes', () => {
        const w = fresh();
        class NoSlice extends Float32Array {
          override slice(): Float32Array { throw new Error('slice called'); }
          static override get [Symbol.species]() { throw new Error('species read'); }
        }
        const x = new NoSlice(w.x);
        const layer = new BatchNorm(engine, C);
        const y = layer.forward(x, [...SHAPE]);
        x.fill(1e6); // the layer kept its own copy
        const dx = layer.backward(w.dy);
        const plain = new BatchNorm(engine, C);
        expect(bytes(y)).toEqual(bytes(plain.forward(w.x.slice(), [...SHAPE])));
        expect(bytes(dx)).toEqual(bytes(plain.backward(w.dy)));
        w.untouched();
      });

      it('shapes are read exactly once per element (engine and layer), and the layer passes its checked copy on', () => {
        const w = fresh();
        const counting = () => {
          const reads: number[] = [0, 0, 0, 0];
          const shape = new Proxy([...SHAPE], {
            get(target, key, receiver) {
              if (typeof key === 'string' && /^\d+$/.test(key)) reads[Number(key)]++;
              return Reflect.get(target, key, receiver);
            },
          });
          return { shape, reads };
        };
        let s = counting();
        engine.forward(w.x, s.shape as never, { training: true });
        expect(s.reads).toEqual([1, 1, 1, 1]);
        s = counting();
        const layer = new BatchNorm(engine, C);
        layer.forward(w.x, s.shape as never);
        expect(s.reads).toEqual([1, 1, 1, 1]);
        // A getter whose channel count changes after the first read cannot pass the layer's check.
        let n = 0;
        const shifty: number[] = [2, 0, 2, 2];
        Object.defineProperty(shifty, 1, { enumerable: true, get: () => (n++ === 0 ? C : C + 1) });
        const fresh2 = new BatchNorm(engine, C);
        const y = fresh2.forward(w.x, shifty);
        expect(bytes(y)).toEqual(bytes(new BatchNorm(engine, C).forward(w.x, [...SHAPE])));
        // A shape element getter that shrinks x runs before x is looked at.
        const buffer = new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 });
        const x = new Float32Array(buffer);
        x.set(w.x);
        const shrinking: number[] = [2, 3, 2, 2];
        Object.defineProperty(shrinking, 3, { enumerable: true, get: () => { buffer.resize(SIZE * 2); return 2; } });
        rejects(() => engine.forward(x, shrinking, w.opts() as never), ShapeError, 'x');
        w.untouched();
      });

      it('SharedArrayBuffer views and length-tracking views of resizable buffers are ordinary inputs', () => {
        const w = fresh();
        const ref = reference(w);
        const shared = new Float32Array(new SharedArrayBuffer(SIZE * 4));
        shared.set(w.x);
        const r1 = engine.forward(shared, [...SHAPE], { ...w.opts(), runningMean: w.runningMean.slice(), runningVar: w.runningVar.slice() } as never);
        expect(bytes(r1.y)).toEqual(bytes(ref.y));
        const buffer = new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 });
        const tracking = new Float32Array(buffer);
        tracking.set(w.x);
        const out = new Float32Array(new ResizableArrayBuffer(SIZE * 4, { maxByteLength: SIZE * 8 }));
        const r2 = engine.forward(tracking, [...SHAPE], { ...w.opts(), runningMean: w.runningMean.slice(), runningVar: w.runningVar.slice(), out } as never);
        expect(r2.y).toBe(out);
        expect(bytes(out)).toEqual(bytes(ref.y));
        w.untouched();
      });
    });
  });
}

describe('4a. typed-array and memory prototypes that lie', () => {
  // Accessors and methods a caller puts on Float32Array.prototype, on %TypedArray%.prototype
  // itself or on WebAssembly.Memory.prototype are never what the engine reads or calls: it reads
  // its views through the intrinsics captured at load (src/typed.ts, src/memory.ts). A workload
  // of every kind of call (zero-copy in place, copy path, running statistics updated, backward,
  // destinations, LayerNorm, GroupNorm, tensors) gives the clean run's bits under each lie, and a
  // victim tensor next to the ones in use is never written.
  const TA = Object.getPrototypeOf(Int8Array.prototype) as object;
  const intrinsic = (key: PropertyKey) => Object.getOwnPropertyDescriptor(TA, key)!;
  const lies: Array<[string, object, PropertyKey, PropertyDescriptor]> = [];
  for (const [where, proto] of [['Float32Array.prototype', Float32Array.prototype], ['%TypedArray%.prototype', TA]] as const) {
    const getters = Object.fromEntries(['byteOffset', 'length', 'byteLength'].map((k) => [k, intrinsic(k).get!]));
    const g = (key: string) => getters[key];
    lies.push(
      [where, proto, 'byteOffset', { get(this: unknown) { return (g('byteOffset').call(this) as number) + 64; } }],
      [where, proto, 'length', { get(this: unknown) { return (g('length').call(this) as number) + 16; } }],
      [where, proto, 'byteLength', { get(this: unknown) { return (g('byteLength').call(this) as number) + 64; } }],
      [where, proto, 'buffer', { get() { return new ArrayBuffer(64); } }],
    );
    for (const key of ['set', 'subarray', 'slice', 'fill']) lies.push([where, proto, key, { value() { throw new Error(`${where}.${key} was called`); }, writable: true }]);
  }
  lies.push(['WebAssembly.Memory.prototype', WebAssembly.Memory.prototype, 'buffer', { get() { return new ArrayBuffer(1 << 16); } }]);

  /** Every kind of call, set up now, run under the lie; returns copies of the results (compared after it). */
  function workload(engine: Engine): () => Float32Array[] {
    const t = engine.tensor(values(SIZE, 1)), stats = engine.tensor(2 * C);
    const sm = stats.data.subarray(0, C);
    return () => run(engine, t, stats, sm);
  }
  function run(engine: Engine, t: Tensor, stats: Tensor, sm: Float32Array): Float32Array[] {
    const rm = Float32Array.of(0.1, 0.2, 0.3), rv = Float32Array.of(1, 2, 3), w = Float32Array.of(1.5, -0.5, 2);
    const results: Float32Array[] = [];
    const keep = (...arrays: Float32Array[]) => { for (const a of arrays) results.push(new Float32Array(a)); };
    const f = engine.forward(t.data, [...SHAPE], { training: true, weight: w, runningMean: rm, runningVar: rv, out: t.data, saveMeanOut: sm });
    keep(f.y, f.saveMean, f.saveInvStd, rm, rv);
    const copy = engine.forward(values(SIZE, 2), [2, 2, 2, 3], { layout: 'NHWC', training: true, runningMean: rm, runningVar: rv });
    const b = engine.backward(values(SIZE, 3), values(SIZE, 4), [...SHAPE], { training: true, weight: w, saveMean: f.saveMean, saveInvStd: f.saveInvStd });
    const ln = layerNorm(engine, values(SIZE, 5), [6, 4], { normalizedShape: [4], residual: values(SIZE, 6) });
    const gn = groupNorm(engine, values(SIZE, 7), [2, 6, 2], { groups: 3, activation: 'silu' });
    keep(copy.y, copy.saveMean, rm, rv, b.dx, b.dweight, ln.y, ln.sum!, ln.saveInvStd, gn.y, gn.saveMean);
    const big = engine.forward(values(1 << 18, 8), [4, 4, 128, 128], { training: true }); // grows memory
    const made = engine.tensor(values(8, 10));
    keep(big.saveInvStd, t.toArray(), stats.toArray(), made.toArray());
    made.free();
    t.free();
    stats.free();
    return results;
  }

  it('a memory.grow that lies (returns without growing) is a refusal: MemoryError, nothing touched, then the call works', async () => {
    const engine = await makeEngine('simd');
    const victim = engine.tensor(values(64, 9));
    const before = bytes(victim.data), inUse = engine.info().bytesInUse;
    const x = values(1 << 18, 8), original = Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, 'grow')!;
    Object.defineProperty(WebAssembly.Memory.prototype, 'grow', { ...original, value(this: WebAssembly.Memory) { return original.value.call(this, 0); } });
    let error: unknown = null;
    try {
      engine.forward(x, [4, 4, 128, 128], { training: true });
    } catch (e) {
      error = e;
    } finally {
      Object.defineProperty(WebAssembly.Memory.prototype, 'grow', original);
    }
    expect(error).toBeInstanceOf(MemoryError);
    expect((error as MemoryError).message).toMatch(/refused at \d+ bytes \(the memory has \d+ bytes after it\)/);
    expect(bytes(victim.data)).toEqual(before);
    expect(engine.info().bytesInUse).toBe(inUse);
    expect(engine.forward(x, [4, 4, 128, 128], { training: true }).y.length).toBe(1 << 18);
    engine.dispose();
  });

  it('each lie, one at a time: the clean bits, the victim untouched', async () => {
    const clean = workload(await makeEngine('simd'))();
    for (const [where, proto, key, descriptor] of lies) {
      const engine = await makeEngine('simd');
      const victim = engine.tensor(values(64, 9));
      const before = bytes(victim.data);
      const go = workload(engine);
      const original = Object.getOwnPropertyDescriptor(proto, key);
      Object.defineProperty(proto, key, { ...descriptor, configurable: true });
      let results: Float32Array[] | null = null, error: unknown = null;
      try {
        results = go();
      } catch (e) {
        error = e;
      } finally {
        if (original) Object.defineProperty(proto, key, original);
        else delete (proto as Record<PropertyKey, unknown>)[key];
      }
      expect(error, `${where}.${String(key)}: ${String(error)}`).toBeNull();
      results!.forEach((r, i) => expect(bytes(r), `${where}.${String(key)}: result ${i}`).toEqual(bytes(clean[i])));
      expect(bytes(victim.data), `${where}.${String(key)}: the victim was written`).toEqual(before);
      engine.dispose();
    }
  });
});

describe('4. prototype pollution', () => {
  let engine: Engine;
  let neighbour: Tensor;
  beforeAll(async () => {
    engine = await makeEngine('simd');
    neighbour = engine.tensor(values(64, 9));
  });
  afterEach(() => {
    for (const key of [...FORWARD_KEYS, ...BACKWARD_KEYS, 'affine', 'strict', 'prefix', 'format', 'simd', 'wasm', 'moments', 'count', 'convention']) {
      expect(Object.prototype.hasOwnProperty.call(Object.prototype, key), `Object.prototype.${key} left behind`).toBe(false);
    }
  });

  it('Object.prototype.training does not make forward(x, shape, {}) valid', () => {
    const w = new World(engine, neighbour);
    const { error } = polluted(Object.prototype, 'training', true, () => engine.forward(w.x, [...SHAPE], {} as never));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as BatchNormError).argument).toBe('opts.training');
    w.untouched();
  });

  const hostileValues: Record<string, unknown> = {
    layout: 'NHWC', weight: new Float32Array(C + 1), bias: new Float32Array(C + 1), runningMean: new Float32Array(C + 1),
    runningVar: new Float32Array(C + 1), momentum: 5, unbiasedRunningVar: 'yes', eps: -1, activation: 'relu', out: new Float32Array(SIZE),
    saveMeanOut: new Float32Array(C), saveInvStdOut: new Float32Array(C), dweightOut: new Float32Array(C), dbiasOut: new Float32Array(C),
  };
  for (const [key, value] of Object.entries(hostileValues)) {
    it(`Object.prototype.${key} is never read (forward, backward)`, () => {
      const w = new World(engine, neighbour);
      const clean = engine.forward(w.x, [...SHAPE], { training: true });
      const cleanDx = engine.backward(w.dy, w.x, [...SHAPE], { training: true, saveMean: clean.saveMean, saveInvStd: clean.saveInvStd }).dx;
      const fwd = polluted(Object.prototype, key, value, () => engine.forward(w.x, [...SHAPE], { training: true }));
      expect(fwd.error).toBeUndefined();
      expect(bytes(fwd.result!.y)).toEqual(bytes(clean.y));
      expect(fwd.result!.y).not.toBe(value);
      if (value instanceof Float32Array) expect(value.every((v) => v === 0), `the polluting ${key} was written`).toBe(true);
      const bwd = polluted(Object.prototype, key, value,
        () => engine.backward(w.dy, w.x, [...SHAPE], { training: true, saveMean: clean.saveMean, saveInvStd: clean.saveInvStd }));
      expect(bwd.error).toBeUndefined();
      expect(bytes(bwd.result!.dx)).toEqual(bytes(cleanDx));
      w.untouched();
    });
  }

  it('Object.prototype pollution of the layer, state-dict, folding, functional and engine options is ignored', async () => {
    const plain = new BatchNorm(engine, C);
    const a = polluted(Object.prototype, 'affine', false, () => new BatchNorm(engine, C));
    expect(a.result!.weight).not.toBeNull();
    const m = polluted(Object.prototype, 'momentum', 0.7, () => new BatchNorm(engine, C, {}));
    expect(m.result!.momentum).toBe(0.1);
    const dict = plain.stateDict();
    const { running_var: _dropped, ...partial } = dict;
    const s = polluted(Object.prototype, 'strict', false, () => plain.loadStateDict(partial));
    expect(s.error).toBeInstanceOf(InvalidArgumentError);
    const p = polluted(Object.prototype, 'prefix', 'p.', () => plain.stateDict());
    expect(Object.keys(p.result!)).toEqual(Object.keys(dict));
    const bn = { runningMean: [0, 1, 2], runningVar: [1, 1, 1] };
    const weight = Array.from({ length: 12 }, (_, i) => i);
    const conv = foldIntoConv(weight, null, bn);
    const f = polluted(Object.prototype, 'layout', 'HWIO', () => foldIntoConv(weight, null, bn));
    expect(f.result).toEqual(conv);
    const gamma = polluted(Object.prototype, 'weight', [10, 10, 10], () => foldedAffine(bn));
    expect(gamma.result).toEqual(foldedAffine(bn));
    const e = polluted(Object.prototype, 'eps', 0.5, () => functionalOptions('pytorch'));
    expect(e.result!.eps).toBe(1e-5);
    Object.defineProperty(Object.prototype, 'simd', { value: 'no', configurable: true, writable: true });
    let made: Engine | null = null, error: unknown = null;
    try { made = await createEngine({}); } catch (err) { error = err; } finally { delete (Object.prototype as Record<string, unknown>).simd; }
    expect(error).toBeNull();
    expect(made!.build).toBe(unsupported('relaxed-simd') === null ? 'relaxed-simd' : 'simd'); // the default, not a polluted `simd`
    const mm = polluted(Object.prototype, 'count', 4, () => mergeMoments({ mean: [1], m2: [0] } as never, { count: 1, mean: [1], m2: [0] }));
    expect(mm.error).toBeInstanceOf(InvalidArgumentError);
    expect((mm.error as BatchNormError).argument).toBe('a.count');
  });

  it('Array.prototype does not fill holes in shapes or value arrays', () => {
    const w = new World(engine, neighbour);
    const holey = [2, , 2, 2] as number[]; // eslint-disable-line no-sparse-arrays
    const r = polluted(Array.prototype, 1, 3, () => engine.forward(w.x, holey, { training: true }));
    expect(r.error).toBeInstanceOf(ShapeError);
    expect((r.error as BatchNormError).argument).toBe('shape[1]');
    const layer = polluted(Array.prototype, 1, 3, () => new BatchNorm(engine, C).forward(w.x, holey));
    expect((layer.error as BatchNormError).argument).toBe('shape[1]');
    const fold = polluted(Array.prototype, 1, 1, () => foldedAffine({ runningMean: [0, 0, 0], runningVar: [1, , 1] as number[] })); // eslint-disable-line no-sparse-arrays
    expect((fold.error as BatchNormError).argument).toBe('bn.runningVar[1]');
    const t = polluted(Array.prototype, 0, 1, () => engine.tensor([, 2] as number[])); // eslint-disable-line no-sparse-arrays
    expect((t.error as BatchNormError).argument).toBe('values[0]');
    w.untouched();
  });
});

describe('4b. oversized, sparse and revoked arguments', () => {
  let engine: Engine;
  let neighbour: Tensor;
  beforeAll(async () => {
    engine = await makeEngine('simd');
    neighbour = engine.tensor(values(64, 9));
  });

  it('a shape longer than 64 dimensions is a ShapeError read at one length, however long (2^31, 2^30, typed, a Proxy)', () => {
    const w = new World(engine, neighbour);
    for (const length of [2 ** 31, 2 ** 30, 65]) {
      const s: number[] = [];
      s.length = length;
      rejects(() => engine.forward(w.x, s, { training: true }), ShapeError, 'shape', new RegExp(`at most 64 dimensions, got ${length} dimensions`));
      rejects(() => new BatchNorm(engine, C).forward(w.x, s), ShapeError, 'shape');
      rejects(() => layerNorm(engine, w.x, s, { normalizedShape: [4] }), ShapeError, 'shape');
      rejects(() => layerNorm(engine, w.x, [6, 4], { normalizedShape: s }), ShapeError, 'opts.normalizedShape');
      rejects(() => groupNorm(engine, w.x, s, { groups: 1 }), ShapeError, 'shape');
    }
    rejects(() => engine.forward(w.x, new Int32Array(65).fill(1), { training: true }), ShapeError, 'shape', /at most 64/);
    let lengthReads = 0;
    const lying = new Proxy([2, 3, 2, 2], { get(t, k, r) { if (k === 'length') { lengthReads++; return lengthReads === 1 ? 2 ** 30 + 1 : 4; } return Reflect.get(t, k, r); } });
    rejects(() => engine.forward(w.x, lying, { training: true }), ShapeError, 'shape', /at most 64 dimensions, got 1073741825/);
    expect(lengthReads).toBe(1);
    // A shape of 64 dimensions is a shape (all ones but N, C, and the last two).
    const rank64 = [2, 3, ...new Array<number>(60).fill(1), 2, 2];
    expect(bytes(engine.forward(w.x, rank64, { training: true }).y)).toEqual(bytes(engine.forward(w.x, [...SHAPE], { training: true }).y));
    w.untouched();
  });

  it('a sparse array of length 2^28 as a per-channel value is rejected at once, naming it (state dict, folding, merging, tensors)', () => {
    const w = new World(engine, neighbour);
    const sparse = (): number[] => { const a: number[] = []; a.length = 2 ** 28; return a; };
    const layer = new BatchNorm(engine, C);
    const dict = { ...layer.stateDict(), weight: sparse() };
    const before = bytes(layer.weight!);
    rejects(() => layer.loadStateDict(dict), ShapeError, 'stateDict["weight"]');
    expect(bytes(layer.weight!)).toEqual(before);
    rejects(() => foldedAffine({ runningMean: sparse(), runningVar: [1, 1, 1] }), InvalidArgumentError, 'bn.runningMean[0]');
    rejects(() => mergeMoments({ count: 2, mean: sparse(), m2: [1, 1, 1] }, { count: 2, mean: [0, 0, 0], m2: [1, 1, 1] }), InvalidArgumentError);
    rejects(() => engine.tensor(sparse()), InvalidArgumentError, 'values[0]');
    w.untouched();
  });

  it('a revoked Proxy anywhere is a typed error naming the argument, not a TypeError', () => {
    const w = new World(engine, neighbour);
    const revoked = () => { const p = Proxy.revocable([], {}); p.revoke(); return p.proxy as never; };
    const f = engine.forward(w.x, [...SHAPE], { training: true });
    const cases: Array<[() => unknown, string]> = [
      [() => engine.forward(revoked(), [...SHAPE], { training: true }), 'x'],
      [() => engine.forward(w.x, revoked(), { training: true }), 'shape'],
      [() => engine.forward(w.x, [...SHAPE], revoked()), 'opts'],
      [() => engine.forward(w.x, [...SHAPE], { training: true, weight: revoked() }), 'opts.weight'],
      [() => engine.backward(w.dy, w.x, [...SHAPE], { training: true, saveMean: revoked(), saveInvStd: f.saveInvStd }), 'opts.saveMean'],
      [() => layerNorm(engine, w.x, [6, 4], { normalizedShape: revoked() }), 'opts.normalizedShape'],
      [() => new BatchNorm(engine, C, revoked()), 'options'],
      [() => new BatchNorm(engine, C).loadStateDict(revoked()), 'stateDict'],
      [() => engine.tensor(revoked()), 'values'],
    ];
    for (const [call, argument] of cases) {
      const e = rejects(call, InvalidArgumentError, argument);
      expect(e.received).toBe('a revoked Proxy');
    }
    rejects(() => foldedAffine(revoked()), InvalidArgumentError);
    rejects(() => mergeMoments(revoked(), revoked()), InvalidArgumentError);
    w.untouched();
  });

  it('opts.y without activation relu is rejected, not ignored; a boolean is named by its value', async () => {
    const w = new World(engine, neighbour);
    const f = engine.forward(w.x, [...SHAPE], { training: true, activation: 'relu' });
    rejects(() => engine.backward(w.dy, w.x, [...SHAPE], { training: true, saveMean: f.saveMean, saveInvStd: f.saveInvStd, y: f.y }), InvalidArgumentError, 'opts.y', /activation 'relu'/);
    rejects(() => engine.backward(w.dy, w.x, [...SHAPE], { training: true, saveMean: f.saveMean, saveInvStd: f.saveInvStd, activation: 'none', y: 'y' as never }), InvalidArgumentError, 'opts.y');
    rejects(() => engine.forward(w.x, [...SHAPE], { training: 'false' as never }), InvalidArgumentError, 'opts.training', /got "false"/);
    rejects(() => engine.forward(w.x, [...SHAPE], { training: true, unbiasedRunningVar: 1 as never }), InvalidArgumentError, 'opts.unbiasedRunningVar', /got 1$/);
    rejects(() => engine.forward(w.x, [...SHAPE], { training: true, layout: false as never }), InvalidArgumentError, 'opts.layout', /got false$/);
    w.untouched();
  });

  it('a layer whose counter is at 2^53 − 1 refuses another training batch, changing nothing; its state dict round-trips', () => {
    const w = new World(engine, neighbour);
    const layer = new BatchNorm(engine, C);
    layer.loadStateDict({ ...layer.stateDict(), num_batches_tracked: Number.MAX_SAFE_INTEGER });
    const before = [bytes(layer.runningMean!), bytes(layer.runningVar!)];
    rejects(() => layer.forward(w.x, [...SHAPE]), InvalidArgumentError, 'layer.numBatchesTracked');
    expect([bytes(layer.runningMean!), bytes(layer.runningVar!)]).toEqual(before);
    expect(layer.numBatchesTracked).toBe(Number.MAX_SAFE_INTEGER);
    new BatchNorm(engine, C).loadStateDict(layer.stateDict());
    layer.eval().forward(w.x, [...SHAPE]); // eval counts nothing
    w.untouched();
  });

  // Replacing a built-in function (an Array method, the array iterator, Math.ceil) is code with
  // the engine's own authority, outside what it guards against (README, Robustness); the shape
  // readers still use none of the methods a lie there could turn into a wrong row size.
  it('Array.prototype.reduce, some, every, forEach replaced: shapes and rows are read the same', () => {
    const w = new World(engine, neighbour);
    const clean = layerNorm(engine, values(SIZE, 5), [3, 8], { normalizedShape: [8] });
    const lie = () => 24;
    for (const key of ['reduce', 'some', 'forEach', 'every']) {
      const r = polluted(Array.prototype, key, lie, () => layerNorm(engine, values(SIZE, 5), [3, 8], { normalizedShape: [8] }));
      expect(r.error, String(key)).toBeUndefined();
      expect(bytes(r.result!.saveMean), String(key)).toEqual(bytes(clean.saveMean));
      const g = polluted(Array.prototype, key, lie, () => engine.forward(w.x, [...SHAPE], { training: true }));
      expect(g.error, String(key)).toBeUndefined();
    }
    w.untouched();
  });
});

describe('5. unknown option names', () => {
  let engine: Engine;
  beforeAll(async () => { engine = await makeEngine('simd'); });

  it('every entry point rejects an unknown key, naming it and the closest valid one', async () => {
    const x = values(SIZE, 1), dy = values(SIZE, 2);
    const f = engine.forward(x, [...SHAPE], { training: true });
    const moments = engine.moments(x, [...SHAPE]);
    const sums = engine.backwardReduce(dy, x, [...SHAPE], { saveMean: f.saveMean, saveInvStd: f.saveInvStd });
    const layer = new BatchNorm(engine, C);
    const bn = { runningMean: [0, 0, 0], runningVar: [1, 1, 1] };
    const cases: Array<[string, () => unknown, string, string | null]> = [
      ['forward', () => engine.forward(x, [...SHAPE], { training: true, momentun: 0.1 } as never), 'opts.momentun', 'momentum'],
      ['forward', () => engine.forward(x, [...SHAPE], { training: true, runing_mean: 0 } as never), 'opts.runing_mean', 'runningMean'],
      ['forward', () => engine.forward(x, [...SHAPE], { training: true, color: 'red' } as never), 'opts.color', null],
      ['backward', () => engine.backward(dy, x, [...SHAPE], { training: true, saveMean: f.saveMean, saveInvStd: f.saveInvStd, saveInvstd: 1 } as never), 'opts.saveInvstd', 'saveInvStd'],
      ['moments', () => engine.moments(x, [...SHAPE], { layuot: 'NCHW' } as never), 'opts.layuot', 'layout'],
      ['forwardWithMoments', () => engine.forwardWithMoments(x, [...SHAPE], { moments, training: true } as never), 'opts.training', null],
      ['backwardReduce', () => engine.backwardReduce(dy, x, [...SHAPE], { saveMean: f.saveMean, saveInvStd: f.saveInvStd, weigth: null } as never), 'opts.weigth', null],
      ['backwardWithSums', () => engine.backwardWithSums(dy, x, [...SHAPE], { ...sums, count: 8, saveMean: f.saveMean, saveInvStd: f.saveInvStd, cout: 8 } as never), 'opts.cout', 'count'],
      ['BatchNorm', () => new BatchNorm(engine, C, { momentun: 0.1 } as never), 'options.momentun', 'momentum'],
      ['BatchNorm', () => new BatchNorm(engine, C, { trackRunningStat: false } as never), 'options.trackRunningStat', 'trackRunningStats'],
      ['stateDict', () => layer.stateDict({ prefx: 'a.' } as never), 'options.prefx', 'prefix'],
      ['loadStateDict', () => layer.loadStateDict(layer.stateDict(), { strct: false } as never), 'options.strct', 'strict'],
      ['foldIntoConv', () => foldIntoConv([1, 2, 3], null, bn, { layot: 'OIHW' } as never), 'options.layot', 'layout'],
      ['foldIntoLinear', () => foldIntoLinear([1, 2, 3], null, bn, { Layout: 'OI' } as never), 'options.Layout', 'layout'],
      ['functionalOptions', () => functionalOptions('onnx', { momentum: 0.9, epsilon: 1e-3 } as never), 'overrides.epsilon', 'eps'],
    ];
    for (const [what, call, argument, near] of cases) {
      const error = rejects(call, InvalidArgumentError, argument);
      if (near !== null) expect(error.message, what).toContain(`did you mean '${near}'?`);
      else expect(error.expected, what).toMatch(/one of the options/);
    }
    for (const [options, argument] of [[{ simd: true, wasn: {} }, 'options.wasn'], [{ wasm: { smid: new Uint8Array(8) } }, 'options.wasm.smid']] as const) {
      let error: unknown = null;
      try { await createEngine(options as never); } catch (err) { error = err; }
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as BatchNormError).argument).toBe(argument);
    }
  });
  it('own keys count whether enumerable or not; an unknown non-enumerable key and inherited keys are ignored', () => {
    const x = values(SIZE, 1);
    const want = engine.forward(x, [...SHAPE], { training: true, eps: 0.5 });
    const hidden = { training: true };
    Object.defineProperty(hidden, 'eps', { value: 0.5, enumerable: false });
    Object.defineProperty(hidden, 'colour', { value: 'red', enumerable: false });
    expect(engine.forward(x, [...SHAPE], hidden as never).y).toEqual(want.y);
    // A class instance: its own fields are options, its prototype's getters are not.
    class Opts { training = true; eps = 0.5; get momentum(): number { throw new Error('read an inherited getter'); } }
    expect(engine.forward(x, [...SHAPE], new Opts()).y).toEqual(want.y);
    const inherited = Object.create({ eps: 0.5 }) as { training: boolean };
    inherited.training = true;
    expect(engine.forward(x, [...SHAPE], inherited).y).toEqual(engine.forward(x, [...SHAPE], { training: true }).y);
  });
});


describe('6. every element of folded and merged inputs is a number', () => {
  const bn = () => ({ runningMean: [0, 0.5, 1], runningVar: [1, 2, 3], weight: [1, 1, 1], bias: [0, 0, 0] });
  const bad: Array<[string, unknown]> = [['a string', '1'], ['a hole', undefined], ['a BigInt', 1n], ['an object', { valueOf: () => 1 }], ['null', null]];
  const put = (a: unknown[], i: number, v: unknown) => { if (v === undefined) delete a[i]; else a[i] = v; return a; };

  for (const [what, v] of bad) {
    it(`${what} in any array of foldedAffine / foldIntoConv / foldIntoLinear, named by the caller's path`, () => {
      for (const key of ['runningMean', 'runningVar', 'weight', 'bias'] as const) {
        const b = bn();
        put(b[key], 2, v);
        rejects(() => foldedAffine(b as never), InvalidArgumentError, `bn.${key}[2]`);
        rejects(() => foldIntoConv(Array(6).fill(1), null, b as never), InvalidArgumentError, `bn.${key}[2]`);
      }
      rejects(() => foldIntoConv(put(Array(12).fill(1), 7, v), null, bn()), InvalidArgumentError, 'convWeight[7]');
      rejects(() => foldIntoConv(Array(12).fill(1), put([0, 0, 0], 1, v), bn()), InvalidArgumentError, 'convBias[1]');
      rejects(() => foldIntoLinear(put(Array(6).fill(1), 5, v), null, bn(), { layout: 'IO' }), InvalidArgumentError, 'weight[5]');
      rejects(() => foldIntoLinear(Array(6).fill(1), put([0, 0, 0], 0, v), bn()), InvalidArgumentError, 'bias[0]');
    });

    it(`${what} in moments or sums: mergeMoments, reduceMoments, mergeBackwardSums, forwardWithMoments, backwardWithSums`, async () => {
      const m = () => ({ count: 4, mean: [0, 1, 2], m2: [1, 1, 1] });
      rejects(() => mergeMoments(m(), { ...m(), mean: put([0, 1, 2], 1, v) }), InvalidArgumentError, 'b.mean[1]');
      rejects(() => mergeMoments({ ...m(), m2: put([0, 1, 2], 2, v) }, m()), InvalidArgumentError, 'a.m2[2]');
      const parts = [m(), m(), m(), { ...m(), mean: put([0, 1, 2], 1, v) }, m()];
      rejects(() => reduceMoments(parts), InvalidArgumentError, 'parts[3].mean[1]');
      rejects(() => reduceMoments([m(), { count: 1n, mean: [0, 0, 0], m2: [0, 0, 0] } as never]), InvalidArgumentError, 'parts[1].count');
      const s = () => ({ sumDy: [0, 1, 2], sumDyXhat: [1, 1, 1] });
      rejects(() => mergeBackwardSums(s(), { ...s(), sumDyXhat: put([0, 1, 2], 0, v) }), InvalidArgumentError, 'b.sumDyXhat[0]');
      const engine = await makeEngine('simd');
      const x = values(SIZE, 1), dy = values(SIZE, 2);
      const rm = Float32Array.of(0, 0, 0), before = bytes(rm);
      rejects(() => engine.forwardWithMoments(x, [...SHAPE], { moments: { count: 8, mean: [0, 1, 2], m2: put([1, 1, 1], 1, v) } as never, runningMean: rm, runningVar: new Float32Array(3) }),
        InvalidArgumentError, 'opts.moments.m2[1]');
      expect(bytes(rm)).toEqual(before);
      const f = engine.forward(x, [...SHAPE], { training: true });
      rejects(() => engine.backwardWithSums(dy, x, [...SHAPE], { sumDy: put([0, 1, 2], 2, v) as never, sumDyXhat: [0, 0, 0], count: 8, saveMean: f.saveMean, saveInvStd: f.saveInvStd }),
        InvalidArgumentError, 'opts.sumDy[2]');
    });
  }

  it('typed arrays of numbers are fine; BigInt typed arrays are not', () => {
    const ok = foldedAffine({ runningMean: Float64Array.of(0, 0.5, 1), runningVar: Int32Array.of(1, 2, 3), weight: Float32Array.of(1, 1, 1) });
    expect(ok.scale[0]).toBeCloseTo(1 / Math.sqrt(1 + 1e-5), 6);
    rejects(() => foldedAffine({ runningMean: [0, 0, 0], runningVar: BigInt64Array.of(1n, 1n, 1n) as never }), InvalidArgumentError, 'bn.runningVar[0]');
    rejects(() => mergeMoments({ count: 2, mean: BigInt64Array.of(1n) as never, m2: [0] }, { count: 2, mean: [1], m2: [0] }), InvalidArgumentError, 'a.mean[0]');
  });
});

describe('7. engine.tensor and Tensor.set read everything before allocating or writing', () => {
  it('a throwing element getter leaks no block and writes nothing', async () => {
    const engine = await makeEngine('simd');
    const neighbour = engine.tensor(values(16, 3));
    const before = bytes(neighbour.data), inUse = engine.info().bytesInUse;
    const throwing: number[] = [1, 2, 3, 4];
    Object.defineProperty(throwing, 2, { enumerable: true, get() { throw new Error('boom'); } });
    for (let i = 0; i < 3; i++) expect(() => engine.tensor(throwing)).toThrow('boom');
    // A getter that passes a first look and throws on the next read (the copy, after allocation).
    const late = () => {
      const a: number[] = [1, 2, 3, 4];
      let reads = 0;
      Object.defineProperty(a, 3, { enumerable: true, get() { if (reads++ > 0) throw new Error('late'); return 4; } });
      return a;
    };
    const made: Tensor[] = [];
    for (let i = 0; i < 3; i++) {
      try { made.push(engine.tensor(late())); } catch (error) { expect(String(error)).toMatch('late'); }
    }
    for (const t of made) expect(Array.from(t.toArray())).toEqual([1, 2, 3, 4]);
    for (const t of made) t.free();
    const proxyArray = new Proxy([1, 2, 3], { get(t, k, r) { if (k === '1') throw new Error('trap'); return Reflect.get(t, k, r); } });
    expect(() => engine.tensor(proxyArray)).toThrow('trap');
    expect(engine.info().bytesInUse, 'engine.tensor leaked its block').toBe(inUse);
    const t = engine.tensor(4);
    const tBefore = bytes(t.data);
    expect(() => t.set(throwing)).toThrow('boom');
    expect(bytes(t.data), 'Tensor.set wrote part of the values').toEqual(tBefore);
    try { t.set(late()); t.set(new Float32Array(4)); } catch (error) { expect(String(error)).toMatch('late'); }
    expect(bytes(t.data), 'Tensor.set wrote part of the values').toEqual(tBefore);
    rejects(() => t.set(['1', 2, 3, 4] as never), InvalidArgumentError, 'values[0]');
    rejects(() => t.set([1, 2, , 4] as number[]), InvalidArgumentError, 'values[2]'); // eslint-disable-line no-sparse-arrays
    expect(bytes(t.data)).toEqual(tBefore);
    t.free();
    expect(bytes(neighbour.data)).toEqual(before);
    expect(engine.info().bytesInUse).toBe(inUse);
  });
});

describe('9. num_batches_tracked is an int64', () => {
  let engine: Engine;
  beforeAll(async () => { engine = await makeEngine('scalar'); });
  const dictWith = (counter: unknown) => {
    const src = new BatchNorm(engine, C);
    return { ...src.stateDict(), num_batches_tracked: counter } as Record<string, unknown>;
  };

  it('accepts a number, a bigint, BigInt64Array(1), an integer typed array of length 1 and [n]', () => {
    const accepted: unknown[] = [5, 5n, BigInt64Array.of(5n), BigUint64Array.of(5n), Int32Array.of(5), Uint8Array.of(5), Int16Array.of(5), [5], [5n]];
    for (const counter of accepted) {
      const bn = new BatchNorm(engine, C);
      bn.loadStateDict(dictWith(counter));
      expect(bn.numBatchesTracked, String(counter)).toBe(5);
    }
    const big = new BatchNorm(engine, C);
    big.loadStateDict(dictWith(2n ** 53n - 1n));
    expect(big.numBatchesTracked).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('rejects what is not a non-negative int64 within 2^53, clearly, and changes nothing', () => {
    const rejected: unknown[] = [2n ** 53n, 2 ** 53, -1n, BigInt64Array.of(-1n), BigInt64Array.of(2n ** 60n), Int32Array.of(1, 2), [], [1.5], ['5'], Float64Array.of(5), '5', 1.5];
    for (const counter of rejected) {
      const bn = new BatchNorm(engine, C);
      bn.numBatchesTracked = 7;
      const before = JSON.stringify(bn.stateDict());
      const error = rejects(() => bn.loadStateDict(dictWith(counter)), InvalidArgumentError, 'stateDict["num_batches_tracked"]', /non-negative integer at most 2\^53/);
      if (counter === 2n ** 53n || counter === 2 ** 53) expect(error.message).toMatch(/cannot hold the count exactly/);
      expect(JSON.stringify(bn.stateDict())).toBe(before);
    }
  });

  it('the dict is read once, own keys only: a Proxy dict sees one get per key, Object.prototype adds nothing', () => {
    const src = new BatchNorm(engine, C);
    src.numBatchesTracked = 3;
    const reads = new Map<PropertyKey, number>();
    const dict = new Proxy(src.stateDict(), {
      get(target, key, receiver) { reads.set(key, (reads.get(key) ?? 0) + 1); return Reflect.get(target, key, receiver); },
    });
    const bn = new BatchNorm(engine, C);
    bn.loadStateDict(dict);
    for (const [key, n] of reads) expect(n, `${String(key)} read ${n} times`).toBe(1);
    expect(bn.numBatchesTracked).toBe(3);
    const { num_batches_tracked: _n, ...old } = src.stateDict();
    const r = polluted(Object.prototype, 'num_batches_tracked', 99, () => bn.loadStateDict(old));
    expect(r.error).toBeUndefined();
    expect(bn.numBatchesTracked).toBe(0);
  });

  it('a dict without num_batches_tracked loads in strict mode with the counter 0 (old PyTorch checkpoints)', () => {
    const bn = new BatchNorm(engine, C);
    bn.numBatchesTracked = 7;
    const { num_batches_tracked: _n, ...old } = new BatchNorm(engine, C).stateDict();
    old.running_mean = [1, 2, 3];
    expect(bn.loadStateDict(old)).toEqual({ format: 'pytorch', missingKeys: [], unexpectedKeys: [] });
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.runningMean!)).toEqual([1, 2, 3]);
    // A strict load that fails for another key still changes nothing, the counter included.
    const { running_var: _v, ...missingVar } = old;
    bn.numBatchesTracked = 7;
    rejects(() => bn.loadStateDict(missingVar), InvalidArgumentError, 'stateDict', /missing keys: "running_var"/);
    expect(bn.numBatchesTracked).toBe(7);
  });
});
