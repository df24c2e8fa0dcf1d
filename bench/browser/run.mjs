// `npm run bench:browser` (= npm run build && node bench/browser/run.mjs [args]): the browser
// benchmark page (bench/browser/index.html).
//
//   node bench/browser/run.mjs [--quick | --test] [--headless] [--port N] [--out FILE]
//
// Installs the peers first when needed (bench/deps.mjs, as bench/run.mjs does), builds the floor,
// bundles the peers for the page and serves the repository on 127.0.0.1.
//   without --headless  prints the page's URL and serves until Ctrl+C (open it in any browser);
//   --headless          runs the page in Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium)
//                       through playwright-core and writes the report: --quick bench/results/browser.json,
//                       full bench/results/browser-full.json, --test bench/results/tmp/browser-test.json.
// Modes: full (25 cases x 3 operations), --quick (the 7 quick cases), --test (3 small cases, what
// npm test runs).
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBenchDeps } from '../deps.mjs';
import { SHORT } from '../derive.mjs';
import { runHeadless, startBenchServer, writeJson } from './server.mjs';

const ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    test: { type: 'boolean', default: false },
    headless: { type: 'boolean', default: false },
    port: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log('usage: node bench/browser/run.mjs [--quick | --test] [--headless] [--port N] [--out FILE]');
  process.exit(0);
}
const mode = args.test ? 'test' : args.quick ? 'quick' : 'full';
const OUT = { quick: 'bench/results/browser.json', full: 'bench/results/browser-full.json', test: 'bench/results/tmp/browser-test.json' };

ensureBenchDeps();
const server = await startBenchServer({ port: Number(args.port ?? process.env.PORT ?? 0), quiet: false });
console.log(server.peers.available ? `peers bundled: ${Object.entries(server.peers.versions).map(([p, v]) => `${p} ${v}`).join(', ')}` : `peers skipped: ${server.peers.reason}`);

if (!args.headless) {
  console.log(`wasm-batchnorm browser benchmark: ${server.pageUrl}?mode=${mode}`);
  console.log('serving the repository on 127.0.0.1 only; Ctrl+C stops');
  const stop = async () => { await server.close(); process.exit(0); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} else {
  try {
    const t0 = Date.now();
    const r = await runHeadless({ pageUrl: server.pageUrl, mode, onProgress: (text) => process.stdout.write(`  ${text}\n`) });
    if (r.error) throw new Error(`the page failed: ${r.error}`);
    if (r.problems.length) console.warn(`page problems:\n  ${r.problems.join('\n  ')}`);
    const file = join(ROOT, args.out ?? OUT[mode]);
    writeJson(file, r.report);
    printSummary(r.report);
    console.log(`wrote ${relative(process.cwd(), file)} (${((Date.now() - t0) / 1e3).toFixed(0)} s)`);
    const wrong = r.report.cases.flatMap((k) => k.contenders.filter((e) => e.check && !e.check.correct).map((e) => `${k.op} ${k.id} ${e.id}`));
    if (wrong.length) {
      console.error(`results that differ from the oracle: ${wrong.join('; ')}`);
      process.exitCode = 1;
    }
  } finally {
    await server.close();
  }
}

function printSummary(report) {
  const ids = [...new Set(report.summary.flatMap((r) => Object.keys(r.ratio)))].filter((id) => id !== 'floor');
  console.log(`\n${report.meta.userAgent}\ngeometric mean of median / floor median (lower is better); zero-copy speed-up over each peer`);
  for (const r of report.summary) {
    const ratios = ids.map((id) => `${SHORT[id]} ${r.ratio[id] ? r.ratio[id].geomean.toFixed(2) : 'n/a'}`).join(', ');
    const sp = Object.entries(r.speedup).map(([p, s]) => `vs ${SHORT[p]} ${s.geomean.toFixed(1)}x`).join(', ');
    console.log(`  ${r.op.padEnd(9)} ${r.layout}  ${ratios}${sp ? `; ${sp}` : ''}`);
  }
  for (const m of report.meta.contenders.filter((c) => c.status === 'skipped')) console.log(`  skipped ${m.id}: ${m.reason}`);
}
