// Synchronized batch norm across 4 worker_threads: each worker holds a shard of one batch, the
// workers exchange per-channel moments (forward) and backward sums over MessageChannels, and the
// result equals single-process batch norm on the whole batch.
//
//   npx tsx examples/sync-bn/main.ts
//
// runSyncExample() is also what test/sync.test.ts runs.
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { createEngine, type Layout } from '../../src/index.js';
import { gaussian, mulberry32 } from '../../bench/prng.mjs';
import type { ShardJob, ShardResult, StepResult } from './worker.js';

export interface SyncExampleOptions {
  /** Whole-batch shape (default [22, 8, 12, 12]); shards split axis 0. */
  shape?: number[];
  layout?: Layout;
  /** Rows of axis 0 per worker, uneven on purpose (default [3, 7, 4, 8]: 4 workers). */
  shardSizes?: number[];
  seed?: number;
}

export type { StepResult } from './worker.js';

export interface SyncExampleResult {
  shape: number[];
  layout: Layout;
  shardSizes: number[];
  inputs: {
    x: Float32Array; dy: Float32Array; weight: Float32Array; bias: Float32Array;
    runningMean: Float32Array; runningVar: Float32Array; momentum: number; eps: number;
  };
  /** Shards' y and dx concatenated in rank order; statistics and gradients from rank 0. */
  sharded: StepResult;
  /** Every worker ended with bit-identical running stats, saveMean/saveInvStd, dweight and dbias. */
  workersAgree: boolean;
  /** engine.forward + engine.backward on the whole batch in this thread. */
  single: StepResult;
}

