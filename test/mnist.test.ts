// The MNIST demo (examples/mnist, issue 7) rests on these: a finite-difference gradient check of
// the whole network (dense layers, sigmoid, softmax cross-entropy, and the package's BatchNorm
// layer forward and backward through the wasm kernels), negative controls showing the check
// catches a wrong BN backward, and a short smoke run of the real experiment.
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, createEngine, type Engine } from '../src/index.js';
import { BUILD_NAMES } from '../src/wasm/builds.js';
import { skipBuild } from './helpers/engines.js';
import { CLASSES, gaussian, loadSplit, rng, subset, type Dataset } from '../examples/mnist/data.js';
import { DEFAULTS, evaluationSteps, percentile, runExperiment } from '../examples/mnist/experiment.js';
import { Network, softmaxCrossEntropy, type NormLayer } from '../examples/mnist/net.js';

// ---------------------------------------------------------------------------------------------
// Gradient check.
//
// Every value in the network is float32 (the kernels are float32), so the loss L (about 2.3) of
// one evaluation carries rounding error of order u*L, u = 2^-24, i.e. ~1.4e-7 per rounding that
// reaches it. A central difference (L(p+h) - L(p-h)) / 2h turns that into an error of order
// u*L/h, and adds a truncation error h^2/6 * L''' that grows with h. Measured on these networks
// (max |analytic - numeric| over all parameters): h = 1e-2: 3e-5 (truncation, BN is strongly
// curved on a batch of 6), h = 3e-3: 1e-5, h = 1e-3: 3e-5 (rounding). So h = 3e-3, and
// |analytic - numeric| <= ABS_TOL + REL_TOL * |analytic| with ABS_TOL = 1e-4 (about twice u*L/h,
// a few roundings' worth) and REL_TOL = 1e-2 (truncation on the larger gradients; typical
// gradients here are 1e-3..0.3). A wrong BN backward is off by the size of the gradient itself,
// far outside these bounds: the negative controls below check that it is caught. (Seen: the
// correct networks use 3-11% of the tolerance at worst; the three broken BN backwards exceed it
// 68x to 530x, on about 80% of the gradients below the BNs.)
// ---------------------------------------------------------------------------------------------
const H = 3e-3;
const ABS_TOL = 1e-4;
const REL_TOL = 1e-2;

interface Mismatch { name: string; index: number; analytic: number; numeric: number }

interface Case {
  net: Network;
  x: Float32Array;
  labels: Uint8Array;
  n: number;
}

const SIZES = [20, 7, 6, 5, 10]; // distinct widths so a transposed index cannot pass

function makeCase(norm: ((c: number) => NormLayer) | undefined, seed: number, n: number): Case {
  const net = new Network({ sizes: SIZES, initStd: 0.5, seed, norm });
  // A generic point: non-trivial biases, gammas away from 1, betas away from 0.
  const next = rng(seed + 1000), normal = gaussian(next);
  for (const p of net.parameters()) {
    if (p.name.endsWith('.W')) continue;
    for (let i = 0; i < p.value.length; i++) p.value[i] = p.name.endsWith('gamma') ? 0.5 + next() : 0.5 * normal();
  }
  // Inputs like MNIST pixels: half of them 0, the rest in (0, 1).
  const x = Float32Array.from({ length: n * SIZES[0] }, () => (next() < 0.5 ? 0 : next()));
  const labels = Uint8Array.from({ length: n }, () => Math.floor(next() * CLASSES));
  return { net, x, labels, n };
}

