// The TensorFlow.js adapter (src/tfjs/) on tfjs's wasm backend (@tensorflow/tfjs-backend-wasm
// 4.22.0, a root devDependency; single-threaded in Node). test/tfjs.test.ts runs the same
// comparisons on the cpu backend; the shared helpers, parameter forms and ours' bound
// (OURS_BOUND: u·(3·|t| + |y|), u = 2^-24, t = (x − m)·s/sqrt(v + eps)) are in test/helpers/tfjs.ts.
//
// Loading: tfjs-backend-wasm's Node build reads its .wasm with fs.readFileSync from its own dist/
// folder (Emscripten's Node path; no fetch, no download, no setWasmPaths needed): asserted below.
//
// tfjs-wasm's own kernel (FusedBatchNorm.cc) rounds more than cpu's: eps crosses into wasm as a
// float32 (ε' = fl(eps)); nf = fl(sqrt(fl(v + ε'))) in float32, d = fl(x − m), p = fl(d·s) in
// float32, then p / nf and o + p / nf in double, rounded once to float32 (the test "tfjs-wasm's
// kernel is the arithmetic the bound assumes" checks this bit for bit). With |δ| <= u per
// rounding: fl(v + ε') = (v + eps)(1 + θ), |θ| <= u + u·eps/(v + eps) + u² <= 2u(1 + u);
// nf = sqrt(v + eps)(1 + φ), |φ| <= |θ|/2 + u + O(u²) <= 2u + O(u²); p / nf = t(1 + δd)(1 + δp)
// (1 + δ64)/(1 + φ), within (4u + O(u²))·|t| of t; the final rounding adds u·|y| (double rounding
// stays within u·(1 + 2^-29)). tfjs-wasm vs exact: 4u·|t| + u·|y|, taken as
// WASM_BOUND = 4u(1 + 2^-20)·|t| + u(1 + 2^-20)·|y| + 2^-149 and checked value by value; ours vs
// tfjs-wasm: OURS_BOUND + WASM_BOUND ≈ 7u·|t| + 2u·|y|.
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as tfc from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { createEngine, type Engine } from '../src/engine.js';
import { oracleForward } from '../src/oracle/batchnorm.js';
import { registerTfjsKernels, type TfjsKernelRegistration } from '../src/tfjs/index.js';
import { U32, product } from './helpers/numeric.js';
import {
  BN_FORMS, OURS_BOUND, expectEpsMismatchDetected, expectFitMatchesTfjs, expectKernelsAgree, positive, randn, runBothKernels,
} from './helpers/tfjs.js';

const tf = tfc;
let engine: Engine;

/** The part of tfjs-wasm's BackendWasm the checks look at. */
interface WasmBackend {
  wasm: { HEAPU8: Uint8Array };
  getMemoryOffset(dataId: object): number;
  numDataIds(): number;
}
/** Bitwise equality of two float32 arrays (vitest's toEqual is slow on millions of values). */
const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
const wasmBackend = () => tf.backend() as unknown as WasmBackend;
/** tfjs-wasm's heap (replaced by a larger ArrayBuffer when it grows). */
const heap = () => wasmBackend().wasm.HEAPU8.buffer;

/** tfjs-wasm's kernel vs exact (see the header). */
const WASM_BOUND = (t: number, y: number) => 4 * U32 * (1 + 2 ** -20) * Math.abs(t) + U32 * (1 + 2 ** -20) * Math.abs(y) + 2 ** -149;

type Transfer = 'heap' | 'copy';
/** Registrations still active when a test ends (e.g. one that failed half-way) are undone after it. */
const live: TfjsKernelRegistration[] = [];
const register = (options?: Parameters<typeof registerTfjsKernels>[2]) => {
  const r = registerTfjsKernels(tf, engine, options);
  live.push(r);
  return r;
};
const registerWasm = (wasmTransfer: Transfer = 'heap') => () => register({ backends: ['wasm'], wasmTransfer });

/** Records each engine.forward call: whether x and `out` were views of tfjs-wasm's heap at that moment. */
function recordForward() {
  const calls: { xOnHeap: boolean; outOnHeap: boolean; shape: number[] }[] = [];
  const forward = engine.forward.bind(engine);
  const spy = vi.spyOn(engine, 'forward').mockImplementation(((x: Float32Array, shape: number[], opts: { out?: Float32Array }) => {
    calls.push({ xOnHeap: x.buffer === heap(), outOnHeap: opts.out?.buffer === heap(), shape: [...shape] });
    return forward(x, shape, opts as never);
  }) as never);
  return { calls, restore: () => spy.mockRestore() };
}

