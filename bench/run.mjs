// `npm run bench` (= npm run build && node bench/run.mjs [args]): the benchmark of issue 3.
//
//   node bench/run.mjs [--quick] [--suite inference,training,backward] [--shapes resnet50,1x960]
//                      [--layout NCHW|NHWC] [--contenders ours-zero-copy,tfjs-wasm] [--name NAME]
//                      [--max-time S] [--min-samples N] [--skip-above S] [--package DIR]
//
// --package DIR benchmarks the dist/ and build/ of another checkout (built there), e.g. a
// worktree of an older commit, with this harness: before/after tables from the same code.
//
// Compiles the floor kernels (bench/floor/build.mjs, output in bench/results/tmp/), then runs
// each suite (= operation) in its own child process, one after the other (never in parallel:
// single-thread numbers on a 2-core machine), and writes the report (bench/report.mjs):
//   full run    bench/results/full.{json,md,svg}
//   --quick     bench/results/quick.{json,md,svg}
//   filtered    bench/results/tmp/partial.{json,md,svg}   (--suite/--shapes/--layout/--contenders)
// Raw per-case benny output goes to bench/results/tmp/benny/. A full run (no --quick, no filter)
// then runs bench/relu.mjs (fused ReLU), bench/fixed-cost.mjs (a repeated call's fixed cost with
// 0 to 10 000 live tensors), bench/kernels.mjs (every registry kernel alone), bench/norms.mjs
// (LayerNorm, RMSNorm, GroupNorm, InstanceNorm against the floor, plain JS and ONNX Runtime) and
// bench/tfjs.mjs (a tfjs training step with our layer vs tfjs's own) and bench/threads.mjs (thread
// scaling: threads 1, 2, 4 on the same cases; every comparison above runs on one thread, as the peers).
//
// The peers (benny, tfjs-backend-wasm, onnxruntime-web, onnxruntime-node, onnx-proto) are
// bench/package.json's: bench/deps.mjs runs `npm ci --prefix bench` first when bench/node_modules
// is missing or stale, so `npm run bench -- --quick` works right after the root `npm ci`.
import os from 'node:os';
import { spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync, rmSync, cpSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { buildFloor } from './floor/build.mjs';
import { writeReport, OPS } from './report.mjs';
import { WRONG_ABOVE } from './data.mjs';
import { ensureBenchDeps } from './deps.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    suite: { type: 'string' },
    shapes: { type: 'string' },
    layout: { type: 'string' },
    contenders: { type: 'string' },
    name: { type: 'string' },
    'max-time': { type: 'string' },
    'min-samples': { type: 'string' },
    'skip-above': { type: 'string' },
    package: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
  process.exit(0);
}
const suites = args.suite ? args.suite.split(',').map((s) => s.trim()) : OPS;
for (const s of suites) if (!OPS.includes(s)) throw new Error(`--suite: unknown suite "${s}" (${OPS.join(', ')})`);
const filtered = Boolean(args.suite || args.shapes || args.layout || args.contenders);
const name = args.name ?? (filtered ? 'partial' : args.quick ? 'quick' : 'full');
const outDir = join(root, filtered && !args.name ? 'bench/results/tmp' : 'bench/results');

/** The checkout whose dist/ and build/ are benchmarked (--package, else this one). */
const packageRoot = args.package ? resolve(args.package) : root;

