// Compiles the floor kernels (bench/floor/floor.ts) into bench/results/tmp/floor.wasm, which is
// gitignored (bench/results/tmp/). Recompiles only when the source is newer than the output.
// Uses its own config (bench/floor/asconfig.json) so the project's asconfig.json (the kernels'
// entries and targets) is not picked up, and writes nowhere near build/.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(dirname(here));
export const FLOOR_SOURCE = `${here}/floor.ts`;
export const FLOOR_WASM = `${root}/bench/results/tmp/floor.wasm`;

export async function buildFloor({ force = false, quiet = false } = {}) {
  const stale = force || !existsSync(FLOOR_WASM)
    || statSync(FLOOR_WASM).mtimeMs < Math.max(statSync(FLOOR_SOURCE).mtimeMs, statSync(`${here}/asconfig.json`).mtimeMs,
      statSync(fileURLToPath(import.meta.url)).mtimeMs);
  if (!stale) return FLOOR_WASM;
  mkdirSync(dirname(FLOOR_WASM), { recursive: true });
  const rel = (p) => relative(root, p);
  const args = [rel(FLOOR_SOURCE), '--config', rel(`${here}/asconfig.json`), '-O3', '--enable', 'simd', '--runtime', 'stub', '--importMemory',
    '-o', rel(FLOOR_WASM), '-t', rel(FLOOR_WASM.replace(/\.wasm$/, '.wat'))];
  if (!quiet) console.log(`floor: asc ${args.join(' ')}`);
  const asc = (await import('assemblyscript/asc')).default;
  const cwd = process.cwd();
  process.chdir(root);
  try {
    const { error, stderr } = await asc.main(args, {});
    if (error) throw new Error(`asc failed: ${error.message}\n${stderr.toString()}`);
  } finally {
    process.chdir(cwd);
  }
  return FLOOR_WASM;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildFloor({ force: process.argv.includes('--force') });
}
