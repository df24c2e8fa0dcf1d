// The browser bench's Web Worker: runs every contender on the bench's cases, checks each result
// against the float64 oracle and times it, so the page stays responsive. The pieces are the Node
// bench's own: bench/shapes.mjs (cases), bench/data.mjs (seeded data, oracle reference on a channel
// subset, comparison with WRONG_ABOVE), bench/contenders/* (how each contender is called),
// bench/derive.mjs (ratios, speed-ups, geometric means). The peers (tfjs-wasm, ort-web) come from
// /peers/peers.js, the bundle bench/browser/server.mjs makes from bench/node_modules; without it they
// are recorded as skipped with the reason.
//
// Messages out: { type: 'ready' } once loaded (messages sent earlier can be lost: the module's
//               top-level await, in package-under-test.mjs, delays its onmessage), then
// Messages in:  { type: 'run', mode: 'test' | 'quick' | 'full' }
// Messages out: { type: 'progress', text, done, total }, { type: 'case', case }, { type: 'done', report },
//               { type: 'error', message }
import { selectCases } from '../shapes.mjs';
import { caseData, compare, WRONG_ABOVE } from '../data.mjs';
import { OPS, derive, summarize } from '../derive.mjs';
import { engineFor } from '../contenders/engines.mjs';
import * as floor from '../contenders/floor.mjs';
import * as oursZeroCopy from '../contenders/ours-zero-copy.mjs';
import * as oursCopy from '../contenders/ours-copy.mjs';
import * as plainJs from '../contenders/plain-js.mjs';
import { tfjsContender } from '../contenders/tfjs-calls.mjs';

const PEERS_URL = new URL('/peers/', self.location.href);
const FLOOR_URL = new URL('../results/tmp/floor.wasm', import.meta.url);
const TFJS_WASM_DIR = new URL('../node_modules/@tensorflow/tfjs-backend-wasm/dist/', import.meta.url).href;

/**
 * Timing per mode. Each sample runs a contender enough times to last minSampleMs (one call for
 * slow ones); the median over the samples is reported. A contender stops sampling after
 * budgetMs once it has 3 samples; one predicted (from its time per value on an earlier, smaller
 * case of the same layout) to need more than skipAboveMs per call is skipped, as bench/suite.mjs does.
 */
export const MODES = {
  // npm test: the quick cases up to 0.5M values (256x1024, 1x32x112x112 in both layouts).
  test: { cases: () => selectCases({ quick: true }).filter((c) => c.size <= 500_000), samples: 5, minSampleMs: 4, warmupMs: 20, budgetMs: 250, skipAboveMs: 1000 },
  quick: { cases: () => selectCases({ quick: true }), samples: 9, minSampleMs: 10, warmupMs: 50, budgetMs: 1000, skipAboveMs: 1000 },
  full: { cases: () => selectCases(), samples: 9, minSampleMs: 25, warmupMs: 50, budgetMs: 2000, skipAboveMs: 2500 },
};
const PREDICT_FROM = 250_000;

const now = () => performance.now();
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** Calls `run` once; awaits it only when it returns a promise (ORT's session.run). */
const call = (run) => {
  const r = run();
  return r && typeof r.then === 'function' ? r : null;
};
async function timeCall(run) {
  const t0 = now();
  const p = call(run);
  if (p) await p;
  return now() - t0;
}

/** Warm-up, then `samples` samples of `perSample` calls each; median ms per call. */
async function measure(run, firstMs, mode) {
  let calls = 1, spent = firstMs, last = firstMs;
  while (calls < 3 || spent < mode.warmupMs) {
    last = await timeCall(run);
    spent += last;
    calls++;
    if (last > mode.budgetMs / 3) break;
  }
  let perSample = Math.max(1, Math.ceil(mode.minSampleMs / Math.max(last, 1e-3)));
  // `last` may include a pause (GC, the other tab's work), and a page that is not cross-origin
  // isolated reads the clock in 0.1 ms steps: double until one sample lasts minSampleMs, so no
  // sample reads as 0 ms.
  for (;;) {
    const s = now();
    for (let i = 0; i < perSample; i++) {
      const p = call(run);
      if (p) await p;
    }
    if (now() - s >= mode.minSampleMs || perSample >= 1 << 20) break;
    perSample *= 2;
  }
  const times = [];
  const t0 = now();
  while (times.length < mode.samples && !(times.length >= 3 && now() - t0 > mode.budgetMs)) {
    const s = now();
    for (let i = 0; i < perSample; i++) {
      const p = call(run);
      if (p) await p;
    }
    times.push((now() - s) / perSample);
  }
  return { medianMs: median(times), minMs: Math.min(...times), maxMs: Math.max(...times), samples: times.length, callsPerSample: perSample, warmupCalls: calls };
}

// ---------------------------------------------------------------------------------------------
// Contenders: ours and the plain JS loop always; the peers when their bundle is served.

const VERSION_OF = { 'tfjs-wasm': '@tensorflow/tfjs-backend-wasm', 'ort-web': 'onnxruntime-web' };
const PEER_LABELS = { 'tfjs-wasm': 'TensorFlow.js wasm', 'ort-web': 'ONNX Runtime Web (wasm)' };

async function loadContenders() {
  const list = [
    { id: floor.id, label: floor.label, setup: floor.floorContender(async () => (await fetchOk(FLOOR_URL)).arrayBuffer()) },
    oursZeroCopy, oursCopy, plainJs,
  ].map((m) => ({ id: m.id, label: m.label, setup: m.setup, status: 'ran' }));
  const status = await fetchOk(new URL('status.json', PEERS_URL)).then((r) => r.json()).catch((error) => ({ available: false, reason: `no peer status from the server (${error.message})` }));
  let peers = null;
  if (status.available) {
    try {
      peers = await import(new URL('peers.js', PEERS_URL).href);
    } catch (error) {
      status.available = false;
      status.reason = `the peer bundle failed to load: ${error.message}`;
    }
  }
  for (const id of Object.keys(PEER_LABELS)) {
    const version = status.versions?.[VERSION_OF[id]] ?? null;
    if (!peers) {
      list.push({ id, label: PEER_LABELS[id], status: 'skipped', reason: status.reason, version });
      continue;
    }
    const setup = id === 'tfjs-wasm' ? tfjsContender(() => peers.tfjsWasm(TFJS_WASM_DIR)) : peers.ortWeb.setup;
    list.push({ id, label: PEER_LABELS[id], setup, status: 'ran', version });
  }
  return { list, peerStatus: status };
}

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`HTTP ${r.status} for ${url}`);
  return r;
}