function fileInfo(rel) {
  const p = join(packageRoot, rel);
  if (!existsSync(p)) return null;
  const bytes = readFileSync(p);
  return { sha256: createHash('sha256').update(bytes).digest('hex').slice(0, 12), bytes: bytes.length, mtime: statSync(p).mtime.toISOString() };
}
function readOnlyGit(argv) {
  try { return execFileSync('git', argv, { cwd: packageRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return null; }
}
/** A peer's installed version: the peers live in bench/node_modules (bench/package.json). */
const version = (pkg) => {
  try { return JSON.parse(readFileSync(join(root, 'bench/node_modules', pkg, 'package.json'), 'utf8')).version; } catch { return null; }
};

// The package under test is copied at start (dist/ + build/*.wasm) into bench/results/tmp/package/
// and the suites load it from there (bench/package-under-test.mjs): the kernels are rebuilt in
// parallel while the benchmark runs, and a rebuild mid-run would otherwise mix two builds. The
// copy is retried until no build file changed while it was taken.
// The wasm files: every shipped build of the package's build table (build/batchnorm.<build>.wasm;
// the debug build is the tests').
const WASM_FILES = existsSync(join(packageRoot, 'build'))
  ? readdirSync(join(packageRoot, 'build')).filter((f) => /^batchnorm\.[a-z0-9-]+\.wasm$/.test(f) && f !== 'batchnorm.debug.wasm').map((f) => `build/${f}`)
  : [];
const BUILD_FILES = [...WASM_FILES, 'dist/index.js', 'dist/engine.js', 'dist/ops/batchnorm.js'];
async function snapshotPackage() {
  const dir = join(root, 'bench/results/tmp/package');
  for (let attempt = 0; attempt < 20; attempt++) {
    const before = Object.fromEntries(BUILD_FILES.map((f) => [f, fileInfo(f)]));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'build'), { recursive: true });
    cpSync(join(packageRoot, 'dist'), join(dir, 'dist'), { recursive: true });
    for (const f of WASM_FILES) cpSync(join(packageRoot, f), join(dir, f));
    const after = Object.fromEntries(BUILD_FILES.map((f) => [f, fileInfo(f)]));
    const stable = BUILD_FILES.every((f) => before[f]?.sha256 === after[f]?.sha256)
      && BUILD_FILES.every((f) => (after[f] ? statSync(join(packageRoot, f)).mtimeMs < Date.now() - 2000 : !f.startsWith('build/') && f !== 'dist/index.js'));
    if (stable && await smokeTest(dir, attempt)) return { dir, files: after };
    spawnSync('sleep', ['5']);
  }
  throw new Error('dist/ or build/ kept changing or failing the smoke test (a build is running?); try again later');
}

/**
 * The snapshot works: every build of its build table that this JavaScript engine accepts, both
 * layouts, forward and backward agree with the oracle on a small tensor.
 */
async function smokeTest(dir, attempt) {
  try {
    const pkg = await import(`${pathToFileURL(join(dir, 'dist/index.js')).href}?attempt=${attempt}`);
    const table = await import(`${pathToFileURL(join(dir, 'dist/wasm/builds.js')).href}?attempt=${attempt}`).catch(() => null);
    const builds = table?.BUILD_NAMES ?? ['simd', 'scalar'];
    const shape = [3, 5, 4, 3], n = 180;
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 2 + (i % 5));
    const dy = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.3));
    for (const build of builds) {
      const engine = await pkg.createEngine({ build, threads: 1 }).catch((error) => {
        if (error instanceof pkg.InvalidArgumentError && error.argument === 'options.build') return null; // rejected here
        throw error;
      });
      if (engine === null) continue;
      for (const layout of ['NCHW', 'NHWC']) {
        const f = engine.forward(x, shape, { layout, training: true });
        const o = pkg.oracleForward(x, shape, { layout, training: true });
        const b = engine.backward(dy, x, shape, { layout, training: true, saveMean: f.saveMean, saveInvStd: f.saveInvStd });
        const ob = pkg.oracleBackward(dy, x, shape, { layout, training: true, mean: f.saveMean, invStd: f.saveInvStd });
        const bad = (a, e) => a.some((v, i) => !(Math.abs(v - e[i]) <= 1e-4 * (1 + Math.abs(e[i]))));
        if (bad(f.y, o.y) || bad(b.dx, ob.dx)) throw new Error(`${build} ${layout} disagrees with the oracle`);
      }
    }
    return true;
  } catch (error) {
    console.warn(`package snapshot: smoke test failed (${error.message}); retrying`);
    return false;
  }
}

