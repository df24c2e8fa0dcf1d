// Types for serve.mjs (used by the tests).
export declare const DEMO_PATH: string;
export declare const MIME_TYPES: Record<string, string>;
export interface ServerOptions {
  /** 0 (default) takes a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Directory to serve; default: the repository. */
  root?: string;
  /** URL prefix (e.g. '/dist/') -> directory served in its place. */
  mounts?: Record<string, string>;
  /** Serve .wasm as application/octet-stream (a misconfigured server). */
  wrongWasmMime?: boolean;
  /** Called once per request. */
  log?: (line: string) => void;
}
export interface RunningServer {
  /** Origin with a trailing slash, e.g. http://127.0.0.1:41234/ */
  url: string;
  port: number;
  close(): Promise<void>;
}
export declare function startServer(options?: ServerOptions): Promise<RunningServer>;
