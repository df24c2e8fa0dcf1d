// One data-parallel shard of synchronized batch norm. The worker holds its slice of the batch and
// a MessagePort to every other worker; the two all-reduces of a training step (moments forward,
// backward sums) are all-gathers over those ports, merged in rank order so every worker computes
// bit-identical global statistics.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { createEngine, mergeBackwardSums, reduceMoments, type Layout, type Moments, type BackwardSums } from '../../src/index.js';

export interface ShardJob {
  rank: number;
  workers: number;
  /** Peer rank -> port to that peer. */
  peers: Record<number, MessagePort>;
  shape: number[];
  layout: Layout;
  x: Float32Array;
  dy: Float32Array;
  weight: Float32Array;
  bias: Float32Array;
  runningMean: Float32Array;
  runningVar: Float32Array;
  momentum: number;
  eps: number;
}

/** One training step's outputs: of a shard here, of the whole batch in main.ts. */
export interface StepResult {
  y: Float32Array;
  dx: Float32Array;
  dweight: Float32Array;
  dbias: Float32Array;
  runningMean: Float32Array;
  runningVar: Float32Array;
  saveMean: Float32Array;
  saveInvStd: Float32Array;
}

export interface ShardResult extends StepResult {
  rank: number;
  globalCount: number;
}

/** Messages from one peer, in order (each collective takes exactly one message from every peer). */
class Mailbox {
  private readonly queue: unknown[] = [];
  private readonly waiting: Array<(value: unknown) => void> = [];
  constructor(port: MessagePort) {
    port.on('message', (message: unknown) => {
      const resolve = this.waiting.shift();
      if (resolve) resolve(message);
      else this.queue.push(message);
    });
  }
  next(): Promise<unknown> {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

/** All-gather: every rank's value, indexed by rank (structured clone keeps Float64Arrays). */
async function allGather<T>(job: ShardJob, boxes: Map<number, Mailbox>, value: T): Promise<T[]> {
  for (const port of Object.values(job.peers)) port.postMessage(value);
  const all = new Array<T>(job.workers);
  all[job.rank] = value;
  await Promise.all([...boxes].map(async ([rank, box]) => { all[rank] = (await box.next()) as T; }));
  return all;
}

async function run(job: ShardJob): Promise<ShardResult> {
  const boxes = new Map(Object.entries(job.peers).map(([rank, port]) => [Number(rank), new Mailbox(port)]));
  const engine = await createEngine({ threads: 1 }); // each shard is one worker already
  const { shape, layout, x, dy, weight, bias, runningMean, runningVar, momentum, eps } = job;

  // Forward: local moments -> all-reduce (Chan's merge) -> normalize with the global statistics.
  const local = engine.moments(x, shape, { layout });
  const global: Moments = reduceMoments(await allGather(job, boxes, local));
  const { y, saveMean, saveInvStd } = engine.forwardWithMoments(x, shape, {
    layout, moments: global, weight, bias, runningMean, runningVar, momentum, eps,
  });

  // Backward: local sums -> all-reduce (sum) -> dx with the global sums and count.
  const sums = engine.backwardReduce(dy, x, shape, { layout, saveMean, saveInvStd });
  const gathered = await allGather(job, boxes, sums);
  const globalSums: BackwardSums = gathered.slice(1).reduce((a, b) => mergeBackwardSums(a, b), gathered[0]);
  const { dx, dweight, dbias } = engine.backwardWithSums(dy, x, shape, {
    layout, weight, saveMean, saveInvStd, ...globalSums, count: global.count,
  });

  // Not close(): a peer may still be reading what this rank sent. unref() lets the thread exit.
  for (const port of Object.values(job.peers)) port.unref();
  return { rank: job.rank, y, dx, dweight, dbias, runningMean, runningVar, saveMean, saveInvStd, globalCount: global.count };
}

run(workerData as ShardJob).then(
  (result) => parentPort!.postMessage({ ok: true, result }),
  (error: unknown) => parentPort!.postMessage({ ok: false, error: error instanceof Error ? error.stack ?? error.message : String(error) }),
);
