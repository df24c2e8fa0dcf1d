// A tiny static file server for the browser demo and the browser tests: node:http only, binds
// 127.0.0.1, serves files under one root (the repository by default, so /dist/index.js and
// /build/*.wasm resolve and the demo's `../../dist/index.js` import works), GET and HEAD only,
// no dotfiles, no directory listings, no caching.
//
//   node examples/browser/serve.mjs [--port 8080] [--root DIR] [--wrong-wasm-mime] [--not-isolated] [--exit-after SECONDS]
//
// Prints the demo's URL. Port 0 (the default) takes a free port. --wrong-wasm-mime serves .wasm
// as application/octet-stream, like a misconfigured server, to exercise the library's fallback
// from WebAssembly.compileStreaming to compiling the fetched bytes. The demo is served
// cross-origin isolated (Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy:
// require-corp: what a page needs for SharedArrayBuffer, hence threads); --not-isolated leaves
// the headers out (the engine then runs on one thread and says why).
import http from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEMO_PATH = '/examples/browser/';

export const MIME_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
};
const WRONG_WASM_MIME = 'application/octet-stream';

/**
 * Starts the server. Resolves to { url, port, close }: `url` is the origin with a trailing slash,
 * `close()` stops listening and drops open connections.
 *
 * @param {object} [options]
 * @param {number} [options.port=0]  0 takes a free port
 * @param {string} [options.host='127.0.0.1']
 * @param {string} [options.root]  directory to serve (default: the repository)
 * @param {Record<string, string>} [options.mounts]  URL prefix ('/dist/') -> directory served in its place
 * @param {boolean} [options.wrongWasmMime=false]  serve .wasm as application/octet-stream
 * @param {boolean} [options.isolated=false]  send COOP/COEP, making pages crossOriginIsolated (threads)
 * @param {(line: string) => void} [options.log]  called once per request
 * @returns {Promise<{ url: string, port: number, close: () => Promise<void> }>}
 */
export async function startServer({ port = 0, host = '127.0.0.1', root = REPO_ROOT, mounts = {}, wrongWasmMime = false, isolated = false, log } = {}) {
  const isolation = isolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
  const rootDir = path.resolve(root);
  const mountList = Object.entries(mounts).map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : `${prefix}/`, path.resolve(dir)]);

  /** URL path -> file path under its directory, or null when it would escape it. */
  function locate(urlPath) {
    for (const [prefix, dir] of mountList) {
      if (urlPath.startsWith(prefix)) return inside(dir, urlPath.slice(prefix.length));
    }
    return inside(rootDir, urlPath);
  }

  const server = http.createServer(async (req, res) => {
    const send = (status, body, headers = {}) => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
      log?.(`${status} ${req.method} ${req.url}`);
    };
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n', { allow: 'GET, HEAD' });
      let urlPath;
      try {
        urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
      } catch {
        return send(400, 'bad request\n');
      }
      let file = locate(urlPath);
      // Nothing outside the root, no dotfiles (.git, .npmrc, ...).
      if (file === null || urlPath.includes('\0') || urlPath.split('/').some((part) => part.startsWith('.'))) {
        return send(404, `not found: ${urlPath}\n`);
      }
      let info = await stat(file).catch(() => null);
      if (info?.isDirectory()) {
        if (!urlPath.endsWith('/')) return send(301, 'moved\n', { location: `${urlPath}/` });
        file = path.join(file, 'index.html');
        info = await stat(file).catch(() => null);
      }
      if (!info?.isFile()) {
        // The repository has no index.html: its root leads to the demo.
        if (urlPath === '/' && (await stat(path.join(rootDir, DEMO_PATH)).catch(() => null))?.isDirectory()) {
          return send(302, `see ${DEMO_PATH}\n`, { location: DEMO_PATH });
        }
        return send(404, `not found: ${urlPath}\n`);
      }
      const ext = path.extname(file).toLowerCase();
      const type = ext === '.wasm' && wrongWasmMime ? WRONG_WASM_MIME : MIME_TYPES[ext] ?? 'application/octet-stream';
      res.writeHead(200, { 'content-type': type, 'content-length': info.size, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...isolation });
      log?.(`200 ${req.method} ${req.url} (${type})`);
      if (req.method === 'HEAD') return res.end();
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    } catch (error) {
      if (!res.headersSent) send(500, `internal error: ${error?.message ?? error}\n`);
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 2000;
  server.requestTimeout = 30_000;

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port: bound } = server.address();
  const url = `http://${host}:${bound}/`;
  let closing = null;
  const close = () => {
    closing ??= new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  return { url, port: bound, close };
}

/** `rel` under `dir`, or null when it would leave it. */
function inside(dir, rel) {
  const file = path.resolve(dir, `.${path.posix.normalize(`/${rel}`)}`);
  return file === dir || file.startsWith(dir + path.sep) ? file : null;
}

function parseArgs(argv) {
  const options = { port: Number(process.env.PORT ?? 0), wrongWasmMime: false, isolated: true, exitAfter: 0, root: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--port') options.port = Number(value());
    else if (arg === '--root') options.root = value();
    else if (arg === '--wrong-wasm-mime') options.wrongWasmMime = true;
    else if (arg === '--not-isolated') options.isolated = false;
    else if (arg === '--exit-after') options.exitAfter = Number(value());
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: node examples/browser/serve.mjs [--port N] [--root DIR] [--wrong-wasm-mime] [--not-isolated] [--exit-after SECONDS]');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (try --help)`);
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) throw new Error(`bad port ${options.port}`);
  if (!(options.exitAfter >= 0)) throw new Error(`bad --exit-after ${options.exitAfter}`);
  return options;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const { url, close } = await startServer({ port: options.port, root: options.root, wrongWasmMime: options.wrongWasmMime, isolated: options.isolated });
  console.log(`wasm-batchnorm browser demo: ${url}${DEMO_PATH.slice(1)}`);
  console.log(`serving ${path.resolve(options.root ?? REPO_ROOT)} on 127.0.0.1 only${options.wrongWasmMime ? ', .wasm as application/octet-stream' : ''}`
    + `${options.isolated ? ', cross-origin isolated (threads)' : ', not cross-origin isolated (one thread)'}; Ctrl+C stops`);
  const stop = async () => {
    await close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (options.exitAfter > 0) setTimeout(stop, options.exitAfter * 1000).unref();
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((error) => {
    console.error(error.message ?? error);
    process.exit(1);
  });
}
