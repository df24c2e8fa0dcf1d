// Isolation and all-or-nothing behaviour across engines and layers:
// - two engines in one process do not interfere: interleaved calls (different shapes, layouts,
//   copy and zero-copy paths, memory growth in one of them) give bit-identical results to the
//   same calls run sequentially, each engine on its own;
// - a layer's state is its own: layers interleaved on one engine (or across engines) end up
//   bit-identical to the same layers run one after the other;
// - a layer that receives random invalid calls between its valid ones ends up bit-identical to
//   a twin that only ever saw the valid ones (a failed call changes nothing, not even
//   numBatchesTracked or what backward() refers to).
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BatchNorm, BatchNormError, type Engine, type Tensor } from '../src/index.js';
import { BUILDS, makeEngine, skipBuild, unsupported } from './helpers/engines.js';
import { gauss, product, rng } from './helpers/numeric.js';

type Layout = 'NCHW' | 'NHWC';

function data(n: number, seed: number, scale = 1): Float32Array {
  const next = rng(seed);
  const g = gauss(next);
  const offset = (next() - 0.5) * 10;
  return Float32Array.from({ length: n }, () => scale * (offset + g()));
}

function bytes(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function sameBytes(a: ArrayBufferView, b: ArrayBufferView, what: string): void {
  if (a.byteLength !== b.byteLength || Buffer.compare(bytes(a), bytes(b)) !== 0) throw new Error(`${what}: not bit-identical`);
}

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

interface Step { engine: 0 | 1; layout: Layout; dims: [number, number, number]; training: boolean; zeroCopy: boolean; backward: boolean; grow: boolean; seed: number }

const stepArb: fc.Arbitrary<Step> = fc.record({
  engine: fc.constantFrom<0 | 1>(0, 1),
  layout: fc.constantFrom<Layout>('NCHW', 'NHWC'),
  dims: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 2, max: 40 })),
  training: fc.boolean(),
  zeroCopy: fc.boolean(),
  backward: fc.boolean(),
  grow: fc.boolean(),
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
});

/**
 * Runs one engine's share of the steps and returns every output, bytes only. State carried
 * from step to step: the running statistics (one pair per C) and a few tensors kept alive.
 */
class Session {
  readonly outputs: Buffer[] = [];
  private readonly running = new Map<number, { rm: Float32Array; rv: Float32Array }>();
  private readonly kept: Tensor[] = [];
  private readonly keptValues: Float32Array[] = [];
  constructor(readonly engine: Engine) {}

  run(s: Step): void {
    const [n, C, inner] = s.dims;
    const shape = s.layout === 'NCHW' ? [n, C, inner] : [n, inner, C];
    const size = product(shape);
    const st = this.running.get(C) ?? { rm: new Float32Array(C), rv: new Float32Array(C).fill(1) };
    this.running.set(C, st);
    const x = data(size, s.seed), dy = data(size, s.seed + 1);
    const e = this.engine;
    let tx: Tensor | null = null, tdy: Tensor | null = null;
    if (s.zeroCopy) {
      tx = e.tensor(x);
      tdy = e.tensor(dy);
    }
    if (s.grow) {
      // Keep a tensor alive (it must survive everything that follows, including growth), and grow memory.
      const t = e.tensor(data(3 + (s.seed % 50), s.seed + 2));
      this.kept.push(t);
      this.keptValues.push(t.toArray());
      e.tensor(2 ** 16 + (s.seed % 1000)).free();
    }
    const f = e.forward(tx ? tx.data : x, shape, { layout: s.layout, training: s.training, runningMean: st.rm, runningVar: st.rv });
    this.outputs.push(Buffer.from(f.y.slice().buffer), Buffer.from(f.saveMean.buffer), Buffer.from(f.saveInvStd.buffer), Buffer.from(st.rm.slice().buffer), Buffer.from(st.rv.slice().buffer));
    if (s.backward) {
      const b = e.backward(tdy ? tdy.data : dy, tx ? tx.data : x, shape, { layout: s.layout, training: s.training, saveMean: f.saveMean, saveInvStd: f.saveInvStd, out: tdy ? tdy.data : undefined });
      this.outputs.push(Buffer.from(b.dx.slice().buffer), Buffer.from(b.dweight.buffer), Buffer.from(b.dbias.buffer));
    }
    tx?.free();
    tdy?.free();
    this.kept.forEach((t, i) => sameBytes(t.data, this.keptValues[i], 'a kept tensor changed'));
  }

