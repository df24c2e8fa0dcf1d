// The browser demo: loads the package by name (`wasm-batchnorm`, mapped to dist/ by the page's
// import map, as an app maps node_modules/wasm-batchnorm/dist/ or a CDN), batch-normalizes a
// ResNet-sized activation (32x64x56x56) in NCHW and NHWC, checks forward (training and inference)
// and backward against the package's float64 oracle, then times the kernels against a plain
// JavaScript loop and draws the result as an SVG bar chart.
//
// Results are also published as `window.__results` for test/browser.test.ts.
//
// Query options: ?simd=0|1 (default: auto-detect), ?n=32 (batch), ?bench=0 (skip the benchmark),
// ?runs=5 (timed runs per bar).
import { createEngine, oracleForward, oracleBackward } from 'wasm-batchnorm'; // the import map in index.html
import { plainForwardEval, plainForwardTrain, plainBackwardTrain } from '../../bench/plain-js.mjs';
import { mulberry32 } from '../../bench/prng.mjs';
import { el, svg } from './dom.js';

const params = new URLSearchParams(location.search);
const SIMD = params.get('simd') === '1' ? true : params.get('simd') === '0' ? false : undefined;
const N = intParam('n', 32, 2, 256);
const RUNS = intParam('runs', 5, 1, 50);
const BENCH = params.get('bench') !== '0';
const [C, H, W] = [64, 56, 56];
const HW = H * W;
const SIZE = N * C * HW;
const EPS = 1e-5;
const MOMENTUM = 0.1;
const TOL_ULP = 8;
const LAYOUTS = [
  { layout: 'NCHW', shape: [N, C, H, W] },
  { layout: 'NHWC', shape: [N, H, W, C] },
];
const OPS = [
  { key: 'inference', name: 'forward, inference', bytes: 8 },
  { key: 'training', name: 'forward, training', bytes: 12 },
  { key: 'backward', name: 'backward', bytes: 20 },
];

const results = {
  done: false, checksDone: false, ok: false, error: null,
  shape: { N, C, H, W, size: SIZE }, requested: { simd: SIMD ?? 'auto' },
  userAgent: navigator.userAgent, info: null, checks: [], bench: null, seconds: {},
};
window.__results = results;

const $ = (id) => document.getElementById(id);

function intParam(name, fallback, min, max) {
  const v = Number(params.get(name) ?? fallback);
  return Number.isInteger(v) && v >= min && v <= max ? v : fallback;
}

/** Lets the page paint between long steps. */
const paint = () => new Promise((resolve) => setTimeout(resolve, 0));

function setStatus(text, cls = '') {
  $('status').textContent = text;
  $('status').className = cls;
}


// ---------------------------------------------------------------------------------------------
// Seeded data (mulberry32 uniforms from bench/prng.mjs, Box-Muller normals), as in bench/start.mjs.

function makeData(seed) {
  const rand = mulberry32(seed);
  let spare = null;
  const gauss = () => {
    if (spare !== null) { const s = spare; spare = null; return s; }
    const r = Math.sqrt(-2 * Math.log(1 - rand())), a = 2 * Math.PI * rand();
    spare = r * Math.sin(a);
    return r * Math.cos(a);
  };
  const perChannel = (f) => Float32Array.from({ length: C }, f);
  const mu = perChannel(() => 2 * rand() - 1);
  const sd = perChannel(() => 0.5 + 1.5 * rand());
  const weight = perChannel(() => 0.5 + rand());
  const bias = perChannel(() => rand() - 0.5);
  const runningMean = perChannel((_, c) => mu[c] + 0.05 * sd[c] * gauss());
  const runningVar = perChannel((_, c) => sd[c] * sd[c] * (0.8 + 0.45 * rand()));
  const x = new Float32Array(SIZE), dy = new Float32Array(SIZE);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * HW;
      for (let i = 0; i < HW; i++) x[base + i] = mu[c] + sd[c] * gauss();
    }
  }
  for (let i = 0; i < SIZE; i++) dy[i] = gauss();
  return { x, dy, weight, bias, runningMean, runningVar };
}

/** (N, C, HW) -> (N, HW, C). */
function toNHWC(a) {
  const out = new Float32Array(SIZE);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const src = (n * C + c) * HW, dst = n * HW * C + c;
      for (let i = 0; i < HW; i++) out[dst + i * C] = a[src + i];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Errors against the oracle.

/** Max |a - e| and max |a - e| / (|e|·2^-23 + 2^-24); NaN sticks. */
function errors(actual, expected) {
  let abs = 0, ulp = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    const d = Math.abs(actual[i] - e);
    if (!(d <= abs)) abs = d;
    const u = d / (Math.abs(e) * 2 ** -23 + 2 ** -24);
    if (!(u <= ulp)) ulp = u;
  }
  return { maxAbs: abs, maxUlp: ulp };
}