// ---------------------------------------------------------------------------------------------

/** Sets up one contender on one case, checks its first call's output, times it, tears it down. */
async function runContender(m, ctx, mode, perValue) {
  const { c, ref } = ctx;
  const entry = { id: m.id, label: m.label, status: 'ok' };
  const known = perValue.get(`${m.id} ${c.layout}`);
  const predictedMs = known ? known.msPerValue * c.size : 0;
  if (known && known.size >= PREDICT_FROM && predictedMs > mode.skipAboveMs) {
    return { ...entry, status: 'skipped', predictedMs, reason: `~${(predictedMs / 1e3).toFixed(1)} s per call predicted (budget: ${mode.skipAboveMs / 1e3} s)` };
  }
  let h = null;
  try {
    h = await m.setup({ ...ctx, compareNaive: (out) => compare(c, ref, out) });
    if (h.unsupported) return { ...entry, status: 'unsupported', reason: h.unsupported };
    if (h.notes?.length) entry.notes = h.notes;
    if (h.info) entry.info = h.info;
    const first = await timeCall(h.run);
    entry.check = h.output ? compare(c, ref, h.output()) : null;
    Object.assign(entry, { firstCallMs: first }, await measure(h.run, first, mode));
    perValue.set(`${m.id} ${c.layout}`, { size: c.size, msPerValue: entry.medianMs / c.size });
  } catch (error) {
    Object.assign(entry, { status: 'error', reason: String(error?.message ?? error).split('\n')[0] });
  } finally {
    await h?.teardown?.();
  }
  return entry;
}

/** One (operation, case): every contender in turn; the floor first and again last (lower median, as suite.mjs). */
async function runCase(c, op, contenders, mode, perValue) {
  const t0 = now();
  const { inputs, ref, saved } = caseData(c, op, await engineFor('simd'));
  const ctx = { c, op, inputs, saved, ref };
  const entries = [];
  for (const m of contenders) {
    entries.push(m.status === 'ran' ? await runContender(m, ctx, mode, perValue) : { id: m.id, label: m.label, status: 'skipped', reason: m.reason });
  }
  const floorEntry = entries[0];
  if (floorEntry.status === 'ok') {
    const again = await runContender(contenders[0], ctx, mode, new Map());
    floorEntry.runs = [pick(floorEntry), pick(again)];
    if (again.medianMs < floorEntry.medianMs) Object.assign(floorEntry, pick(again));
  }
  return {
    op, id: c.id, group: c.group, name: c.name, dims: c.dims, layout: c.layout, shape: c.shape, size: c.size, C: c.C,
    checkedChannels: ref.chans.length, seconds: (now() - t0) / 1e3, contenders: entries,
  };
}

const pick = ({ medianMs, minMs, maxMs, samples, callsPerSample }) => ({ medianMs, minMs, maxMs, samples, callsPerSample });

async function run(modeName) {
  const mode = MODES[modeName];
  if (!mode) throw new Error(`unknown mode ${modeName} (${Object.keys(MODES).join(', ')})`);
  const t0 = now();
  const { list, peerStatus } = await loadContenders();
  const cases = mode.cases().sort((a, b) => a.size - b.size);
  const total = cases.length * OPS.length;
  const results = [];
  for (const op of OPS) {
    const perValue = new Map();
    for (const c of cases) {
      postMessage({ type: 'progress', text: `${op} ${c.id}`, done: results.length, total });
      const k = await runCase(c, op, list, mode, perValue);
      derive([k]);
      results.push(k);
      postMessage({ type: 'case', case: k });
    }
  }
  const engine = await engineFor('simd');
  const { cases: _cases, ...method } = mode;
  return {
    meta: {
      name: 'browser', kind: 'browser', mode: modeName, date: new Date().toISOString(),
      userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency ?? null,
      crossOriginIsolated: self.crossOriginIsolated ?? false,
      engine: engine.info(), wrongAbove: WRONG_ABOVE, method: { ...method, floor: 'timed first and last, lower median' },
      contenders: list.map(({ id, label, status, reason, version }) => ({ id, label, status, ...(reason ? { reason } : {}), ...(version ? { version } : {}) })),
      peers: peerStatus, wallSeconds: (now() - t0) / 1e3,
    },
    cases: results,
    summary: summarize(results),
  };
}

self.onmessage = async ({ data }) => {
  if (data?.type !== 'run') return;
  try {
    postMessage({ type: 'done', report: await run(data.mode) });
  } catch (error) {
    postMessage({ type: 'error', message: `${error?.name ?? 'Error'}: ${error?.message ?? error}` });
  }
};
postMessage({ type: 'ready' });