  close(): void {
    this.kept.forEach((t) => t.free());
    expect(this.engine.info().bytesInUse).toBe(0);
  }
}

describe('two engines in one process do not interfere', () => {
  it.for([['simd', 'simd'], ['simd', 'scalar'], ['scalar', 'debug'], ['relaxed-simd', 'simd']] as const)('%s + %s: interleaved calls give bit-identical results to sequential ones', async ([a, b], ctx) => {
    ctx.skip(unsupported(a) !== null, unsupported(a) ?? '');
    await fc.assert(fc.asyncProperty(fc.array(stepArb, { minLength: 2, maxLength: 14 }), async (steps) => {
      // Interleaved on two engines.
      const inter = [new Session(await makeEngine(a)), new Session(await makeEngine(b))];
      for (const s of steps) inter[s.engine].run(s);
      // Sequential: each engine's steps on its own fresh engine, one engine after the other.
      const seq = [new Session(await makeEngine(a)), new Session(await makeEngine(b))];
      for (const k of [0, 1] as const) for (const s of steps) if (s.engine === k) seq[k].run(s);
      for (const k of [0, 1]) {
        expect(inter[k].outputs.length).toBe(seq[k].outputs.length);
        inter[k].outputs.forEach((o, i) => { if (Buffer.compare(o, seq[k].outputs[i]) !== 0) throw new Error(`engine ${k} output ${i} differs when interleaved`); });
        inter[k].close();
        seq[k].close();
      }
    }), { numRuns: 25, seed: 0x150 });
  });

  it("a tensor of one engine passed to another is used as a plain array (copied), and the other engine's growth leaves it attached", async () => {
    const [e1, e2] = [await makeEngine('simd'), await makeEngine('simd')];
    const x = data(4 * 6 * 5, 1);
    const t1 = e1.tensor(x);
    const view = t1.data;
    const ref = e1.forward(x, [4, 6, 5], { training: true });
    const r = e2.forward(view, [4, 6, 5], { training: true });
    sameBytes(r.y, ref.y, 'y');
    expect(e2.info().bytesInUse).toBe(0);
    const big = e2.tensor(2 ** 20); // e2 grows; e1's views are unaffected
    expect(view.length).toBe(x.length);
    sameBytes(view, x, 'e1 tensor after e2 grew');
    // out in e1's memory for an e2 call: written through the copy path, nothing else in e1 touched.
    const out = e1.tensor(x.length);
    const before = Buffer.from(new Uint8Array(e1.kernels.memory.buffer).slice());
    e2.forward(view, [4, 6, 5], { training: true, out: out.data });
    sameBytes(out.data, ref.y, 'out in the other engine');
    const after = new Uint8Array(e1.kernels.memory.buffer);
    for (let i = 0; i < after.length; i++) {
      if (after[i] !== before[i] && (i < out.byteOffset || i >= out.byteOffset + 4 * out.length)) throw new Error(`e1 byte ${i} changed outside out`);
    }
    big.free();
    t1.free();
    out.free();
  });
});

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

function state(bn: BatchNorm) {
  return [bn.weight, bn.bias, bn.runningMean, bn.runningVar, bn.gradWeight, bn.gradBias].map((a) => (a ? Buffer.from(a.slice().buffer) : null))
    .concat([Buffer.from(JSON.stringify({ n: bn.numBatchesTracked, training: bn.training }))]);
}
function sameState(a: BatchNorm, b: BatchNorm, what: string): void {
  const sa = state(a), sb = state(b);
  sa.forEach((v, i) => {
    const w = sb[i];
    if ((v === null) !== (w === null) || (v && w && Buffer.compare(v, w) !== 0)) throw new Error(`${what}: state ${i} differs`);
  });
}

