// Hand-written SVG for the paper's Figure 1: axes, ticks, grid, bands, one legend entry per
// series, direct labels, and a caption under the panels. No plotting library.
//
// Sizes are chosen for the README, where the 1200-unit-wide figure is shown about 880 px wide:
// tick labels of 15 units stay above 11 px there, and twice that in the 2x PNG.
import type { EvalRecord, ExperimentOptions } from './experiment.js';

export type Point = readonly [number, number];

export interface Series {
  /** Legend entry; '' for none (a series labelled directly, see `endLabel`). */
  label: string;
  points: ReadonlyArray<Point>;
  color: string;
  dash?: string;
  width?: number;
  /** A shaded band drawn under the line (in the legend, behind the line's swatch). */
  band?: { lower: ReadonlyArray<Point>; upper: ReadonlyArray<Point>; opacity: number };
  /** Text placed right of the series' last point. */
  endLabel?: string;
}

export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  xDomain: readonly [number, number];
  yDomain: readonly [number, number];
  /** About how many tick intervals per axis. */
  xTicks?: number;
  yTicks?: number;
  series: Series[];
  /** Lines of text in the plot's lower left part (above the bottom tenth). */
  notes?: { text: string; color: string }[];
}

/** Helvetica or Arial where the SVG is viewed; DejaVu Sans where those are missing (and for resvg). */
export const FONT_FAMILY = "Helvetica, Arial, 'DejaVu Sans', 'Liberation Sans', sans-serif";
const FONT = `font-family="${FONT_FAMILY}"`;
const SIZE = { tick: 15, label: 15, title: 17, legend: 15, note: 14, caption: 14 };
/** Advance of a character, in font sizes: short labels (an upper bound, DejaVu Sans is the widest family), running text. */
const CHAR = 0.6, TEXT_CHAR = 0.53;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const fmt = (v: number) => Number(v.toPrecision(6)).toString();

/** About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]. */
export function ticks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-9)) ?? 10 * mag;
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

/** Greedy word wrap to lines of at most `width` units of text at `fontSize`. */
export function wrap(text: string, width: number, fontSize: number): string[] {
  const max = Math.floor(width / (TEXT_CHAR * fontSize));
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > max) { lines.push(line); line = word; } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

const MARGIN = { left: 66, right: 46, top: 72, bottom: 58 };

