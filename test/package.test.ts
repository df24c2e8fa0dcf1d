// The npm package as a user gets it: `npm pack` of the current sources, installed from the
// tarball into a fresh project (offline: the package has no runtime dependencies), then
// - imported from plain Node ESM and required from CommonJS (Node's require(esm), 20.19+/22.12+;
//   there is no separate CommonJS build), each running a forward pass checked against the oracle;
// - type-checked from a TypeScript consumer, with browser libs (DOM) and with Node's types;
// - bundled by Vite from an app that imports it with no configuration, the wasm emitted as
//   assets, and the bundle run in headless chromium (when chromium is present).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { REPO, TSC, VITE, installTarball, packPackage, run, runOk } from './helpers/package.js';
import { SKIP_REASON, launchChromium, requireChromium, watchPage } from './helpers/chromium.js';
import { startServer } from '../examples/browser/serve.mjs';
import { unsupported } from './helpers/engines.js';

const NAME = 'wasm-batchnorm';
/** What createEngine() picks in this Node (the child processes run the same one): relaxed-simd on Node 21+. */
const NODE_BEST = unsupported('relaxed-simd') === null ? 'relaxed-simd' : 'simd';
/** The package's release builds, as they sort in a directory listing. */
const RELEASE = ['relaxed-simd', 'relaxed-simd.threads', 'scalar', 'scalar.threads', 'simd', 'simd.threads'] as const;
let tmp: string;
let consumer: string;
let tarball: string;
let packed: string[];
let browser: Browser | null = null;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'wasm-batchnorm-package-'));
  ({ tarball, packed } = await packPackage(tmp));

  consumer = path.join(tmp, 'consumer');
  await mkdir(consumer);
  await writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
  await installTarball(consumer, tarball);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Node script body: a training forward pass on a small tensor, compared with the oracle. */
const FORWARD_CHECK = `
  const shape = [4, 8, 5];
  const x = Float32Array.from({ length: 4 * 8 * 5 }, (_, i) => Math.sin(i) * 3 + 1);
  const engine = await bn.createEngine();
  const r = engine.forward(x, shape, { training: true });
  const ref = bn.oracleForward(x, shape, { training: true });
  let maxErr = 0;
  for (let i = 0; i < x.length; i++) maxErr = Math.max(maxErr, Math.abs(r.y[i] - ref.y[i]));
  console.log(JSON.stringify({ info: engine.info(), maxErr, exports: Object.keys(bn).sort() }));
`;

