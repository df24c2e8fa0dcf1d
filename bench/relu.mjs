// Fused ReLU against batch norm followed by a separate ReLU pass (issue: fused ReLU), on the
// ResNet-50 BN→ReLU shapes, both layouts, one thread, medians of side-by-side runs:
//   fused      engine.forward(x, { activation: 'relu' }); engine.backward(dy, x, { activation: 'relu', y })
//   separate   engine.forward(x) then relu(y) in place; reluBackward(dy, y) then engine.backward
// The separate passes are f32x4 loops (bench/floor/floor.ts) on the same engine tensors. Both give
// bit-identical results (checked). Writes bench/results/relu.{json,md}.
import os from 'node:os';
import { readFile, writeFile } from 'node:fs/promises';
import { buildFloor, FLOOR_WASM } from './floor/build.mjs';
import { makeInputs, EPS } from './data.mjs';
import { engineFor } from './contenders/engines.mjs';

const SHAPES = [[32, 64, 112, 112], [32, 256, 56, 56], [32, 512, 28, 28]];
const REPEATS = 9;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

await buildFloor({ quiet: true });
const engine = await engineFor('simd');
const { instance } = await WebAssembly.instantiate(await readFile(FLOOR_WASM), { env: { memory: engine.kernels.memory, abort() {} } });
const f = instance.exports;

function identical(a, b) {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.every((v, i) => v === ub[i]);
}

const rows = [];
for (const dims of SHAPES) {
  for (const layout of ['NCHW', 'NHWC']) {
    const shape = layout === 'NCHW' ? dims : [dims[0], ...dims.slice(2), dims[1]];
    const c = { layout, shape, dims, size: dims.reduce((a, b) => a * b), C: dims[1] };
    const inputs = makeInputs(c, 'backward');
    const { weight, bias } = inputs;
    const [x, dy, y, g, dx] = [inputs.x, inputs.dy, c.size, c.size, c.size].map((v) => engine.tensor(v));
    const rm = inputs.runningMean.slice(), rv = inputs.runningVar.slice();
    const fwd = (training, activation) => engine.forward(x.data, shape, { layout, training, weight, bias, runningMean: rm, runningVar: rv, eps: EPS, out: y.data, activation });
    const variants = {
      inference: {
        fused: () => fwd(false, 'relu'),
        separate: () => { fwd(false, 'none'); f.relu(y.byteOffset, y.byteOffset, c.size); },
      },
      training: {
        fused: () => fwd(true, 'relu'),
        separate: () => { fwd(true, 'none'); f.relu(y.byteOffset, y.byteOffset, c.size); },
      },
    };
    const saved = fwd(true, 'relu');
    const opts = { layout, training: true, weight, saveMean: saved.saveMean, saveInvStd: saved.saveInvStd, out: dx.data };
    variants.backward = {
      fused: () => engine.backward(dy.data, x.data, shape, { ...opts, activation: 'relu', y: y.data }),
      separate: () => { f.reluBackward(dy.byteOffset, y.byteOffset, g.byteOffset, c.size); engine.backward(g.data, x.data, shape, opts); },
    };
    for (const [op, v] of Object.entries(variants)) {
      // Same output both ways (the backward's y is the fused training forward's output).
      if (op !== 'backward') { v.separate(); const a = y.toArray(); v.fused(); if (!identical(a, y.data)) throw new Error(`${op} ${layout}: fused and separate ReLU differ`); }
      else { fwd(true, 'relu'); v.separate(); const a = dx.toArray(); v.fused(); if (!identical(a, dx.data)) throw new Error(`backward ${layout}: fused and separate ReLU differ`); }
      const t = { fused: [], separate: [] };
      for (let i = 0; i < REPEATS + 2; i++) {
        for (const k of ['separate', 'fused']) {
          if (op === 'backward') fwd(true, 'relu'); // y = the ReLU output the backward masks with
          const t0 = performance.now();
          v[k]();
          t[k].push(performance.now() - t0);
        }
      }
      const fused = median(t.fused.slice(2)), separate = median(t.separate.slice(2));
      rows.push({ shape: dims.join('×'), layout, op, fusedMs: fused, separateMs: separate, speedup: separate / fused });
      console.log(`${dims.join('x').padEnd(14)} ${layout} ${op.padEnd(9)} fused ${fused.toFixed(2).padStart(7)} ms  separate ${separate.toFixed(2).padStart(7)} ms  ${(separate / fused).toFixed(2)}x`);
    }
    for (const t of [x, dy, y, g, dx]) t.free();
  }
}
const geo = (op) => Math.exp(rows.filter((r) => r.op === op).reduce((s, r) => s + Math.log(r.speedup), 0) / rows.filter((r) => r.op === op).length);
const meta = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model?.trim(), node: process.version, v8: process.versions.v8, load: os.loadavg() };
const md = [`# Fused ReLU vs batch norm then a separate ReLU pass`, '',
  `${meta.cpu}, Node ${meta.node} (V8 ${meta.v8}), ${meta.date.slice(0, 10)}, one thread; median of ${REPEATS} side-by-side runs; results bit-identical both ways.`, '',
  `Speed-up of the fused pass (geometric mean): inference ${geo('inference').toFixed(2)}×, training ${geo('training').toFixed(2)}×, backward ${geo('backward').toFixed(2)}×.`, '',
  '| shape | layout | operation | fused ms | separate ms | speed-up |', '|---|---|---|---:|---:|---:|',
  ...rows.map((r) => `| ${r.shape} | ${r.layout} | ${r.op} | ${r.fusedMs.toFixed(2)} | ${r.separateMs.toFixed(2)} | ${r.speedup.toFixed(2)}× |`)].join('\n');
await writeFile(new URL('./results/relu.md', import.meta.url), `${md}\n`);
await writeFile(new URL('./results/relu.json', import.meta.url), `${JSON.stringify({ meta, rows }, null, 2)}\n`);
console.log(`\nfused speed-up (geometric mean): inference ${geo('inference').toFixed(2)}x, training ${geo('training').toFixed(2)}x, backward ${geo('backward').toFixed(2)}x\nwrote bench/results/relu.{json,md}`);
