// The browser benchmark page (bench/browser/, `npm run bench:browser`) in headless chromium, in its
// test mode (the quick cases up to 0.5M values: 256x1024, 1x32x112x112 NCHW and NHWC; the three
// operations), at a phone's width. It runs with whatever the machine has: without
// bench/node_modules (CI's root `npm ci`) the page runs ours (zero-copy, copy), the floor and the
// plain JS loop and records tfjs-wasm and ort-web as skipped with the reason; with the peers
// installed (bench/deps.mjs current) all of them must run. Every result that ran must match the
// float64 oracle within the Node bench's bound (bench/data.mjs WRONG_ABOVE), and the report must
// have the fields bench/README.md documents.
//
// chromium missing: skipped with a loud reason outside CI, a failure under CI=true.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { buildDist } from './helpers/package.js';
import { HAVE_CHROMIUM, IN_CI, SKIP_REASON, launchChromium, requireChromium } from './helpers/chromium.js';
import { runHeadless, startBenchServer, writeJson, type BenchServer, type BrowserReport } from '../bench/browser/server.mjs';
import { benchDepsStale } from '../bench/deps.mjs';
import { WRONG_ABOVE } from '../bench/data.mjs';

const OURS = ['floor', 'ours-zero-copy', 'ours-copy', 'plain-js'];
const PEERS = ['tfjs-wasm', 'ort-web'];
const OPS = ['inference', 'training', 'backward'];
const CASES = ['256x1024 NCHW', '1x32x112x112 NCHW', '1x32x112x112 NHWC'];

let tmp: string;
let server: BenchServer;
let browser: Browser | null = null;

beforeAll(async () => {
  if (!requireChromium()) return;
  tmp = await mkdtemp(path.join(tmpdir(), 'wasm-batchnorm-bench-browser-'));
  await buildDist(path.join(tmp, 'dist'));
  [server, browser] = await Promise.all([
    startBenchServer({ outDir: path.join(tmp, 'peers'), mounts: { '/dist/': path.join(tmp, 'dist') } }),
    launchChromium(),
  ]);
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('browser benchmark page (headless chromium, test mode, 390 px wide)', () => {
  it('runs every available contender in a worker, all match the oracle; missing peers are skipped with the reason; the report has the documented fields; nothing wider than the screen', async (ctx) => {
    ctx.skip(!HAVE_CHROMIUM && !IN_CI, SKIP_REASON);
    const r = await runHeadless({ pageUrl: server.pageUrl, mode: 'test', browser: browser!, viewport: { width: 390, height: 844 }, timeoutMs: 50_000 });
    try {
      expect(r.error).toBeNull();
      expect(r.problems).toEqual([]);
      const report = r.report as BrowserReport;

      // The peers: bundled from bench/node_modules when it is installed and current, else skipped.
      if (benchDepsStale() === null) expect(server.peers, 'bench/node_modules is current: the peer bundle must build').toMatchObject({ available: true });
      const contenders = Object.fromEntries(report.meta.contenders.map((m) => [m.id, m]));
      expect(Object.keys(contenders)).toEqual([...OURS, ...PEERS]);
      for (const id of OURS) expect(contenders[id]!.status).toBe('ran');
      for (const id of PEERS) {
        if (server.peers.available) expect(contenders[id], id).toMatchObject({ status: 'ran', version: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
        else expect(contenders[id], id).toMatchObject({ status: 'skipped', reason: server.peers.reason });
      }
      if (!server.peers.available) expect(server.peers.reason).toMatch(/bench\/node_modules/);

      // Every (operation, case), with each contender's shape, layout, op, median, ratio and check.
      expect(report.meta).toMatchObject({ mode: 'test', wrongAbove: WRONG_ABOVE, engine: { build: 'simd' } });
      expect(report.cases.map((k) => `${k.op} ${k.id}`).sort()).toEqual(OPS.flatMap((op) => CASES.map((c) => `${op} ${c}`)).sort());
      const failures: string[] = [];
      for (const k of report.cases) {
        expect(k.shape.reduce((p, d) => p * d, 1)).toBe(k.size);
        expect(['NCHW', 'NHWC']).toContain(k.layout);
        expect(k.contenders.map((e) => e.id)).toEqual([...OURS, ...PEERS]);
        for (const e of k.contenders) {
          const where = `${k.op} ${k.id} ${e.id}`;
          if (contenders[e.id]!.status === 'skipped') {
            expect(e, where).toMatchObject({ status: 'skipped', reason: contenders[e.id]!.reason });
            continue;
          }
          if (e.id === 'ort-web' && k.op === 'backward') {
            expect(e.status, where).toBe('unsupported');
            continue;
          }
          expect(e.status, `${where}: ${e.reason ?? ''}`).toBe('ok');
          expect(e.medianMs, where).toBeGreaterThan(0);
          expect(e.samples, where).toBeGreaterThanOrEqual(3);
          expect(Number.isFinite(e.ratioToFloor) && e.ratioToFloor! > 0, `${where}: ratio to the floor ${e.ratioToFloor}`).toBe(true);
          if (e.id === 'floor') {
            expect(e.check).toBeNull();
            expect(e.ratioToFloor).toBe(1);
            continue;
          }
          expect(e.check, where).toMatchObject({ correct: expect.any(Boolean), err: expect.any(Number) });
          expect(e.check!.checked, where).toContain('main');
          if (!e.check!.correct || !(e.check!.err <= WRONG_ABOVE)) failures.push(`${where}: rel. err ${e.check!.err}`);
        }
      }
      expect(failures, 'results that differ from the float64 oracle').toEqual([]);

      // Derived: geometric means per (operation, layout) and the zero-copy speed-ups.
      expect(report.summary).toHaveLength(6);
      for (const row of report.summary) {
        expect(row.ratio['ours-zero-copy']!.geomean).toBeGreaterThan(0);
        expect(row.speedup['plain-js']!.geomean).toBeGreaterThan(0);
        if (server.peers.available) expect(row.speedup['tfjs-wasm']!.geomean).toBeGreaterThan(0);
      }

      // The page: chart drawn, JSON to copy equal to the report, no horizontal scroll at 390 px.
      const page = r.page;
      expect(await page.locator('#chart svg rect').count()).toBe(report.summary.reduce((n, row) => n + Object.keys(row.ratio).filter((id) => id !== 'floor').length, 0));
      expect(JSON.parse(r.json)).toEqual(report);
      expect(await page.locator('#status').textContent()).toMatch(/^✔ all \d+ results match the oracle/);
      expect(r.scrollWidth).toBeLessThanOrEqual(390);

      // What `npm run bench:browser -- --headless` writes.
      const file = path.join(tmp, 'browser.json');
      writeJson(file, report);
      expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(report);
      const zc = report.summary.map((row) => `${row.op} ${row.layout} ${row.ratio['ours-zero-copy']!.geomean.toFixed(2)}×`).join(', ');
      console.log(`browser bench (test mode, ${report.meta.wallSeconds.toFixed(1)} s): peers ${server.peers.available ? 'ran' : `skipped (${server.peers.reason})`}; ours zero-copy vs the floor: ${zc}`);
    } finally {
      await r.page.close();
    }
  }, 90_000);
});
