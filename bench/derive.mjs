// The derived numbers of a benchmark run (ratios to the floor, speed-ups, geometric means) and the
// contenders' names and colours. Environment-neutral: bench/report.mjs (Node) and the browser
// bench (bench/browser/) both use it.

export const OPS = ['inference', 'training', 'backward'];
/** Minimal memory traffic per value (bytes): what the floor moves and what GB/s is computed from. */
export const BYTES = { inference: 8, training: 12, backward: 20 };
export const ORDER = ['floor', 'ours-zero-copy', 'ours-relaxed', 'ours-copy', 'ours-scalar', 'plain-js', 'tfjs-wasm', 'ort-web', 'ort-node'];
export const SHORT = {
  floor: 'floor', 'ours-zero-copy': 'ours zero-copy', 'ours-relaxed': 'ours relaxed', 'ours-copy': 'ours copy', 'ours-scalar': 'ours scalar',
  'plain-js': 'plain JS', 'tfjs-wasm': 'tfjs wasm', 'ort-web': 'ORT web', 'ort-node': 'ORT node',
};
export const PEERS = ['plain-js', 'tfjs-wasm', 'ort-web', 'ort-node'];
export const COLORS = {
  floor: '#9e9e9e', 'ours-zero-copy': '#1b5e20', 'ours-relaxed': '#004d40', 'ours-copy': '#43a047', 'ours-scalar': '#a5d6a7',
  'plain-js': '#f9a825', 'tfjs-wasm': '#e65100', 'ort-web': '#1565c0', 'ort-node': '#6a1b9a',
};

// ---------------------------------------------------------------------------------------------
// Derived numbers.

/** Adds gbs, ratioToFloor (median / floor median) and the zero-copy speed-ups to every case. */
export function derive(cases) {
  for (const k of cases) {
    const bytes = BYTES[k.op] * k.size;
    const byId = Object.fromEntries(k.contenders.map((e) => [e.id, e]));
    const floor = byId.floor?.medianMs;
    for (const e of k.contenders) {
      if (!(e.medianMs > 0)) continue;
      e.gbs = bytes / (e.medianMs / 1e3) / 1e9;
      e.ratioToFloor = floor > 0 ? e.medianMs / floor : null;
      e.correct = e.check ? e.check.correct : null;
    }
    k.speedup = {};
    for (const ours of ['ours-zero-copy', 'ours-copy']) {
      const o = byId[ours];
      if (!(o?.medianMs > 0)) continue;
      k.speedup[ours] = Object.fromEntries(PEERS.filter((p) => byId[p]?.medianMs > 0).map((p) => [p, byId[p].medianMs / o.medianMs]));
    }
  }
  return cases;
}

export const geomean = (xs) => (xs.length ? Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length) : null);

/** Geometric means of ratio-to-floor and of zero-copy speed-ups, per operation and layout. */
export function summarize(cases) {
  const rows = [];
  for (const op of OPS) {
    for (const layout of ['NCHW', 'NHWC']) {
      const ks = cases.filter((k) => k.op === op && k.layout === layout);
      if (!ks.length) continue;
      const row = { op, layout, cases: ks.length, ratio: {}, speedup: {}, worst: {} };
      for (const id of ORDER) {
        const rs = ks.map((k) => k.contenders.find((e) => e.id === id)?.ratioToFloor).filter((r) => r > 0);
        if (rs.length) { row.ratio[id] = { geomean: geomean(rs), n: rs.length }; row.worst[id] = Math.max(...rs); }
      }
      for (const p of PEERS) {
        const ss = ks.map((k) => k.speedup?.['ours-zero-copy']?.[p]).filter((s) => s > 0);
        if (ss.length) row.speedup[p] = { geomean: geomean(ss), n: ss.length };
      }
      rows.push(row);
    }
  }
  return rows;
}
