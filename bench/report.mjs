// Turns the suites' raw results into the run's outputs:
//   <dir>/<name>.json  date, machine, build, config; per case per contender: median ms, GB/s,
//                      ratio to the floor, correctness (relative error vs the float64 oracle)
//   <dir>/<name>.md    the tables (per operation; plus a geometric-mean summary)
//   <dir>/<name>.svg   bar chart: GB/s per contender per case, log scale, one panel per operation
// Also usable alone to re-render a saved JSON: node bench/report.mjs bench/results/full.json
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OPS, BYTES, ORDER, SHORT, PEERS, COLORS, derive, summarize } from './derive.mjs';

export { OPS, BYTES, ORDER, derive, summarize };

const TRAFFIC = {
  inference: 'read x, write y',
  training: 'read x twice (statistics, apply), write y',
  backward: 'read dy and x twice, write dx',
};

// ---------------------------------------------------------------------------------------------
// Markdown.

const fmtMs = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
const fmtX = (x) => (x >= 10 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(2)) + '×';
const fmtR = (x) => (x >= 10 ? x.toFixed(0) : x.toFixed(2)) + '×';
const fmtG = (g) => (g >= 10 ? g.toFixed(0) : g.toFixed(1));

export function machineLine(meta) {
  const load = meta.loadavg ? `, load avg ${meta.loadavg.map((l) => l.toFixed(1)).join('/')} at start` : '';
  return `${meta.cpu}, ${meta.cores} logical cores, ${meta.os}; Node ${meta.node} (V8 ${meta.v8}); one thread; `
    + `${meta.date.slice(0, 10)}${load}; build ${meta.build.commit ?? '?'} (simd.wasm ${meta.build.simdWasm?.sha256 ?? '?'})`;
}

function cell(e) {
  if (!e) return '–';
  if (e.status === 'unsupported') return 'n/a';
  if (e.status === 'skipped') return `skipped (~${fmtMs(e.predictedMs)} ms)`;
  if (e.status === 'error') return 'error';
  if (!(e.medianMs > 0)) return '–';
  const wrong = e.correct === false ? ' **✗**' : '';
  const cold = e.coldOnly ? ' (1 call)' : '';
  return `${fmtMs(e.medianMs)} ms · ${fmtG(e.gbs)} GB/s · ${fmtR(e.ratioToFloor)}${wrong}${cold}`;
}

