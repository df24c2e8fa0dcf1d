// The benchmark-only peers (onnxruntime-node, onnxruntime-web, tfjs-backend-wasm, benny, ...) live
// in bench/package.json with their own lockfile, so the root `npm ci` (what `npm test` needs)
// stays small. ensureBenchDeps() runs `npm ci --prefix bench` when bench/node_modules is missing
// or was installed from another bench/package-lock.json (a stamp holds the lockfile's SHA-256),
// before anything imports a peer. Node resolves the peers from bench/node_modules (the nearest
// node_modules above bench/**), the package under test from the repository (dist/, build/).
//
// Install scripts: bench/package.json's `allowScripts` denies onnxruntime-node's postinstall
// (it downloads CUDA binaries; the CPU binaries ship in the package) and protobufjs's;
// ONNXRUNTIME_NODE_INSTALL=skip is set as well, as .ci/run does for the root install.
//
//   node bench/deps.mjs            install if needed (what `npm run bench` does first)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH);
const MODULES = join(BENCH, 'node_modules');
const STAMP = join(MODULES, '.wasm-batchnorm-bench-lock');

/** SHA-256 of bench/package.json and bench/package-lock.json: what the installed tree was made from. */
function lockDigest() {
  const hash = createHash('sha256');
  for (const file of ['package.json', 'package-lock.json']) hash.update(readFileSync(join(BENCH, file)));
  return hash.digest('hex');
}

/** Why bench/node_modules needs (re)installing, or null when it is current. */
export function benchDepsStale() {
  if (!existsSync(MODULES)) return 'bench/node_modules is missing';
  if (!existsSync(STAMP)) return 'bench/node_modules was not installed by bench/deps.mjs';
  if (readFileSync(STAMP, 'utf8').trim() !== lockDigest()) return 'bench/package-lock.json changed since bench/node_modules was installed';
  return null;
}

/** The npm that runs this script (npm run sets npm_execpath), else the one on PATH. */
function npmCommand() {
  const cli = process.env.npm_execpath;
  if (cli && /\.[cm]?js$/.test(cli)) return { command: process.execPath, prefix: [cli] };
  return { command: process.platform === 'win32' ? 'npm.cmd' : 'npm', prefix: [] };
}

/** Installs the benchmark peers into bench/node_modules from bench/package-lock.json when needed. */
export function ensureBenchDeps({ quiet = false } = {}) {
  const reason = benchDepsStale();
  if (reason === null) return false;
  if (!quiet) console.log(`${reason}: npm ci --prefix bench (the benchmark peers, once)`);
  const { command, prefix } = npmCommand();
  const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' };
  const r = spawnSync(command, [...prefix, 'ci', '--prefix', BENCH, '--no-audit', '--no-fund'], {
    cwd: ROOT, env, stdio: 'inherit', shell: process.platform === 'win32',
  });
  if (r.status !== 0) throw new Error(`npm ci --prefix bench failed (exit ${r.status}${r.signal ? `, ${r.signal}` : ''}${r.error ? `, ${r.error.message}` : ''})`);
  writeFileSync(STAMP, `${lockDigest()}\n`);
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (!ensureBenchDeps()) console.log('bench/node_modules is up to date');
}