async function main() {
  const t0 = performance.now();
  ensureBenchDeps(); // bench/package.json's peers into bench/node_modules, when missing or stale
  const loadavg = os.loadavg();
  const snapshot = await snapshotPackage();
  await buildFloor();
  const forward = [];
  for (const key of ['shapes', 'layout', 'contenders', 'max-time', 'min-samples', 'skip-above']) {
    if (args[key] !== undefined) forward.push(`--${key}`, args[key]);
  }
  if (args.quick) forward.push('--quick');

  const results = [];
  const runs = [];
  for (const op of suites) {
    const out = join(root, 'bench/results/tmp', `suite-${name}-${op}.json`);
    rmSync(out, { force: true });
    console.log(`\n=== suite ${op} (child process) ===`);
    const child = spawnSync(process.execPath, ['--expose-gc', join(root, 'bench/suite.mjs'), '--op', op, '--out', out, ...forward], {
      stdio: 'inherit', cwd: root, env: { ...process.env, BENCH_PACKAGE_DIST: join(snapshot.dir, 'dist/index.js') },
    });
    if (child.status !== 0 || !existsSync(out)) {
      console.error(`suite ${op} failed (exit ${child.status}${child.signal ? `, ${child.signal}` : ''})`);
      process.exitCode = 1;
      continue;
    }
    const r = JSON.parse(readFileSync(out, 'utf8'));
    runs.push({ op, seconds: r.seconds, peakRssMB: r.peakRssMB, engines: r.engines, cpu: r.cpu, node: r.node, v8: r.v8 });
    results.push(...r.results);
  }
  if (!results.length) throw new Error('no results');

  const wallSeconds = (performance.now() - t0) / 1000;
  const changed = BUILD_FILES.filter((f) => fileInfo(f)?.sha256 !== snapshot.files[f]?.sha256);
  if (changed.length) console.log(`\nnote: ${changed.join(', ')} changed during the run; the run used the snapshot taken at its start.`);
  const first = runs[0];
  const meta = {
    name,
    date: new Date().toISOString(),
    cpu: first.cpu,
    cores: os.cpus().length,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    totalMemGB: Math.round(os.totalmem() / 2 ** 30),
    node: first.node,
    v8: first.v8,
    loadavg,
    loadavgEnd: os.loadavg(),
    wallSeconds,
    wrongAbove: WRONG_ABOVE,
    build: {
      commit: readOnlyGit(['rev-parse', '--short', 'HEAD']),
      engineInfo: first.engines,
      simdWasm: snapshot.files['build/batchnorm.simd.wasm'],
      scalarWasm: snapshot.files['build/batchnorm.scalar.wasm'],
      wasm: Object.fromEntries(WASM_FILES.map((f) => [f, snapshot.files[f]])),
      dist: snapshot.files['dist/ops/batchnorm.js'],
      floorWasm: fileInfo('bench/results/tmp/floor.wasm'),
      snapshot: 'bench/results/tmp/package/ (dist/ and build/*.wasm copied at start)',
      changedInTreeDuringRun: changed,
    },
    peers: {
      '@tensorflow/tfjs-core': version('@tensorflow/tfjs-core'),
      '@tensorflow/tfjs-backend-wasm': version('@tensorflow/tfjs-backend-wasm'),
      'onnxruntime-web': version('onnxruntime-web'),
      'onnxruntime-node': version('onnxruntime-node'),
      benny: version('benny'),
    },
    config: {
      quick: args.quick, suites, shapes: args.shapes ?? null, layout: args.layout ?? null, contenders: args.contenders ?? null,
      maxTime: args['max-time'] ?? null, minSamples: args['min-samples'] ?? null, skipAbove: args['skip-above'] ?? null,
    },
    suites: runs.map(({ op, seconds, peakRssMB }) => ({ op, seconds, peakRssMB })),
  };
  const paths = writeReport({ meta, cases: results }, outDir);
  console.log(`\n${paths.markdown}`);
  console.log(`\nwrote ${paths.json}\n      ${paths.md}\n      ${paths.svg}`);
  console.log(`wall time ${wallSeconds.toFixed(1)} s (${runs.map((r) => `${r.op} ${r.seconds.toFixed(0)} s`).join(', ')})`);
  if (!args.quick && !filtered && process.exitCode !== 1) {
    for (const [title, script] of [['fused ReLU', 'relu.mjs'], ['fixed cost of a repeated call', 'fixed-cost.mjs'], ['kernels alone', 'kernels.mjs'],
      ['the normalization family', 'norms.mjs'], ['tfjs training step', 'tfjs.mjs'], ['thread scaling', 'threads.mjs']]) {
      console.log(`\n=== ${title} (bench/${script}, child process) ===`);
      const child = spawnSync(process.execPath, [join(root, 'bench', script)], { stdio: 'inherit', cwd: root });
      if (child.status !== 0) process.exitCode = 1;
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