/** Analytic gradients of every parameter and of the input vs central differences of the loss. */
function gradientCheck({ net, x, labels, n }: Case): { checked: number; mismatches: Mismatch[]; worst: number } {
  net.train(true);
  const loss = () => softmaxCrossEntropy(net.forward(x, n), labels, n, CLASSES).loss;
  const { dlogits } = softmaxCrossEntropy(net.forward(x, n), labels, n, CLASSES);
  const dx = net.backward(dlogits, true)!;
  const tensors = [
    ...net.parameters().map((p) => ({ name: p.name, value: p.value, grad: p.grad().slice() })),
    { name: 'input', value: x, grad: dx.slice() },
  ];
  const mismatches: Mismatch[] = [];
  let checked = 0, worst = 0;
  for (const t of tensors) {
    for (let i = 0; i < t.value.length; i++) {
      const v = t.value[i];
      t.value[i] = v + H;
      const up = t.value[i], lossUp = loss();
      t.value[i] = v - H;
      const down = t.value[i], lossDown = loss();
      t.value[i] = v;
      const numeric = (lossUp - lossDown) / (up - down); // the float32 step actually taken
      const analytic = t.grad[i];
      const excess = Math.abs(analytic - numeric) / (ABS_TOL + REL_TOL * Math.abs(analytic));
      worst = Math.max(worst, excess);
      if (excess > 1) mismatches.push({ name: t.name, index: i, analytic, numeric });
      checked++;
    }
  }
  return { checked, mismatches, worst };
}

/**
 * The package's BatchNorm with a deliberately wrong dx (gradWeight/gradBias stay right), for the
 * negative controls: recomputes the batch statistics in float64 from the forward's input.
 */
class BrokenBatchNorm extends BatchNorm {
  private xhat: Float64Array = new Float64Array(0);
  private invStd: Float64Array = new Float64Array(0);

  constructor(engine: Engine, features: number, private readonly bug: 'constant statistics' | 'sign of the xhat term' | 'gamma left out') {
    super(engine, features);
  }

  override forward(x: Float32Array, shape: readonly number[]): Float32Array {
    const [n, C] = shape;
    this.invStd = new Float64Array(C);
    this.xhat = new Float64Array(n * C);
    for (let c = 0; c < C; c++) {
      let mean = 0, v = 0;
      for (let r = 0; r < n; r++) mean += x[r * C + c] / n;
      for (let r = 0; r < n; r++) v += (x[r * C + c] - mean) ** 2 / n;
      this.invStd[c] = 1 / Math.sqrt(v + this.eps);
      for (let r = 0; r < n; r++) this.xhat[r * C + c] = (x[r * C + c] - mean) * this.invStd[c];
    }
    return super.forward(x, shape);
  }

  override backward(dy: Float32Array): Float32Array {
    const dx = super.backward(dy);
    const C = this.numFeatures, n = dy.length / C, gamma = this.weight!;
    for (let c = 0; c < C; c++) {
      let meanDyXhat = 0;
      for (let r = 0; r < n; r++) meanDyXhat += (dy[r * C + c] * this.xhat[r * C + c]) / n;
      for (let r = 0; r < n; r++) {
        const k = r * C + c;
        if (this.bug === 'constant statistics') dx[k] = gamma[c] * this.invStd[c] * dy[k]; // the eval-mode formula
        else if (this.bug === 'sign of the xhat term') dx[k] += 2 * gamma[c] * this.invStd[c] * this.xhat[k] * meanDyXhat;
        else dx[k] /= gamma[c];
      }
    }
    return dx;
  }
}

describe.each(BUILD_NAMES)('MNIST network gradients, %s build', (build) => {
  if (skipBuild(build)) return;
  let engine: Engine;
  beforeAll(async () => {
    engine = await createEngine({ build });
  });

  for (const [seed, n] of [[1, 4], [2, 6], [3, 8]]) {
    it(`plain network: every dense W, b and the input match central differences (seed ${seed}, batch ${n})`, () => {
      const r = gradientCheck(makeCase(undefined, seed, n));
      expect(r.checked).toBe(20 * 7 + 7 + 7 * 6 + 6 + 6 * 5 + 5 + 5 * 10 + 10 + n * 20);
      expect(r.mismatches).toEqual([]);
    });

    it(`BN network: every dense W, b, BN gamma, beta and the input match central differences (seed ${seed}, batch ${n})`, () => {
      const r = gradientCheck(makeCase((c) => new BatchNorm(engine, c), seed, n));
      // Hidden dense layers have no bias with BN (beta takes its role): W's, 3 x (gamma, beta), output W, b, input.
      expect(r.checked).toBe(20 * 7 + 7 * 6 + 6 * 5 + 2 * (7 + 6 + 5) + 5 * 10 + 10 + n * 20);
      expect(r.mismatches).toEqual([]);
    });
  }

  for (const bug of ['constant statistics', 'sign of the xhat term', 'gamma left out'] as const) {
    it(`negative control: a BN backward with the ${bug} bug fails the check`, () => {
      const r = gradientCheck(makeCase((c) => new BrokenBatchNorm(engine, c, bug), 2, 6));
      const names = new Set(r.mismatches.map((m) => m.name));
      // Gradients below the last BN go wrong, far outside the tolerance; those above it stay right.
      expect(names.has('dense1.W')).toBe(true);
      expect(names.has('input')).toBe(true);
      expect(r.worst).toBeGreaterThan(10);
      expect(names.has('output.W') || names.has('output.b') || names.has('bn3.gamma') || names.has('bn3.beta')).toBe(false);
    });
  }
});

