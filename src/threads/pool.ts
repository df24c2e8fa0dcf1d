// The worker pool of a threaded engine: workers that instantiate the engine's threaded kernel
// module over its shared memory (src/threads/worker.js) and run kernel calls on block or row
// ranges of the same tensors while the calling thread runs its own range (src/threads/split.ts).
// Each call waits for every range before it returns, and the block partials are merged on the
// calling thread in block order, so results do not depend on how many threads ran.
//
// Life cycle: nothing starts until the first call big enough to split (or startThreads());
// that call runs on the calling thread while the workers load, later calls use the workers that
// are ready. Node workers are unref'd (an idle pool never keeps a process alive); dispose()
// terminates them. A worker that fails to start, exits, or stops answering breaks the pool:
// the call in flight throws ThreadError, and the engine goes on with the calling thread alone
// (engine.info().threads.reason says why).
import { ThreadError } from '../errors.js';
import { KERNEL_NAMES, type KernelExports, type KernelName } from '../wasm/kernels.js';
import { nodeBuiltin, reason } from '../wasm/load.js';
import { copyInto } from '../typed.js';

// One 512-byte slot per thread (slot 0, the calling thread's, is unused), so two workers never
// share a cache line: 16 Int32 fields, 32 f64 arguments from byte 64, an error message from
// byte 320. The layout is worker.js's.
const SLOT_INTS = 128, SEQ = 0, STARTED = 1, DONE = 2, STATUS = 3, KERNEL = 4, ARGC = 5, STATE = 6;
const ARGS_BYTE = 64, MAX_ARGS = 32, TEXT_BYTE = 320, TEXT_BYTES = 192;
const STARTING = 0, READY = 1, GONE = 2;

/**
 * How long a posted range may wait to be picked up before its worker counts as hung. Generous:
 * a parked worker wakes in microseconds, but this machine's two cores are shared.
 */
const STALL_MS = 5000;

const KERNEL_INDEX: ReadonlyMap<string, number> = new Map(KERNEL_NAMES.map((name, i) => [name, i]));

interface Handle {
  terminate(): unknown;
}

export class Pool {
  /** Threads calls may split over, the calling thread included. */
  readonly size: number;
  private readonly ctrl: Int32Array;
  private readonly args: Float64Array[] = [];
  private readonly seq: number[];
  private readonly workers: (Handle | null)[];
  private started: Promise<number> | null = null;
  /** Set once the pool is broken or disposed: why calls run on the calling thread alone. */
  private broken: string | null = null;
  /** Atomics.wait is allowed here (Node, workers; not a browser's main thread). */
  private readonly canBlock: boolean;

  constructor(private readonly module: WebAssembly.Module, private readonly memory: WebAssembly.Memory, size: number) {
    this.size = size;
    const control = new SharedArrayBuffer(4 * SLOT_INTS * size);
    this.ctrl = new Int32Array(control);
    for (let s = 0; s < size; s++) this.args.push(new Float64Array(control, 4 * s * SLOT_INTS + ARGS_BYTE, MAX_ARGS));
    this.seq = new Array<number>(size).fill(0);
    this.workers = new Array<Handle | null>(size).fill(null);
    this.canBlock = blockingAllowed(this.ctrl);
  }

  /** Why this pool runs nothing (broken or disposed), else null. */
  get reason(): string | null {
    return this.broken;
  }

  /** Threads a call can use now: the calling thread and the ready workers. Starts the workers on first use (`start`). */
  ready(start = true): number {
    if (this.broken !== null) return 1;
    if (start && this.started === null) void this.start();
    let n = 1;
    for (let s = 1; s < this.size; s++) if (Atomics.load(this.ctrl, s * SLOT_INTS + STATE) === READY) n++;
    return n;
  }

  /** Starts the workers (once); resolves with the threads ready when every worker has started or failed. */
  start(): Promise<number> {
    if (this.started === null) this.started = this.spawn().then(() => this.ready(), (error) => {
      this.breakWith(`the workers could not start: ${reason(error)}`);
      return 1;
    });
    return this.started;
  }

  private async spawn(): Promise<void> {
    const init = (slot: number) => ({ module: this.module, memory: this.memory, control: this.ctrl.buffer, slot, names: KERNEL_NAMES });
    const node = typeof globalThis.process?.versions?.node === 'string';
    const { Worker: NodeWorker } = node ? await nodeBuiltin<typeof import('node:worker_threads')>('node:worker_threads') : { Worker: null };
    for (let s = 1; s < this.size; s++) {
      if (this.broken !== null) return;
      const gone = (why: string) => this.gone(s, why);
      if (NodeWorker !== null) {
        // Referenced while starting (an awaited startThreads() keeps the process alive), unref'd once ready.
        const w = new NodeWorker(workerUrl(), { workerData: init(s), execArgv: workerExecArgv() });
        w.on('error', (error) => gone(`worker ${s} failed: ${reason(error)}`));
        w.on('exit', (code) => gone(`worker ${s} exited (code ${code})`));
        this.workers[s] = w;
      } else {
        const w = new Worker(workerUrl(), { type: 'module' });
        w.onerror = (event) => gone(`worker ${s} failed: ${event.message || 'an error loading worker.js'}`);
        w.postMessage(init(s));
        this.workers[s] = w;
      }
    }
    // Every worker reports READY or GONE in its slot.
    for (let s = 1; s < this.size; s++) {
      const at = s * SLOT_INTS + STATE;
      while (Atomics.load(this.ctrl, at) === STARTING && this.broken === null) await nextState(this.ctrl, at);
      if (Atomics.load(this.ctrl, at) === GONE && this.broken === null) this.breakWith(`worker ${s} could not start: ${this.text(s) || 'no message'}`);
      (this.workers[s] as { unref?: () => void } | null)?.unref?.();
    }
  }

