// tfjs-core's gradients in Node: its Node entry registers none, and the ESM files that do need
// tfjs-gradients-hook.mjs to load (see its header). Shared by tfjs-wasm.mjs and bench/tfjs.mjs.
import { register } from 'node:module';

let loaded = null;
/** Registers every tfjs-core gradient (once per process). */
export function loadTfjsGradients() {
  loaded ??= (async () => {
    register('./tfjs-gradients-hook.mjs', import.meta.url);
    await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  })();
  return loaded;
}