describe('MNIST experiment', () => {
  let data: { train: Dataset; test: Dataset };
  beforeAll(() => {
    data = loadSplit(DEFAULTS.seed);
  });

  it('splits the 10 000 packaged digits into 8000 training and 2000 held-out digits, every class in both', () => {
    expect([data.train.count, data.test.count]).toEqual([8000, 2000]);
    expect(data.train.images.length).toBe(8000 * 784);
    for (const d of [data.train, data.test]) {
      const counts = new Array<number>(CLASSES).fill(0);
      for (const label of d.labels) counts[label]++;
      expect(Math.min(...counts)).toBeGreaterThan(d.count / 20);
    }
    let lo = Infinity, hi = -Infinity;
    for (const v of data.test.images) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    expect([lo, hi]).toEqual([0, 1]);
  });

  it('percentile interpolates linearly between order statistics', () => {
    expect(percentile([1, 2, 3, 4, 5], 0.5)).toBe(3);
    expect(percentile([1, 2, 3, 4, 5], 0.15)).toBeCloseTo(1.6, 12);
    expect(percentile([0, 10], 0.85)).toBeCloseTo(8.5, 12);
  });

  it('evaluates densely before denseUntil: the default 3000-step schedule', () => {
    const at = evaluationSteps(DEFAULTS);
    expect(at.slice(0, 12)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 125]);
    expect(at.filter((s) => s > 100 && s <= 1000).every((s) => s % 25 === 0)).toBe(true);
    expect(at.filter((s) => s > 1000)).toEqual(Array.from({ length: 20 }, (_, i) => 1100 + 100 * i));
    expect(at.length).toBe(67);
    expect(evaluationSteps({ steps: 250, evalEvery: 100, denseUntil: 0 })).toEqual([0, 100, 200, 250]);
  });

  it('is deterministic for a seed', async () => {
    const engine = await createEngine();
    const small = { train: data.train, test: subset(data.test, Array.from({ length: 300 }, (_, i) => i)) };
    const opts = { ...DEFAULTS, steps: 10, evalEvery: 5 };
    const a = runExperiment(engine, small, opts), b = runExperiment(engine, small, opts);
    expect(Array.from(a.losses.bn)).toEqual(Array.from(b.losses.bn));
    expect(a.records.map((r) => [r.plain, r.bn])).toEqual(b.records.map((r) => [r.plain, r.bn]));
  });

  it('smoke run, default settings: both losses decrease and BN is far ahead after 150 steps', async () => {
    const engine = await createEngine();
    const steps = 150;
    const result = runExperiment(engine, data, { ...DEFAULTS, steps, evalEvery: steps, denseUntil: 0 });
    const mean = (xs: Float64Array) => xs.reduce((a, b) => a + b, 0) / xs.length;
    for (const k of ['plain', 'bn'] as const) {
      const first = mean(result.losses[k].subarray(0, 50)), last = mean(result.losses[k].subarray(steps - 50));
      expect(last, `${k}: mean loss of the last 50 steps vs the first 50`).toBeLessThan(first);
    }
    expect(mean(result.losses.bn.subarray(steps - 50))).toBeLessThan(0.5 * Math.log(CLASSES));
    const end = result.records.at(-1)!;
    expect(end.step).toBe(steps);
    expect(end.bn.accuracy).toBeGreaterThan(0.75);
    expect(end.bn.accuracy).toBeGreaterThan(end.plain.accuracy + 0.3);
  });
});
