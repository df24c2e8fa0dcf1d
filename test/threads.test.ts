// Threaded engines (src/threads/): every output bit-identical to the single-threaded engine for
// 2, 3 and 4 threads, on shapes that reach every split (block ranges of the statistics and
// backward sums, channel ranges of the channel-at-a-time kernels, sample / channel / row ranges
// of the applies), both layouts, every op, every build of the build table (relaxed-simd where this Node has it); calls too small to split stay on the
// calling thread; the pool's life cycle (lazy start, startThreads, dispose, a lost or failing
// worker) and zero-copy tensors over shared memory.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, groupNorm, groupNormBackward, instanceNorm, instanceNormBackward, layerNorm, layerNormBackward, rmsNorm, rmsNormBackward, DisposedError, InvalidArgumentError, MemoryError, ThreadError, type Engine } from '../src/index.js';
import { MIN_VALUES_PER_THREAD } from '../src/threads/split.js';
import type { Pool } from '../src/threads/pool.js';
import { rng } from './helpers/numeric.js';
import { skipBuild } from './helpers/engines.js';
import { BUILD_NAMES } from '../src/wasm/builds.js';

type Layout = 'NCHW' | 'NHWC';
interface Case { name: string; shape: number[]; layout: Layout }

// Every case has at least 2 · MIN_VALUES_PER_THREAD values, so its reductions split; those with
// 2 · MIN_APPLY_VALUES_PER_THREAD or more split their applies too.
const CASES: Case[] = [
  { name: 'NCHW large planes (channel-at-a-time kernels, channel ranges)', shape: [8, 24, 80, 80], layout: 'NCHW' },
  { name: 'NCHW small planes (block ranges, sample ranges)', shape: [512, 20, 7, 31], layout: 'NCHW' },
  { name: 'NCHW one sample (channel ranges of the apply)', shape: [1, 37, 251, 233], layout: 'NCHW' },
  { name: '[N, C] (channels-last kernels on rows)', shape: [30000, 37], layout: 'NCHW' },
  { name: 'NHWC C % 4 != 0 (row ranges, block ranges)', shape: [48, 50, 49, 19], layout: 'NHWC' },
  { name: 'NHWC wide channels (one block: only the applies split)', shape: [16, 8, 8, 4100], layout: 'NHWC' },
];

/** Values as the world draws them: offsets, an outlier at each channel's start, sparse post-ReLU runs. */
function data(n: number, seed: number): Float32Array {
  const r = rng(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = r();
    x[i] = u < 0.3 ? 0 : 1000 + (r() - 0.5) * 7.3 + (i % 97 === 0 ? 3e4 : 0);
  }
  return x;
}

function expectSameBits(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let first = -1;
  for (let i = 0; i < ua.length && first < 0; i++) if (ua[i] !== ub[i]) first = i;
  expect(first, `${what}: first differing index (${a[first]} vs ${b[first]})`).toBe(-1);
}

/** Counts the pool's split calls (the proof that a case really ran on several threads). */
/** Counts the pool's split calls (more than one job), and which kernels they ran. */
function countRuns(pool: Pool): { count: number; names: Set<string> } {
  const counter = { count: 0, names: new Set<string>() };
  const run = pool.run.bind(pool);
  pool.run = (k, name, jobs) => {
    if (jobs.length > 1) { counter.count++; counter.names.add(name); }
    run(k, name, jobs);
  };
  return counter;
}