function panelSvg(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const m = MARGIN;
  const pw = w - m.left - m.right, ph = h - m.top - m.bottom;
  const [xa, xb] = p.xDomain, [ya, yb] = p.yDomain;
  const X = (v: number) => x0 + m.left + ((v - xa) / (xb - xa)) * pw;
  const Y = (v: number) => y0 + m.top + (1 - (v - ya) / (yb - ya)) * ph;
  const path = (pts: ReadonlyArray<Point>) => pts.map(([a, b], i) => `${i ? 'L' : 'M'}${X(a).toFixed(1)},${Y(b).toFixed(1)}`).join('');
  const out: string[] = [];
  const clip = `clip${Math.round(x0)}_${Math.round(y0)}`;
  out.push(`<clipPath id="${clip}"><rect x="${X(xa)}" y="${Y(yb)}" width="${pw}" height="${ph}"/></clipPath>`);
  // grid and ticks
  for (const t of ticks(xa, xb, p.xTicks ?? 5)) {
    out.push(`<line x1="${X(t).toFixed(1)}" y1="${Y(ya)}" x2="${X(t).toFixed(1)}" y2="${Y(yb)}" stroke="#e4e4e4"/>`);
    out.push(`<line x1="${X(t).toFixed(1)}" y1="${Y(ya)}" x2="${X(t).toFixed(1)}" y2="${Y(ya) + 5}" stroke="#333"/>`);
    out.push(`<text x="${X(t).toFixed(1)}" y="${Y(ya) + 21}" font-size="${SIZE.tick}" text-anchor="middle" ${FONT}>${esc(formatSteps(t))}</text>`);
  }
  for (const t of ticks(ya, yb, p.yTicks ?? 5)) {
    out.push(`<line x1="${X(xa)}" y1="${Y(t).toFixed(1)}" x2="${X(xb)}" y2="${Y(t).toFixed(1)}" stroke="#e4e4e4"/>`);
    out.push(`<line x1="${X(xa) - 5}" y1="${Y(t).toFixed(1)}" x2="${X(xa)}" y2="${Y(t).toFixed(1)}" stroke="#333"/>`);
    out.push(`<text x="${X(xa) - 8}" y="${(Y(t) + 5).toFixed(1)}" font-size="${SIZE.tick}" text-anchor="end" ${FONT}>${esc(fmt(t))}</text>`);
  }
  // data: bands first, then lines, clipped to the plot
  out.push(`<g clip-path="url(#${clip})">`);
  for (const s of p.series) {
    if (s.band) out.push(`<path d="${path([...s.band.upper, ...[...s.band.lower].reverse()])}Z" fill="${s.color}" fill-opacity="${s.band.opacity}" stroke="none"/>`);
  }
  for (const s of p.series) {
    out.push(`<path d="${path(s.points)}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 2.2}"` +
      `${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} stroke-linejoin="round"/>`);
  }
  out.push('</g>');
  // direct labels right of the last points, nudged apart to at least one line of text
  const ends = p.series.filter((s) => s.endLabel).map((s) => ({ s, y: Y(s.points.at(-1)![1]) })).sort((a, b) => a.y - b.y);
  for (let i = 1; i < ends.length; i++) ends[i].y = Math.max(ends[i].y, ends[i - 1].y + SIZE.tick);
  for (const { s, y } of ends) {
    out.push(`<text x="${X(xb) + 6}" y="${(y + 5).toFixed(1)}" font-size="${SIZE.tick}" fill="${s.color}" ${FONT}>${esc(s.endLabel!)}</text>`);
  }
  // frame, title, axis labels
  out.push(`<rect x="${X(xa)}" y="${Y(yb)}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${x0 + m.left + pw / 2}" y="${y0 + 24}" font-size="${SIZE.title}" font-weight="bold" text-anchor="middle" ${FONT}>${esc(p.title)}</text>`);
  out.push(`<text x="${x0 + m.left + pw / 2}" y="${Y(ya) + 45}" font-size="${SIZE.label}" text-anchor="middle" ${FONT}>${esc(p.xLabel)}</text>`);
  const ly = y0 + m.top + ph / 2;
  out.push(`<text x="${x0 + 18}" y="${ly}" font-size="${SIZE.label}" text-anchor="middle" transform="rotate(-90 ${x0 + 18} ${ly})" ${FONT}>${esc(p.yLabel)}</text>`);
  (p.notes ?? []).forEach((n, i, all) => {
    const ny = Y(ya) - 0.1 * ph - (all.length - 1 - i) * (SIZE.note + 5);
    out.push(`<text x="${X(xa) + 12}" y="${ny.toFixed(1)}" font-size="${SIZE.note}" fill="${n.color}" ${FONT}>${esc(n.text)}</text>`);
  });
  // legend: one row between the title and the plot (never over data), one entry per series
  const entries = p.series.filter((s) => s.label);
  const widths = entries.map((e) => 34 + CHAR * SIZE.legend * e.label.length + 18);
  let lx = x0 + m.left + (pw - widths.reduce((a, b) => a + b, 0)) / 2;
  const yy = y0 + 50;
  entries.forEach((e, i) => {
    if (e.band) out.push(`<rect x="${lx.toFixed(1)}" y="${yy - 8}" width="28" height="16" fill="${e.color}" fill-opacity="${e.band.opacity}"/>`);
    out.push(`<line x1="${lx.toFixed(1)}" y1="${yy}" x2="${(lx + 28).toFixed(1)}" y2="${yy}" stroke="${e.color}" stroke-width="${e.width ?? 2.2}"${e.dash ? ` stroke-dasharray="${e.dash}"` : ''}/>`);
    out.push(`<text x="${(lx + 34).toFixed(1)}" y="${yy + 5}" font-size="${SIZE.legend}" ${FONT}>${esc(e.label)}</text>`);
    lx += widths[i];
  });
  return out.join('\n');
}

/**
 * Panels side by side, then the caption (paragraphs, word-wrapped) under them, in one SVG
 * document; `comment` is an XML comment on the first line (how the file was generated).
 */
export function figure(panels: Panel[], caption: string[], comment: string, panelWidth = 400, panelHeight = 390): string {
  const width = panelWidth * panels.length;
  const lineHeight = SIZE.caption * 1.4;
  const paragraphs = caption.map((c) => wrap(c, width - 40, SIZE.caption));
  const captionHeight = paragraphs.reduce((n, lines) => n + lines.length * lineHeight + 6, 0) + 10;
  const height = Math.ceil(panelHeight + captionHeight);
  const body = panels.map((p, i) => panelSvg(p, i * panelWidth, 0, panelWidth, panelHeight));
  let y = panelHeight + SIZE.caption;
  for (const lines of paragraphs) {
    for (const line of lines) {
      body.push(`<text x="20" y="${y.toFixed(1)}" font-size="${SIZE.caption}" fill="#222" ${FONT}>${esc(line)}</text>`);
      y += lineHeight;
    }
    y += 6;
  }
  return `<!-- ${comment.replace(/--/g, '- -')} -->\n` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">\n` +
    `<rect width="${width}" height="${height}" fill="#fff"/>\n${body.join('\n')}\n</svg>\n`;
}

