// Ioffe & Szegedy (2015), section 4.1: the same 784-100-100-100-10 sigmoid network trained with
// and without batch normalization, in lockstep on the same mini-batches from the same initial
// weights, evaluated on held-out digits every `evalEvery` steps.
import { BatchNorm, type Engine } from '../../src/index.js';
import { Batches, CLASSES, PIXELS, type Dataset } from './data.js';
import { Network } from './net.js';

export interface ExperimentOptions {
  steps: number;
  seed: number;
  evalEvery: number;
  /** SGD learning rate (both networks). */
  lr: number;
  /** Standard deviation of the Gaussian initial weights (both networks). */
  initStd: number;
  /** Which sigmoid of the last hidden layer to follow. */
  unit: number;
  batchSize: number;
  hidden: number[];
}

export const DEFAULTS: ExperimentOptions = {
  steps: 3000, seed: 1, evalEvery: 100, lr: 1, initStd: 0.01, unit: 0, batchSize: 60, hidden: [100, 100, 100],
};

/** The 15th, 50th and 85th percentiles the paper plots. */
export const QUANTILES = [0.15, 0.5, 0.85] as const;

export interface NetRecord {
  /** Held-out accuracy (eval mode: BN with running statistics). */
  accuracy: number;
  testLoss: number;
  /** Mean training loss (train mode) over the steps since the previous record; NaN at step 0. */
  trainLoss: number;
  /** QUANTILES of the probed sigmoid input over the held-out digits. */
  percentiles: number[];
}

export interface EvalRecord {
  step: number;
  plain: NetRecord;
  bn: NetRecord;
  seconds: number;
}

export interface ExperimentResult {
  records: EvalRecord[];
  /** Training loss of every step, per network. */
  losses: { plain: Float64Array; bn: Float64Array };
  seconds: number;
}

/** Linear-interpolation percentile (numpy's default) of ascending `sorted`, q in [0, 1]. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const pos = q * (sorted.length - 1), lo = Math.floor(pos), hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

export function buildNetworks(engine: Engine, opts: ExperimentOptions): { plain: Network; bn: Network } {
  const sizes = [PIXELS, ...opts.hidden, CLASSES];
  return {
    plain: new Network({ sizes, initStd: opts.initStd, seed: opts.seed }),
    // Same seed: the same initial dense weights as the plain network; BN: gamma 1, beta 0.
    bn: new Network({ sizes, initStd: opts.initStd, seed: opts.seed, norm: (c) => new BatchNorm(engine, c) }),
  };
}

export function runExperiment(engine: Engine, data: { train: Dataset; test: Dataset }, opts: ExperimentOptions,
  onRecord: (r: EvalRecord) => void = () => {}): ExperimentResult {
  const { plain, bn } = buildNetworks(engine, opts);
  const batches = new Batches(data.train, opts.batchSize, opts.seed);
  const probe = { layer: opts.hidden.length - 1, unit: opts.unit };
  const losses = { plain: new Float64Array(opts.steps), bn: new Float64Array(opts.steps) };
  const records: EvalRecord[] = [];
  const start = performance.now();
  let since = 0;

  const record = (step: number) => {
    const one = (net: Network, stepLosses: Float64Array): NetRecord => {
      const r = net.evaluate(data.test.images, data.test.labels, data.test.count, probe);
      const sorted = r.probe.slice().sort();
      let sum = 0;
      for (let s = since; s < step; s++) sum += stepLosses[s];
      return {
        accuracy: r.accuracy, testLoss: r.loss, trainLoss: step > since ? sum / (step - since) : NaN,
        percentiles: QUANTILES.map((q) => percentile(sorted, q)),
      };
    };
    const rec = { step, plain: one(plain, losses.plain), bn: one(bn, losses.bn), seconds: (performance.now() - start) / 1000 };
    since = step;
    records.push(rec);
    onRecord(rec);
  };

  record(0);
  for (let step = 1; step <= opts.steps; step++) {
    batches.fill();
    losses.plain[step - 1] = plain.step(batches.x, batches.y, opts.batchSize, opts.lr);
    losses.bn[step - 1] = bn.step(batches.x, batches.y, opts.batchSize, opts.lr);
    if (step % opts.evalEvery === 0 || step === opts.steps) record(step);
  }
  return { records, losses, seconds: (performance.now() - start) / 1000 };
}
