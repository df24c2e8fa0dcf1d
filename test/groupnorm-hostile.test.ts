// Hostile and wrong callers of groupNorm, groupNormBackward, instanceNorm, instanceNormBackward:
// typed errors naming the argument, and all-or-nothing (out, running statistics, a neighbouring
// tensor and the engine's scratch untouched by a rejected call).
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine.js';
import { InvalidArgumentError, ShapeError, groupNorm, groupNormBackward, instanceNorm, instanceNormBackward } from '../src/index.js';
import { makeEngine } from './helpers/engines.js';

const SHAPE = [2, 6, 3], SIZE = 36, C = 6;
const x = Float32Array.from({ length: SIZE }, (_, i) => Math.sin(i) * 2);
const dy = Float32Array.from({ length: SIZE }, (_, i) => Math.cos(i));

type Call = (e: Engine, o: Record<string, unknown>) => unknown;
const saved = (n: number) => ({ saveMean: new Float32Array(n), saveInvStd: new Float32Array(n).fill(1) });
const ENTRY: Record<string, { call: Call; base: () => Record<string, unknown> }> = {
  groupNorm: { call: (e, o) => groupNorm(e, x, SHAPE, o as never), base: () => ({ groups: 3 }) },
  groupNormBackward: { call: (e, o) => groupNormBackward(e, dy, x, SHAPE, o as never), base: () => ({ groups: 3, ...saved(6) }) },
  instanceNorm: { call: (e, o) => instanceNorm(e, x, SHAPE, o as never), base: () => ({}) },
  instanceNormBackward: { call: (e, o) => instanceNormBackward(e, dy, x, SHAPE, o as never), base: () => saved(12) },
};

let engine: Engine;
beforeAll(async () => {
  engine = await makeEngine('debug');
});

/** Runs a call that must throw `type` naming `argument`, and checks that nothing was touched. */
function rejects(call: () => unknown, type: typeof InvalidArgumentError | typeof ShapeError, argument: string, touched: Float32Array[] = []): void {
  const neighbour = engine.tensor(Float32Array.from({ length: 64 }, (_, i) => i));
  const before = touched.map((a) => a.slice()), inUse = engine.info().bytesInUse;
  let error: unknown = null;
  try { call(); } catch (e) { error = e; }
  expect(error, `expected ${type.name} on ${argument}`).toBeInstanceOf(type);
  expect((error as InvalidArgumentError).argument).toBe(argument);
  touched.forEach((a, i) => expect(Array.from(a)).toEqual(Array.from(before[i])));
  expect(Array.from(neighbour.data)).toEqual(Array.from({ length: 64 }, (_, i) => i));
  expect(engine.info().bytesInUse).toBe(inUse);
  neighbour.free();
}

describe.each(Object.keys(ENTRY))('%s', (name) => {
  const { call, base } = ENTRY[name];
  it('runs with its base options; rejects unknown keys with a hint, Proxies, non-engines, non-objects', () => {
    expect(() => call(engine, base())).not.toThrow();
    rejects(() => call(engine, { ...base(), wieght: null }), InvalidArgumentError, 'opts.wieght');
    expect(() => call(engine, { ...base(), wieght: null })).toThrow(/did you mean 'weight'/);
    rejects(() => call(engine, { ...base(), weight: new Proxy(new Float32Array(C), {}) }), InvalidArgumentError, 'opts.weight');
    rejects(() => call({ arena: {}, kernels: {} } as never, base()), InvalidArgumentError, 'engine');
    rejects(() => call(engine, null as never), InvalidArgumentError, 'opts');
    rejects(() => call(engine, { ...base(), layout: 'NCWH' }), InvalidArgumentError, 'opts.layout');
  });

  it('wrong lengths are ShapeErrors naming the argument; out stays untouched', () => {
    const out = new Float32Array(SIZE).fill(7);
    rejects(() => call(engine, { ...base(), weight: new Float32Array(C + 1), out }), ShapeError, 'opts.weight', [out]);
    rejects(() => call(engine, { ...base(), out: new Float32Array(SIZE - 1) }), ShapeError, 'opts.out');
    if (name.endsWith('Backward')) {
      rejects(() => call(engine, { ...base(), saveMean: new Float32Array(5), out }), ShapeError, 'opts.saveMean', [out]);
      rejects(() => call(engine, { ...base(), saveInvStd: undefined, out }), InvalidArgumentError, 'opts.saveInvStd', [out]);
    }
  });
});

