// Node module-resolution hook (node:module register) for loading tfjs-core's gradient
// registrations. tfjs-core's Node entry (dist/tf-core.node.js) ships no gradients (the
// @tensorflow/tfjs union package registers them), and its ESM files (dist/**.js), which do have
// them, use extension-less relative imports that Node's ESM loader rejects. This hook retries
// such imports from inside @tensorflow/tfjs-core/dist/ with ".js" appended. The ESM copy
// registers into tfjs's global registries (globalThis._tfengine / gradRegistry), so the
// gradients serve the tf.* ops of the Node entry too.
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    const parent = context.parentURL ?? '';
    const retry = ['ERR_MODULE_NOT_FOUND', 'ERR_UNSUPPORTED_DIR_IMPORT'].includes(error?.code)
      && specifier.startsWith('.') && !specifier.endsWith('.js') && parent.includes('/@tensorflow/tfjs-core/dist/');
    if (!retry) throw error;
    try {
      return await next(`${specifier}.js`, context); // "./gradients" is both gradients.js and a folder
    } catch {
      return next(`${specifier}/index.js`, context);
    }
  }
}
