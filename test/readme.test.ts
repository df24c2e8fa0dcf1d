// The README's examples, run as a user runs them. Every ```ts / ```js / ```html block of README.md
// is marked on the line before its fence:
//   <!-- runnable -->              a whole program: compiled and run here (cwd: the project, which
//                                  also holds test/fixtures/model.safetensors as model.safetensors);
//   <!-- not runnable: <why> -->   a fragment, or browser-only (the package test runs a Vite app in chromium).
// The @tensorflow/* packages the programs import (optional peers of wasm-batchnorm/tfjs) are the
// root install's, linked into the project's node_modules (an `npm install name@version --offline`
// needs the registry's package metadata in npm's cache, which `npm ci` never fetches: a fresh
// machine has only the tarballs).
// The runnable blocks are compiled together by tsc (strict, skipLibCheck false) in a project made
// the way the README's TypeScript note says (`npm init -y`, then "type": "module", "module":
// "nodenext", "target": "es2022"), into which the `npm pack` tarball of the current sources is
// installed; each compiled block then runs in its own Node process. A failure names the block's
// README line (tsc diagnostics and stack frames are mapped back to README lines).
import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO, TSC, installTarball, npmEnv, packPackage, run, runOk } from './helpers/package.js';

interface Block {
  /** 1-based README line of the opening fence. */
  fence: number;
  lang: string;
  marker: string | null;
  code: string;
}

const README = path.join(REPO, 'README.md');

