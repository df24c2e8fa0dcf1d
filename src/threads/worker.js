// @ts-check
// A pool worker (src/threads/pool.ts): instantiates the threaded kernel module over the
// engine's shared memory, then runs the kernel calls the calling thread posts in this worker's
// slot of the control block, forever (the pool terminates it). Plain JavaScript with no
// imports, so the same file runs as a Node worker_threads worker and as a browser module
// worker, from src/ (tests) and from dist/ (the package) alike.
//
// The slot protocol (Int32 indexes into the slot, see SLOT in pool.ts):
//   SEQ      job number the caller posted (this worker waits on it)
//   STARTED  job number this worker picked up     DONE  job number it finished
//   STATUS   0 ok, 1 the kernel threw (message in the slot's text bytes)
//   KERNEL   index into the kernel names          ARGC  argument count (f64 args follow)
//   STATE    0 starting, 1 ready, 2 gone (failed to start, or exiting)

/** @typedef {{ module: WebAssembly.Module, memory: WebAssembly.Memory, control: SharedArrayBuffer, slot: number, names: string[] }} Init */

const SEQ = 0, STARTED = 1, DONE = 2, STATUS = 3, KERNEL = 4, ARGC = 5, STATE = 6;
// A slot is 512 bytes: 16 Int32 fields, 32 f64 arguments from byte 64, message text from byte 320.
const SLOT_INTS = 128, ARGS_BYTE = 64, MAX_ARGS = 32, TEXT_BYTE = 320, TEXT_BYTES = 192;

/** @param {Init} init */
function serve(init) {
  const ctrl = new Int32Array(init.control), base = init.slot * SLOT_INTS;
  const args = new Float64Array(init.control, 4 * base + ARGS_BYTE, MAX_ARGS);
  const text = new Uint8Array(init.control, 4 * base + TEXT_BYTE, TEXT_BYTES);
  /** @type {Function[]} */
  let kernels;
  try {
    const instance = new WebAssembly.Instance(init.module, {
      env: {
        memory: init.memory,
        abort(/** @type {number} */ _m, /** @type {number} */ _f, /** @type {number} */ line, /** @type {number} */ column) {
          throw new Error(`batchnorm kernel aborted at ${line}:${column}`);
        },
      },
    });
    const exports = /** @type {Record<string, Function>} */ (instance.exports);
    kernels = init.names.map((name) => exports[name]);
  } catch (error) {
    report(text, error);
    Atomics.store(ctrl, base + STATE, 2);
    Atomics.notify(ctrl, base + STATE);
    return;
  }
  Atomics.store(ctrl, base + STATE, 1);
  Atomics.notify(ctrl, base + STATE);
  let seen = 0;
  for (;;) {
    Atomics.wait(ctrl, base + SEQ, seen);
    const seq = Atomics.load(ctrl, base + SEQ);
    if (seq === seen) continue;
    seen = seq;
    Atomics.store(ctrl, base + STARTED, seq);
    let status = 0;
    try {
      const argc = ctrl[base + ARGC], call = new Array(argc);
      for (let i = 0; i < argc; i++) call[i] = args[i];
      kernels[ctrl[base + KERNEL]](...call);
    } catch (error) {
      report(text, error);
      status = 1;
    }
    Atomics.store(ctrl, base + STATUS, status);
    Atomics.store(ctrl, base + DONE, seq);
    Atomics.notify(ctrl, base + DONE);
  }
}

/** The error's message into the slot's text bytes (UTF-8, NUL-padded, truncated to fit). */
function report(/** @type {Uint8Array} */ text, /** @type {unknown} */ error) {
  const bytes = new TextEncoder().encode(error instanceof Error ? error.message : String(error)).subarray(0, TEXT_BYTES);
  text.fill(0);
  text.set(bytes);
}

/** Marks the slot gone when this worker's thread ends, so a waiting caller stops waiting. */
function onExit(/** @type {Init} */ init) {
  const ctrl = new Int32Array(init.control), at = init.slot * SLOT_INTS + STATE;
  Atomics.store(ctrl, at, 2);
  Atomics.notify(ctrl, at);
}

const node = typeof globalThis.process?.versions?.node === 'string';
if (node) {
  // Out of bundlers' sight, as in src/wasm/load.ts: never reached in a browser.
  const id = 'node:worker_threads';
  const proc = /** @type {{ getBuiltinModule?: (id: string) => unknown }} */ (globalThis.process);
  const threads = /** @type {typeof import('node:worker_threads')} */ (
    typeof proc.getBuiltinModule === 'function' ? proc.getBuiltinModule(id) : await import(/* @vite-ignore */ id));
  const init = /** @type {Init} */ (threads.workerData);
  globalThis.process.on('exit', () => onExit(init));
  serve(init);
} else {
  globalThis.addEventListener('message', (/** @type {MessageEvent<Init>} */ event) => serve(event.data), { once: true });
}