describe('group counts, activations, PyTorch errors, aliasing', () => {
  it('groups must be a positive integer (InvalidArgumentError) dividing C (ShapeError), both naming opts.groups', () => {
    for (const e of [ENTRY.groupNorm, ENTRY.groupNormBackward]) {
      for (const bad of [0, 1.5, '2', undefined, -3, NaN]) rejects(() => e.call(engine, { ...e.base(), groups: bad }), InvalidArgumentError, 'opts.groups');
      for (const bad of [4, 5, 12]) rejects(() => e.call(engine, { ...e.base(), groups: bad }), ShapeError, 'opts.groups');
      rejects(() => e.call(engine, { ...e.base(), activation: 'relu' }), InvalidArgumentError, 'opts.activation');
    }
  });

  it("one value per group normalized (PyTorch's check) and one spatial element in InstanceNorm training are ShapeErrors on x", () => {
    rejects(() => groupNorm(engine, new Float32Array(4), [1, 4], { groups: 4 }), ShapeError, 'x');
    expect(() => groupNorm(engine, new Float32Array(8), [2, 4], { groups: 4 })).not.toThrow(); // PyTorch allows it: y = bias
    rejects(() => instanceNorm(engine, new Float32Array(8), [2, 4, 1]), ShapeError, 'x');
  });

  it('InstanceNorm: running statistics together, required with useInputStats false, untouched on any error', () => {
    const rm = new Float32Array(C).fill(0.5), rv = new Float32Array(C).fill(2);
    rejects(() => instanceNorm(engine, x, SHAPE, { runningMean: rm }), InvalidArgumentError, 'opts.runningVar', [rm]);
    rejects(() => instanceNorm(engine, x, SHAPE, { useInputStats: false }), InvalidArgumentError, 'opts.runningMean');
    rejects(() => instanceNorm(engine, x, SHAPE, { runningMean: rm, runningVar: rv, momentum: 2 }), InvalidArgumentError, 'opts.momentum', [rm, rv]);
    rejects(() => instanceNorm(engine, x, SHAPE, { runningMean: rm, runningVar: rv, eps: 0 }), InvalidArgumentError, 'opts.eps', [rm, rv]);
    rejects(() => instanceNorm(engine, x, SHAPE, { runningMean: rm, runningVar: rm }), InvalidArgumentError, 'opts.runningMean', [rm]);
    rejects(() => instanceNorm(engine, x, SHAPE, { runningMean: rm, runningVar: rv, useInputStats: 1 as never }), InvalidArgumentError, 'opts.useInputStats', [rm, rv]);
  });

  it('options read once: a getter that swaps x for another array is not seen afterwards; polluted prototypes are ignored', () => {
    let reads = 0;
    const opts = { groups: 3, get weight() { reads++; return null; } };
    const r = groupNorm(engine, x, SHAPE, opts);
    expect(reads).toBe(1);
    (Object.prototype as Record<string, unknown>).activation = 'bogus';
    try {
      expect(Array.from(groupNorm(engine, x, SHAPE, { groups: 3 }).y)).toEqual(Array.from(r.y));
    } finally {
      delete (Object.prototype as Record<string, unknown>).activation;
    }
  });

  it('an out that overlaps x without being x is rejected, x untouched', () => {
    const buf = Float32Array.from({ length: SIZE + 1 }, (_, i) => i), xs = buf.subarray(0, SIZE), out = buf.subarray(1);
    rejects(() => groupNorm(engine, xs, SHAPE, { groups: 3, out }), InvalidArgumentError, 'opts.out', [buf]);
    rejects(() => instanceNormBackward(engine, dy, xs, SHAPE, { ...saved(12), out }), InvalidArgumentError, 'opts.out', [buf]);
  });

  /** GroupNorm in place (out = x forward; out = dy, then out = x backward) gives the out-of-place bits. */
  function expectInPlace(xs: Float32Array, dys: Float32Array, shape: number[], base: Parameters<typeof groupNorm>[3]): void {
    const ref = groupNorm(engine, xs, shape, base);
    const xi = xs.slice();
    expect(groupNorm(engine, xi, shape, { ...base, out: xi }).y).toBe(xi);
    expect(Array.from(xi)).toEqual(Array.from(ref.y));
    const opts = { ...base, saveMean: ref.saveMean, saveInvStd: ref.saveInvStd };
    const bref = groupNormBackward(engine, dys, xs, shape, opts);
    const t = engine.tensor(dys), u = engine.tensor(xs);
    groupNormBackward(engine, t.data, u.data, shape, { ...opts, out: t.data });
    expect(Array.from(t.data)).toEqual(Array.from(bref.dx));
    t.set(dys);
    groupNormBackward(engine, t.data, u.data, shape, { ...opts, out: u.data });
    expect(Array.from(u.data)).toEqual(Array.from(bref.dx));
    t.free(); u.free();
  }

  it('in place: out = x (forward), out = dy or x (backward, also with SiLU) give the out-of-place results', () => {
    const w = Float32Array.from({ length: C }, (_, c) => c - 2), b = Float32Array.from({ length: C }, (_, c) => c / 3);
    for (const activation of ['none', 'silu'] as const) expectInPlace(x, dy, SHAPE, { groups: 2, weight: w, bias: b, activation });
  });

  // Planes and super-rows long enough for the SIMD kernels' 8-vector steps, single vectors and tails.
  it.for([{ shape: [2, 6, 75], layout: 'NCHW' as const }, { shape: [2, 75, 6], layout: 'NHWC' as const }])(
    'in place with SiLU through every SIMD path, $layout $shape: out = x (forward), out = dy or x (backward)', ({ shape, layout }) => {
      const n = 900, xs = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 6), dys = Float32Array.from({ length: n }, (_, i) => Math.cos(i));
      const w = Float32Array.from({ length: C }, (_, c) => c - 2), b = Float32Array.from({ length: C }, (_, c) => c / 3);
      expectInPlace(xs, dys, shape, { groups: 2, layout, weight: w, bias: b, activation: 'silu' });
    });
});

