// GroupNorm and InstanceNorm against the float64 oracle (src/oracle/groupnorm.ts): property
// tests over shapes around the SIMD tile (C % 4 != 0, R = 1, groups = 1 and groups = C), both
// layouts, affine on/off, SiLU, copy and zero-copy, in place, every build (the debug build
// range-checked); hard data (|mean|/std = 1e4 beyond 2^20 values per group, outliers at a
// group's start, sparse post-ReLU, squares not exact); running statistics; SIMD = scalar bit for
// bit; the layers; the ONNX backend vectors. Bounds: test/helpers/groupnorm.ts (1 = at the bound).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync, readdirSync } from 'node:fs';
import type { Engine } from '../src/engine.js';
import { GroupNorm, InstanceNorm, groupNorm, groupNormBackward, instanceNorm, instanceNormBackward, type Layout } from '../src/index.js';
import { oracleGroupNorm, oracleGroupNormBackward, oracleInstanceNorm, oracleInstanceNormBackward } from '../src/oracle/groupnorm.js';
import { BUILD_NAMES } from '../src/wasm/builds.js';
import { BUILDS, makeEngine, skipBuild, unsupported, type BuildName } from './helpers/engines.js';
import { gauss, rng, ulp32 } from './helpers/numeric.js';
import { DATA_KINDS, backwardRatios, drawX, forwardRatios, indexOf, mergeWorst, noWorst, type DataKind, type Worst } from './helpers/groupnorm.js';
import { vectorsRootExists } from './helpers/vectors.js';

const worst = new Map<string, Worst>();
function record(key: string, w: Worst): void {
  if (!worst.has(key)) worst.set(key, noWorst());
  mergeWorst(worst.get(key)!, w);
}
afterAll(() => {
  console.log(`largest errors vs the oracle (fractions of their bounds):\n${[...worst].map(([k, w]) =>
    `  ${k}: ${Object.entries(w).map(([n, v]) => `${n} ${v.toExponential(2)}`).join(', ')}`).join('\n')}`);
});

function expectWithin(w: Worst, what: string): void {
  for (const [k, v] of Object.entries(w)) expect(v, `${what}: ${k} at ${v} of its bound`).toBeLessThanOrEqual(1);
}

interface Case {
  layout: Layout; N: number; C: number; spatial: number[]; groupsPick: number; affine: boolean; silu: boolean;
  kind: DataKind; zeroCopy: boolean; inPlace: boolean; seed: number;
}

const divisors = (C: number) => Array.from({ length: C }, (_, i) => i + 1).filter((d) => C % d === 0);
const caseArb: fc.Arbitrary<Case> = fc.record({
  layout: fc.constantFrom<Layout>('NCHW', 'NHWC'),
  N: fc.integer({ min: 1, max: 3 }),
  C: fc.constantFrom(1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 32),
  spatial: fc.array(fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 17), { minLength: 0, maxLength: 2 }),
  groupsPick: fc.nat(),
  affine: fc.boolean(),
  silu: fc.boolean(),
  kind: fc.constantFrom(...DATA_KINDS),
  zeroCopy: fc.boolean(),
  inPlace: fc.boolean(),
  seed: fc.integer(),
});

function shapeOf(k: { layout: Layout; N: number; C: number; spatial: number[] }): number[] {
  return k.layout === 'NCHW' ? [k.N, k.C, ...k.spatial] : [k.N, ...k.spatial, k.C];
}

function params(C: number, affine: boolean, seed: number) {
  const next = rng(seed ^ 0x5bd1);
  // A zero weight included: its channel still moves its group's statistics (dx != 0).
  const weight = affine ? Float32Array.from({ length: C }, (_, c) => (c === 1 ? 0 : (next() - 0.5) * 4)) : null;
  const bias = affine ? Float32Array.from({ length: C }, () => (next() - 0.5) * 4) : null;
  return { weight, bias };
}

/** The call's input: the array itself (copied so the test keeps its own), or a tensor in wasm memory. */
function place(engine: Engine, a: Float32Array, zeroCopy: boolean) {
  if (!zeroCopy) { const copy = a.slice(); return { view: () => copy, free: () => {} }; }
  const t = engine.tensor(a);
  return { view: () => t.data, free: () => t.free() };
}

