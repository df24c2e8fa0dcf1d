// Whether this JavaScript environment can run a threaded engine, and with how many threads.
import { nodeBuiltin } from '../wasm/load.js';

export interface ThreadSupport {
  count: number;
  /** Why count is below what was asked (for 'auto': below min(limit, cores)), else null. */
  reason: string | null;
}

/**
 * Threads for createEngine's `threads` option: 'auto' = min(limit, logical cores) where shared
 * memory and workers exist (Node's worker_threads; a browser page or worker that is
 * crossOriginIsolated), else 1 with the reason; a number is taken as asked where threads can run.
 * `wasmGiven`: options.wasm supplies single-threaded binaries, so 'auto' stays on 1.
 */
export async function threadSupport(requested: number | 'auto', limit: number, wasmGiven: boolean): Promise<ThreadSupport> {
  if (requested === 1) return { count: 1, reason: null };
  const g = globalThis as { crossOriginIsolated?: boolean; Worker?: unknown; navigator?: { hardwareConcurrency?: number } };
  const node = typeof globalThis.process?.versions?.node === 'string';
  let missing: string | null = null;
  if (typeof SharedArrayBuffer !== 'function' || g.crossOriginIsolated === false) {
    missing = 'shared memory is unavailable: the page is not crossOriginIsolated (serve it with the headers '
      + 'Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)';
  } else if (!node && typeof g.Worker !== 'function') {
    missing = 'this JavaScript environment has no Worker';
  }
  if (missing !== null) return { count: 1, reason: missing };
  if (requested !== 'auto') return { count: requested, reason: null };
  if (wasmGiven) {
    return { count: 1, reason: "options.wasm gives single-threaded binaries: pass `threads` to use the package's threaded ones" };
  }
  const cores = node
    ? (await nodeBuiltin<typeof import('node:os')>('node:os')).availableParallelism()
    : g.navigator?.hardwareConcurrency ?? 1;
  return { count: Math.max(1, Math.min(limit, cores)), reason: null };
}