function parseLast(stdout: string): { info: { build: string; source: string; url: string }; maxErr: number; exports: string[] } {
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

/** A one-page app that imports the package by name, as a Vite user writes it; no vite config. */
async function writeViteApp(name: string): Promise<string> {
  const app = path.join(consumer, name);
  await mkdir(app);
  await writeFile(path.join(app, 'index.html'), `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>vite app</title></head>
<body><pre id="out">loading</pre><script type="module" src="./main.js"></script></body></html>
`);
  await writeFile(path.join(app, 'main.js'), `import { createEngine, oracleForward } from '${NAME}';

const maxErr = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
try {
  const x = Float32Array.from({ length: 4 * 8 * 5 }, (_, i) => Math.sin(i) * 3 + 1);
  const ref = oracleForward(x, [4, 8, 5], { training: true });
  const engine = await createEngine();
  const simd = await createEngine({ simd: true });
  const scalar = await createEngine({ simd: false });
  window.__results = {
    info: engine.info(),
    simdInfo: simd.info(),
    scalarInfo: scalar.info(),
    maxErr: maxErr(engine.forward(x, [4, 8, 5], { training: true }).y, ref.y),
    maxErrSimd: maxErr(simd.forward(x, [4, 8, 5], { training: true }).y, ref.y),
    maxErrScalar: maxErr(scalar.forward(x, [4, 8, 5], { training: true }).y, ref.y),
  };
} catch (error) {
  window.__results = { error: String(error) };
}
document.getElementById('out').textContent = JSON.stringify(window.__results, null, 1);
`);
  return app;
}

/** Loads `url` in chromium and checks what the Vite app computed: the three builds match the oracle. */
async function expectViteAppWorks(url: string): Promise<Record<string, unknown>> {
  browser ??= await launchChromium();
  const page = await browser.newPage();
  try {
    const problems = watchPage(page);
    await page.goto(url);
    await page.waitForFunction(() => (window as unknown as { __results?: unknown }).__results, null, { timeout: 30_000 });
    const out = await page.evaluate(() => (window as unknown as { __results: Record<string, unknown> }).__results);
    expect(out.error).toBeUndefined();
    expect(out.info).toMatchObject({ build: 'relaxed-simd', features: { simd: true, relaxedSimd: true }, source: 'stream' });
    expect(out.simdInfo).toMatchObject({ build: 'simd', source: 'stream' });
    expect(out.scalarInfo).toMatchObject({ build: 'scalar' });
    expect(out.maxErr).toBeLessThan(1e-5);
    expect(out.maxErrSimd).toBeLessThan(1e-5);
    expect(out.maxErrScalar).toBeLessThan(1e-5);
    expect(problems).toEqual([]);
    return out;
  } finally {
    await page.close();
  }
}

describe('npm package', () => {
  it('the tarball ships dist/ (JS + declarations, no source maps) and the release wasm builds (single-threaded and threaded), nothing else', () => {
    expect(packed).toContain('CHANGELOG.md');
    expect(packed).toContain('package.json');
    expect(packed).toContain('README.md');
    expect(packed).toContain('dist/index.js');
    expect(packed).toContain('dist/index.d.ts');
    expect(packed).toContain('dist/engine.js');
    for (const b of RELEASE) expect(packed).toContain(`build/batchnorm.${b}.wasm`);
    expect(packed).toContain('dist/threads/worker.js');
    const unexpected = packed.filter((f) => !/^(package\.json|README\.md|CHANGELOG\.md|LICENSE.*|dist\/(?:[\w-]+\/)*[\w.-]+\.(js|d\.ts)|build\/batchnorm\.(relaxed-simd|simd|scalar)(\.threads)?\.wasm)$/.test(f));
    expect(unexpected, 'files that should not be in the tarball').toEqual([]);
  });

  it('no JS file in the tarball points at a source map (the maps do not ship, so neither do sourceMappingURL comments)', async () => {
    const root = path.join(consumer, 'node_modules', NAME);
    const js = packed.filter((f) => f.endsWith('.js'));
    expect(js.length).toBeGreaterThan(5);
    const dangling: string[] = [];
    for (const f of js) if (/sourceMappingURL/.test(await readFile(path.join(root, f), 'utf8'))) dangling.push(f);
    expect(dangling).toEqual([]);
    expect(packed.filter((f) => f.endsWith('.map'))).toEqual([]);
  });

  it('package.json names the repository, homepage, issue tracker and keywords (shown on the npm page)', async () => {
    const pkg = JSON.parse(await readFile(path.join(consumer, 'node_modules', NAME, 'package.json'), 'utf8'));
    expect(pkg.repository?.url).toMatch(/^git\+https:\/\/github\.com\/[\w.-]+\/[\w.-]+\.git$/);
    expect(pkg.homepage).toMatch(/^https:\/\//);
    expect(pkg.bugs?.url).toMatch(/^https:\/\/.*\/issues$/);
    expect(pkg.keywords).toEqual(expect.arrayContaining(['batchnorm', 'webassembly']));
  });

  it('installs offline and resolves to its own files (exports map: ".", the wasm builds, package.json)', async () => {
    const root = path.join(consumer, 'node_modules', NAME);
    const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.dependencies ?? {}, 'zero runtime dependencies').toEqual({});
    const script = `
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      console.log(JSON.stringify({
        main: import.meta.resolve('${NAME}'),
        relaxed: import.meta.resolve('${NAME}/build/batchnorm.relaxed-simd.wasm'),
        simd: import.meta.resolve('${NAME}/build/batchnorm.simd.wasm'),
        scalar: require.resolve('${NAME}/build/batchnorm.scalar.wasm'),
        pkg: require('${NAME}/package.json').name,
      }));`;
    const r = await runOk(process.execPath, ['--input-type=module', '-e', script], { cwd: consumer, timeoutMs: 30_000 });
    const out = JSON.parse(r.stdout);
    expect(out.main).toMatch(/node_modules\/wasm-batchnorm\/dist\/index\.js$/);
    expect(out.relaxed).toMatch(/node_modules\/wasm-batchnorm\/build\/batchnorm\.relaxed-simd\.wasm$/);
    expect(out.simd).toMatch(/node_modules\/wasm-batchnorm\/build\/batchnorm\.simd\.wasm$/);
    expect(out.scalar).toMatch(/node_modules\/wasm-batchnorm\/build\/batchnorm\.scalar\.wasm$/);
    expect(out.pkg).toBe(NAME);
  });

  it('plain Node ESM: import, createEngine() reads the wasm from the installed package, forward matches the oracle', async () => {
    const file = path.join(consumer, 'esm.mjs');
    await writeFile(file, `import * as bn from '${NAME}';\n${FORWARD_CHECK}`);
    const r = await runOk(process.execPath, [file], { cwd: consumer, timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    const out = parseLast(r.stdout);
    expect(out.info.build).toBe(NODE_BEST);
    expect(out.info.source).toBe('file');
    expect(out.info.url).toMatch(new RegExp(`^file:.*/node_modules/wasm-batchnorm/build/batchnorm\\.${NODE_BEST}(\\.threads)?\\.wasm$`));
    expect(out.maxErr).toBeLessThan(1e-5);
    expect(out.exports).toEqual(expect.arrayContaining(['createEngine', 'Engine', 'BatchNorm', 'oracleForward', 'oracleBackward', 'InvalidArgumentError']));
  });

  it('wasm-batchnorm/tfjs imports without any @tensorflow package installed (tfjs is an optional peer, passed in by the caller)', async () => {
    const script = `
      import * as adapter from '${NAME}/tfjs';
      import { createEngine } from '${NAME}';
      const engine = await createEngine();
      let message = '';
      try { adapter.batchNormalization(engine, {}); } catch (e) { message = e.message; }
      console.log(JSON.stringify({ url: import.meta.resolve('${NAME}/tfjs'), exports: Object.keys(adapter).sort(), message }));`;
    const r = await runOk(process.execPath, ['--input-type=module', '-e', script], { cwd: consumer, timeoutMs: 30_000 });
    const out = JSON.parse(r.stdout);
    expect(out.url).toMatch(/node_modules\/wasm-batchnorm\/dist\/tfjs\/index\.js$/);
    expect(out.exports).toEqual(expect.arrayContaining(['registerTfjsKernels', 'useTfjs', 'batchNormalization']));
    expect(out.message).toMatch(/useTfjs/);
    const pkg = JSON.parse(await readFile(path.join(consumer, 'node_modules', NAME, 'package.json'), 'utf8'));
    expect(pkg.peerDependenciesMeta).toEqual({ '@tensorflow/tfjs-core': { optional: true }, '@tensorflow/tfjs-layers': { optional: true } });
    await expect(readdir(path.join(consumer, 'node_modules', '@tensorflow')), 'an optional peer was installed').rejects.toThrow();
  });

  it('CommonJS: require() works through Node\'s require(esm) where Node has it (ESM-only package, no CJS build)', async () => {
    const file = path.join(consumer, 'cjs.cjs');
    await writeFile(file, `const bn = require('${NAME}');\n(async () => {${FORWARD_CHECK}})().catch((e) => { console.error(e); process.exit(1); });`);
    const r = await run(process.execPath, [file], { cwd: consumer, timeoutMs: 30_000 });
    if ((process.features as { require_module?: boolean }).require_module) {
      expect(r.code, r.stderr).toBe(0);
      const out = parseLast(r.stdout);
      expect(out.info.build).toBe(NODE_BEST);
      expect(out.maxErr).toBeLessThan(1e-5);
    } else {
      // Node < 20.19 / 22.12: no require(esm); users call `await import('wasm-batchnorm')` instead.
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/ERR_REQUIRE_ESM|require\(\) of ES Module/);
    }
  });

  describe('type declarations resolve from a TypeScript consumer (tsc --noEmit, skipLibCheck false)', () => {
    const consumerTs = `
      import { createEngine, BatchNorm, InvalidArgumentError, oracleForward,
        type EngineInfo, type EngineOptions, type WasmSource, type ForwardResult } from '${NAME}';
      import { registerTfjsKernels, useTfjs, batchNormalization, type TfjsKernelRegistration,
        type TfjsBatchNormalizationConfig, type TfjsKernelRegistry } from '${NAME}/tfjs';
      const sources: WasmSource[] = [new Uint8Array(8), new ArrayBuffer(8), 'batchnorm.simd.wasm', new URL('https://cdn.example/b.wasm')];
      const options: EngineOptions = { simd: true, wasm: { simd: sources[0], scalar: sources[2] } };
      const engine = await createEngine(options);
      const info: EngineInfo = engine.info();
      const simdSupported: boolean | null = info.features.simd;
      const relaxedSupported: boolean | null = info.features.relaxedSimd;
      const relaxed = await createEngine({ build: 'relaxed-simd', wasm: { 'relaxed-simd': sources[3], simd: sources[2] } });
      // @ts-expect-error -- not a build of the table
      await createEngine({ build: 'relaxed' });
      const r: ForwardResult = engine.forward(new Float32Array(8), [2, 4], { training: true });
      const layer = new BatchNorm(engine, 4, { momentum: 0.1 });
      layer.eval();
      const ref = oracleForward(new Float32Array(8), [2, 4], { training: false });
      // @ts-expect-error -- simd is a boolean
      await createEngine({ simd: 'yes' });
      // @ts-expect-error -- not a wasm source
      await createEngine({ wasm: { simd: 42 } });
      // @ts-expect-error -- not a wasm source either (simd: true belongs one level up)
      await createEngine({ wasm: { simd: true } });
      // The adapter's declarations compile with no @tensorflow package installed (this consumer has none).
      const registry: TfjsKernelRegistry = { getKernel: () => undefined, registerKernel: () => {}, unregisterKernel: () => {} };
      const registration: TfjsKernelRegistration = registerTfjsKernels(registry, engine, { backends: ['cpu'], wasmTransfer: 'heap' });
      const bnConfig: TfjsBatchNormalizationConfig = { axis: 1, momentum: 0.99, epsilon: 1e-3, gammaInitializer: 'ones' };
      // @ts-expect-error -- webgl is not a backend we replace
      registerTfjsKernels(registry, engine, { backends: ['webgl'] });
      export const used = [info, simdSupported, relaxedSupported, relaxed, r.y, ref.y, InvalidArgumentError, registration.stats, bnConfig, useTfjs, batchNormalization];
    `;
    const configs = {
      'browser (lib DOM)': { lib: ['ES2022', 'DOM'], types: [], skipLibCheck: false },
      'Node (@types/node, no DOM)': {
        lib: ['ES2022'], types: ['node'], typeRoots: [path.join(REPO, 'node_modules', '@types')], skipLibCheck: false,
      },
    };
    it(`${Object.keys(configs).join('; ')} (in parallel)`, async () => {
      const results = await Promise.all(Object.entries(configs).map(async ([name, extra], i) => {
        const dir = path.join(consumer, `ts-${i}`);
        await mkdir(dir, { recursive: true });
        await writeFile(path.join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
        await writeFile(path.join(dir, 'consumer.ts'), consumerTs);
        await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify({
          compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, ...extra },
          files: ['consumer.ts'],
        }));
        const r = await run(process.execPath, [TSC, '-p', dir], { cwd: dir, timeoutMs: 60_000 });
        return { name, code: r.code, output: (r.stdout + r.stderr).trim() };
      }));
      expect(results).toEqual(Object.keys(configs).map((name) => ({ name, code: 0, output: '' })));
    });
  });

  it('Vite: an app importing the package builds with no configuration, the wasm lands in the bundle, and the bundle runs in chromium', async (ctx) => {
    const app = await writeViteApp('vite-app');
    const build = await runOk(process.execPath, [VITE, 'build', '--logLevel', 'warn'], { cwd: app, env: { ...process.env, NODE_ENV: 'production' }, timeoutMs: 60_000 });
    expect(build.stdout + build.stderr, 'vite build printed warnings').toBe('');

    // What the README says: every build is emitted as a file (each is above Vite's default
    // build.assetsInlineLimit, 4 KiB), byte-identical to build/, and so is the threads' worker
    // script, all referenced by URL from the one JS chunk; nothing is inlined as a data: URL.
    const assets = (await readdir(path.join(app, 'dist', 'assets'))).sort();
    const expected = [...RELEASE.map((b) => new RegExp(`^batchnorm\\.${b.replace('.', '\\.')}-[\\w-]+\\.wasm$`)), /^index-[\w-]+\.js$/, /^worker-[\w-]+\.js$/];
    expect(assets.length === expected.length && assets.every((f, i) => expected[i]!.test(f)), `dist/assets: ${assets.join(', ')}`).toBe(true);
    const js = await readFile(path.join(app, 'dist', 'assets', assets[RELEASE.length]!), 'utf8');
    const shipped = [...RELEASE.map((b) => path.join('build', `batchnorm.${b}.wasm`)), path.join('dist', 'threads', 'worker.js')];
    for (const [i, file] of shipped.entries()) {
      const bytes = await readFile(path.join(consumer, 'node_modules', NAME, file));
      expect(bytes.length, `${file} is no longer above assetsInlineLimit: the README's Vite paragraph needs an update`).toBeGreaterThan(4096);
      const asset = assets[i === RELEASE.length ? i + 1 : i]!;
      expect(Buffer.compare(await readFile(path.join(app, 'dist', 'assets', asset)), bytes), `${asset} differs from ${file}`).toBe(0);
      expect(js.includes(`/assets/${asset}`), `the bundle does not reference ${asset}`).toBe(true);
    }
    expect(js.includes('data:application/wasm'), 'a wasm build was inlined as a data: URL').toBe(false);
    expect(js.includes('__vite-browser-external'), 'a Node built-in was stubbed into the browser bundle').toBe(false);

    ctx.skip(!requireChromium(), SKIP_REASON);
    const server = await startServer({ root: path.join(app, 'dist') });
    try {
      await expectViteAppWorks(server.url);
    } finally {
      await server.close();
    }
  });

  it('Vite dev server: the same app runs unconfigured (dependency pre-bundling keeps the wasm URLs working)', async (ctx) => {
    ctx.skip(!requireChromium(), SKIP_REASON);
    const app = await writeViteApp('vite-dev-app');
    const dev = spawn(process.execPath, [VITE, '--host', '127.0.0.1', '--port', '0', '--clearScreen', 'false'], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let output = '';
        const timer = setTimeout(() => reject(new Error(`vite dev server did not start:\n${output}`)), 30_000);
        const onData = (chunk: Buffer) => {
          output += chunk.toString().replace(/\x1b\[[0-9;]*m/g, '');
          const match = /Local:\s+(http:\/\/127\.0\.0\.1:\d+\/)/.exec(output);
          if (match) { clearTimeout(timer); resolve(match[1]!); }
        };
        dev.stdout.on('data', onData);
        dev.stderr.on('data', onData);
        dev.on('exit', (code) => { clearTimeout(timer); reject(new Error(`vite exited with ${code}:\n${output}`)); });
      });
      const out = await expectViteAppWorks(url);
      expect((out.info as { url: string }).url).toMatch(/\/node_modules\/wasm-batchnorm\/build\/batchnorm\.relaxed-simd\.wasm$/);
    } finally {
      const exited = new Promise((resolve) => { dev.once('exit', resolve); setTimeout(resolve, 5000).unref(); });
      if (dev.exitCode === null) dev.kill('SIGTERM');
      await exited;
    }
  });
});