/** Everything one engine computes on a case: forward train/eval (+ReLU), backward train/eval, synchronized-BN steps. */
function outputs(engine: Engine, c: Case, zeroCopy: boolean): Record<string, Float32Array> {
  const n = c.shape.reduce((a, b) => a * b), C = c.layout === 'NCHW' ? c.shape[1] : c.shape[c.shape.length - 1];
  const x0 = data(n, 11), dy0 = data(n, 12).map((v) => (v - 900) / 100);
  const w = Float32Array.from({ length: C }, (_, i) => 0.5 + (i % 7) / 3), b = Float32Array.from({ length: C }, (_, i) => i / 11 - 1);
  // Zero-copy: x, dy, y and (the ReLU pass) the destinations of saveMean, saveInvStd, dweight, dbias are tensors.
  const tensors = zeroCopy ? [engine.tensor(x0), engine.tensor(dy0), engine.tensor(n), ...[0, 1, 2, 3].map(() => engine.tensor(C))] : [];
  const x = () => (zeroCopy ? tensors[0].data : x0), dy = () => (zeroCopy ? tensors[1].data : dy0);
  const dest = (relu: boolean, i: number) => (zeroCopy && relu ? tensors[3 + i].data : undefined);
  const out: Record<string, Float32Array> = {};
  const rm = new Float32Array(C).fill(0.25), rv = new Float32Array(C).fill(2);
  for (const relu of [false, true]) {
    const activation = relu ? 'relu' as const : 'none' as const;
    const opts = { layout: c.layout, training: true, weight: w, bias: b, runningMean: rm, runningVar: rv, activation };
    const saved = { saveMeanOut: dest(relu, 0), saveInvStdOut: dest(relu, 1) };
    const f = engine.forward(x(), c.shape, zeroCopy ? { ...opts, out: tensors[2].data, ...saved } : opts);
    out[`train${relu} y`] = new Float32Array(f.y);
    out[`train${relu} saveMean`] = new Float32Array(f.saveMean);
    out[`train${relu} saveInvStd`] = new Float32Array(f.saveInvStd);
    const g = engine.backward(dy(), x(), c.shape, {
      layout: c.layout, training: true, weight: w, saveMean: f.saveMean, saveInvStd: f.saveInvStd, activation, y: relu ? f.y : null,
      dweightOut: dest(relu, 2), dbiasOut: dest(relu, 3),
    });
    out[`back${relu} dx`] = new Float32Array(g.dx);
    out[`back${relu} dweight`] = new Float32Array(g.dweight);
    out[`back${relu} dbias`] = new Float32Array(g.dbias);
  }
  out['runningMean'] = rm;
  out['runningVar'] = rv;
  out['eval y'] = engine.forward(x(), c.shape, { layout: c.layout, training: false, weight: w, bias: b, runningMean: rm, runningVar: rv }).y;
  const ge = engine.backward(dy(), x(), c.shape, { layout: c.layout, training: false, weight: w, saveMean: rm, saveInvStd: rv });
  out['eval dx'] = ge.dx;
  const m = engine.moments(x(), c.shape, { layout: c.layout });
  out['moments mean'] = new Float32Array(new Float64Array(m.mean).buffer);
  out['moments m2'] = new Float32Array(new Float64Array(m.m2).buffer);
  const f = engine.forwardWithMoments(x(), c.shape, { layout: c.layout, moments: m, weight: w, bias: b });
  out['withMoments y'] = f.y;
  const s = engine.backwardReduce(dy(), x(), c.shape, { layout: c.layout, saveMean: f.saveMean, saveInvStd: f.saveInvStd });
  out['reduce sumDy'] = new Float32Array(s.sumDy.buffer.slice(0));
  out['reduce sumDyXhat'] = new Float32Array(s.sumDyXhat.buffer.slice(0));
  for (const t of tensors) t.free();
  return out;
}

describe.each(BUILD_NAMES)('%s build: threaded engines compute the single-threaded bits', (build) => {
  if (skipBuild(build)) return;
  let single: Engine;
  const threaded: Record<number, Engine> = {};
  beforeAll(async () => {
    single = await createEngine({ build, threads: 1 });
    for (const T of [2, 3, 4]) {
      threaded[T] = await createEngine({ build, threads: T });
      expect(await threaded[T].startThreads()).toBe(T);
    }
  });
  afterAll(() => { for (const e of Object.values(threaded)) e.dispose(); });

  it.each(CASES)('$name: $shape $layout, threads 2, 3, 4, copy and zero-copy', (c) => {
    expect(c.shape.reduce((a, b) => a * b)).toBeGreaterThanOrEqual(2 * MIN_VALUES_PER_THREAD);
    for (const zeroCopy of [false, true]) {
      const ref = outputs(single, c, zeroCopy);
      for (const T of [2, 3, 4]) {
        const runs = countRuns(threaded[T].pool!);
        const got = outputs(threaded[T], c, zeroCopy);
        expect(runs.count, 'calls split over the pool').toBeGreaterThan(0);
        for (const key of Object.keys(ref)) expectSameBits(got[key], ref[key], `threads ${T}, ${zeroCopy ? 'zero-copy' : 'copy'}: ${key}`);
      }
    }
  });
});

