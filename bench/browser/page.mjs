// The browser bench page: starts the worker (worker.mjs), shows its progress, and renders the
// report: a chart of ratios to the floor with the speed-ups of ours, a speed-up table, the
// contenders (ran or skipped, why), every case, and the report as JSON to copy.
//
// Query: ?mode=test|quick|full (default quick), ?autorun=1 (start at once). The state is also in
// window.__bench ({ done, error, mode, report }) for bench/browser/run.mjs and the tests.
import { COLORS, ORDER, PEERS, SHORT, summarize } from '../derive.mjs';
import { el, svg } from '../../examples/browser/dom.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { done: false, running: false, error: null, mode: null, report: null };
window.__bench = state;

if (['test', 'quick', 'full'].includes(params.get('mode'))) $('mode').value = params.get('mode');


const fmtMs = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
const fmtX = (x) => `${x >= 10 ? x.toFixed(0) : x.toFixed(x >= 1 ? 1 : 2)}×`;

function setStatus(text, cls = '') {
  $('status').textContent = text;
  $('status').className = cls;
  console.log(`bench: ${text}`);
}

// ---------------------------------------------------------------------------------------------
// Chart: one group per (operation, layout), one bar per contender, log-scale ratio to the floor.

function renderChart(summary) {
  const box = $('chart');
  const ids = ORDER.filter((id) => id !== 'floor' && summary.some((r) => r.ratio[id]));
  if (!ids.length) return;
  $('legend').replaceChildren(...ids.map((id) => el('span', {}, el('i', { style: `background:${COLORS[id]}` }), SHORT[id])));
  const width = Math.max(300, Math.min(760, Math.round(box.clientWidth || 640)));
  const left = width < 480 ? 88 : 120, right = width < 480 ? 138 : 170, top = 20, barH = 12, gap = 3, groupGap = 22;
  const max = Math.max(...summary.flatMap((r) => ids.map((id) => r.ratio[id]?.geomean ?? 1)));
  const decades = Math.max(1, Math.ceil(Math.log10(max)));
  const xOf = (v) => left + (Math.log10(Math.max(v, 1)) / decades) * (width - left - right);
  const groupH = (r) => ids.filter((id) => r.ratio[id]).length * (barH + gap);
  const height = top + summary.reduce((h, r) => h + groupH(r) + groupGap, 0);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'ratio to the floor per contender, geometric means' });
  for (let d = 0; d <= decades; d++) {
    root.append(svg('line', { x1: xOf(10 ** d), x2: xOf(10 ** d), y1: top - 6, y2: height - 4, stroke: '#e3e7ec' }));
    root.append(svg('text', { x: xOf(10 ** d), y: top - 9, 'text-anchor': 'middle', 'font-size': 10, fill: '#5f6b7a' }, `${10 ** d}×`));
  }
  let y = top;
  for (const r of summary) {
    root.append(svg('text', { x: 0, y: y + 10, 'font-size': 12, 'font-weight': 600, fill: '#1d2330' }, r.op));
    root.append(svg('text', { x: 0, y: y + 24, 'font-size': 11, fill: '#5f6b7a' }, `${r.layout}, ${r.cases} case${r.cases > 1 ? 's' : ''}`));
    for (const id of ids.filter((i) => r.ratio[i])) {
      const g = r.ratio[id].geomean;
      const sp = r.speedup[id]?.geomean;
      root.append(svg('rect', { x: left, y, width: Math.max(2, xOf(g) - left), height: barH, rx: 2, fill: COLORS[id] }, undefined));
      root.lastChild.append(svg('title', {}, `${SHORT[id]} ${r.op} ${r.layout}: ${fmtX(g)} the floor${sp ? `; ours zero-copy ${fmtX(sp)} faster` : ''}`));
      root.append(svg('text', { x: xOf(g) + 4, y: y + barH - 2, 'font-size': 10.5, fill: '#1d2330' }, `${fmtX(g)}${sp ? ` · ours ${fmtX(sp)} faster` : ''}`));
      y += barH + gap;
    }
    y += groupGap;
  }
  box.replaceChildren(root);
}

function renderSpeedups(summary) {
  const peers = PEERS.filter((p) => summary.some((r) => r.speedup[p]));
  const head = el('tr', {}, el('th', {}, 'operation'), el('th', {}, 'layout'), ...peers.map((p) => el('th', {}, `vs ${SHORT[p]}`)));
  const rows = summary.map((r) => el('tr', {}, el('td', {}, r.op), el('td', {}, r.layout),
    ...peers.map((p) => el('td', {}, r.speedup[p] ? fmtX(r.speedup[p].geomean) : 'n/a'))));
  $('speedups').replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
}