export const COLORS = { plain: '#d95f02', bn: '#1b6ca8' };

/** Mean, lowest and highest accuracy over the seeds' runs, at each evaluation (the runs share one schedule). */
export function accuracyOverSeeds(runs: EvalRecord[][], k: 'plain' | 'bn'): { step: number; mean: number; min: number; max: number }[] {
  return runs[0].map((r, i) => {
    const values = runs.map((run) => run[i][k].accuracy);
    return { step: r.step, mean: values.reduce((a, b) => a + b, 0) / values.length, min: Math.min(...values), max: Math.max(...values) };
  });
}

/** The first evaluated step from which the series stays at or above `level`, or null. */
export function reachesFrom(points: ReadonlyArray<{ step: number; mean: number }>, level: number): number | null {
  let from: number | null = null;
  for (const p of points) {
    if (p.mean < level) from = null;
    else from ??= p.step;
  }
  return from;
}

/**
 * The three panels of the paper's Figure 1: (a) held-out accuracy of both networks over the
 * seeds' runs (mean line, band from the lowest to the highest run), zoomed to the paper's 0.7-1.0;
 * (b, c) the 15th, 50th and 85th percentiles of the followed sigmoid's input, from the first run.
 */
export function figure1Panels(runs: EvalRecord[][], opts: ExperimentOptions): { accuracy: Panel; plain: Panel; bn: Panel } {
  const first = runs[0];
  const xDomain = [0, first.at(-1)!.step] as const;
  const YLO = 0.7;
  const acc = (k: 'plain' | 'bn', label: string, dash?: string): Series => {
    const a = accuracyOverSeeds(runs, k);
    return {
      label, color: COLORS[k], dash, width: 2.4, points: a.map((p) => [p.step, p.mean] as const),
      band: runs.length > 1 ? { lower: a.map((p) => [p.step, p.min] as const), upper: a.map((p) => [p.step, p.max] as const), opacity: 0.22 } : undefined,
    };
  };
  const plainFrom = reachesFrom(accuracyOverSeeds(runs, 'plain'), YLO);
  const bnFrom = reachesFrom(accuracyOverSeeds(runs, 'bn'), YLO);
  const below = (who: string, from: number | null) => (from === null ? `${who}: below ${YLO} throughout` : `${who}: ≥ ${YLO} from step ${from}`);
  const accuracy: Panel = {
    title: '(a) Test accuracy', xLabel: 'training steps (mini-batches of 60)', yLabel: 'held-out accuracy',
    xDomain, yDomain: [YLO, 1], xTicks: 6, yTicks: 6,
    series: [acc('plain', 'Without BN', '8 4'), acc('bn', 'With BN')],
    notes: [{ text: below('with BN', bnFrom), color: COLORS.bn }, { text: below('without BN', plainFrom), color: COLORS.plain }],
  };
  const all = first.flatMap((r) => [...r.plain.percentiles, ...r.bn.percentiles]);
  const yDomain = niceDomain(Math.min(...all), Math.max(...all));
  const band = (k: 'plain' | 'bn', title: string): Panel => {
    const q = (i: number) => first.map((r) => [r.step, r[k].percentiles[i]] as const);
    return {
      title, xLabel: 'training steps', yLabel: `input to sigmoid ${opts.unit} of hidden layer ${opts.hidden.length}`,
      xDomain, yDomain, xTicks: 6,
      series: [
        { label: '', points: q(2), color: COLORS[k], width: 1.4, endLabel: '85th' },
        { label: '', points: q(1), color: COLORS[k], width: 2.6, endLabel: '50th', band: { lower: q(0), upper: q(2), opacity: 0.15 } },
        { label: '', points: q(0), color: COLORS[k], width: 1.4, endLabel: '15th' },
      ],
    };
  };
  return { accuracy, plain: band('plain', '(b) Without BN: sigmoid input'), bn: band('bn', '(c) With BN: sigmoid input') };
}