describe("a layer's state is its own", () => {
  it('layers interleaved on one engine (and across engines) match the same layers run one after the other', async () => {
    const shared = await makeEngine('simd');
    const configs = [
      { C: 3, layout: 'NCHW' as const, momentum: 0.1 }, { C: 3, layout: 'NCHW' as const, momentum: null },
      { C: 5, layout: 'NHWC' as const, momentum: 0.3 }, { C: 3, layout: 'NHWC' as const, momentum: 0.1 },
    ];
    const inter = configs.map((c) => new BatchNorm(shared, c.C, { layout: c.layout, momentum: c.momentum }));
    const schedule = Array.from({ length: 40 }, (_, i) => ({ layer: (i * 7) % configs.length, i }));
    const act = (bn: BatchNorm, c: (typeof configs)[number], i: number): Buffer[] => {
      const shape = c.layout === 'NCHW' ? [2 + (i % 3), c.C, 4] : [2 + (i % 3), 4, c.C];
      if (i % 11 === 10) bn.eval();
      if (i % 11 === 3) bn.train();
      const y = bn.forward(data(product(shape), i), shape);
      const dx = bn.backward(data(product(shape), i + 100));
      return [Buffer.from(y.buffer), Buffer.from(dx.slice().buffer)];
    };
    const outInter: Buffer[][] = configs.map(() => []);
    for (const { layer, i } of schedule) outInter[layer].push(...act(inter[layer], configs[layer], i));
    for (let k = 0; k < configs.length; k++) {
      const solo = new BatchNorm(await makeEngine('simd'), configs[k].C, { layout: configs[k].layout, momentum: configs[k].momentum });
      const outSolo: Buffer[] = [];
      for (const { layer, i } of schedule) if (layer === k) outSolo.push(...act(solo, configs[k], i));
      outSolo.forEach((o, j) => { if (Buffer.compare(o, outInter[k][j]) !== 0) throw new Error(`layer ${k} output ${j} differs when interleaved`); });
      sameState(inter[k], solo, `layer ${k}`);
    }
    expect(shared.info().bytesInUse).toBe(0);
  });

  it("two layers never share arrays; mutating one layer's parameters leaves the other alone", async () => {
    const engine = await makeEngine('simd');
    const a = new BatchNorm(engine, 4), b = new BatchNorm(engine, 4);
    for (const key of ['weight', 'bias', 'runningMean', 'runningVar'] as const) {
      expect(a[key]).not.toBe(b[key]);
      expect(a[key]!.buffer).not.toBe(b[key]!.buffer);
    }
    a.weight!.fill(3);
    a.forward(data(32, 1), [8, 4]);
    expect(Array.from(b.weight!)).toEqual([1, 1, 1, 1]);
    expect(Array.from(b.runningMean!)).toEqual([0, 0, 0, 0]);
    expect(b.numBatchesTracked).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Layer fuzz: invalid calls interleaved with valid ones change nothing
// ---------------------------------------------------------------------------------------------

type LayerOp =
  | { op: 'forward'; n: number; spatial: number; bad: string | null; seed: number }
  | { op: 'backward'; bad: string | null; seed: number }
  | { op: 'mode'; training: boolean | string };

const BAD_FORWARD = ['x:f64', 'x:array', 'x:len+1', 'x:len-1', 'x:null', 'x:detached', 'shape:C', 'shape:rank1', 'shape:dim0', 'shape:dimFrac', 'shape:string', 'nper:1'];
const BAD_BACKWARD = ['dy:f64', 'dy:len+1', 'dy:len-1', 'dy:null', 'dy:array', 'dy:detached'];

const layerOpArb: fc.Arbitrary<LayerOp> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('forward' as const), n: fc.integer({ min: 1, max: 4 }), spatial: fc.integer({ min: 1, max: 5 }), bad: fc.oneof(fc.constant(null), fc.constantFrom(...BAD_FORWARD)), seed: fc.integer({ min: 1, max: 2 ** 30 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('backward' as const), bad: fc.oneof(fc.constant(null), fc.constantFrom(...BAD_BACKWARD)), seed: fc.integer({ min: 1, max: 2 ** 30 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('mode' as const), training: fc.oneof(fc.boolean(), fc.constant('yes')) }) },
);

function detachedF32(n: number): Float32Array {
  const buffer = new ArrayBuffer(4 * n);
  const view = new Float32Array(buffer);
  structuredClone(buffer, { transfer: [buffer] });
  return view;
}

describe.each(BUILDS)('layer fuzz (%s build): random invalid calls between valid ones change nothing', (build) => {
  if (skipBuild(build)) return;
  let engine: Engine, twinEngine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
    twinEngine = await makeEngine(build);
  });

  it('the layer ends bit-identical to a twin that only saw the valid calls', () => {
    let rejected = 0, accepted = 0;
    fc.assert(fc.property(
      fc.constantFrom(1, 3, 4, 7), fc.constantFrom<Layout>('NCHW', 'NHWC'), fc.constantFrom(0.1, null, 1), fc.boolean(), fc.boolean(),
      fc.array(layerOpArb, { minLength: 1, maxLength: 12 }),
      (C, layout, momentum, affine, track, ops) => {
        const options = { layout, momentum, affine, trackRunningStats: track };
        const bn = new BatchNorm(engine, C, options), twin = new BatchNorm(twinEngine, C, options);
        let lastShape: number[] | null = null;
        for (const o of ops) {
          let call: () => unknown, twinCall: (() => unknown) | null = null;
          let expectInvalid = false;
          if (o.op === 'mode') {
            expectInvalid = typeof o.training !== 'boolean';
            call = () => bn.train(o.training as boolean);
            twinCall = () => twin.train(o.training as boolean);
          } else if (o.op === 'forward') {
            const shape = layout === 'NCHW' ? [o.n, C, o.spatial] : [o.n, o.spatial, C];
            const size = product(shape);
            const x = data(size, o.seed);
            let argX: unknown = x, argShape: unknown = shape;
            switch (o.bad) {
              case 'x:f64': argX = Float64Array.from(x); break;
              case 'x:array': argX = Array.from(x); break;
              case 'x:len+1': argX = data(size + 1, o.seed); break;
              case 'x:len-1': argX = x.subarray(1); break;
              case 'x:null': argX = null; break;
              case 'x:detached': argX = detachedF32(size); break;
              case 'shape:C': argShape = layout === 'NCHW' ? [o.n, C + 1, o.spatial] : [o.n, o.spatial, C + 1]; argX = data(o.n * (C + 1) * o.spatial, o.seed); break;
              case 'shape:rank1': argShape = [size]; break;
              case 'shape:dim0': argShape = shape.map((d, i) => (i === 0 ? 0 : d)); break;
              case 'shape:dimFrac': argShape = shape.map((d, i) => (i === 0 ? d + 0.5 : d)); break;
              case 'shape:string': argShape = shape.join('x'); break;
              case 'nper:1': argShape = layout === 'NCHW' ? [1, C, 1] : [1, 1, C]; argX = data(C, o.seed); break;
            }
            const batchStats = bn.training || !track;
            // One value per channel is invalid with batch statistics (training, or no running stats).
            const perChannel = o.bad === 'nper:1' ? 1 : o.n * o.spatial;
            expectInvalid = (o.bad !== null && o.bad !== 'nper:1') || (batchStats && perChannel < 2);
            call = () => bn.forward(argX as Float32Array, argShape as number[]);
            if (!expectInvalid) twinCall = () => twin.forward((argX as Float32Array).slice(), argShape as number[]);
            if (!expectInvalid) lastShape = argShape as number[];
          } else {
            const size = lastShape ? product(lastShape) : 4;
            const dy = data(size, o.seed);
            let argDy: unknown = dy;
            switch (o.bad) {
              case 'dy:f64': argDy = Float64Array.from(dy); break;
              case 'dy:len+1': argDy = data(size + 1, o.seed); break;
              case 'dy:len-1': argDy = dy.subarray(1); break;
              case 'dy:null': argDy = null; break;
              case 'dy:array': argDy = Array.from(dy); break;
              case 'dy:detached': argDy = detachedF32(size); break;
            }
            expectInvalid = o.bad !== null || lastShape === null; // no forward yet: nothing to differentiate
            call = () => bn.backward(argDy as Float32Array);
            if (!expectInvalid) twinCall = () => twin.backward(dy.slice());
          }
          let thrown: unknown;
          let result: unknown;
          try {
            result = call();
          } catch (error) {
            thrown = error;
          }
          if (expectInvalid) {
            if (!(thrown instanceof BatchNormError)) throw new Error(`expected a BatchNormError for ${JSON.stringify(o)}, got ${String(thrown ?? result)}`);
            rejected++;
          } else {
            if (thrown !== undefined) throw new Error(`a valid layer call threw: ${String(thrown)} ${JSON.stringify(o)}`, { cause: thrown });
            const twinResult = twinCall!();
            if (result instanceof Float32Array) sameBytes(result, twinResult as Float32Array, `${o.op} output`);
            accepted++;
          }
          sameState(bn, twin, `after ${JSON.stringify(o)}`);
        }
        if (engine.info().bytesInUse !== 0) throw new Error('layer calls leaked an allocation');
      },
    ), { numRuns: build === 'simd' ? 300 : 120, seed: 0x1a7 });
    expect(rejected).toBeGreaterThan(100);
    expect(accepted).toBeGreaterThan(100);
  });
});