function readmeBlocks(text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end]!)) end++;
    const marker = i > 0 ? /^<!--\s*(.*?)\s*-->$/.exec(lines[i - 1]!.trim())?.[1] ?? null : null;
    blocks.push({ fence: i + 1, lang: open[1]!, marker, code: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return blocks;
}

const blocks = readmeBlocks(readFileSync(README, 'utf8'));
const programs = blocks.filter((b) => b.marker === 'runnable');
const fileOf = (b: Block) => `readme-L${b.fence}.${b.lang === 'js' ? 'mjs' : 'ts'}`;
/** README line of line `line` (1-based) of block `b`'s code. */
const readmeLine = (b: Block, line: number) => b.fence + line;

/** Rewrites `readme-L<fence>.ts:<line>` (tsc's `(<line>,<col>)` too) into `README.md:<line>`. */
function toReadmeLines(text: string): string {
  return text.replace(/(?:[\w/.-]*\/)?readme-L(\d+)\.(?:ts|mts|mjs|js)(?::(\d+)|\((\d+),\d+\))?/g, (_, fence: string, a?: string, b?: string) => {
    const line = a ?? b;
    return line ? `README.md:${Number(fence) + Number(line)}` : `README.md:${fence} (block)`;
  });
}

let tmp: string;
let project: string;
/** tsc's diagnostics, by block file; compiled once for all blocks. */
let diagnostics: Map<string, string[]>;
let initType: unknown;
let commonJsTsc: { code: number | null; output: string };

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'wasm-batchnorm-readme-'));
  const { tarball } = await packPackage(tmp);
  project = path.join(tmp, 'app');
  await mkdir(project);
  // A project as `npm init -y` makes it (CommonJS), with the package installed from the tarball.
  await runOk('npm', ['init', '-y'], { cwd: project, env: npmEnv(), timeoutMs: 30_000 });
  initType = JSON.parse(await readFile(path.join(project, 'package.json'), 'utf8')).type;
  await installTarball(project, tarball);
  // The optional peers the blocks import (the TensorFlow.js example): the root install's packages,
  // linked (Node and tsc resolve a link by its real path: the peers' own dependencies come from the
  // root install, and the package under test and the programs share one instance of each peer).
  const peers = [...new Set(programs.flatMap((b) => [...b.code.matchAll(/^import (?:.* from )?'(@tensorflow\/[\w-]+)';$/gm)].map((m) => m[1]!)))];
  for (const name of peers) {
    const link = path.join(project, 'node_modules', name);
    await mkdir(path.dirname(link), { recursive: true });
    await symlink(path.join(REPO, 'node_modules', name), link, 'dir');
  }
  // The file the safetensors example reads, as a user would have it next to their script.
  await copyFile(path.join(REPO, 'test/fixtures/model.safetensors'), path.join(project, 'model.safetensors'));
  for (const b of programs) await writeFile(path.join(project, fileOf(b)), `${b.code}\n`);
  const tsconfig = (files: string[]) => JSON.stringify({
    compilerOptions: { module: 'nodenext', target: 'es2022', strict: true, skipLibCheck: false, outDir: 'out', sourceMap: true },
    files,
  });

  // Still CommonJS: the first program's top-level await does not compile (the README's note).
  const first = programs.find((b) => b.lang === 'ts');
  if (first) {
    await writeFile(path.join(project, 'tsconfig.cjs.json'), tsconfig([fileOf(first)]));
    const r = await run(process.execPath, [TSC, '-p', 'tsconfig.cjs.json', '--noEmit'], { cwd: project, timeoutMs: 60_000 });
    commonJsTsc = { code: r.code, output: r.stdout + r.stderr };
  }

  // The README's settings: "type": "module", module nodenext, target es2022.
  await runOk('npm', ['pkg', 'set', 'type=module'], { cwd: project, env: npmEnv(), timeoutMs: 30_000 });
  await writeFile(path.join(project, 'tsconfig.json'), tsconfig(programs.filter((b) => b.lang === 'ts').map(fileOf)));
  const r = await run(process.execPath, [TSC, '-p', 'tsconfig.json', '--pretty', 'false'], { cwd: project, timeoutMs: 60_000 });
  diagnostics = new Map();
  for (const line of (r.stdout + r.stderr).split('\n').filter(Boolean)) {
    const file = /^(readme-L\d+\.ts)\(/.exec(line)?.[1] ?? '(project)';
    diagnostics.set(file, [...(diagnostics.get(file) ?? []), toReadmeLines(line)]);
  }
}, 180_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('README code blocks', () => {
  it('every ts/js/html block is marked runnable or "not runnable: <why>", and there are programs to run', () => {
    const unmarked = blocks
      .filter((b) => ['ts', 'js', 'html'].includes(b.lang))
      .filter((b) => b.marker !== 'runnable' && !/^not runnable: \S/.test(b.marker ?? ''))
      .map((b) => `README.md:${b.fence} (${b.lang}): no <!-- runnable --> or <!-- not runnable: why --> on the line before`);
    expect(unmarked).toEqual([]);
    expect(programs.length).toBeGreaterThanOrEqual(6);
  });

  it('a project fresh from `npm init -y` is CommonJS, where tsc rejects top-level await (the README\'s TypeScript note)', () => {
    expect(initType ?? 'commonjs').toBe('commonjs');
    expect(commonJsTsc.code).not.toBe(0);
    expect(commonJsTsc.output).toMatch(/TS1309|TS1378|top level/i);
  });

  it('tsc reports nothing outside the blocks', () => {
    expect(diagnostics.get('(project)') ?? []).toEqual([]);
  });

  it.each(programs.map((b) => [readmeLine(b, 1), b] as const))('README.md:%i compiles and runs', async (_, b) => {
    const file = fileOf(b);
    expect(diagnostics.get(file) ?? [], `README.md:${b.fence}: tsc`).toEqual([]);
    const compiled = b.lang === 'ts' ? path.join('out', file.replace(/\.ts$/, '.js')) : file;
    const r = await run(process.execPath, ['--enable-source-maps', compiled], { cwd: project, timeoutMs: 60_000 });
    const output = toReadmeLines(`${r.stdout}\n${r.stderr}`.trim());
    expect({ exitCode: r.code, stderr: toReadmeLines(r.stderr.trim()) }, `README.md:${b.fence}: the block failed\n${output}`).toEqual({ exitCode: 0, stderr: '' });
  });
});