describe.each(BUILD_NAMES)('%s build: LayerNorm and RMSNorm forward and backward split by rows with the single-threaded bits', (build) => {
  if (skipBuild(build)) return;
  let single: Engine;
  const threaded: Record<number, Engine> = {};
  beforeAll(async () => {
    single = await createEngine({ build, threads: 1 });
    for (const T of [2, 3, 4]) {
      threaded[T] = await createEngine({ build, threads: T });
      await threaded[T].startThreads();
    }
  });
  afterAll(() => { for (const e of Object.values(threaded)) e.dispose(); });

  it.each([[[2048, 768]], [[3, 40, 9001]]])('%j, with and without weight, bias and a residual', (shape) => {
    const D = shape[shape.length - 1], n = shape.reduce((a, b) => a * b);
    expect(n).toBeGreaterThanOrEqual(2 * MIN_VALUES_PER_THREAD);
    const x = data(n, 21), residual = data(n, 22).map((v) => v / 1000 - 1);
    const weight = Float32Array.from({ length: D }, (_, i) => 1 + (i % 5) / 7), bias = Float32Array.from({ length: D }, (_, i) => (i % 3) / 5);
    const dy = data(n, 23).map((v) => (v - 900) / 100);
    const run = (engine: Engine, runs?: { names: Set<string> }) => {
      const out: Record<string, Float32Array> = {};
      for (const extra of [{}, { weight, bias, residual }]) {
        const tag = 'weight' in extra ? ' affine+residual' : '';
        const l = layerNorm(engine, x, shape, { normalizedShape: [D], ...extra });
        Object.assign(out, { [`ln y${tag}`]: l.y, [`ln mean${tag}`]: l.saveMean, [`ln invStd${tag}`]: l.saveInvStd });
        if (l.sum) out[`ln sum${tag}`] = l.sum;
        const { bias: _b, ...rmsExtra } = extra as { bias?: Float32Array };
        const r = rmsNorm(engine, x, shape, { normalizedShape: [D], ...rmsExtra });
        Object.assign(out, { [`rms y${tag}`]: r.y, [`rms invRms${tag}`]: r.saveInvRms });
        const w = 'weight' in extra ? weight : undefined, src = l.sum ?? x;
        runs?.names.clear();
        const lb = layerNormBackward(engine, dy, src, shape, { normalizedShape: [D], weight: w, saveMean: l.saveMean, saveInvStd: l.saveInvStd });
        const rb = rmsNormBackward(engine, dy, r.sum ?? x, shape, { normalizedShape: [D], weight: w, saveInvRms: r.saveInvRms });
        if (runs) expect([...runs.names].sort(), `backward${tag}: the kernels that split`).toEqual(['layerNormBackwardRowsF32', 'rmsNormBackwardRowsF32']);
        Object.assign(out, { [`ln dx${tag}`]: lb.dx, [`ln dweight${tag}`]: lb.dweight, [`ln dbias${tag}`]: lb.dbias, [`rms dx${tag}`]: rb.dx, [`rms dweight${tag}`]: rb.dweight });
      }
      return out;
    };
    const ref = run(single);
    for (const T of [2, 3, 4]) {
      const runs = countRuns(threaded[T].pool!);
      const got = run(threaded[T], runs);
      expect(runs.count).toBeGreaterThan(0);
      for (const key of Object.keys(ref)) expectSameBits(got[key], ref[key], `threads ${T}: ${key}`);
    }
  });
});

