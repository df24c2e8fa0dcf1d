// Channel counts in the millions on every channels-last entry point (NHWC, and rank-2 [N, C],
// which runs the channels-last kernels). Their scratch grows with the channel count (per-channel
// parameters, statistics partials, and a workspace of lcm(C, 4) periods: 96 bytes per channel
// for odd C), so a call either fits in wasm32's 4 GiB or must fail with MemoryError before
// anything is touched. Sizes are computed in JS from the shape; before they were, a 32-bit size
// read back from wasm wrapped negative at C ≈ 2.2e7 and the kernels wrote gigabytes of scratch
// from address 0, through live tensors. Every call here is either a typed error with a live
// neighbour tensor and every argument byte-identical, or the oracle's result.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine, Tensor } from '../src/engine.js';
import { MemoryError } from '../src/errors.js';
import { oracleBackward, oracleForward } from '../src/oracle/batchnorm.js';
import { BUILDS, makeEngine, skipBuild, type BuildName } from './helpers/engines.js';
import { U32, gauss, rng, ulp32 } from './helpers/numeric.js';
import { tolY } from './helpers/tolerance.js';

type Call = (engine: Engine, a: Args) => unknown;
interface Args {
  x: Float32Array; dy: Float32Array; shape: number[]; layout: 'NCHW' | 'NHWC';
  rm: Float32Array; rv: Float32Array; mean: Float32Array; invStd: Float32Array; C: number;
  /** Per-channel f64 zeros (moments, all-reduced sums). */
  zeros64: Float64Array;
}

/** Every channels-last entry point, with arguments that are valid apart from their size. */
const CALLS: ReadonlyArray<readonly [string, Call]> = [
  ['forward (training)', (e, a) => e.forward(a.x, a.shape, { layout: a.layout, training: true, runningMean: a.rm, runningVar: a.rv })],
  ['forward (eval)', (e, a) => e.forward(a.x, a.shape, { layout: a.layout, training: false, runningMean: a.rm, runningVar: a.rv })],
  ['backward (training)', (e, a) => e.backward(a.dy, a.x, a.shape, { layout: a.layout, training: true, saveMean: a.mean, saveInvStd: a.invStd })],
  ['backward (eval)', (e, a) => e.backward(a.dy, a.x, a.shape, { layout: a.layout, training: false, saveMean: a.mean, saveInvStd: a.invStd })],
  ['moments', (e, a) => e.moments(a.x, a.shape, { layout: a.layout })],
  ['forwardWithMoments', (e, a) => e.forwardWithMoments(a.x, a.shape, {
    layout: a.layout, runningMean: a.rm, runningVar: a.rv, moments: { count: 2 * a.x.length / a.C, mean: a.zeros64, m2: a.zeros64 },
  })],
  ['backwardReduce', (e, a) => e.backwardReduce(a.dy, a.x, a.shape, { layout: a.layout, saveMean: a.mean, saveInvStd: a.invStd })],
  ['backwardWithSums', (e, a) => e.backwardWithSums(a.dy, a.x, a.shape, {
    layout: a.layout, saveMean: a.mean, saveInvStd: a.invStd, count: 2 * a.x.length / a.C,
    sumDy: a.zeros64, sumDyXhat: a.zeros64,
  })],
];

/** Arguments of C channels over `rows` rows; seed null: zeros (the size is all that matters). */
function args(C: number, rows: number, layout: 'NCHW' | 'NHWC', seed: number | null): Args {
  const x = new Float32Array(rows * C), dy = new Float32Array(rows * C);
  if (seed !== null) {
    const g = gauss(rng(seed));
    for (let i = 0; i < x.length; i++) { x[i] = g(); dy[i] = g(); }
  }
  const shape = layout === 'NHWC' ? [rows, 1, C] : [rows, C];
  return {
    x, dy, shape, layout, C,
    rm: new Float32Array(C), rv: new Float32Array(C).fill(1),
    mean: new Float32Array(C), invStd: new Float32Array(C).fill(1), zeros64: new Float64Array(C),
  };
}

/** True when every 32-bit word of v is `word`: byte-identical to its fill, checked without a copy. */
function filledWith(v: Float32Array, value: number): boolean {
  const words = new Uint32Array(v.buffer, v.byteOffset, v.length), word = new Uint32Array(Float32Array.of(value).buffer)[0];
  for (let i = 0; i < words.length; i++) if (words[i] !== word) return false;
  return true;
}

/**
 * The arguments of a big call are fills (runningMean, saveMean: 0; runningVar, saveInvStd: 1;
 * x, dy and the f64 zeros: 0, checked once after all calls): still?
 */