describe('destinations for the statistics and the parameter gradients', () => {
  // saveMeanOut/saveInvStdOut (N·groups, N·C) and dweightOut/dbiasOut (C): the result holds the
  // caller's arrays, resident or plain, with the bits of a call without them; overlaps rejected.
  it.each(['NCHW', 'NHWC'] as const)('%s: GroupNorm (SiLU) and InstanceNorm, resident and plain destinations', (layout) => {
    const shape = layout === 'NCHW' ? SHAPE : [2, 3, 6];
    const w = Float32Array.from({ length: C }, (_, c) => c - 2), b = Float32Array.from({ length: C }, (_, c) => c / 3);
    const gOpts = { groups: 3, layout, weight: w, bias: b, activation: 'silu' as const };
    const ref = groupNorm(engine, x, shape, gOpts), refIn = instanceNorm(engine, x, shape, { layout, weight: w, bias: b });
    const refBack = groupNormBackward(engine, dy, x, shape, { ...gOpts, saveMean: ref.saveMean, saveInvStd: ref.saveInvStd });
    const refInBack = instanceNormBackward(engine, dy, x, shape, { layout, weight: w, saveMean: refIn.saveMean, saveInvStd: refIn.saveInvStd });
    const same = (a: Float32Array, e: Float32Array, what: string) => expect(Array.from(a), what).toEqual(Array.from(e));
    for (const resident of [true, false]) {
      const dest = (n: number) => (resident ? engine.tensor(n).data : new Float32Array(n));
      const sm = dest(6), si = dest(6), im = dest(12), is = dest(12), dw = dest(C), db = dest(C), iw = dest(C);
      const f = groupNorm(engine, x, shape, { ...gOpts, saveMeanOut: sm, saveInvStdOut: si });
      expect([f.saveMean === sm, f.saveInvStd === si]).toEqual([true, true]);
      same(sm, ref.saveMean, 'group saveMean');
      same(si, ref.saveInvStd, 'group saveInvStd');
      same(f.y, ref.y, 'group y');
      const fi = instanceNorm(engine, x, shape, { layout, weight: w, bias: b, saveMeanOut: im, saveInvStdOut: is });
      expect(fi.saveMean).toBe(im);
      same(is, refIn.saveInvStd, 'instance saveInvStd');
      const g = groupNormBackward(engine, dy, x, shape, { ...gOpts, saveMean: sm, saveInvStd: si, dweightOut: dw, dbiasOut: db });
      expect([g.dweight === dw, g.dbias === db]).toEqual([true, true]);
      same(dw, refBack.dweight, 'group dweight');
      same(db, refBack.dbias, 'group dbias');
      same(g.dx, refBack.dx, 'group dx');
      const gi = instanceNormBackward(engine, dy, x, shape, { layout, weight: w, saveMean: im, saveInvStd: is, dweightOut: iw });
      expect(gi.dweight).toBe(iw);
      same(iw, refInBack.dweight, 'instance dweight');
      same(gi.dbias, refInBack.dbias, 'instance dbias, returned new');
    }
    const both = new Float32Array(12);
    rejects(() => groupNorm(engine, x, shape, { ...gOpts, saveMeanOut: both.subarray(0, 6), saveInvStdOut: both.subarray(3, 9) }), InvalidArgumentError, 'opts.saveMeanOut');
    rejects(() => groupNorm(engine, x, shape, { ...gOpts, saveMeanOut: new Float32Array(12) }), ShapeError, 'opts.saveMeanOut');
    rejects(() => instanceNorm(engine, x, shape, { layout, saveInvStdOut: new Float32Array(6) }), ShapeError, 'opts.saveInvStdOut');
    rejects(() => groupNormBackward(engine, dy, x, shape, { ...gOpts, saveMean: ref.saveMean, saveInvStd: ref.saveInvStd, dbiasOut: b }), InvalidArgumentError, 'opts.dbiasOut', [b]);
    rejects(() => instanceNormBackward(engine, dy, x, shape, { layout, saveMean: refIn.saveMean, saveInvStd: refIn.saveInvStd, dweightOut: new Float32Array(C + 1) }), ShapeError, 'opts.dweightOut');
  });
});
