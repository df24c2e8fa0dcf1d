// One engine per build of the build table per process, shared by the contenders that need them.
import { createEngine, BUILD_NAMES } from '../package-under-test.mjs';

const engines = new Map();
const probes = new Map();

/** The engine of `build` (createEngine({ build, threads: 1 }), pinned); throws where the JavaScript engine rejects it. */
export async function engineFor(build) {
  if (!engines.has(build)) engines.set(build, createEngine({ build, threads: 1 })); // single-threaded, as the peers: bench/threads.mjs measures threads
  const engine = await engines.get(build);
  if (engine.build !== build) throw new Error(`expected the ${build} build, got ${engine.build}`);
  return engine;
}

/** null when `build` runs here, else why not (the error of createEngine({ build })). */
export async function unsupportedBuild(build) {
  if (!probes.has(build)) probes.set(build, engineFor(build).then(() => null, (error) => String(error?.message ?? error)));
  return probes.get(build);
}

/** The builds of the package's build table that run here, most capable first. */
export async function runnableBuilds() {
  const out = [];
  for (const b of BUILD_NAMES) if ((await unsupportedBuild(b)) === null) out.push(b);
  return out;
}
