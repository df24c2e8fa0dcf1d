// Node side of the browser bench: prepares what the page needs and serves it.
//   - the floor (bench/floor/build.mjs -> bench/results/tmp/floor.wasm, served from the repository);
//   - the peers: when bench/node_modules has them, bench/browser/peers.mjs bundled by esbuild (from
//     bench/node_modules) into <outDir>/peers.js, plus <outDir>/status.json ({ available, reason,
//     versions }), both served under /peers/. Without bench/node_modules only status.json is
//     written and the page records the peers as skipped with its reason. Nothing is downloaded.
//   - the static server of the demo (examples/browser/serve.mjs): the repository's root, so
//     /dist/, /build/, /bench/** and the peers' wasm in /bench/node_modules/ resolve as files.
// runHeadless() opens the page in chromium (playwright-core, from the root install) and returns
// the report the page computed (window.__bench).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFloor } from '../floor/build.mjs';
import { startServer } from '../../examples/browser/serve.mjs';

const BENCH = dirname(dirname(fileURLToPath(import.meta.url)));
const ROOT = dirname(BENCH);
const MODULES = join(BENCH, 'node_modules');
export const PAGE_PATH = '/bench/browser/';
/** What the peer bundle needs from bench/node_modules. */
const PEER_PACKAGES = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-wasm', 'onnxruntime-web', 'onnx-proto', 'esbuild'];
/** Our modules the bundle imports by URL instead of bundling (one instance, shared with the worker). */
const SHARED = /(^|\/)(data|package-under-test)\.mjs$/;

const versionOf = (pkg) => JSON.parse(readFileSync(join(MODULES, pkg, 'package.json'), 'utf8')).version;

/** Bundles the peers into outDir (or records why not); returns the status the page reads. */
export async function preparePeers(outDir) {
  mkdirSync(outDir, { recursive: true });
  const missing = PEER_PACKAGES.filter((p) => !existsSync(join(MODULES, p, 'package.json')));
  let status;
  if (missing.length) {
    const what = existsSync(MODULES) ? `bench/node_modules lacks ${missing.join(', ')}` : 'bench/node_modules is missing';
    status = { available: false, reason: `${what}: the peers are bench/package.json's (npm run bench:browser installs them with bench/deps.mjs)` };
  } else {
    try {
      const esbuild = await import(join(MODULES, 'esbuild/lib/main.js'));
      const tmp = join(outDir, `peers.${process.pid}.js`);
      await esbuild.build({
        entryPoints: [join(BENCH, 'browser/peers.mjs')], outfile: tmp, bundle: true, format: 'esm', platform: 'browser',
        target: 'es2022', logLevel: 'error', absWorkingDir: ROOT, nodePaths: [MODULES],
        plugins: [{
          name: 'by-url',
          setup(b) {
            b.onResolve({ filter: SHARED }, (a) => ({ path: `/${relative(ROOT, resolve(a.resolveDir, a.path)).split('\\').join('/')}`, external: true }));
            b.onResolve({ filter: /^onnxruntime-web$/ }, () => ({ path: '/bench/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs', external: true }));
          },
        }],
      });
      renameSync(tmp, join(outDir, 'peers.js'));
      status = { available: true, versions: Object.fromEntries(PEER_PACKAGES.map((p) => [p, versionOf(p)])) };
    } catch (error) {
      status = { available: false, reason: `bundling the peers failed: ${String(error?.message ?? error).split('\n')[0]}` };
    }
  }
  writeFileSync(join(outDir, 'status.json'), `${JSON.stringify(status, null, 1)}\n`);
  return status;
}

/**
 * Builds the floor, prepares the peers into `outDir` and starts the static server (extra
 * `mounts` as in startServer, e.g. a fresh dist/). Resolves to the server plus `pageUrl` and `peers`.
 */
export async function startBenchServer({ outDir = join(BENCH, 'results/tmp/browser'), mounts = {}, port = 0, quiet = true } = {}) {
  await buildFloor({ quiet });
  const peers = await preparePeers(outDir);
  const server = await startServer({ port, mounts: { ...mounts, '/peers/': outDir } });
  return { ...server, pageUrl: `${server.url}${PAGE_PATH.slice(1)}`, peers };
}

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/**
 * Runs the page in headless chromium in `mode` and resolves to its report. `browser` is an open
 * playwright Browser (launched here when omitted). `viewport` defaults to a phone's width.
 */
export async function runHeadless({ pageUrl, mode = 'quick', browser = null, viewport = { width: 390, height: 844 }, timeoutMs = 30 * 60_000, onProgress } = {}) {
  const own = !browser;
  if (own) {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'], timeout: 30_000 });
  }
  const page = await browser.newPage({ viewport });
  const problems = [];
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console.error: ${m.text()}`);
    else if (m.text().startsWith('bench: ')) onProgress?.(m.text().slice(7));
  });
  try {
    await page.goto(`${pageUrl}?mode=${mode}&autorun=1`);
    await page.waitForFunction(() => window.__bench?.done === true, null, { timeout: timeoutMs, polling: 250 });
    const state = await page.evaluate(() => ({
      ...window.__bench,
      scrollWidth: document.documentElement.scrollWidth,
      json: document.getElementById('json').value,
    }));
    return { ...state, problems, page };
  } finally {
    if (own) {
      await page.close();
      await browser.close();
    }
  }
}

export function writeJson(file, report) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
}
