// The package in a real browser: the Debian chromium, headless, through playwright-core, opens
// the demo page (examples/browser/) from the local static server and the test checks what the
// page computed (window.__results): the relaxed-SIMD build (Chromium 114+) loaded by streaming
// compilation, and forward (training and inference) and backward in NCHW and NHWC match the
// float64 oracle. Then the loading paths a browser can take: a server with the wrong MIME type
// for .wasm, an engine without relaxed SIMD (Safari, simulated), an engine without SIMD
// (simulated), the forced scalar build, and explicit sources (URL, bytes, module).
//
// chromium missing: skipped with a loud reason outside CI, a failure under CI=true.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { buildDist } from './helpers/package.js';
import { HAVE_CHROMIUM, IN_CI, SKIP_REASON, launchChromium, requireChromium, watchPage } from './helpers/chromium.js';
import { DEMO_PATH, startServer, type RunningServer } from '../examples/browser/serve.mjs';

const TOL_ULP = 8;
/**
 * Simulates a WebAssembly engine without some of our builds' features: validate/compile reject
 * the builds whose simdEnabled() level (2 relaxed SIMD, 1 SIMD) is at least `level`, recognised
 * by instantiating the binary with the real API and asking that export (a byte scan for the 0xfd
 * SIMD prefix would also hit immediates in the scalar build).
 */
const rejectLevelsInit = (level: number) => `(() => {
  const W = WebAssembly, { Module, Instance } = W;
  const rejected = (source) => {
    try {
      const exports = new Instance(new Module(source), { env: { abort() {} } }).exports;
      return typeof exports.simdEnabled === 'function' && exports.simdEnabled() >= ${level};
    } catch {
      return false;
    }
  };
  const validate = W.validate, compile = W.compile;
  W.validate = (s) => !rejected(s) && validate(s);
  W.compile = (s) => rejected(s) ? Promise.reject(new W.CompileError('feature unsupported (simulated)')) : compile(s);
  W.compileStreaming = async (r) => W.compile(new Uint8Array(await (await r).arrayBuffer()));
})();`;
/** No SIMD at all (an old engine). */
const NO_SIMD_INIT = rejectLevelsInit(1);
/** SIMD without relaxed SIMD (Safari). */
const NO_RELAXED_INIT = rejectLevelsInit(2);

interface Check { layout: string; op: string; maxUlp: number; maxAbs: number; tolerance: number; pass: boolean; outputs: Record<string, { maxUlp: number }> }
interface DemoResults {
  done: boolean; ok: boolean; error: string | null;
  shape: { N: number; C: number; H: number; W: number };
  info: { build: string; simd: boolean; memoryBytes: number; bytesInUse: number; features: { simd: boolean | null; relaxedSimd: boolean | null; streaming: boolean }; source: string; url: string };
  checks: Check[];
  bench: { layout: string; op: string; oursGBs: number; jsGBs: number; speedup: number }[] | null;
  seconds: Record<string, number>;
}

let tmp: string;
let server: RunningServer;
let wrongMime: RunningServer;
let isolated: RunningServer;
let browser: Browser | null = null;