function check(layout, op, pairs) {
  const outputs = {};
  let maxAbs = 0, maxUlp = 0;
  for (const [name, actual, expected] of pairs) {
    const e = errors(actual, expected);
    outputs[name] = e;
    if (!(e.maxAbs <= maxAbs)) maxAbs = e.maxAbs;
    if (!(e.maxUlp <= maxUlp)) maxUlp = e.maxUlp;
  }
  const row = { layout, op, outputs, maxAbs, maxUlp, tolerance: TOL_ULP, pass: maxUlp <= TOL_ULP };
  results.checks.push(row);
  renderCheck(row);
  return row;
}

// ---------------------------------------------------------------------------------------------
// Rendering.

const fmtBytes = (b) => (b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);
const fmtUlp = (u) => (Number.isNaN(u) ? 'NaN' : u < 100 ? u.toFixed(2) : u.toExponential(1));

function renderEngine(engine) {
  const info = engine.info();
  results.info = info;
  const how = {
    stream: 'compileStreaming (application/wasm)',
    fetch: 'fetch + compile from bytes (MIME type was not application/wasm)',
    file: 'read from disk', bytes: 'bytes passed in', module: 'module passed in',
  }[info.source] ?? String(info.source);
  const rows = [
    ['build', `${info.build}${{ 'relaxed-simd': ' (128-bit SIMD kernels, fused multiply-adds in the sums)', simd: ' (128-bit SIMD kernels)' }[info.build] ?? ' (no SIMD)'}`],
    ['requested', SIMD === undefined ? 'auto-detect' : SIMD ? 'simd: true' : 'simd: false'],
    ['wasm SIMD', info.features.simd === null ? 'not probed' : info.features.simd ? 'supported' : 'not supported'],
    ['relaxed SIMD', info.features.relaxedSimd === null ? 'not probed' : info.features.relaxedSimd ? 'supported' : 'not supported'],
    ['streaming', info.features.streaming ? 'available' : 'not available'],
    ['loaded by', how],
    ['from', info.url ? new URL(info.url).pathname : '(in memory)'],
    ['memory', `${fmtBytes(info.memoryBytes)} (${fmtBytes(info.bytesInUse)} in use)`],
    ['tensor', `${N}×${C}×${H}×${W} = ${SIZE.toLocaleString('en-US')} float32`],
  ];
  $('engine').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-key': k }, v)]));
}

function renderCheck(row) {
  const names = Object.keys(row.outputs).join(', ');
  $('checks').append(el('tr', {},
    el('td', {}, row.layout), el('td', {}, row.op), el('td', { style: 'text-align:left;white-space:normal;color:var(--muted);font-size:12px' }, names),
    el('td', {}, row.maxAbs.toExponential(2)), el('td', {}, fmtUlp(row.maxUlp)), el('td', {}, `≤ ${row.tolerance}`),
    el('td', {}, el('span', { class: `badge ${row.pass ? 'pass' : 'fail'}` }, row.pass ? 'PASS' : 'FAIL'))));
}


/** Grouped horizontal bars: one group per (layout, op), ours above plain JS, GB/s on the axis. */
function renderChart(rows) {
  const width = 660, left = 150, right = 90, top = 22, barH = 13, gap = 3, groupGap = 14;
  const groupH = 2 * barH + gap;
  const height = top + rows.length * (groupH + groupGap) + 8;
  const max = Math.max(...rows.flatMap((r) => [r.oursGBs, r.jsGBs]), 1e-9);
  const step = niceStep(max / 5);
  const axisMax = Math.ceil(max / step) * step;
  const xOf = (v) => left + (v / axisMax) * (width - left - right);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'throughput in GB/s, wasm-batchnorm vs plain JS' });
  for (let v = 0; v <= axisMax + 1e-9; v += step) {
    root.append(svg('line', { x1: xOf(v), x2: xOf(v), y1: top - 6, y2: height - 8, stroke: '#e3e7ec' }));
    root.append(svg('text', { x: xOf(v), y: top - 10, 'text-anchor': 'middle', 'font-size': 10, fill: '#5f6b7a' }, `${+v.toFixed(2)}`));
  }
  root.append(svg('text', { x: left - 10, y: top - 10, 'text-anchor': 'end', 'font-size': 10, fill: '#5f6b7a' }, 'GB/s'));
  rows.forEach((r, i) => {
    const y = top + i * (groupH + groupGap);
    root.append(svg('text', { x: 0, y: y + barH - 2, 'font-size': 12, 'font-weight': 600, fill: '#1d2330' }, r.layout));
    root.append(svg('text', { x: 0, y: y + groupH - 1, 'font-size': 11, fill: '#5f6b7a' }, r.name));
    [['oursGBs', 'var(--ours)', '#2f6fdf'], ['jsGBs', 'var(--js)', '#9aa3ad']].forEach(([key, , color], j) => {
      const by = y + j * (barH + gap);
      root.append(svg('rect', { x: left, y: by, width: Math.max(1, xOf(r[key]) - left), height: barH, rx: 2, fill: color }));
      root.append(svg('text', { x: xOf(r[key]) + 5, y: by + barH - 3, 'font-size': 11, fill: '#1d2330' },
        `${r[key].toFixed(2)}${j === 0 ? `  ×${r.speedup.toFixed(1)}` : ''}`));
    });
  });
  $('chart').replaceChildren(root);
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