describe.each(BUILD_NAMES)('%s build: GroupNorm and InstanceNorm forward and backward split with the single-threaded bits', (build) => {
  if (skipBuild(build)) return;
  let single: Engine;
  const threaded: Record<number, Engine> = {};
  beforeAll(async () => {
    single = await createEngine({ build, threads: 1 });
    for (const T of [2, 3, 4]) {
      threaded[T] = await createEngine({ build, threads: T });
      await threaded[T].startThreads();
    }
  });
  afterAll(() => { for (const e of Object.values(threaded)) e.dispose(); });

  // NCHW ('runs': block ranges of each group's run, plane ranges), NHWC ('rows': block and row ranges per sample).
  it.each([
    { dims: [1, 320, 80, 90], layout: 'NCHW' as Layout }, { dims: [2, 64, 128, 130], layout: 'NCHW' as Layout },
    { dims: [1, 320, 80, 90], layout: 'NHWC' as Layout }, { dims: [2, 64, 128, 130], layout: 'NHWC' as Layout },
  ])('$dims $layout, GroupNorm 32 groups with and without SiLU, InstanceNorm with input and with running statistics', ({ dims, layout }) => {
    const C = dims[1], shape = layout === 'NCHW' ? dims : [dims[0], ...dims.slice(2), C], n = dims.reduce((a, b) => a * b);
    expect(n).toBeGreaterThanOrEqual(4 * MIN_VALUES_PER_THREAD);
    const x = data(n, 31), dy = data(n, 32).map((v) => (v - 900) / 100);
    const weight = Float32Array.from({ length: C }, (_, i) => 1 + (i % 5) / 7), bias = Float32Array.from({ length: C }, (_, i) => (i % 3) / 5 - 0.3);
    const runningMean = Float32Array.from({ length: C }, (_, i) => i / 9), runningVar = Float32Array.from({ length: C }, (_, i) => 1 + i / 13);
    const L = layout === 'NCHW' ? 'Nchw' : 'Nhwc';
    const run = (engine: Engine, runs?: { names: Set<string> }) => {
      const out: Record<string, Float32Array> = {};
      for (const activation of [undefined, 'silu' as const]) {
        const tag = `gn${activation ?? ''}`;
        const r = groupNorm(engine, x, shape, { groups: 32, layout, weight, bias, activation });
        Object.assign(out, { [`${tag} y`]: r.y, [`${tag} mean`]: r.saveMean, [`${tag} invStd`]: r.saveInvStd });
        runs?.names.clear();
        const g = groupNormBackward(engine, dy, x, shape, { groups: 32, layout, weight, bias, saveMean: r.saveMean, saveInvStd: r.saveInvStd, activation });
        Object.assign(out, { [`${tag} dx`]: g.dx, [`${tag} dweight`]: g.dweight, [`${tag} dbias`]: g.dbias });
        if (runs) {
          const split = [`backwardReduce${L}F32`, `groupNormDx${L}F32`, ...(activation ? [`siluBackward${L}F32`] : [])];
          expect([...runs.names].sort(), `${tag} backward: the kernels that split`).toEqual(split.sort());
        }
      }
      const i = instanceNorm(engine, x, shape, { layout, weight, bias });
      Object.assign(out, { 'in y': i.y, 'in mean': i.saveMean, 'in invStd': i.saveInvStd });
      const ib = instanceNormBackward(engine, dy, x, shape, { layout, weight, saveMean: i.saveMean, saveInvStd: i.saveInvStd });
      Object.assign(out, { 'in dx': ib.dx, 'in dweight': ib.dweight, 'in dbias': ib.dbias });
      // Constant (running) statistics: dx = w·invStd·dy by backwardDx.
      const e = instanceNorm(engine, x, shape, { layout, weight, bias, runningMean, runningVar, useInputStats: false });
      runs?.names.clear();
      const eb = instanceNormBackward(engine, dy, x, shape, { layout, weight, saveMean: e.saveMean, saveInvStd: e.saveInvStd, useInputStats: false });
      if (runs) expect([...runs.names].sort(), 'instance norm backward with running statistics').toEqual([`backwardDx${L}F32`, `backwardReduce${L}F32`].sort());
      return Object.assign(out, { 'in eval y': e.y, 'in eval dx': eb.dx, 'in eval dweight': eb.dweight, 'in eval dbias': eb.dbias });
    };
    const ref = run(single);
    for (const T of [2, 3, 4]) {
      const runs = countRuns(threaded[T].pool!);
      const got = run(threaded[T], runs);
      expect(runs.count).toBeGreaterThan(0);
      for (const key of Object.keys(ref)) expectSameBits(got[key], ref[key], `threads ${T}: ${key}`);
    }
  });
});