describe.each(BUILDS)('%s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  it('GroupNorm forward and backward vs the oracle (random shapes, layouts, groups, affine, SiLU, data kinds)', () => {
    fc.assert(fc.property(caseArb, (k) => {
      const shape = shapeOf(k), groups = divisors(k.C)[k.groupsPick % divisors(k.C).length];
      const ix = indexOf(shape, k.layout, groups);
      if ((ix.N * ix.Cg) * (ix.M / ix.Cg) === 1) return; // PyTorch's one-value error, tested elsewhere
      const x = drawX(ix, k.kind, k.seed), dy = Float32Array.from(drawX(ix, 'gauss', k.seed + 1), (v) => v - 0.5);
      const { weight, bias } = params(k.C, k.affine, k.seed);
      const activation = k.silu ? 'silu' as const : 'none' as const;
      const what = `${JSON.stringify({ ...k, shape, groups })}`;
      const xp = place(engine, x, k.zeroCopy), dyp = place(engine, dy, k.zeroCopy);
      try {
        const r = groupNorm(engine, xp.view(), shape, { groups, layout: k.layout, weight, bias, activation, out: k.inPlace ? xp.view() : undefined });
        const y = r.y.slice();
        if (k.inPlace) xp.view().set(x);
        const o = oracleGroupNorm(x, shape, { groups, layout: k.layout, weight, bias, activation });
        const fw = forwardRatios(ix, x, { ...r, y }, o, { weight, bias, eps: 1e-5, silu: k.silu });
        const b = groupNormBackward(engine, dyp.view(), xp.view(), shape, {
          groups, layout: k.layout, weight, bias, saveMean: r.saveMean, saveInvStd: r.saveInvStd, activation,
          out: k.inPlace ? dyp.view() : undefined,
        });
        const ob = oracleGroupNormBackward(dy, x, shape, { groups, layout: k.layout, weight, bias, mean: r.saveMean, invStd: r.saveInvStd, activation });
        const bw = backwardRatios(ix, dy, x, b, ob, { weight, bias, saveMean: r.saveMean, saveInvStd: r.saveInvStd, silu: k.silu });
        const w = { ...fw, dx: bw.dx, dweight: bw.dweight, dbias: bw.dbias };
        record(`GroupNorm ${k.silu ? '+ SiLU ' : ''}${build}`, w);
        expectWithin(w, what);
      } finally {
        xp.free(); dyp.free();
      }
    }), { numRuns: build === 'debug' ? 60 : 150 });
  });

  it('InstanceNorm forward (input or running statistics, running update) and backward vs the oracle', () => {
    fc.assert(fc.property(caseArb, fc.boolean(), fc.boolean(), fc.double({ min: 0, max: 1, noNaN: true }), (k, running, useInputStats, momentum) => {
      const shape = shapeOf(k), ix = indexOf(shape, k.layout, k.C);
      if (useInputStats && ix.M === 1) return;
      if (!useInputStats) running = true;
      const x = drawX(ix, k.kind, k.seed), dy = drawX(ix, 'gauss', k.seed + 7);
      const { weight, bias } = params(k.C, k.affine, k.seed);
      const next = rng(k.seed + 3);
      const rm0 = running ? Float32Array.from({ length: k.C }, () => next() * 4 - 2) : null;
      const rv0 = running ? Float32Array.from({ length: k.C }, () => 0.25 + next() * 4) : null;
      const rm = rm0?.slice() ?? null, rv = rv0?.slice() ?? null;
      const r = instanceNorm(engine, x, shape, { layout: k.layout, weight, bias, runningMean: rm, runningVar: rv, useInputStats, momentum });
      const o = oracleInstanceNorm(x, shape, { layout: k.layout, weight, bias, runningMean: rm0, runningVar: rv0, useInputStats, momentum });
      const what = JSON.stringify({ ...k, shape, running, useInputStats, momentum });
      const fw = forwardRatios(ix, x, r, o, { weight, bias, eps: 1e-5, silu: false, inputStats: useInputStats });
      if (running) {
        for (let c = 0; c < k.C; c++) {
          // f64 update rounded once: half an ulp, plus the statistics' own error (far below it here).
          expect(Math.abs(rm![c] - o.runningMean![c]), `${what} runningMean[${c}]`).toBeLessThanOrEqual(ulp32(o.runningMean![c]) + 1e-9 * Math.abs(o.runningMean![c]));
          expect(Math.abs(rv![c] - o.runningVar![c]), `${what} runningVar[${c}]`).toBeLessThanOrEqual(ulp32(o.runningVar![c]) + 1e-6 * o.runningVar![c]);
        }
      }
      const b = instanceNormBackward(engine, dy, x, shape, { layout: k.layout, weight, saveMean: r.saveMean, saveInvStd: r.saveInvStd, useInputStats });
      const ob = oracleInstanceNormBackward(dy, x, shape, { layout: k.layout, weight, mean: r.saveMean, invStd: r.saveInvStd, useInputStats });
      const bw = backwardRatios(ix, dy, x, b, ob, { weight, saveMean: r.saveMean, saveInvStd: r.saveInvStd, silu: false, inputStats: useInputStats });
      const w = { ...fw, dx: bw.dx, dweight: bw.dweight, dbias: bw.dbias };
      record(`InstanceNorm ${build}`, w);
      expectWithin(w, what);
    }), { numRuns: build === 'debug' ? 60 : 150 });
  });
});

