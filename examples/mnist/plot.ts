// Hand-written SVG line charts: axes, ticks, grid, legend, shaded bands. No plotting library.
import type { EvalRecord, ExperimentOptions } from './experiment.js';

export interface Series {
  label: string;
  points: ReadonlyArray<readonly [number, number]>;
  color: string;
  dash?: string;
  width?: number;
}

export interface Band {
  label: string;
  lower: ReadonlyArray<readonly [number, number]>;
  upper: ReadonlyArray<readonly [number, number]>;
  color: string;
  opacity?: number;
}

export interface Panel {
  title: string;
  caption?: string;
  xLabel: string;
  yLabel: string;
  xDomain: readonly [number, number];
  yDomain: readonly [number, number];
  series: Series[];
  bands?: Band[];
}

const FONT = 'font-family="Helvetica, Arial, sans-serif"';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const fmt = (v: number) => Number(v.toPrecision(6)).toString();

/** About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]. */
export function ticks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Step counts as the paper labels them: 10K, 20K, ... */
export function formatSteps(v: number): string {
  return v >= 1000 && v % 1000 === 0 ? `${v / 1000}K` : v >= 1000 ? `${fmt(v / 1000)}K` : fmt(v);
}

/** Round [lo, hi] outwards to tick values. */
export function niceDomain(lo: number, hi: number, count = 5): [number, number] {
  if (lo === hi) { lo -= 1; hi += 1; }
  const t = ticks(lo, hi, count);
  const step = t.length > 1 ? t[1] - t[0] : hi - lo;
  return [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
}

function panelSvg(p: Panel, x0: number, y0: number, w: number, h: number, xFormat: (v: number) => string): string {
  const m = { left: 62, right: 14, top: 56, bottom: p.caption ? 66 : 46 };
  const pw = w - m.left - m.right, ph = h - m.top - m.bottom;
  const [xa, xb] = p.xDomain, [ya, yb] = p.yDomain;
  const X = (v: number) => x0 + m.left + ((v - xa) / (xb - xa)) * pw;
  const Y = (v: number) => y0 + m.top + (1 - (v - ya) / (yb - ya)) * ph;
  const path = (pts: ReadonlyArray<readonly [number, number]>) =>
    pts.map(([a, b], i) => `${i ? 'L' : 'M'}${X(a).toFixed(1)},${Y(b).toFixed(1)}`).join('');
  const out: string[] = [];
  const clip = `clip${Math.round(x0)}_${Math.round(y0)}`;
  out.push(`<clipPath id="${clip}"><rect x="${X(xa)}" y="${Y(yb)}" width="${pw}" height="${ph}"/></clipPath>`);
  // grid and ticks
  for (const t of ticks(xa, xb, 5)) {
    out.push(`<line x1="${X(t).toFixed(1)}" y1="${Y(ya)}" x2="${X(t).toFixed(1)}" y2="${Y(yb)}" stroke="#e6e6e6"/>`);
    out.push(`<line x1="${X(t).toFixed(1)}" y1="${Y(ya)}" x2="${X(t).toFixed(1)}" y2="${Y(ya) + 5}" stroke="#333"/>`);
    out.push(`<text x="${X(t).toFixed(1)}" y="${Y(ya) + 18}" font-size="12" text-anchor="middle" ${FONT}>${esc(xFormat(t))}</text>`);
  }
  for (const t of ticks(ya, yb, 5)) {
    out.push(`<line x1="${X(xa)}" y1="${Y(t).toFixed(1)}" x2="${X(xb)}" y2="${Y(t).toFixed(1)}" stroke="#e6e6e6"/>`);
    out.push(`<line x1="${X(xa) - 5}" y1="${Y(t).toFixed(1)}" x2="${X(xa)}" y2="${Y(t).toFixed(1)}" stroke="#333"/>`);
    out.push(`<text x="${X(xa) - 8}" y="${(Y(t) + 4).toFixed(1)}" font-size="12" text-anchor="end" ${FONT}>${esc(fmt(t))}</text>`);
  }
  // data
  out.push(`<g clip-path="url(#${clip})">`);
  for (const b of p.bands ?? []) {
    const poly = [...b.upper, ...[...b.lower].reverse()];
    out.push(`<path d="${path(poly)}Z" fill="${b.color}" fill-opacity="${b.opacity ?? 0.18}" stroke="none"/>`);
  }
  for (const s of p.series) {
    out.push(`<path d="${path(s.points)}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 2}"` +
      `${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} stroke-linejoin="round"/>`);
  }
  out.push('</g>');
  // frame, labels
  out.push(`<rect x="${X(xa)}" y="${Y(yb)}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${x0 + m.left + pw / 2}" y="${y0 + 18}" font-size="14" font-weight="bold" text-anchor="middle" ${FONT}>${esc(p.title)}</text>`);
  out.push(`<text x="${x0 + m.left + pw / 2}" y="${Y(ya) + 36}" font-size="12" text-anchor="middle" ${FONT}>${esc(p.xLabel)}</text>`);
  const ly = y0 + m.top + ph / 2;
  out.push(`<text x="${x0 + 16}" y="${ly}" font-size="12" text-anchor="middle" transform="rotate(-90 ${x0 + 16} ${ly})" ${FONT}>${esc(p.yLabel)}</text>`);
  if (p.caption) out.push(`<text x="${x0 + m.left + pw / 2}" y="${Y(ya) + 58}" font-size="13" text-anchor="middle" ${FONT}>${esc(p.caption)}</text>`);
  // legend: one row between the title and the plot, so it never hides data
  const entries = [...p.series.filter((e) => e.label).map((e) => ({ ...e, band: false })), ...(p.bands ?? []).map((b) => ({ ...b, band: true, dash: undefined, width: 2 }))];
  const widths = entries.map((e) => 30 + 6.6 * e.label.length + 14);
  let lx = x0 + m.left + (pw - widths.reduce((a, b) => a + b, 0)) / 2;
  const yy = y0 + 40;
  entries.forEach((e, i) => {
    out.push(e.band
      ? `<rect x="${lx.toFixed(1)}" y="${yy - 6}" width="24" height="11" fill="${e.color}" fill-opacity="${(e as Band).opacity ?? 0.18}"/>`
      : `<line x1="${lx.toFixed(1)}" y1="${yy}" x2="${(lx + 24).toFixed(1)}" y2="${yy}" stroke="${e.color}" stroke-width="${e.width ?? 2}"${e.dash ? ` stroke-dasharray="${e.dash}"` : ''}/>`);
    out.push(`<text x="${(lx + 30).toFixed(1)}" y="${yy + 4}" font-size="12" ${FONT}>${esc(e.label)}</text>`);
    lx += widths[i];
  });
  return out.join('\n');
}

/** Panels side by side in one SVG document; `comment` goes into an XML comment on the first line. */
export function figure(panels: Panel[], comment: string, panelWidth = 420, height = 360,
  xFormat: (v: number) => string = formatSteps): string {
  const width = panelWidth * panels.length;
  const body = panels.map((p, i) => panelSvg(p, i * panelWidth, 0, panelWidth, height, xFormat)).join('\n');
  return `<!-- ${comment.replace(/--/g, '- -')} -->\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">\n` +
    `<rect width="${width}" height="${height}" fill="#fff"/>\n${body}\n</svg>\n`;
}

const COLORS = { plain: '#d95f02', bn: '#1b6ca8' };

/** The three panels of the paper's Figure 1 from the evaluation records. */
export function figure1Panels(records: EvalRecord[], opts: ExperimentOptions): { accuracy: Panel; plain: Panel; bn: Panel } {
  const steps = records.map((r) => r.step);
  const xDomain = [0, steps.at(-1)!] as const;
  const acc = (k: 'plain' | 'bn') => records.map((r) => [r.step, r[k].accuracy] as const);
  const lowest = Math.min(...records.map((r) => Math.min(r.plain.accuracy, r.bn.accuracy)));
  const accuracy: Panel = {
    title: 'Test accuracy', caption: '(a)', xLabel: 'training steps (mini-batches of 60)', yLabel: 'held-out accuracy',
    xDomain, yDomain: [Math.max(0, Math.floor(lowest * 10) / 10), 1],
    series: [
      { label: 'Without BN', points: acc('plain'), color: COLORS.plain, dash: '7 4' },
      { label: 'With BN', points: acc('bn'), color: COLORS.bn },
    ],
  };
  const all = records.flatMap((r) => [...r.plain.percentiles, ...r.bn.percentiles]);
  const yDomain = niceDomain(Math.min(...all), Math.max(...all));
  const band = (k: 'plain' | 'bn', title: string, caption: string): Panel => {
    const q = (i: number) => records.map((r) => [r.step, r[k].percentiles[i]] as const);
    return {
      title, caption, xLabel: 'training steps',
      yLabel: `input to sigmoid ${opts.unit} of hidden layer ${opts.hidden.length}`,
      xDomain, yDomain,
      bands: [{ label: '15th to 85th', lower: q(0), upper: q(2), color: COLORS[k], opacity: 0.15 }],
      series: [
        { label: '50th percentile', points: q(1), color: COLORS[k], width: 2.4 },
        { label: '15th, 85th', points: q(0), color: COLORS[k], width: 1.2 },
        { label: '', points: q(2), color: COLORS[k], width: 1.2 },
      ],
    };
  };
  return { accuracy, plain: band('plain', 'Without BN', '(b)'), bn: band('bn', 'With BN', '(c)') };
}