export function markdown(report) {
  const { meta, cases } = report;
  const lines = [];
  lines.push(`# Benchmark: ${meta.name}`, '');
  lines.push(`Machine: ${machineLine(meta)}.`, '');
  if (meta.build.changedDuringRun?.length) lines.push(`**Warning: ${meta.build.changedDuringRun.join(', ')} changed during the run; the results mix builds.**`, '');
  if (meta.build.changedInTreeDuringRun?.length) lines.push(`(Rebuilt in the tree during the run: ${meta.build.changedInTreeDuringRun.join(', ')}; the run used the copy taken at its start.)`, '');
  lines.push(`Median of benchmark.js samples (benny), after warm-up; every cell: median ms · GB/s of the`
    + ` operation's minimal traffic · ratio to the floor measured in the same run (lower is better).`
    + ` ✗ = result differs from the float64 oracle by more than ${meta.wrongAbove} (relative); n/a = unsupported;`
    + ` skipped = predicted slower than the per-call budget. Wall time ${meta.wallSeconds.toFixed(0)} s.`, '');

  const sum = summarize(cases);
  const present = ORDER.filter((id) => id !== 'floor' && cases.some((k) => k.contenders.some((e) => e.id === id)));
  const peers = PEERS.filter((p) => present.includes(p));
  lines.push('## Summary (geometric means over the cases)', '');
  lines.push(`| operation | layout | cases | ${present.map((id) => `${SHORT[id]} ×floor`).join(' | ')} | ${peers.map((p) => `zero-copy vs ${SHORT[p]}`).join(' | ')} |`);
  lines.push(`|---|---|---:|${present.map(() => '---:').join('|')}|${peers.map(() => '---:').join('|')}|`);
  for (const r of sum) {
    const ratios = present.map((id) => (r.ratio[id] ? fmtR(r.ratio[id].geomean) + (r.ratio[id].n < r.cases ? ` (${r.ratio[id].n})` : '') : 'n/a'));
    const sp = peers.map((p) => (r.speedup[p] ? fmtX(r.speedup[p].geomean) + (r.speedup[p].n < r.cases ? ` (${r.speedup[p].n})` : '') : 'n/a'));
    lines.push(`| ${r.op} | ${r.layout} | ${r.cases} | ${ratios.join(' | ')} | ${sp.join(' | ')} |`);
  }
  lines.push('', '(n) = over n cases only (the others unsupported, skipped or failed).', '');

  for (const op of OPS) {
    const ks = cases.filter((k) => k.op === op);
    if (!ks.length) continue;
    lines.push(`## ${op} (${BYTES[op]} B/value: ${TRAFFIC[op]})`, '');
    const ids = ORDER.filter((id) => ks.some((k) => k.contenders.some((e) => e.id === id)));
    lines.push(`| shape | layout | ${ids.map((id) => SHORT[id]).join(' | ')} | zero-copy vs ${PEERS.map((p) => SHORT[p]).join(' | vs ')} |`);
    lines.push(`|---|---|${ids.map(() => '---').join('|')}|${PEERS.map(() => '---:').join('|')}|`);
    for (const k of ks) {
      const byId = Object.fromEntries(k.contenders.map((e) => [e.id, e]));
      const sp = PEERS.map((p) => (k.speedup?.['ours-zero-copy']?.[p] ? fmtX(k.speedup['ours-zero-copy'][p]) : '–'));
      lines.push(`| ${k.dims.join('×')} (${k.group} ${k.name}) | ${k.layout} | ${ids.map((id) => cell(byId[id])).join(' | ')} | ${sp.join(' | ')} |`);
    }
    lines.push('');
  }

  // Notes, grouped by text with the numbers that vary per case (relative errors, sizes) folded.
  const notes = new Map();
  for (const k of cases) {
    for (const e of k.contenders) {
      const add = (text) => {
        const errs = [...text.matchAll(/rel\. err ([0-9.e+-]+)/g)].map((m) => Number(m[1]));
        const key = `${SHORT[e.id]}: ${text.replace(/ \(rel\. err [0-9.e+-]+\)/g, '').replace(/Size\(\d+\) must match the product of shape [\d,]+/g, 'Size(…) must match the product of shape C,1,1')}`;
        const n = notes.get(key) ?? { where: [], errs: [] };
        n.where.push(`${k.op} ${k.id}`);
        n.errs.push(...errs);
        notes.set(key, n);
      };
      if (e.status === 'unsupported' || e.status === 'error') add(`${e.status}: ${e.reason}`);
      for (const note of e.notes ?? []) add(note);
      if (e.correct === false) add(`WRONG result (rel. err ${e.check.err.toExponential(1)})`);
    }
  }
  if (notes.size) {
    lines.push('## Notes', '');
    for (const [text, { where, errs }] of notes) {
      const range = errs.length ? ` (rel. err ${Math.min(...errs).toExponential(1)}${errs.length > 1 ? ` to ${Math.max(...errs).toExponential(1)}` : ''})` : '';
      const list = where.length > 4 ? `${where.length} cases, e.g. ${where.slice(0, 3).join('; ')}` : where.join('; ');
      lines.push(`- ${text}${range} — ${list}`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// SVG: one panel per operation, x = cases, grouped bars = contenders, y = GB/s (log scale).

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function svg(report) {
  const { meta, cases } = report;
  const ops = OPS.filter((op) => cases.some((k) => k.op === op));
  const ids = ORDER.filter((id) => cases.some((k) => k.contenders.some((e) => e.id === id)));
  const caseIds = [...new Set(cases.map((k) => `${k.dims.join('×')} ${k.layout}`))];
  const left = 56, right = 16, top = 84, panelH = 260, labelH = 118, gap = 26;
  const groupW = Math.max(8 * ids.length + 10, 50);
  const width = left + right + groupW * caseIds.length;
  const height = top + ops.length * (panelH + labelH + gap);
  const all = cases.flatMap((k) => k.contenders.map((e) => e.gbs)).filter((g) => g > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...all))), hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const y = (g, y0) => y0 + panelH - (Math.log10(g / lo) / Math.log10(hi / lo)) * panelH;
  const barW = (groupW - 10) / ids.length;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${left}" y="18" font-size="14" font-weight="bold">wasm-batchnorm: GB/s of minimal memory traffic (log scale, higher is better), median, one thread</text>`);
  out.push(`<text x="${left}" y="34" fill="#555">${esc(machineLine(meta))}</text>`);
  ids.forEach((id, i) => {
    const x = left + i * 150;
    out.push(`<rect x="${x}" y="44" width="12" height="10" fill="${COLORS[id]}"/><text x="${x + 16}" y="53">${esc(SHORT[id])}</text>`);
  });
  out.push(`<text x="${left + ids.length * 150}" y="53" fill="#b71c1c">✗ = wrong result</text>`);
  ops.forEach((op, p) => {
    const y0 = top + p * (panelH + labelH + gap);
    out.push(`<text x="${left}" y="${y0 - 6}" font-size="13" font-weight="bold">${op} (${BYTES[op]} B/value)</text>`);
    for (let g = lo; g <= hi * 1.0001; g *= 10) {
      for (const m of [1, 2, 5]) {
        const v = g * m;
        if (v > hi * 1.0001) continue;
        const yy = y(v, y0);
        out.push(`<line x1="${left}" x2="${width - right}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="${m === 1 ? '#bbb' : '#eee'}"/>`);
        out.push(`<text x="${left - 4}" y="${(yy + 4).toFixed(1)}" text-anchor="end" fill="#555">${v >= 1 ? v : v.toPrecision(1)}</text>`);
      }
    }
    out.push(`<text transform="translate(14 ${y0 + panelH / 2}) rotate(-90)" text-anchor="middle" fill="#555">GB/s</text>`);
    caseIds.forEach((cid, ci) => {
      const k = cases.find((kk) => kk.op === op && `${kk.dims.join('×')} ${kk.layout}` === cid);
      const gx = left + ci * groupW + 5;
      if (k) {
        ids.forEach((id, i) => {
          const e = k.contenders.find((ee) => ee.id === id);
          const bx = gx + i * barW;
          if (!(e?.gbs > 0)) {
            const mark = e?.status === 'unsupported' ? '·' : e?.status === 'skipped' ? 's' : '';
            if (mark) out.push(`<text x="${(bx + barW / 2).toFixed(1)}" y="${y0 + panelH - 2}" text-anchor="middle" font-size="8" fill="#999">${mark}</text>`);
            return;
          }
          const yy = y(e.gbs, y0);
          const tip = `${SHORT[id]} ${cid} ${op}: ${fmtMs(e.medianMs)} ms, ${fmtG(e.gbs)} GB/s, ${fmtR(e.ratioToFloor)} floor${e.correct === false ? ', WRONG' : ''}`;
          out.push(`<rect x="${bx.toFixed(1)}" y="${yy.toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${(y0 + panelH - yy).toFixed(1)}" fill="${COLORS[id]}"${e.correct === false ? ' stroke="#b71c1c" stroke-width="1.5"' : ''}><title>${esc(tip)}</title></rect>`);
          if (e.correct === false) out.push(`<text x="${(bx + barW / 2).toFixed(1)}" y="${(yy - 2).toFixed(1)}" text-anchor="middle" font-size="9" fill="#b71c1c">✗</text>`);
        });
      }
      const lx = gx + groupW / 2;
      out.push(`<text transform="translate(${lx.toFixed(1)} ${y0 + panelH + 10}) rotate(-50)" text-anchor="end" font-size="10">${esc(cid)}</text>`);
    });
    out.push(`<line x1="${left}" x2="${width - right}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#333"/>`);
  });
  out.push(`<text x="${left}" y="${height - 6}" fill="#777">· = unsupported, s = skipped (over the per-call time budget). Hover a bar for ms and the ratio to the floor.</text>`);
  out.push('</svg>');
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------

export function writeReport(report, dir) {
  mkdirSync(dir, { recursive: true });
  derive(report.cases);
  report.summary = summarize(report.cases);
  const base = join(dir, report.meta.name);
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 1));
  const md = markdown(report);
  writeFileSync(`${base}.md`, md);
  writeFileSync(`${base}.svg`, svg(report));
  return { json: `${base}.json`, md: `${base}.md`, svg: `${base}.svg`, markdown: md };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node bench/report.mjs bench/results/<name>.json');
  const report = JSON.parse(readFileSync(file, 'utf8'));
  report.meta.name = basename(file, '.json');
  const paths = writeReport(report, dirname(file));
  console.log(paths.markdown);
}
