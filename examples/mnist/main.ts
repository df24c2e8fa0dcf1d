// npm run demo:mnist [-- --steps 50000 --seed 1 --eval-every 1000 --lr 1 --init-std 0.01 --unit 0 --out dir]
//
// Reproduces Figure 1 of Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network
// Training by Reducing Internal Covariate Shift", section 4.1, on the 10 000 digits shipped in the
// npm package `mnist`: test accuracy vs training steps with and without batch normalization, and
// the 15th/50th/85th percentiles of the input to one last-hidden-layer sigmoid over training.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createEngine } from '../../src/index.js';
import { loadSplit } from './data.js';
import { DEFAULTS, QUANTILES, runExperiment, type EvalRecord, type ExperimentOptions } from './experiment.js';
import { figure, figure1Panels, formatSteps } from './plot.js';

const TEST_COUNT = 2000;
const CHROMIUM = '/usr/bin/chromium';

const HELP = `Usage: npm run demo:mnist [-- options]   (or: npx tsx examples/mnist/main.ts [options])
  --steps N        training steps, mini-batches of 60 (default ${DEFAULTS.steps}; the paper: 50000)
  --seed S         seed of the data split, batch order and initial weights (default ${DEFAULTS.seed})
  --eval-every K   evaluate on the held-out digits every K steps (default: about steps/30, rounded)
  --lr X           SGD learning rate, both networks (default ${DEFAULTS.lr})
  --init-std X     std of the Gaussian initial weights (default ${DEFAULTS.initStd})
  --unit U         which sigmoid of the last hidden layer to follow, 0..99 (default ${DEFAULTS.unit})
  --out DIR        output directory (default examples/mnist/out)`;

/** The largest 1, 2 or 5 x 10^k not above steps / 30 (at least 1). */
function defaultEvalEvery(steps: number): number {
  let best = 1;
  for (let mag = 1; mag <= steps; mag *= 10) for (const m of [1, 2, 5]) if (m * mag <= steps / 30) best = m * mag;
  return best;
}