function expectUntouched(a: Args, neighbour: Tensor, keep: Uint8Array, what: string): void {
  const fills: Array<[string, Float32Array, number]> = [
    ['runningMean', a.rm, 0], ['runningVar', a.rv, 1], ['saveMean', a.mean, 0], ['saveInvStd', a.invStd, 1],
  ];
  for (const [name, v, value] of fills) if (!filledWith(v, value)) throw new Error(`${what}: ${name} changed`);
  const now = new Uint8Array(neighbour.data.buffer, neighbour.data.byteOffset, neighbour.data.byteLength);
  if (Buffer.compare(Buffer.from(now), Buffer.from(keep)) !== 0) throw new Error(`${what}: the neighbour tensor changed`);
}

function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice();
}

// One set of arguments for every build and both layouts (the same sizes; only the shape differs).
const HUGE = 2 ** 25 + 1;
const hugeNchw = args(HUGE, 2, 'NCHW', null);
const huge = { NCHW: hugeNchw, NHWC: { ...hugeNchw, layout: 'NHWC' as const, shape: [2, 1, HUGE] } };

describe.each(BUILDS)('%s build', (build: BuildName) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await makeEngine(build);
  });

  // C = HUGE = 2^25 + 1 (odd): the smallest of these calls (moments) needs 152 bytes of scratch per
  // channel (x copy, statistics, partials, a 96-byte workspace), 5.1 GB in all, so none fits.
  // The workspace alone is 3.2 GB: read back from wasm as a signed 32-bit size it was negative.
  describe('too large for 4 GiB: MemoryError, nothing touched, the engine stays usable', () => {
    it.each(CALLS.flatMap(([name, call]) => (['NCHW', 'NHWC'] as const).map((layout) => ({ name, call, layout }))))(
      '$name, $layout', ({ name, call, layout }) => {
        const a = huge[layout];
        const neighbour = engine.tensor(Float32Array.from({ length: 4096 }, (_, i) => i * 0.5 - 7));
        const memory = engine.info().memoryBytes;
        const keep = bytesOf(neighbour);
        expect(() => call(engine, a), name).toThrow(MemoryError);
        expectUntouched(a, neighbour, keep, name);
        expect(engine.info().memoryBytes, 'memory did not grow').toBe(memory);
        // Still usable: a small call gives the oracle's result.
        const small = Float32Array.of(1, 2, 3, 5);
        expect(Array.from(engine.forward(small, [2, 2], { training: true }).saveMean)).toEqual([2, 3.5]);
        neighbour.free();
      });

    it('x, dy and the f64 arguments are still what they were', () => {
      const a = huge.NCHW;
      expect(filledWith(a.x, 0) && filledWith(a.dy, 0), 'x, dy').toBe(true);
      expect(new Uint32Array(a.zeros64.buffer).every((w) => w === 0), 'moments, sums').toBe(true);
    });
  });

  // C = 1 000 003 (odd, C % 4 = 3) over 3 rows: fits, and every value is the oracle's. (The
  // debug build runs the simd build's arithmetic; its range checks run in the case above.)
  describe.skipIf(build === 'debug')('a million channels that fit: the oracle\'s results, neighbours untouched', () => {
    const C = 1_000_003;
    it.each(['NCHW', 'NHWC'] as const)('%s: forward (training), backward, moments', (layout) => {
      const a = args(C, 3, layout, 3);
      const neighbour = engine.tensor(Float32Array.from({ length: 4096 }, (_, i) => i * 0.25));
      const keep = bytesOf(neighbour);
      const r = engine.forward(a.x, a.shape, { layout, training: true });
      const o = oracleForward(a.x, a.shape, { layout, training: true });
      for (let i = 0; i < a.x.length; i++) {
        const d = Math.abs(r.y[i] - o.y[i]); // tolY >= 8u·(|y| + 1): the exact tolerance only where needed
        if (!(d <= 8 * U32 * (Math.abs(o.y[i]) + 1)) && !(d <= tolY(o.y[i], 1, 0))) throw new Error(`y[${i}]: ${r.y[i]} vs ${o.y[i]}`);
      }
      for (let c = 0; c < C; c += 9973) expect(Math.abs(r.saveMean[c] - o.mean[c])).toBeLessThanOrEqual(2 * ulp32(o.mean[c]));
      const m = engine.moments(a.x, a.shape, { layout });
      for (let c = 0; c < C; c += 9973) expect(Math.abs(m.m2[c] / 3 - o.batchVar![c])).toBeLessThanOrEqual(1e-6 * o.batchVar![c] + 1e-300);
      const b = engine.backward(a.dy, a.x, a.shape, { layout, training: false, saveMean: r.saveMean, saveInvStd: r.saveInvStd });
      const ob = oracleBackward(a.dy, a.x, a.shape, { layout, training: false, mean: r.saveMean, invStd: r.saveInvStd });
      for (let i = 0; i < a.x.length; i += 7) expect(Math.abs(b.dx[i] - ob.dx[i])).toBeLessThanOrEqual(4 * ulp32(ob.dx[i]) + 1e-30);
      expect(Buffer.compare(Buffer.from(bytesOf(neighbour)), Buffer.from(keep)), 'neighbour tensor').toBe(0);
      neighbour.free();
    });
  });
});