describe('the pool', () => {
  it('threads: 1 is the single-threaded engine: no pool, no shared memory; info() reports what was asked and what runs', async () => {
    const one = await createEngine({ threads: 1 });
    expect(one.pool).toBeNull();
    expect(one.kernels.memory.buffer).toBeInstanceOf(ArrayBuffer);
    expect(one.info().threads).toEqual({ requested: 1, count: 1, running: 1, reason: null });
    const auto = await createEngine();
    expect(auto.info().threads).toMatchObject({ requested: 'auto', reason: null });
    expect(auto.info().threads.count).toBe(Math.min(4, (await import('node:os')).availableParallelism()));
    auto.dispose();
  });

  it('workers start on the first call big enough to split (which runs on the calling thread), never for small calls', async () => {
    const engine = await createEngine({ threads: 2 });
    expect(engine.info().threads).toEqual({ requested: 2, count: 2, running: 1, reason: null });
    const small = data(MIN_VALUES_PER_THREAD, 3);
    for (let i = 0; i < 5; i++) engine.forward(small, [small.length / 16, 16], { training: true });
    await new Promise((r) => setTimeout(r, 200));
    expect(engine.info().threads.running, 'a small call started workers').toBe(1);
    const big = data(4 * MIN_VALUES_PER_THREAD, 4);
    const runs = countRuns(engine.pool!);
    engine.forward(big, [big.length / 16, 16], { training: true });
    expect(runs.count, 'the first big call waited for workers').toBe(0);
    expect(await engine.startThreads()).toBe(2);
    engine.forward(big, [big.length / 16, 16], { training: true });
    expect(runs.count).toBeGreaterThan(0);
    engine.dispose();
  });

  it('options.threads: anything but a whole number in [1, 64] or "auto" is an InvalidArgumentError naming it', async () => {
    for (const bad of [0, -1, 1.5, 65, NaN, '2', null, true]) {
      await expect(createEngine({ threads: bad as never })).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'options.threads' });
    }
    await expect(createEngine({ threads: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('dispose() terminates the workers; every later call is a DisposedError; dispose is idempotent', async () => {
    const engine = await createEngine({ threads: 2 });
    await engine.startThreads();
    const t = engine.tensor(64);
    engine.dispose();
    engine.dispose();
    expect(engine.info().threads).toMatchObject({ running: 1, reason: 'the engine was disposed' });
    const x = new Float32Array(64);
    expect(() => engine.forward(x, [4, 16], { training: true })).toThrow(DisposedError);
    expect(() => engine.backward(x, x, [4, 16], { training: true, saveMean: new Float32Array(16), saveInvStd: new Float32Array(16) })).toThrow(DisposedError);
    expect(() => engine.moments(x, [4, 16])).toThrow(DisposedError);
    expect(() => engine.tensor(4)).toThrow(DisposedError);
    expect(() => t.data.fill(1)).not.toThrow(); // the memory itself stays readable for views already taken
    await expect(engine.startThreads()).rejects.toBeInstanceOf(DisposedError);
    const single = await createEngine({ threads: 1 });
    single.dispose();
    expect(() => single.forward(x, [4, 16], { training: true })).toThrow(DisposedError);
  });

  it('a kernel that fails on a worker makes the call throw ThreadError, after every other range finished; the pool goes on', async () => {
    const engine = await createEngine({ threads: 2 });
    await engine.startThreads();
    const k = engine.kernels, pool = engine.pool!;
    const x = engine.tensor(64), partials = engine.tensor(4 * 16 * 2 * 2);
    const ok = [x.byteOffset, 1, 1, 64, 32, 0, 1, partials.byteOffset];
    const outOfBounds = [0xfffff000, 1, 1, 64, 32, 1, 2, partials.byteOffset];
    let error: unknown;
    try { pool.run(k, 'statsNchwF32', [ok, outOfBounds]); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(ThreadError);
    expect(error).toMatchObject({ argument: 'statsNchwF32', received: expect.stringMatching(/^worker 1: .*out of bounds/) });
    expect(pool.reason).toBeNull();
    const big = data(4 * MIN_VALUES_PER_THREAD, 5);
    const ref = (await createEngine({ threads: 1 })).forward(big, [big.length / 32, 32], { training: true });
    expectSameBits(engine.forward(big, [big.length / 32, 32], { training: true }).y, ref.y, 'after a failed range');
    engine.dispose();
  });

  it('a worker that dies: the pool breaks, calls go on on the calling thread with the same bits, info() says why', async () => {
    const engine = await createEngine({ threads: 3 });
    await engine.startThreads();
    const pool = engine.pool! as unknown as { workers: { terminate(): Promise<number> }[] };
    const exited = new Promise<void>((resolve) => (pool.workers[2] as unknown as { once(e: string, f: () => void): void }).once('exit', resolve));
    await pool.workers[2].terminate();
    await exited;
    expect(engine.info().threads).toMatchObject({ count: 3, running: 1, reason: expect.stringMatching(/worker 2 exited/) });
    const big = data(4 * MIN_VALUES_PER_THREAD, 6);
    const ref = (await createEngine({ threads: 1 })).forward(big, [big.length / 32, 32], { training: true });
    expectSameBits(engine.forward(big, [big.length / 32, 32], { training: true }).y, ref.y, 'after losing a worker');
    engine.dispose();
  });

  it('an idle pool never keeps a Node process alive (workers are unref\'d)', async () => {
    const script = `
      const { createEngine } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
      const engine = await createEngine({ threads: 2 });
      console.log(await engine.startThreads());
      const x = new Float32Array(${4 * MIN_VALUES_PER_THREAD}).map((_, i) => i % 7);
      engine.forward(x, [x.length / 8, 8], { training: true });
      console.log('done');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`the process did not exit: ${stdout} ${stderr}`)); }, 20_000);
      child.on('close', (c) => { clearTimeout(timer); resolve(c); });
    });
    expect({ code, stdout: stdout.trim(), stderr }).toEqual({ code: 0, stdout: '2\ndone', stderr: '' });
  });
});

describe('zero-copy tensors over shared memory', () => {
  it('views never go stale: a view taken before memory grew is still used in place, and still checked by address range', async () => {
    const engine = await createEngine({ threads: 2 });
    const shape = [64, 16], n = 64 * 16;
    const t = engine.tensor(data(n, 7));
    const before = t.data, bufferBefore = before.buffer;
    const big = engine.tensor(64 << 20); // grows the memory: a new SharedArrayBuffer object, same memory
    expect(engine.kernels.memory.buffer).not.toBe(bufferBefore);
    const ref = (await createEngine({ threads: 1 })).forward(data(n, 7), shape, { training: true });
    const r = engine.forward(before, shape, { training: true, out: before });
    expect(r.y).toBe(before); // in place: the caller's own object back
    expectSameBits(t.data, ref.y, 'in place through a view from before the growth');
    // A view of this memory outside every live tensor is still rejected.
    const outside = new Float32Array(bufferBefore, 0, n);
    expect(() => engine.forward(outside, shape, { training: true })).toThrow(MemoryError);
    // Overlap is judged by address, whichever buffer object a view is over.
    expect(() => engine.forward(before, shape, { training: true, out: t.data.subarray(0, n) })).not.toThrow();
    expect(() => engine.forward(before, shape, { training: true, out: new Float32Array(engine.kernels.memory.buffer, before.byteOffset + 4, n) }))
      .toThrow(/overlapping|inside a tensor/);
    big.free();
    t.free();
    engine.dispose();
  });

  it('memory grown outside the engine (kernels.memory.grow): the next allocation sees the longer memory', async () => {
    const engine = await createEngine({ threads: 2 });
    engine.kernels.memory.grow(4);
    const t = engine.tensor(data(70_000, 8));
    expect(engine.forward(t.data, [70_000 / 7, 7], { training: true }).y.length).toBe(70_000);
    engine.dispose();
  });
});