  /** A worker ended or failed outside a call: the pool is broken (its slot marked, so a waiting caller stops). */
  private gone(slot: number, why: string): void {
    Atomics.store(this.ctrl, slot * SLOT_INTS + STATE, GONE);
    Atomics.notify(this.ctrl, slot * SLOT_INTS + STATE);
    if (this.broken === null) this.breakWith(why);
  }

  private breakWith(why: string): void {
    this.broken = why;
    for (let s = 1; s < this.size; s++) {
      this.workers[s]?.terminate();
      this.workers[s] = null;
    }
  }

  /** Terminates the workers; the pool runs nothing afterwards. */
  dispose(): void {
    if (this.broken === null) this.breakWith('the engine was disposed');
  }

  /**
   * Runs `name` once per job (its arguments): job 0 on the calling thread, the others on ready
   * workers (any left over on the calling thread); returns when all are done. A failed job throws ThreadError
   * (after every other job has finished); a lost worker also breaks the pool.
   */
  run(kernels: KernelExports, name: KernelName, jobs: readonly (readonly number[])[]): void {
    const posted: number[] = [];
    const kernel = KERNEL_INDEX.get(name)!;
    for (let s = 1; s < this.size && posted.length < jobs.length - 1; s++) {
      const base = s * SLOT_INTS;
      if (Atomics.load(this.ctrl, base + STATE) !== READY) continue;
      const job = jobs[posted.length + 1];
      copyInto(this.args[s], job);
      this.ctrl[base + KERNEL] = kernel;
      this.ctrl[base + ARGC] = job.length;
      Atomics.store(this.ctrl, base + SEQ, ++this.seq[s]);
      Atomics.notify(this.ctrl, base + SEQ);
      posted.push(s);
    }
    let failure: string | null = null;
    try {
      // Job 0, and any job left over because a worker stopped being ready since ready() counted it.
      const kernel = kernels[name] as unknown as (...a: readonly number[]) => void;
      kernel(...jobs[0]);
      for (let j = posted.length + 1; j < jobs.length; j++) kernel(...jobs[j]);
    } finally {
      for (const s of posted) {
        const why = this.await(s);
        if (why !== null && failure === null) failure = why;
      }
    }
    if (failure !== null) {
      throw new ThreadError(name, failure, this.broken === null ? undefined : 'the engine runs later calls on the calling thread alone');
    }
  }

  /** Waits for slot `s`'s current job; null when it finished cleanly, else what went wrong. */
  private await(s: number): string | null {
    const base = s * SLOT_INTS, seq = this.seq[s], ctrl = this.ctrl;
    const t0 = performance.now();
    while (Atomics.load(ctrl, base + DONE) !== seq) {
      if (Atomics.load(ctrl, base + STATE) === GONE) {
        const why = `worker ${s} ended during the call`;
        if (this.broken === null) this.breakWith(why);
        return why;
      }
      if (Atomics.load(ctrl, base + STARTED) !== seq && performance.now() - t0 > STALL_MS) {
        const why = `worker ${s} did not pick up its range within ${STALL_MS} ms`;
        this.breakWith(why);
        return why;
      }
      if (this.canBlock) Atomics.wait(ctrl, base + DONE, seq - 1, 50);
    }
    return Atomics.load(ctrl, base + STATUS) === 0 ? null : `worker ${s}: ${this.text(s)}`;
  }

  private text(s: number): string {
    const bytes = new Uint8Array(this.ctrl.buffer, 4 * s * SLOT_INTS + TEXT_BYTE, TEXT_BYTES).slice();
    const end = bytes.indexOf(0);
    return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
  }
}

/**
 * worker.js, as an asset URL: bundlers copy it as it is (it imports nothing). Kept out of a
 * `new Worker(new URL(…))` expression on purpose: Vite would re-bundle it as a worker entry,
 * which fails for a file inside node_modules (vitejs/vite#20400).
 */
function workerUrl(): URL {
  return new URL('./worker.js', import.meta.url);
}

/**
 * The process's Node options minus those that describe the main script (`-e`/`-p` and their
 * code, `--input-type`), which a worker started from a file rejects (ERR_INPUT_TYPE_NOT_ALLOWED).
 */
function workerExecArgv(): string[] {
  const argv = globalThis.process.execArgv, out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') i++;
    else if (!a.startsWith('--input-type') && !/^--(eval|print)=/.test(a)) out.push(a);
  }
  return out;
}

/** Whether this thread may block in Atomics.wait (a browser's main thread may not: it throws). */
function blockingAllowed(ctrl: Int32Array): boolean {
  try {
    Atomics.wait(ctrl, 0, 1, 0); // ctrl[0] is 0: returns 'not-equal' at once where waiting is allowed
    return true;
  } catch {
    return false;
  }
}

/** Resolves when ctrl[at] may have changed (Atomics.waitAsync where it exists, else a short timer). */
function nextState(ctrl: Int32Array, at: number): Promise<unknown> {
  const waitAsync = (Atomics as { waitAsync?: (a: Int32Array, i: number, v: number, t: number) => { value: unknown } }).waitAsync;
  if (typeof waitAsync === 'function') return Promise.resolve(waitAsync(ctrl, at, STARTING, 100).value);
  return new Promise((resolve) => setTimeout(resolve, 5));
}