function renderContenders(list) {
  $('contenders').replaceChildren(...list.map((m) => el('li', {}, el('b', {}, SHORT[m.id] ?? m.id), ` — ${m.label}${m.version ? ` ${m.version}` : ''}: `,
    m.status === 'ran' ? 'ran' : el('span', { class: 'wrong' }, `skipped (${m.reason})`))));
}

function caseRows(k) {
  return k.contenders.map((e, i) => {
    const check = e.check ? (e.check.correct ? `✓ ${e.check.err.toExponential(1)}` : `✗ ${e.check.err.toExponential(1)}`) : (e.id === 'floor' ? '(not BN)' : '–');
    // A case streamed in while running may not have its ratio yet (the floor is timed again last).
    const time = e.medianMs > 0 ? [fmtMs(e.medianMs), e.ratioToFloor > 0 ? fmtX(e.ratioToFloor) : '…'] : [e.status, ''];
    const label = i === 0 ? [el('b', {}, k.op), el('br'), `${k.dims.join('×')} ${k.layout}`] : [];
    return el('tr', { title: [e.reason, ...(e.notes ?? [])].filter(Boolean).join('; ') },
      el('td', { class: 'case' }, ...label), el('td', {}, SHORT[e.id] ?? e.id),
      el('td', e.medianMs > 0 ? {} : { class: 'muted' }, time[0]), el('td', {}, time[1]),
      el('td', e.check && !e.check.correct ? { class: 'wrong' } : {}, check));
  });
}

function renderCases(cases) {
  const head = el('tr', {}, ...['case', 'contender', 'median ms', '× floor', 'oracle check'].map((h) => el('th', {}, h)));
  $('cases').replaceChildren(el('thead', {}, head), el('tbody', {}, ...cases.flatMap(caseRows)));
}

function render(cases) {
  const summary = summarize(cases);
  renderChart(summary);
  renderSpeedups(summary);
  renderCases(cases);
  return summary;
}

// ---------------------------------------------------------------------------------------------

function run() {
  const mode = $('mode').value;
  Object.assign(state, { done: false, running: true, error: null, mode, report: null });
  $('run').disabled = true;
  $('copy').disabled = true;
  $('json').value = '';
  const cases = [];
  const worker = new Worker(new URL('./worker.mjs', import.meta.url), { type: 'module' });
  const finish = (error) => {
    worker.terminate();
    Object.assign(state, { running: false, done: true, error });
    $('run').disabled = false;
  };
  setStatus(`Starting the worker (${mode})…`);
  worker.onmessage = ({ data }) => {
    if (data.type === 'ready') {
      worker.postMessage({ type: 'run', mode });
    } else if (data.type === 'progress') {
      $('progress').max = data.total;
      $('progress').value = data.done;
      setStatus(`Running ${data.text} (${data.done + 1} of ${data.total})…`);
    } else if (data.type === 'case') {
      cases.push(data.case);
      render(cases);
    } else if (data.type === 'done') {
      const { report } = data;
      state.report = report;
      render(report.cases);
      renderContenders(report.meta.contenders);
      $('progress').value = $('progress').max;
      $('json').value = JSON.stringify(report, null, 1);
      $('copy').disabled = false;
      const ran = report.cases.flatMap((k) => k.contenders).filter((e) => e.check);
      const wrong = ran.filter((e) => !e.check.correct).length;
      const skipped = report.meta.contenders.filter((m) => m.status === 'skipped').map((m) => SHORT[m.id]);
      setStatus(`${wrong ? `✘ ${wrong} of ${ran.length} results differ from the oracle` : `✔ all ${ran.length} results match the oracle`}; `
        + `${report.cases.length} cases in ${report.meta.wallSeconds.toFixed(0)} s${skipped.length ? `; skipped: ${skipped.join(', ')}` : ''}.`, wrong ? 'bad' : 'ok');
      finish(null);
    } else if (data.type === 'error') {
      setStatus(`✘ ${data.message}`, 'bad');
      finish(data.message);
    }
  };
  worker.onerror = (event) => {
    event.preventDefault();
    const message = `worker error: ${event.message || 'failed to load (see the console)'}`;
    setStatus(`✘ ${message}`, 'bad');
    finish(message);
  };
}

$('run').onclick = run;
$('copy').onclick = async () => {
  const text = $('json').value;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    $('json').select();
    document.execCommand('copy');
  }
  $('copy').textContent = 'Copied';
  setTimeout(() => { $('copy').textContent = 'Copy'; }, 1500);
};
let resizeTimer = 0;
addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (state.report) renderChart(state.report.summary); }, 100);
});
if (params.get('autorun') === '1') run();