function parseOptions(): { opts: ExperimentOptions; out: string } {
  const fail = (message: string): never => {
    console.error(`${message}\n\n${HELP}`);
    process.exit(2);
  };
  let values: Record<string, string | boolean | undefined> = {};
  try {
    ({ values } = parseArgs({
      options: {
        steps: { type: 'string' }, seed: { type: 'string' }, 'eval-every': { type: 'string' }, lr: { type: 'string' },
        'init-std': { type: 'string' }, unit: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const num = (name: string, fallback: number, ok: (x: number) => boolean, what: string): number => {
    const v = values[name];
    if (typeof v !== 'string') return fallback;
    const x = Number(v);
    return v.trim() !== '' && ok(x) ? x : fail(`--${name}: expected ${what}, got ${JSON.stringify(v)}`);
  };
  const posInt = (x: number) => Number.isInteger(x) && x >= 1;
  const steps = num('steps', DEFAULTS.steps, posInt, 'a positive integer');
  const opts: ExperimentOptions = {
    ...DEFAULTS,
    steps,
    seed: num('seed', DEFAULTS.seed, (x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32, 'an integer in [0, 2^32)'),
    evalEvery: num('eval-every', defaultEvalEvery(steps), posInt, 'a positive integer'),
    lr: num('lr', DEFAULTS.lr, (x) => Number.isFinite(x) && x > 0, 'a positive number'),
    initStd: num('init-std', DEFAULTS.initStd, (x) => Number.isFinite(x) && x > 0, 'a positive number'),
    unit: num('unit', DEFAULTS.unit, (x) => Number.isInteger(x) && x >= 0 && x < DEFAULTS.hidden.at(-1)!, `an integer in [0, ${DEFAULTS.hidden.at(-1)})`),
  };
  const out = resolve(typeof values.out === 'string' ? values.out : fileURLToPath(new URL('./out/', import.meta.url)));
  return { opts, out };
}

const pct = (x: number) => (100 * x).toFixed(2).padStart(6);
const quant = (p: number[]) => p.map((v) => v.toFixed(2).padStart(6)).join(' ');

function printHeader(): void {
  console.log(`${'step'.padStart(6)} | ${'train loss'.padEnd(15)} | ${'test accuracy %'.padEnd(15)} | ` +
    `${'input to the followed sigmoid: p15 p50 p85'.padEnd(43)} | ${'sec'.padStart(5)}`);
  console.log(`${''.padStart(6)} | ${'plain'.padStart(7)} ${'BN'.padStart(7)} | ${'plain'.padStart(7)} ${'BN'.padStart(7)} | ` +
    `${'plain'.padEnd(20)} | ${'BN'.padEnd(20)} |`);
}

function printRecord(r: EvalRecord): void {
  const loss = (x: number) => (Number.isNaN(x) ? '-' : x.toFixed(4)).padStart(7);
  console.log(`${String(r.step).padStart(6)} | ${loss(r.plain.trainLoss)} ${loss(r.bn.trainLoss)} | ` +
    `${pct(r.plain.accuracy).padStart(7)} ${pct(r.bn.accuracy).padStart(7)} | ${quant(r.plain.percentiles)} | ` +
    `${quant(r.bn.percentiles)} | ${r.seconds.toFixed(0).padStart(5)}`);
}

/** Headless Chromium screenshot of an SVG, when Chromium is installed; false otherwise. */
function renderPng(svgPath: string, pngPath: string, width: number, height: number): boolean {
  if (!existsSync(CHROMIUM)) return false;
  try {
    execFileSync(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
      `--screenshot=${pngPath}`, `--window-size=${width},${height}`, `file://${svgPath}`], { stdio: 'pipe', timeout: 60_000 });
    return existsSync(pngPath);
  } catch (error) {
    console.warn(`PNG: chromium failed (${(error as Error).message.split('\n')[0]}); the SVGs are complete`);
    return false;
  }
}

async function main(): Promise<void> {
  const { opts, out } = parseOptions();
  const wall = performance.now();
  const engine = await createEngine();
  const data = loadSplit(opts.seed, TEST_COUNT);
  console.log(`MNIST digits from the npm package: ${data.train.count} training, ${data.test.count} held out (seed ${opts.seed}); ` +
    `wasm build: ${engine.build}`);
  console.log(`784-${opts.hidden.join('-')}-10 sigmoid network, softmax cross-entropy, SGD lr ${opts.lr}, batch ${opts.batchSize}, ` +
    `N(0, ${opts.initStd}^2) initial weights; ${opts.steps} steps, evaluation every ${opts.evalEvery}`);
  console.log(`Percentiles: input to sigmoid ${opts.unit} of hidden layer ${opts.hidden.length} over the held-out digits ` +
    `(BN network: eval mode, running statistics)\n`);
  printHeader();
  const result = runExperiment(engine, data, opts, printRecord);

  mkdirSync(out, { recursive: true });
  const settings = `steps=${opts.steps} seed=${opts.seed} eval-every=${opts.evalEvery} lr=${opts.lr} init-std=${opts.initStd} unit=${opts.unit}`;
  const comment = `generated by npm run demo:mnist (examples/mnist/main.ts, ${settings}); Ioffe and Szegedy 2015, Figure 1, on the digits of the npm package mnist`;
  const p = figure1Panels(result.records, opts);
  const svgs = {
    'figure1.svg': { svg: figure([p.accuracy, p.plain, p.bn], comment), width: 1260 },
    'accuracy.svg': { svg: figure([p.accuracy], comment), width: 420 },
    'percentiles.svg': { svg: figure([p.plain, p.bn], comment), width: 840 },
  };
  const written: string[] = [];
  for (const [name, { svg }] of Object.entries(svgs)) {
    writeFileSync(resolve(out, name), svg);
    written.push(resolve(out, name));
  }
  const header = ['step', 'plain_train_loss', 'bn_train_loss', 'plain_test_loss', 'bn_test_loss', 'plain_accuracy', 'bn_accuracy',
    ...QUANTILES.map((q) => `plain_p${q * 100}`), ...QUANTILES.map((q) => `bn_p${q * 100}`)];
  const rows = result.records.map((r) => [r.step, r.plain.trainLoss, r.bn.trainLoss, r.plain.testLoss, r.bn.testLoss,
    r.plain.accuracy, r.bn.accuracy, ...r.plain.percentiles, ...r.bn.percentiles].map((v) => (Number.isNaN(v) ? '' : v)).join(','));
  writeFileSync(resolve(out, 'results.csv'), [header.join(','), ...rows].join('\n') + '\n');
  written.push(resolve(out, 'results.csv'));
  writeFileSync(resolve(out, 'results.json'), JSON.stringify({ options: opts, records: result.records }, null, 1) + '\n');
  written.push(resolve(out, 'results.json'));
  let png = false;
  for (const [name, { width }] of Object.entries(svgs)) {
    const pngPath = resolve(out, name.replace(/\.svg$/, '.png'));
    if (!renderPng(resolve(out, name), pngPath, width, 360)) break;
    written.push(pngPath);
    png = true;
  }
  if (!png) console.log(`\nPNG: skipped (no ${CHROMIUM} to render the SVGs; they are complete on their own)`);

  const last = result.records.at(-1)!;
  const at = (f: number) => result.records.reduce((best, r) => (Math.abs(r.step - f * opts.steps) < Math.abs(best.step - f * opts.steps) ? r : best));
  const marks = [...new Set([0.05, 0.1, 0.25, 0.5, 1].map(at))];
  console.log(`\nHeld-out accuracy (${data.test.count} digits):`);
  for (const r of marks) console.log(`  ${formatSteps(r.step).padStart(6)} steps: without BN ${pct(r.plain.accuracy)}%   with BN ${pct(r.bn.accuracy)}%`);
  const spread = (k: 'plain' | 'bn') => {
    const p50 = result.records.map((r) => r[k].percentiles[1]);
    return `median ${p50[0].toFixed(2)} -> ${p50.at(-1)!.toFixed(2)} (range ${Math.min(...p50).toFixed(2)}..${Math.max(...p50).toFixed(2)}), ` +
      `p85 - p15 ${(result.records[0][k].percentiles[2] - result.records[0][k].percentiles[0]).toFixed(2)} -> ` +
      `${(last[k].percentiles[2] - last[k].percentiles[0]).toFixed(2)}`;
  };
  console.log(`Sigmoid input, without BN: ${spread('plain')}`);
  console.log(`Sigmoid input, with BN:    ${spread('bn')}`);
  console.log(`\nWrote:\n${written.map((f) => `  ${f}`).join('\n')}`);
  console.log(`Wall time ${((performance.now() - wall) / 1000).toFixed(1)} s (training and evaluation ${result.seconds.toFixed(1)} s)`);
}

await main();