function runWorker(job: ShardJob, transfer: MessagePort[]): Promise<{ worker: Worker; result: ShardResult }> {
  // The worker is TypeScript: worker-entry.mjs loads it through tsx.
  const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: job, transferList: transfer });
  return new Promise((resolve, reject) => {
    worker.once('message', (m: { ok: true; result: ShardResult } | { ok: false; error: string }) => {
      if (m.ok) resolve({ worker, result: m.result });
      else reject(new Error(`worker ${job.rank}: ${m.error}`));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker ${job.rank} exited with code ${code} before answering`)));
  });
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

export async function runSyncExample(options: SyncExampleOptions = {}): Promise<SyncExampleResult> {
  const layout = options.layout ?? 'NCHW';
  const shape = options.shape ?? (layout === 'NCHW' ? [22, 8, 12, 12] : [22, 12, 12, 8]);
  const shardSizes = options.shardSizes ?? [3, 7, 4, 8];
  if (shardSizes.reduce((a, b) => a + b, 0) !== shape[0]) throw new Error(`shard sizes ${shardSizes} do not add up to N = ${shape[0]}`);
  const C = layout === 'NCHW' ? shape[1] : shape[shape.length - 1];
  const size = shape.reduce((a, b) => a * b, 1);
  const row = size / shape[0];
  const next = mulberry32(options.seed ?? 42);
  const gauss = gaussian(next);
  const center = Array.from({ length: C }, () => (next() - 0.5) * 20);
  const spread = Array.from({ length: C }, () => 0.1 + 3 * next());
  const channel = (i: number) => (layout === 'NCHW' ? Math.floor(i / (row / C)) % C : i % C);
  const x = Float32Array.from({ length: size }, (_, i) => center[channel(i)] + spread[channel(i)] * gauss());
  const dy = Float32Array.from({ length: size }, () => gauss());
  const weight = Float32Array.from({ length: C }, () => 0.5 + next());
  const bias = Float32Array.from({ length: C }, () => next() - 0.5);
  const runningMean = new Float32Array(C);
  const runningVar = new Float32Array(C).fill(1);
  const momentum = 0.1, eps = 1e-5;

  // A full mesh: one MessageChannel per pair of workers.
  const k = shardSizes.length;
  const peers: Array<Record<number, MessagePort>> = Array.from({ length: k }, () => ({}));
  for (let i = 0; i < k; i++) {
    for (let j = i + 1; j < k; j++) {
      const { port1, port2 } = new MessageChannel();
      peers[i][j] = port1;
      peers[j][i] = port2;
    }
  }
  let start = 0;
  const jobs = shardSizes.map((rows, rank) => {
    const slice = (a: Float32Array) => a.slice(start * row, (start + rows) * row);
    const job: ShardJob = {
      rank, workers: k, peers: peers[rank], shape: [rows, ...shape.slice(1)], layout,
      x: slice(x), dy: slice(dy), weight, bias, runningMean: runningMean.slice(), runningVar: runningVar.slice(), momentum, eps,
    };
    start += rows;
    return job;
  });
  const settled = await Promise.allSettled(jobs.map((job) => runWorker(job, Object.values(job.peers))));
  for (const s of settled) if (s.status === 'fulfilled') await s.value.worker.terminate();
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const results = settled.map((s) => (s as PromiseFulfilledResult<{ result: ShardResult }>).value.result).sort((a, b) => a.rank - b.rank);

  const concat = (pick: (r: ShardResult) => Float32Array) => {
    const out = new Float32Array(size);
    let at = 0;
    for (const r of results) { out.set(pick(r), at); at += pick(r).length; }
    return out;
  };
  const r0 = results[0];
  const workersAgree = results.every((r) => sameBits(r.runningMean, r0.runningMean) && sameBits(r.runningVar, r0.runningVar)
    && sameBits(r.saveMean, r0.saveMean) && sameBits(r.saveInvStd, r0.saveInvStd)
    && sameBits(r.dweight, r0.dweight) && sameBits(r.dbias, r0.dbias) && r.globalCount === size / C);
  const sharded: StepResult = {
    y: concat((r) => r.y), dx: concat((r) => r.dx), dweight: r0.dweight, dbias: r0.dbias,
    runningMean: r0.runningMean, runningVar: r0.runningVar, saveMean: r0.saveMean, saveInvStd: r0.saveInvStd,
  };

  // The same step in one process on the whole batch.
  const engine = await createEngine();
  const rm = runningMean.slice(), rv = runningVar.slice();
  const f = engine.forward(x, shape, { layout, training: true, weight, bias, runningMean: rm, runningVar: rv, momentum, eps });
  const b = engine.backward(dy, x, shape, { layout, training: true, weight, saveMean: f.saveMean, saveInvStd: f.saveInvStd });
  const single: StepResult = {
    y: f.y, dx: b.dx, dweight: b.dweight, dbias: b.dbias, runningMean: rm, runningVar: rv, saveMean: f.saveMean, saveInvStd: f.saveInvStd,
  };
  return {
    shape, layout, shardSizes, inputs: { x, dy, weight, bias, runningMean, runningVar, momentum, eps }, sharded, workersAgree, single,
  };
}

async function main(): Promise<void> {
  let failures = 0;
  for (const layout of ['NCHW', 'NHWC'] as const) {
    const r = await runSyncExample({ layout });
    console.log(`${layout} ${JSON.stringify(r.shape)} split over ${r.shardSizes.length} workers as N = ${r.shardSizes.join(' + ')}`);
    console.log(`  workers agree bit for bit on statistics and parameter gradients: ${r.workersAgree}`);
    if (!r.workersAgree) failures++;
    // Largest difference relative to the single-process value's scale (float32 rounding: ~1e-7).
    for (const key of ['y', 'dx', 'dweight', 'dbias', 'runningMean', 'runningVar', 'saveMean', 'saveInvStd'] as const) {
      const a = r.sharded[key], b = r.single[key];
      let worst = 0;
      const scale = Math.max(...Array.from(b, Math.abs), 1e-30);
      for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
      const ok = worst <= 1e-5;
      if (!ok) failures++;
      console.log(`  ${key.padEnd(11)} max |sharded − single| / max|single| = ${worst.toExponential(2)} ${ok ? 'ok' : 'MISMATCH'}`);
    }
  }
  console.log(failures === 0 ? 'sharded = single-process' : `${failures} mismatch(es)`);
  process.exitCode = failures === 0 ? 0 : 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