beforeAll(async () => {
  engine = await createEngine();
});

afterEach(() => {
  for (const r of live.splice(0)) r.unregister();
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

describe('tfjs-backend-wasm in Node', () => {
  it('loads its .wasm from its own dist folder (no fetch); a registration made before the backend initializes keeps the fallback working', async () => {
    expect(tf.engine().backendName ?? null, 'no backend initialized before this test').toBeNull();
    const wasmReads: string[] = [];
    const readFileSync = fs.readFileSync;
    vi.spyOn(fs, 'readFileSync').mockImplementation(((file: fs.PathOrFileDescriptor, ...rest: unknown[]) => {
      if (String(file).endsWith('.wasm')) wasmReads.push(String(file));
      return (readFileSync as (...a: unknown[]) => unknown).call(fs, file, ...rest);
    }) as never);
    vi.stubGlobal('fetch', () => {
      throw new Error('tfjs-backend-wasm tried to fetch its binary');
    });
    // Registered before initialization: tfjs runs each kernel's setupFunc when the backend
    // initializes; ours carries the original's, which binds the wasm function the fallback calls.
    const early = register({ backends: ['wasm'] });
    expect(await tf.setBackend('wasm')).toBe(true);
    vi.restoreAllMocks();
    vi.unstubAllGlobals();
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const dist = path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'));
    expect(wasmReads).toEqual([path.join(dist, simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm')]);
    expect(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')).toBe(false); // tfjs-wasm: never in Node

    // A period (4) not dividing the size (10): handed to the original kernel.
    const xv = randn(1, 10), mv = randn(2, 4), vv = positive(3, 4);
    const x = tf.tensor(xv, [2, 5]), m = tf.tensor(mv), v = tf.tensor(vv);
    const y = tf.batchNorm(x, m, v, undefined, undefined, 1e-3).dataSync();
    expect(early.stats).toEqual({ calls: 0, fallbacks: 1 });
    for (let i = 0; i < 10; i++) {
      const t = (xv[i]! - mv[i % 4]!) / Math.sqrt(vv[i % 4]! + 1e-3);
      expect(Math.abs(y[i]! - t)).toBeLessThanOrEqual(WASM_BOUND(t, t));
    }
    early.unregister();
    tf.dispose([x, m, v]);
  });
});

describe('registerTfjsKernels: FusedBatchNorm on wasm', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
  });

  it('tfjs-wasm\'s kernel is the arithmetic the bound assumes (float32 emulation, bit for bit)', () => {
    const [R, C] = [300, 12];
    const xv = randn(5, R * C, 2, 0.5), mv = randn(6, C), vv = positive(7, C), sv = randn(8, C), ov = randn(9, C);
    const f = Math.fround;
    for (const eps of [1e-3, 1e-5]) {
      const ts = [tf.tensor(xv, [R, C]), tf.tensor(mv), tf.tensor(vv), tf.tensor(ov), tf.tensor(sv)] as const;
      const y = tf.batchNorm(...ts, eps).dataSync();
      let same = 0;
      for (let i = 0; i < y.length; i++) {
        const c = i % C;
        const nf = f(Math.sqrt(f(vv[c]! + f(eps))));
        if (y[i] === f(ov[c]! + f(f(xv[i]! - mv[c]!) * sv[c]!) / nf)) same++;
      }
      expect(same).toBe(y.length);
      tf.dispose([...ts]);
    }
  });

  describe.each<Transfer>(['heap', 'copy'])('wasmTransfer \'%s\'', (transfer) => {
    it.each(BN_FORMS)('%s: ours = tfjs-wasm\'s kernel and the oracle within the derived float32 bounds; the engine computed it', (_, xShape, p) => {
      const rec = recordForward();
      for (const eps of [1e-3, 1e-5]) {
        const r = runBothKernels(registerWasm(transfer), xShape, p, eps, 7 + xShape.length);
        expect(r.stats, 'our kernel ran').toEqual({ calls: 1, fallbacks: 0 });
        expectKernelsAgree(r, WASM_BOUND, `${transfer} x [${xShape}] eps ${eps}`, true);
      }
      rec.restore();
      // One engine.forward per call of ours (none for tfjs's), on the tiled NHWC view; 'heap' reads
      // x from and writes y into tfjs-wasm's heap, 'copy' works on copies.
      expect(rec.calls).toHaveLength(2);
      for (const c of rec.calls) {
        expect(c.shape[0]! * c.shape[1]!).toBe(product(xShape));
        expect({ x: c.xOnHeap, out: c.outOnHeap }).toEqual(transfer === 'heap' ? { x: true, out: true } : { x: false, out: false });
      }
    });
  });

  it('the bounds can fail: an eps off by 1e-3 relative is outside them (tfjs-wasm rounds four times where cpu rounds once, so the margin is wider than on cpu)', () => {
    const shape = [8, 7, 7, 12], p = { mean: [12], variance: [12] };
    const a = runBothKernels(registerWasm(), shape, p, 1e-3, 3);
    const b = runBothKernels(registerWasm(), shape, p, 1e-3 * (1 + 1e-3), 3);
    const outside = (v: number, i: number) => Math.abs(v - b.ours[i]!) > OURS_BOUND(a.t[i]!, a.exact[i]!) + WASM_BOUND(a.t[i]!, a.exact[i]!);
    expect(a.theirs.some(outside)).toBe(true);
  });

  it('only ours: where (x − m)·s overflows float32 before the division, tfjs-wasm returns ±Inf, ours the finite value', () => {
    // x − m = ±3e30, s = 1e9: (x − m)·s = ±3e39 > float32 max in tfjs-wasm's order; ours folds
    // s·invStd = 1e9 / sqrt(1e18 + eps) ≈ 1 first. Exact y = ±3e30 (the oracle's).
    const xv = Float32Array.of(3e30, -3e30, 1, -1, 2e30, 0.5), shape = [3, 2];
    const mk = () => [tf.tensor(xv, shape), tf.zeros([2]), tf.fill([2], 1e18), tf.zeros([2]), tf.fill([2], 1e9)] as const;
    const ins = mk();
    const theirs = tf.batchNorm(...ins, 1e-3).dataSync();
    const r = registerWasm()();
    const ours = tf.batchNorm(...ins, 1e-3).dataSync();
    r.unregister();
    expect(r.stats.calls).toBe(1);
    const exact = oracleForward(xv, shape, {
      layout: 'NHWC', training: false, eps: 1e-3, runningMean: [0, 0], runningVar: [1e18, 1e18], weight: [1e9, 1e9], bias: [0, 0],
    }).y;
    expect([theirs[0], theirs[1], theirs[4]]).toEqual([Infinity, -Infinity, Infinity]);
    for (let i = 0; i < xv.length; i++) {
      if (Math.abs(xv[i]!) < 1e20) expect(Math.abs(theirs[i]! - exact[i]!)).toBeLessThanOrEqual(WASM_BOUND(exact[i]!, exact[i]!));
      expect(Number.isFinite(ours[i]!)).toBe(true);
      expect(Math.abs(ours[i]! - exact[i]!)).toBeLessThanOrEqual(OURS_BOUND(exact[i]!, exact[i]!));
    }
    tf.dispose([...ins]);
  });

  it('a tensor large enough that tfjs-wasm\'s heap grows during our call; inputs disposed and their memory reused afterwards; nothing leaked', () => {
    const C = 64, eps = 1e-3;
    const baseTensors = tf.memory().numTensors, baseIds = wasmBackend().numDataIds();
    // x and tfjs's result of half the heap each: together they outgrow it, and Emscripten grows a
    // heap H by max(what is asked, 0.2·H), so at most 0.2·H stays free for our output (0.5·H):
    // makeOutput must grow it again, after which the adapter takes its views.
    const R = Math.ceil(heap().byteLength / 2 / 4 / C);
    const mv = randn(62, C), vv = positive(63, C), sv = randn(64, C), ov = randn(65, C);
    const params = [tf.tensor(mv), tf.tensor(vv), tf.tensor(ov), tf.tensor(sv)] as const;
    const exactOf = (xv: Float32Array) => {
      const exact = Float64Array.from(oracleForward(xv, [R, C], {
        layout: 'NHWC', training: false, eps, runningMean: mv, runningVar: vv, weight: sv, bias: ov,
      }).y);
      const t = new Float64Array(exact.length);
      for (let i = 0; i < t.length; i++) t[i] = exact[i]! - ov[i % C]!;
      return { exact, t };
    };
    const check = (ours: Float32Array, theirs: Float32Array, xv: Float32Array, what: string) => {
      const { exact, t } = exactOf(xv);
      expectKernelsAgree({ ours, theirs, exact, t, stats: { calls: 1, fallbacks: 0 } }, WASM_BOUND, what, true);
    };

    const xv = randn(61, R * C, 2, 0.5);
    const x = tf.tensor(xv, [R, C]);
    const theirsT = tf.batchNorm(x, ...params, eps);
    const reg = register({ backends: ['wasm'] });
    const rec = recordForward();
    const before = heap().byteLength;
    const y = tf.batchNorm(x, ...params, eps);
    expect(heap().byteLength, 'tfjs-wasm\'s heap grew during the call').toBeGreaterThan(before);
    expect(rec.calls).toEqual([{ xOnHeap: true, outOnHeap: true, shape: [R, C] }]); // views of the grown heap
    const ours = y.dataSync() as Float32Array;
    check(ours, theirsT.dataSync() as Float32Array, xv, 'heap grown during the call');

    // Dispose x; a new tensor of its size takes its memory. Our y is its own memory (unchanged),
    // and our kernel on the new tensor reads the new values.
    const xOffset = wasmBackend().getMemoryOffset(x.dataId);
    tf.dispose([x, theirsT]);
    const xv2 = randn(71, R * C, 1, -0.5);
    const x2 = tf.tensor(xv2, [R, C]);
    expect(wasmBackend().getMemoryOffset(x2.dataId), 'x2 reuses x\'s memory').toBe(xOffset);
    expect(sameBits(y.dataSync() as Float32Array, ours), 'y unchanged').toBe(true);
    const y2 = tf.batchNorm(x2, ...params, eps);
    const ours2 = y2.dataSync() as Float32Array;
    rec.restore();
    reg.unregister();
    expect(reg.stats).toEqual({ calls: 2, fallbacks: 0 });
    const theirs2 = tf.batchNorm(x2, ...params, eps);
    check(ours2, theirs2.dataSync() as Float32Array, xv2, 'reused memory');

    tf.dispose([y, x2, y2, theirs2, ...params]);
    expect(tf.memory().numTensors).toBe(baseTensors);
    expect(wasmBackend().numDataIds()).toBe(baseIds);
  });

  it('default backends pick wasm; fallbacks are tfjs-wasm\'s own results bit for bit; unregister() restores the original kernel object', () => {
    const original = tf.getKernel('FusedBatchNorm', 'wasm')!;
    const x = tf.tensor(randn(1, 10), [2, 5]);
    const m4 = tf.tensor(randn(2, 4)), v4 = tf.tensor(positive(3, 4)), m5 = tf.zeros([5]), v5 = tf.ones([5]);
    const theirs = tf.batchNorm(x, m4, v4, undefined, undefined, 1e-3).dataSync();
    const theirsEps0 = tf.batchNorm(x, m5, v5, undefined, undefined, 0).dataSync();
    const r = register();
    expect(r.backends).toContain('wasm');
    expect(tf.getKernel('FusedBatchNorm', 'wasm')).not.toBe(original);
    expect(tf.batchNorm(x, m4, v4, undefined, undefined, 1e-3).dataSync()).toEqual(theirs);
    expect(tf.batchNorm(x, m5, v5, undefined, undefined, 0).dataSync()).toEqual(theirsEps0);
    expect(r.stats).toEqual({ calls: 0, fallbacks: 2 });
    r.unregister();
    r.unregister();
    expect(tf.getKernel('FusedBatchNorm', 'wasm')).toBe(original);
    tf.dispose([x, m4, v4, m5, v5]);
  });
});

describe('batchNormalization (the tfjs layer) on wasm', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
  });

  // As on cpu (test/tfjs.test.ts: 64 float32 roundings per SGD step, accumulated over the steps),
  // plus tfjs-wasm's reductions: its Sum/Mean kernels and XNNPACK's matmuls accumulate in float32,
  // (K − 1)·u of Σ|terms| for K terms, where the cpu backend accumulates in doubles. This model's
  // longest reductions are over the n = 128 values of a channel in a batch of 8 (tfjs's own BN
  // moments and their gradient sums; the first dense's kernel gradient), the others shorter (96
  // in the second dense, 16 in the loss); counting at most 8 of length n per step in either
  // model: (64 + 8·128)·u = 1088u per step. Like the cpu one, a rounding count, not a proof.
  const PER_STEP = 64 + 8 * 128;

  it('NHWC: model.fit losses, weights and moving statistics match tfjs\'s own layer on wasm within float32 rounding; our kernels ran', async () => {
    const fwd = vi.spyOn(engine, 'forward'), bwd = vi.spyOn(engine, 'backward');
    const worst = await expectFitMatchesTfjs(engine, PER_STEP);
    // 8 epochs × 2 steps: one forward (training) and one backward of ours per step.
    expect(fwd).toHaveBeenCalledTimes(16);
    expect(bwd).toHaveBeenCalledTimes(16);
    expect(tf.getBackend()).toBe('wasm');
    expect(worst).toBeLessThan(PER_STEP);
  });

  it('the loss comparison can fail: our layer with epsilon 1e-5 against tfjs\'s default 1e-3 is outside the bound', async () => {
    await expectEpsMismatchDetected(engine, PER_STEP);
  });
});