beforeAll(async () => {
  if (!requireChromium()) return;
  tmp = await mkdtemp(path.join(tmpdir(), 'wasm-batchnorm-browser-'));
  // The current sources' dist/ (the repository's own when fresh), served in place of /dist/.
  await buildDist(path.join(tmp, 'dist'));
  const mounts = { '/dist/': path.join(tmp, 'dist') };
  [server, wrongMime, isolated, browser] = await Promise.all([
    startServer({ mounts }),
    startServer({ mounts, wrongWasmMime: true }),
    startServer({ mounts, isolated: true }),
    launchChromium(),
  ]);
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await wrongMime?.close();
  await isolated?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Opens the demo with `query`, waits for it to finish, returns its results and any page problems. */
async function openDemo(base: RunningServer, query: string, init?: string, viewport = { width: 1100, height: 900 }): Promise<{ page: Page; results: DemoResults; problems: string[] }> {
  const page = await browser!.newPage({ viewport });
  const problems = watchPage(page);
  if (init) await page.addInitScript(init);
  await page.goto(`${base.url}${DEMO_PATH.slice(1)}${query}`);
  await page.waitForFunction(() => (window as unknown as { __results?: DemoResults }).__results?.done === true, null, { timeout: 90_000 });
  const results = await page.evaluate(() => (window as unknown as { __results: DemoResults }).__results);
  return { page, results, problems };
}

/** Our own verdict on the page's numbers: every layout x check present and within the bound. */
function expectAllChecksPass(results: DemoResults): void {
  expect(results.error).toBeNull();
  const seen = results.checks.map((c) => `${c.layout} ${c.op}`).sort();
  expect(seen).toEqual(['NCHW backward', 'NCHW forward, inference', 'NCHW forward, training',
    'NHWC backward', 'NHWC forward, inference', 'NHWC forward, training']);
  for (const c of results.checks) {
    for (const [name, e] of Object.entries(c.outputs)) {
      expect(e.maxUlp, `${c.layout} ${c.op}: ${name} vs the oracle (ulp)`).toBeLessThanOrEqual(TOL_ULP);
    }
    expect(c.pass).toBe(true);
  }
  expect(results.ok).toBe(true);
}

describe('real browser (headless chromium)', () => {
  it('demo page: relaxed-SIMD build loaded by streaming compilation; forward (training, inference) and backward match the oracle in NCHW and NHWC; benchmark drawn', async (ctx) => {
    ctx.skip(!HAVE_CHROMIUM && !IN_CI, SKIP_REASON);
    const { page, results, problems } = await openDemo(server, '?runs=3');
    try {
      expectAllChecksPass(results);
      expect(results.shape).toEqual({ N: 32, C: 64, H: 56, W: 56, size: 32 * 64 * 56 * 56 });
      expect(results.info).toMatchObject({
        build: 'relaxed-simd', simd: true, features: { simd: true, relaxedSimd: true, streaming: true }, source: 'stream', bytesInUse: 0,
      });
      expect(new URL(results.info.url).pathname).toBe('/build/batchnorm.relaxed-simd.wasm');
      expect(results.info.memoryBytes).toBeGreaterThan(32 * 64 * 56 * 56 * 4);
      expect(results.checks.find((c) => c.op === 'forward, training')!.outputs).toHaveProperty('runningVar');
      expect(results.checks.find((c) => c.op === 'backward')!.outputs).toHaveProperty('dweight');

      expect(results.bench).toHaveLength(6);
      for (const b of results.bench!) {
        expect(b.oursGBs, `${b.layout} ${b.op}`).toBeGreaterThan(0);
        expect(b.jsGBs, `${b.layout} ${b.op}`).toBeGreaterThan(0);
        expect(Number.isFinite(b.speedup)).toBe(true);
      }
      // The visible page: a PASS badge per check, the chart's 12 bars, the status line.
      expect(await page.locator('#checks .badge.pass').count()).toBe(6);
      expect(await page.locator('#chart svg rect').count()).toBe(12);
      expect(await page.locator('#status').textContent()).toContain('6 of 6 checks match the oracle');
      expect(await page.locator('#engine dd[data-key="build"]').textContent()).toMatch(/^relaxed-simd/);
      expect(await page.locator('#engine dd[data-key="relaxed SIMD"]').textContent()).toBe('supported');
      const shot = path.join(tmp, 'demo.png');
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`demo page: ${results.info.build} build, loaded in ${results.seconds.load?.toFixed(2)} s, checks ${results.seconds.checks?.toFixed(1)} s, `
        + `benchmark ${results.seconds.bench?.toFixed(1)} s; speed-up over plain JS ${results.bench!.map((b) => `${b.layout} ${b.op} ${b.speedup.toFixed(1)}x`).join(', ')}`);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('demo page at a phone\'s width (390 px): nothing wider than the screen; install line; imports `wasm-batchnorm` through an import map to dist/', async (ctx) => {
    ctx.skip(!HAVE_CHROMIUM && !IN_CI, SKIP_REASON);
    const { page, results, problems } = await openDemo(server, '?n=2&runs=1', undefined, { width: 390, height: 844 });
    try {
      expectAllChecksPass(results);
      expect(await page.locator('#chart svg rect').count()).toBe(12);
      const layout = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        importMap: JSON.parse(document.querySelector('script[type="importmap"]')?.textContent ?? 'null'),
        install: document.querySelector('.install')?.textContent,
        fetched: performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname),
      }));
      expect(layout.scrollWidth).toBeLessThanOrEqual(390);
      expect(layout.install).toBe('npm install wasm-batchnorm');
      expect(layout.importMap).toEqual({ imports: { 'wasm-batchnorm': '../../dist/index.js' } });
      // main.js imports the bare name only; the map resolved it to /dist/index.js.
      const main = await (await fetch(`${server.url}examples/browser/main.js`)).text();
      expect(main).toMatch(/from 'wasm-batchnorm'/);
      expect(main).not.toMatch(/dist\/index\.js'/);
      expect(layout.fetched).toContain('/dist/index.js');
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('server sends .wasm as application/octet-stream: falls back from compileStreaming to compiling the fetched bytes', async (ctx) => {
    ctx.skip(!HAVE_CHROMIUM && !IN_CI, SKIP_REASON);
    const { page, results, problems } = await openDemo(wrongMime, '?n=2&bench=0');
    try {
      expectAllChecksPass(results);
      expect(results.info).toMatchObject({ build: 'relaxed-simd', features: { simd: true, relaxedSimd: true }, source: 'fetch' });
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it.for([
    {
      name: 'an engine without relaxed SIMD (Safari, simulated): auto-detection rejects the relaxed-SIMD binary and loads the simd build',
      query: '?n=2&bench=0', init: NO_RELAXED_INIT, path: '/build/batchnorm.simd.wasm',
      info: { build: 'simd', simd: true, features: { simd: true, relaxedSimd: false }, source: 'stream' },
    },
    {
      name: 'an engine without SIMD (simulated): auto-detection validates the relaxed-SIMD and SIMD binaries, rejects them and loads the scalar build',
      query: '?n=2&bench=0', init: NO_SIMD_INIT, path: '/build/batchnorm.scalar.wasm',
      info: { build: 'scalar', simd: false, features: { simd: false, relaxedSimd: false } },
    },
    {
      name: 'simd: false forces the scalar build without probing',
      query: '?simd=0&n=2&bench=0', init: undefined, path: '/build/batchnorm.scalar.wasm',
      info: { build: 'scalar', features: { simd: null }, source: 'stream' },
    },
  ])('$name', async ({ query, init, path, info }, ctx) => {
    ctx.skip(!HAVE_CHROMIUM && !IN_CI, SKIP_REASON);
    const { page, results, problems } = await openDemo(server, query, init);
    try {
      expectAllChecksPass(results);
      expect(results.info).toMatchObject(info);
      expect(new URL(results.info.url).pathname).toBe(path);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('simd: true without SIMD is a typed error naming options.simd', async (ctx) => {
    ctx.skip(!HAVE_CHROMIUM && !IN_CI, SKIP_REASON);
    const { page, results } = await openDemo(server, '?simd=1&n=2&bench=0', NO_SIMD_INIT);
    try {
      expect(results.error).toMatch(/^InvalidArgumentError: options\.simd: expected a WebAssembly engine with 128-bit SIMD/);
      expect(await page.locator('#status').textContent()).toContain('InvalidArgumentError');
    } finally {
      await page.close();
    }
  });

  it('options.wasm in the browser: a URL, bytes, a compiled module, a data: URL; a 404 names the URL', async (ctx) => {
    ctx.skip(!HAVE_CHROMIUM && !IN_CI, SKIP_REASON);
    const page = await browser!.newPage();
    const problems = watchPage(page);
    try {
      await page.goto(`${server.url}${DEMO_PATH.slice(1)}?n=2&bench=0`);
      await page.waitForFunction(() => (window as unknown as { __results?: DemoResults }).__results?.done === true);
      // A string, not a function: vitest would rewrite a function's import() for Node.
      const out: Record<string, Record<string, unknown> & { error?: string }> = await page.evaluate(`(async () => {
        const { createEngine } = await import('/dist/index.js');
        const simdUrl = new URL('/build/batchnorm.simd.wasm', location.href);
        const bytes = new Uint8Array(await (await fetch(simdUrl)).arrayBuffer());
        const scalarBytes = await (await fetch('/build/batchnorm.scalar.wasm')).arrayBuffer();
        const run = async (options) => {
          try {
            const engine = await createEngine(options);
            const y = engine.forward(new Float32Array([1, 2, 3, 4]), [2, 2], { training: true }).y;
            return { ...engine.info(), y: Array.from(y) };
          } catch (error) {
            return { error: error.name + ': ' + error.message };
          }
        };
        return {
          url: await run({ wasm: { simd: simdUrl } }),
          relaxed: await run({ wasm: { 'relaxed-simd': '/build/batchnorm.relaxed-simd.wasm', simd: simdUrl } }),
          string: await run({ wasm: { simd: '../../build/batchnorm.simd.wasm' } }),
          bytes: await run({ wasm: { simd: bytes } }),
          module: await run({ wasm: { simd: await WebAssembly.compile(bytes) } }),
          dataUrl: await run({ simd: false, wasm: { scalar: 'data:application/wasm;base64,' + btoa(String.fromCharCode(...new Uint8Array(scalarBytes))) } }),
          missing: await run({ wasm: { simd: '/build/missing.wasm' } }),
          notWasm: await run({ wasm: { simd: '/examples/browser/index.html' } }),
          swapped: await run({ wasm: { simd: scalarBytes } }),
        };
      })()`);
      const y = [-1, -1, 1, 1].map((v) => expect.closeTo(v, 4));
      expect(out.url).toMatchObject({ build: 'simd', source: 'stream', y }); // relaxed-simd not listed: not tried
      expect(out.relaxed).toMatchObject({ build: 'relaxed-simd', source: 'stream', y });
      expect(out.string).toMatchObject({ build: 'simd', source: 'stream', y });
      expect(new URL(out.string!.url as string).pathname).toBe('/build/batchnorm.simd.wasm');
      expect(out.bytes).toMatchObject({ build: 'simd', source: 'bytes', url: null, y });
      expect(out.module).toMatchObject({ build: 'simd', source: 'module', url: null, y });
      expect(out.dataUrl).toMatchObject({ build: 'scalar', source: 'stream', y });
      expect(out.missing!.error).toMatch(/^InvalidArgumentError: options\.wasm\.simd: expected HTTP 200 from http:\/\/127\.0\.0\.1:\d+\/build\/missing\.wasm, got HTTP 404/);
      expect(out.notWasm!.error).toMatch(/^InvalidArgumentError: options\.wasm\.simd: expected a WebAssembly binary/);
      expect(out.swapped!.error).toMatch(/^InvalidArgumentError: options\.wasm\.simd: expected the simd build of wasm-batchnorm, got the scalar build/);
      expect(problems.filter((p) => !p.includes('missing.wasm'))).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('threads: a crossOriginIsolated page (COOP/COEP) runs module workers with the same bits as one thread; a page that is not falls back to 1 thread and says why', async (ctx) => {
    ctx.skip(!HAVE_CHROMIUM && !IN_CI, SKIP_REASON);
    // A string, not a function: vitest would rewrite a function's import() for Node.
    const script = `(async () => {
      const { createEngine } = await import('/dist/index.js');
      const auto = await createEngine();
      const before = auto.info().threads;
      const running = await auto.startThreads();
      const one = await createEngine({ threads: 1 });
      const shape = [16, 32, 48, 48], n = 16 * 32 * 48 * 48;
      const x = new Float32Array(n).map((_, i) => Math.sin(i * 0.37) * 3 + (i % 101 === 0 ? 4e3 : 0));
      const dy = x.map((v, i) => Math.cos(i));
      const same = (a, b) => a.length === b.length && new Uint32Array(a.buffer).every((v, i) => v === new Uint32Array(b.buffer)[i]);
      const checks = [];
      for (const layout of ['NCHW', 'NHWC']) {
        const s = layout === 'NCHW' ? shape : [16, 48, 48, 32];
        const a = auto.forward(x, s, { layout, training: true }), b = one.forward(x, s, { layout, training: true });
        const ga = auto.backward(dy, x, s, { layout, training: true, saveMean: a.saveMean, saveInvStd: a.saveInvStd });
        const gb = one.backward(dy, x, s, { layout, training: true, saveMean: b.saveMean, saveInvStd: b.saveInvStd });
        checks.push(same(a.y, b.y) && same(a.saveInvStd, b.saveInvStd) && same(ga.dx, gb.dx) && same(ga.dweight, gb.dweight));
      }
      const info = auto.info();
      auto.dispose();
      return { isolated: self.crossOriginIsolated, before, running, threads: info.threads, url: info.url, checks };
    })()`;
    const results: Record<string, { isolated: boolean; before: unknown; running: number; threads: Record<string, unknown>; url: string; checks: boolean[] }> = {};
    for (const [name, base] of [['isolated', isolated], ['not isolated', server]] as const) {
      const page = await browser!.newPage();
      const problems = watchPage(page);
      try {
        await page.goto(`${base.url}${DEMO_PATH.slice(1)}?n=2&bench=0`);
        await page.waitForFunction(() => (window as unknown as { __results?: DemoResults }).__results?.done === true);
        results[name] = await page.evaluate(script);
        expect(problems, name).toEqual([]);
      } finally {
        await page.close();
      }
    }
    const cores = results.isolated.threads.count as number;
    expect(results.isolated).toMatchObject({ isolated: true, running: cores, threads: { requested: 'auto', reason: null }, checks: [true, true] });
    expect(cores).toBeGreaterThan(1);
    expect(new URL(results.isolated.url).pathname).toBe('/build/batchnorm.relaxed-simd.threads.wasm');
    expect(results['not isolated']).toMatchObject({
      isolated: false, running: 1, checks: [true, true],
      threads: { requested: 'auto', count: 1, running: 1, reason: expect.stringMatching(/not crossOriginIsolated/) },
    });
  });
});
