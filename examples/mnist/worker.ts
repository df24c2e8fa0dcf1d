// One seed of the experiment in a worker thread (main.ts runs the seeds side by side): posts
// each evaluation as it happens, then the whole run.
import { parentPort, workerData } from 'node:worker_threads';
import { runSeed, type EvalRecord, type ExperimentOptions } from './experiment.js';

const { opts, testCount } = workerData as { opts: ExperimentOptions; testCount: number };
const port = parentPort!;
const run = await runSeed(opts, testCount, (record: EvalRecord) => port.postMessage({ type: 'record', record }));
port.postMessage({ type: 'done', run });