// ---------------------------------------------------------------------------------------------

async function checks(engine, base) {
  const t0 = performance.now();
  const { weight, bias } = base;
  for (const { layout, shape } of LAYOUTS) {
    const x = layout === 'NCHW' ? base.x : toNHWC(base.x);
    const dy = layout === 'NCHW' ? base.dy : toNHWC(base.dy);
    setStatus(`Checking ${layout} against the float64 oracle…`);
    await paint();

    // Forward, inference: normalize with the running statistics.
    {
      const stats = { runningMean: base.runningMean.slice(), runningVar: base.runningVar.slice() };
      const r = engine.forward(x, shape, { layout, training: false, weight, bias, ...stats, eps: EPS });
      const ref = oracleForward(x, shape, { layout, training: false, weight, bias, ...stats, eps: EPS });
      check(layout, 'forward, inference', [['y', r.y, ref.y], ['saveMean', r.saveMean, ref.mean], ['saveInvStd', r.saveInvStd, ref.invStd]]);
    }
    await paint();

    // Forward, training: batch statistics, running statistics updated in place.
    const rm = base.runningMean.slice(), rv = base.runningVar.slice();
    const fwd = engine.forward(x, shape, { layout, training: true, weight, bias, runningMean: rm, runningVar: rv, momentum: MOMENTUM, eps: EPS });
    {
      const ref = oracleForward(x, shape, { layout, training: true, weight, bias, runningMean: base.runningMean, runningVar: base.runningVar, momentum: MOMENTUM, eps: EPS });
      check(layout, 'forward, training', [['y', fwd.y, ref.y], ['saveMean', fwd.saveMean, ref.mean], ['saveInvStd', fwd.saveInvStd, ref.invStd],
        ['runningMean', rm, ref.runningMean], ['runningVar', rv, ref.runningVar]]);
    }
    await paint();

    // Backward, training mode, with the statistics the forward pass saved.
    {
      const r = engine.backward(dy, x, shape, { layout, training: true, weight, saveMean: fwd.saveMean, saveInvStd: fwd.saveInvStd });
      const ref = oracleBackward(dy, x, shape, { layout, training: true, weight, mean: fwd.saveMean, invStd: fwd.saveInvStd });
      check(layout, 'backward', [['dx', r.dx, ref.dx], ['dweight', r.dweight, ref.dweight], ['dbias', r.dbias, ref.dbias]]);
    }
    await paint();
  }
  results.seconds.checks = (performance.now() - t0) / 1000;
  results.checksDone = true;
  renderEngine(engine);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/**
 * Median ms of one call over RUNS samples. A sample repeats the call until at least 5 ms have
 * passed: outside a cross-origin-isolated page the browser's clock ticks in 0.1 ms steps, so a
 * single short call can read as 0 ms (and an infinite GB/s).
 */
function timeMs(run) {
  run(); // warm-up
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    let calls = 0, elapsed = 0;
    do { run(); calls++; elapsed = performance.now() - t0; } while (elapsed < 5);
    times.push(elapsed / calls);
  }
  return median(times);
}