describe('builds agree bit for bit; hard data at scale', () => {
  it('simd and scalar give identical y, saveMean, saveInvStd, dx, dweight, dbias (both layouts, SiLU on and off)', async () => {
    const [simd, scalar] = [await makeEngine('simd'), await makeEngine('scalar')];
    for (const layout of ['NCHW', 'NHWC'] as const) for (const activation of ['none', 'silu'] as const) {
      const shape = layout === 'NCHW' ? [2, 12, 9, 7] : [2, 9, 7, 12];
      const ix = indexOf(shape, layout, 4);
      const x = drawX(ix, 'gauss', 11), dy = drawX(ix, 'thirds', 12);
      const { weight, bias } = params(12, true, 5);
      const run = (e: Engine) => {
        const r = groupNorm(e, x, shape, { groups: 4, layout, weight, bias, activation });
        return { ...r, ...groupNormBackward(e, dy, x, shape, { groups: 4, layout, weight, bias, activation, saveMean: r.saveMean, saveInvStd: r.saveInvStd }) };
      };
      const a = run(simd), b = run(scalar);
      for (const key of ['y', 'saveMean', 'saveInvStd', 'dx', 'dweight', 'dbias'] as const) {
        expect(Array.from(a[key]), `${layout} ${activation} ${key}`).toEqual(Array.from(b[key]));
      }
    }
  });

  // |mean|/std = 1e4 over groups of 1.18M values (beyond 2^20): mean within 2 ulp, variance
  // (from saveInvStd with the smallest eps) within 1e-6 relative, y within tolY; and the backward.
  it.for(BUILD_NAMES)('%s: GroupNorm on [1, 8, 384, 384] with 1 and 2 groups, both layouts', async (build, ctx) => {
    ctx.skip(unsupported(build) !== null, unsupported(build) ?? '');
    const engine = await makeEngine(build);
    const g = gauss(rng(77)), HW = 384 * 384, C = 8;
    const nchw = new Float32Array(C * HW), nhwc = new Float32Array(C * HW), dy = new Float32Array(C * HW);
    for (let c = 0; c < C; c++) for (let j = 0; j < HW; j++) {
      const v = (c < 4 ? 1e4 : -3e4) + g() * (c % 2 === 0 ? 1 : 1.5);
      nchw[c * HW + j] = v; nhwc[j * C + c] = v;
    }
    for (let i = 0; i < dy.length; i++) dy[i] = g();
    const eps = 2 ** -126;
    for (const [layout, x, shape] of [['NCHW', nchw, [1, C, 384, 384]], ['NHWC', nhwc, [1, 384, 384, C]]] as const) {
      for (const groups of [1, 2]) {
        const weight = Float32Array.from({ length: C }, (_, c) => 0.5 + c / 4), bias = Float32Array.from({ length: C }, (_, c) => c - 3);
        const r = groupNorm(engine, x, shape as unknown as number[], { groups, layout, weight, bias, eps });
        const o = oracleGroupNorm(x, shape as unknown as number[], { groups, layout, weight, bias, eps });
        const ix = indexOf(shape as unknown as number[], layout, groups);
        for (let s = 0; s < groups; s++) {
          expect(Math.abs(r.saveMean[s] - o.mean[s]) / ulp32(o.mean[s]), `${layout} g=${groups} mean`).toBeLessThanOrEqual(2);
          const v = 1 / r.saveInvStd[s] ** 2 - eps;
          expect(Math.abs(v - o.variance[s]) / o.variance[s], `${layout} g=${groups} variance`).toBeLessThanOrEqual(1e-6);
        }
        const fw = forwardRatios(ix, x, r, o, { weight, bias, eps, silu: false });
        const b = groupNormBackward(engine, dy, x, shape as unknown as number[], { groups, layout, weight, saveMean: r.saveMean, saveInvStd: r.saveInvStd });
        const ob = oracleGroupNormBackward(dy, x, shape as unknown as number[], { groups, layout, weight, mean: r.saveMean, invStd: r.saveInvStd });
        const bw = backwardRatios(ix, dy, x, b, ob, { weight, saveMean: r.saveMean, saveInvStd: r.saveInvStd, silu: false });
        const w = { ...fw, dx: bw.dx, dweight: bw.dweight, dbias: bw.dbias };
        record(`hard data 2^20+ ${build}`, w);
        expectWithin(w, `${layout} groups ${groups}`);
      }
    }
  });
});

