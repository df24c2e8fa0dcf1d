// Ioffe & Szegedy (2015), section 4.1: the same 784-100-100-100-10 sigmoid network trained with
// and without batch normalization, in lockstep on the same mini-batches from the same initial
// weights, evaluated on held-out digits at the steps of evaluationSteps() (denser early on).
import { BatchNorm, createEngine, type Engine } from '../../src/index.js';
import { Batches, CLASSES, PIXELS, loadSplit, type Dataset } from './data.js';
import { Network } from './net.js';

export interface ExperimentOptions {
  steps: number;
  seed: number;
  evalEvery: number;
  /**
   * Evaluate more often before this step (where the networks change fastest): every evalEvery/10
   * steps up to evalEvery, then every evalEvery/4 up to denseUntil; 0 for a uniform schedule.
   */
  denseUntil: number;
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
  steps: 3000, seed: 1, evalEvery: 100, denseUntil: 1000, lr: 1, initStd: 0.01, unit: 0, batchSize: 60, hidden: [100, 100, 100],
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

/** The steps after which the networks are evaluated: 0, the schedule of `denseUntil`, and the last step. */
export function evaluationSteps(opts: Pick<ExperimentOptions, 'steps' | 'evalEvery' | 'denseUntil'>): number[] {
  const { steps, evalEvery: k, denseUntil } = opts;
  const fine = Math.max(1, Math.round(k / 10)), medium = Math.max(1, Math.round(k / 4));
  const out = [0];
  for (let s = 1; s <= steps; s++) {
    const every = s <= Math.min(k, denseUntil) ? fine : s <= denseUntil ? medium : k;
    if (s % every === 0 || s === steps) out.push(s);
  }
  return out;
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

  const evalAt = new Set(evaluationSteps(opts));
  record(0);
  for (let step = 1; step <= opts.steps; step++) {
    batches.fill();
    losses.plain[step - 1] = plain.step(batches.x, batches.y, opts.batchSize, opts.lr);
    losses.bn[step - 1] = bn.step(batches.x, batches.y, opts.batchSize, opts.lr);
    if (evalAt.has(step)) record(step);
  }
  return { records, losses, seconds: (performance.now() - start) / 1000 };
}

export interface SeedRun extends ExperimentResult {
  /** The wasm build the run used, and the sizes of its split. */
  build: string;
  trainCount: number;
  testCount: number;
}

/** One seed's whole experiment in the calling thread: its own engine, split, networks and batches. */
export async function runSeed(opts: ExperimentOptions, testCount: number, onRecord?: (r: EvalRecord) => void): Promise<SeedRun> {
  const engine = await createEngine();
  const data = loadSplit(opts.seed, testCount);
  const result = runExperiment(engine, data, opts, onRecord);
  return { ...result, build: engine.build, trainCount: data.train.count, testCount: data.test.count };
}