async function bench(engine, base) {
  const t0 = performance.now();
  const { weight, bias } = base;
  // Zero-copy: tensors live in the engine's memory; read `.data` at each call (memory may grow).
  const T = { x: engine.tensor(SIZE), y: engine.tensor(SIZE), dy: engine.tensor(SIZE), dx: engine.tensor(SIZE) };
  const yJs = new Float32Array(SIZE), dxJs = new Float32Array(SIZE);
  const rows = [];
  try {
    for (const { layout, shape } of LAYOUTS) {
      const x = layout === 'NCHW' ? base.x : toNHWC(base.x);
      const dy = layout === 'NCHW' ? base.dy : toNHWC(base.dy);
      T.x.set(x);
      T.dy.set(dy);
      const rm = base.runningMean.slice(), rv = base.runningVar.slice();
      const saved = engine.forward(T.x.data, shape, { layout, training: true, weight, bias, runningMean: rm, runningVar: rv, out: T.y.data });
      const ours = {
        inference: () => engine.forward(T.x.data, shape, { layout, training: false, weight, bias, runningMean: rm, runningVar: rv, out: T.y.data }),
        training: () => engine.forward(T.x.data, shape, { layout, training: true, weight, bias, runningMean: rm, runningVar: rv, momentum: MOMENTUM, out: T.y.data }),
        backward: () => engine.backward(T.dy.data, T.x.data, shape, { layout, training: true, weight, saveMean: saved.saveMean, saveInvStd: saved.saveInvStd, out: T.dx.data }),
      };
      const js = {
        inference: () => plainForwardEval(x, shape, layout, weight, bias, rm, rv, EPS, yJs),
        training: () => plainForwardTrain(x, shape, layout, weight, bias, rm, rv, MOMENTUM, EPS, yJs),
        backward: () => plainBackwardTrain(dy, x, shape, layout, weight, saved.saveMean, saved.saveInvStd, dxJs),
      };
      for (const op of OPS) {
        setStatus(`Benchmark: ${layout} ${op.name}…`);
        await paint();
        const oursMs = timeMs(ours[op.key]);
        await paint();
        const jsMs = timeMs(js[op.key]);
        const gbs = (ms) => (op.bytes * SIZE) / (ms / 1000) / 1e9;
        rows.push({ layout, op: op.key, name: op.name, oursMs, jsMs, oursGBs: gbs(oursMs), jsGBs: gbs(jsMs), speedup: jsMs / oursMs });
        renderChart(rows);
      }
    }
  } finally {
    for (const t of Object.values(T)) t.free();
  }
  results.seconds.bench = (performance.now() - t0) / 1000;
  $('bench-note').textContent = `GB/s of each operation's minimal memory traffic (inference 8 B/value, training 12, backward 20); `
    + `median of ${RUNS} runs after one warm-up, one thread, ${engine.build} build. ×: speed-up over plain JS.`;
  return rows;
}

async function main() {
  const t0 = performance.now();
  setStatus('Loading the wasm…');
  const engine = await createEngine(SIMD === undefined ? {} : { simd: SIMD });
  results.seconds.load = (performance.now() - t0) / 1000;
  renderEngine(engine);
  setStatus('Generating data…');
  await paint();
  const base = makeData(12345);

  await checks(engine, base);
  const failed = results.checks.filter((c) => !c.pass).length;
  results.ok = failed === 0;
  $('checks-title').textContent = `Correctness vs the float64 oracle: ${results.ok ? 'all pass' : `${failed} FAIL`}`;

  if (BENCH) {
    results.bench = await bench(engine, base);
    const rerun = $('rerun');
    rerun.disabled = false;
    rerun.onclick = async () => {
      rerun.disabled = true;
      try { results.bench = await bench(engine, base); } finally { rerun.disabled = false; finish(); }
    };
  } else {
    $('chart').replaceChildren(el('p', { class: 'note' }, 'benchmark skipped (?bench=0)'));
  }
  renderEngine(engine);
  results.seconds.total = (performance.now() - t0) / 1000;
  finish();
  results.done = true;
}

function finish() {
  const n = results.checks.length;
  const speed = results.bench?.length ? `; ${results.info.build} build ${Math.min(...results.bench.map((b) => b.speedup)).toFixed(1)}–${Math.max(...results.bench.map((b) => b.speedup)).toFixed(1)}× plain JS` : '';
  setStatus(results.ok ? `✔ ${n} of ${n} checks match the oracle${speed}.` : `✘ ${results.checks.filter((c) => !c.pass).length} of ${n} checks FAIL.`, results.ok ? 'ok' : 'bad');
}

main().catch((error) => {
  console.error(error);
  results.error = `${error?.name ?? 'Error'}: ${error?.message ?? error}`;
  results.done = true;
  setStatus(`✘ ${results.error}`, 'bad');
});