describe('SiLU', () => {
  // y = silu(x) through the kernel with meanHi 0, scale 1, shift 0, against the correctly rounded
  // value: every 97th float32 bit pattern of [−110, 110], both builds.
  it.for(BUILD_NAMES)('%s: y = z·σ(z) within 4 ulp of the f64 value, NaN and ±Inf as PyTorch', async (build, ctx) => {
    ctx.skip(unsupported(build) !== null, unsupported(build) ?? '');
    const engine = await makeEngine(build);
    const bits = new Uint32Array(1), f = new Float32Array(bits.buffer);
    const values: number[] = [];
    for (const sign of [0, 0x80000000]) for (let b = 0; ; b += 97) {
      bits[0] = (sign | b) >>> 0;
      if (Math.abs(f[0]) > 110) break;
      values.push(f[0]);
    }
    const z = Float32Array.from([...values, NaN, Infinity, -Infinity]);
    const k = engine.kernels, a = engine.arena;
    const n = z.length, p = a.alloc(8 * n + 64 + 4096);
    a.heapF32.set(z, p >>> 2);
    const params = p + 8 * n, work = params + 64;
    a.heapF32.fill(0, params >>> 2, (params >>> 2) + 3);
    a.heapF32[(params >>> 2) + 1] = 1;
    k.normalizeSiluNhwcF32(p, p + 4 * n, n, 1, params, params + 4, params + 8, work);
    const out = a.heapF32.slice((p >>> 2) + n, (p >>> 2) + 2 * n);
    a.release(p);
    let worstUlp = 0;
    for (let i = 0; i < values.length; i++) {
      const exact = values[i] / (1 + Math.exp(-values[i]));
      worstUlp = Math.max(worstUlp, Math.abs(out[i] - exact) / ulp32(exact));
    }
    console.log(`${build}: silu max error ${worstUlp.toFixed(2)} ulp over ${values.length} values`);
    expect(worstUlp).toBeLessThanOrEqual(4);
    expect([out[n - 3], out[n - 2], out[n - 1]]).toEqual([NaN, Infinity, NaN]);
  });
});

