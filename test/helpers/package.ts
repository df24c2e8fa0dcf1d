// Builds what `npm pack` would ship from the current sources, without writing to the repository:
// dist/ is the repository's own when it is up to date with src/ (as after `npm run build:ts`,
// which `npm test` runs first), else src/ compiled with the repo's tsc into a temporary folder;
// the rest of the package's `files` (the release wasm builds) is copied next to it. Used by
// test/browser.test.ts (the demo page is served with that dist/) and test/package.test.ts
// (packed, installed, imported).
import { spawn } from 'node:child_process';
import { cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
export const VITE = path.join(REPO, 'node_modules', 'vite', 'bin', 'vite.js');

export interface RunResult { code: number | null; stdout: string; stderr: string }

/** Runs a command (no shell), bounded by a timeout; never throws for a nonzero exit. */
export function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} timed out after ${options.timeoutMs} ms\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.on('error', (error) => { clearTimeout(timer); reject(error); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** Throws with the command's output unless it exited 0. */
export async function runOk(command: string, args: string[], options: Parameters<typeof run>[2]): Promise<RunResult> {
  const r = await run(command, args, options);
  if (r.code !== 0) throw new Error(`${path.basename(command)} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Compiles src/ with the repository's tsconfig into `outDir` (the package's dist/). */
export async function compileDist(outDir: string): Promise<void> {
  await runOk(process.execPath, [TSC, '-p', path.join(REPO, 'tsconfig.json'), '--outDir', outDir], { cwd: REPO, timeoutMs: 60_000 });
}

/** The modules of src/, folders included (paths relative to src/, without .ts or .js: plain JS modules compile too). */
async function sourceModules(): Promise<{ name: string; file: string }[]> {
  const entries = await readdir(path.join(REPO, 'src'), { recursive: true });
  return entries.filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.d.ts')).map((f) => ({ name: f.slice(0, -3), file: f }));
}

/**
 * Whether the repository's dist/ holds an up-to-date build of every src/ module (true right
 * after `npm run build:ts`, which `npm test` runs first). Stale or missing: compile instead.
 */
export async function distIsFresh(): Promise<boolean> {
  const mtime = (f: string) => stat(f).then((s) => s.mtimeMs, () => Number.NaN);
  const config = await mtime(path.join(REPO, 'tsconfig.json'));
  for (const { name, file } of await sourceModules()) {
    const src = await mtime(path.join(REPO, 'src', file));
    for (const out of [`${name}.js`, `${name}.d.ts`]) {
      const built = await mtime(path.join(REPO, 'dist', out));
      if (!(built >= src && built >= config)) return false;
    }
  }
  return true;
}

/**
 * dist/ for the current sources in `dir`: the repository's own build when it is fresh (only
 * the files of current src/ modules, so leftovers of deleted ones do not leak), else compiled.
 * Returns whether it compiled.
 */
export async function buildDist(dir: string): Promise<boolean> {
  if (!(await distIsFresh())) {
    await compileDist(dir);
    return true;
  }
  await mkdir(dir, { recursive: true });
  for (const { name } of await sourceModules()) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    for (const out of [`${name}.js`, `${name}.d.ts`, `${name}.js.map`]) {
      await cp(path.join(REPO, 'dist', out), path.join(dir, out)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT' || !out.endsWith('.map')) throw error;
      });
    }
  }
  return false;
}

/**
 * A directory holding exactly what the package ships, built from the current sources:
 * package.json, README, dist/ and the other `files` entries copied from the repository.
 */
export async function stagePackage(dir: string): Promise<{ dir: string; pkg: Record<string, unknown>; compiled: boolean }> {
  await mkdir(dir, { recursive: true });
  const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as Record<string, unknown> & { files: string[] };
  await writeFile(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  await cp(path.join(REPO, 'README.md'), path.join(dir, 'README.md'));
  const compiled = await buildDist(path.join(dir, 'dist'));
  for (const entry of pkg.files) {
    // dist/ is compiled above; patterns (`!dist/**/*.map`) are npm pack's business.
    if (entry.replace(/\/$/, '') === 'dist' || /[!*?[\]{}]/.test(entry)) continue;
    await cp(path.join(REPO, entry), path.join(dir, entry), { recursive: true });
  }
  return { dir, pkg, compiled };
}

/** npm without the parent npm's per-run settings, offline, quiet. */
export function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_offline: 'true' };
}

export interface PackedPackage {
  /** The `npm pack` tarball. */
  tarball: string;
  /** The files it holds, sorted. */
  packed: string[];
}

/**
 * `npm pack` of what stagePackage() builds, into `tmp` (offline, no scripts: the staged dist/
 * and wasm are already built). Install it with installTarball().
 */
export async function packPackage(tmp: string): Promise<PackedPackage> {
  const { dir } = await stagePackage(path.join(tmp, 'stage'));
  const pack = await runOk('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: dir, env: npmEnv(), timeoutMs: 60_000 });
  const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  return { tarball: path.join(tmp, info!.filename), packed: info!.files.map((f) => f.path).sort() };
}

/** `npm install <tarball>` in `project` (which has a package.json), offline, as a user installs it. */
export async function installTarball(project: string, tarball: string): Promise<void> {
  await runOk('npm', ['install', tarball, '--offline', '--no-audit', '--no-fund'], { cwd: project, env: npmEnv(), timeoutMs: 60_000 });
}