describe('layers', () => {
  it('GroupNorm: forward/backward equal the functional calls; state dict weight, bias; strict load', async () => {
    const engine = await makeEngine('simd');
    const layer = new GroupNorm(engine, 2, 6, { activation: 'silu' });
    layer.weight!.set([1, 2, 3, -1, 0.5, 0]);
    layer.bias!.set([0, 1, 0, 1, 0, 1]);
    const shape = [2, 6, 5], ix = indexOf(shape, 'NCHW', 2), x = drawX(ix, 'gauss', 3), dy = drawX(ix, 'gauss', 4);
    const y = layer.forward(x, shape), dx = layer.backward(dy);
    const r = groupNorm(engine, x, shape, { groups: 2, weight: layer.weight, bias: layer.bias, activation: 'silu' });
    const b = groupNormBackward(engine, dy, x, shape, { groups: 2, weight: layer.weight, bias: layer.bias, activation: 'silu', saveMean: r.saveMean, saveInvStd: r.saveInvStd });
    expect(Array.from(y)).toEqual(Array.from(r.y));
    expect(Array.from(dx)).toEqual(Array.from(b.dx));
    expect(Array.from(layer.gradWeight!)).toEqual(Array.from(b.dweight));
    const dict = layer.stateDict();
    expect(Object.keys(dict)).toEqual(['weight', 'bias']);
    const copy = new GroupNorm(engine, 2, 6);
    copy.loadStateDict(JSON.parse(JSON.stringify(dict)));
    expect(Array.from(copy.weight!)).toEqual(Array.from(layer.weight!));
    expect(() => copy.loadStateDict({ ...dict, running_mean: [0] })).toThrow(/unexpected keys: "running_mean"/);
    expect(new GroupNorm(engine, 3, 6, { affine: false }).stateDict()).toEqual({});
    expect(() => new GroupNorm(engine, 4, 6)).toThrow(expect.objectContaining({ argument: 'numGroups' }));
  });

  it('InstanceNorm: defaults as PyTorch (no affine, no running stats); tracking: train updates, eval uses them; state dict', async () => {
    const engine = await makeEngine('scalar');
    const shape = [3, 4, 6], ix = indexOf(shape, 'NCHW', 4), x = drawX(ix, 'offset', 9), dy = drawX(ix, 'gauss', 10);
    const plain = new InstanceNorm(engine, 4);
    expect(plain.stateDict()).toEqual({});
    const y0 = plain.eval().forward(x, shape); // no running stats: the instance's own statistics in eval too
    expect(Array.from(y0)).toEqual(Array.from(instanceNorm(engine, x, shape).y));
    const layer = new InstanceNorm(engine, 4, { affine: true, trackRunningStats: true, momentum: 0.5 });
    layer.forward(x, shape);
    const o = oracleInstanceNorm(x, shape, { runningMean: new Float32Array(4), runningVar: new Float32Array(4).fill(1), momentum: 0.5 });
    for (let c = 0; c < 4; c++) expect(layer.runningMean![c]).toBeCloseTo(o.runningMean![c], 2);
    layer.eval();
    const y = layer.forward(x, shape), dx = layer.backward(dy);
    const r = instanceNorm(engine, x, shape, { weight: layer.weight, bias: layer.bias, runningMean: layer.runningMean, runningVar: layer.runningVar, useInputStats: false });
    expect(Array.from(y)).toEqual(Array.from(r.y));
    const b = instanceNormBackward(engine, dy, x, shape, { weight: layer.weight, saveMean: r.saveMean, saveInvStd: r.saveInvStd, useInputStats: false });
    expect(Array.from(dx)).toEqual(Array.from(b.dx));
    expect(Object.keys(layer.stateDict())).toEqual(['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
    expect(layer.numBatchesTracked).toBe(0); // PyTorch's _InstanceNorm never increments it
    const copy = new InstanceNorm(engine, 4, { affine: true, trackRunningStats: true });
    copy.loadStateDict(JSON.parse(JSON.stringify(layer.stateDict())));
    expect(Array.from(copy.runningVar!)).toEqual(Array.from(layer.runningVar!));
  });
});

// ---------------------------------------------------------------------------------------------
// ONNX backend vectors (../shared/vectors/onnx_norms/, mapped by its README): GroupNormalization
// opset 21 (per-channel scale) and opset 18 (per-group scale, repeated per channel), and
// InstanceNormalization. Every case, both release builds, the vector's tolerance.
const NORMS = new URL('../../shared/vectors/onnx_norms/', import.meta.url);
const VECTORS = vectorsRootExists(NORMS)
  ? readdirSync(NORMS).filter((f) => /^test_(group_normalization|instancenorm)_.*\.json$/.test(f)).sort()
  : [];
if (VECTORS.length === 0) {
  if (process.env.CI === 'true') throw new Error(`ONNX norm vectors not found at ${NORMS.pathname}`);
  console.warn(`\n*** SKIPPING the GroupNorm/InstanceNorm ONNX vectors: none at ${NORMS.pathname} ***\n`);
}

describe.runIf(VECTORS.length > 0).each(BUILD_NAMES)('ONNX norm vectors, %s build', (build) => {
  if (skipBuild(build)) return;
  it('finds the GroupNormalization (opsets 18 and 21) and InstanceNormalization vectors', () => {
    expect(VECTORS.length).toBeGreaterThanOrEqual(4);
  });
  it.each(VECTORS)('%s', async (file) => {
    const engine = await makeEngine(build);
    const v = JSON.parse(readFileSync(new URL(file, NORMS), 'utf8'));
    const data = (t: { data: number[] }) => Float32Array.from(t.data);
    const eps = v['op attributes'].epsilon as number;
    let y: Float32Array, expected: { data: number[] };
    if (v.op === 'GroupNormalization') {
      const G = v.num_groups as number, per = v.channels_per_group as number;
      const perChannel = (t: Float32Array) => (v.scale_bias_per === 'group' ? Float32Array.from({ length: G * per }, (_, c) => t[Math.floor(c / per)]) : t);
      y = groupNorm(engine, data(v.inputs.X), v.inputs.X.shape, {
        groups: G, layout: 'NCHW', weight: perChannel(data(v.inputs.scale)), bias: perChannel(data(v.inputs.bias)), eps,
      }).y;
      expected = v.outputs.Y;
    } else {
      y = instanceNorm(engine, data(v.inputs.input), v.inputs.input.shape, { layout: 'NCHW', weight: data(v.inputs.scale), bias: data(v.inputs.B), eps }).y;
      expected = v.outputs.output;
    }
    const { atol, rtol } = v.tolerance;
    const bad = expected.data.map((e, i) => [i, e, y[i]] as const).filter(([, e, a]) => !(Math.abs(a - e) <= atol + rtol * Math.abs(e)));
    expect(bad, `${v.id}: [index, expected, actual]`).toEqual([]);
  });
});
