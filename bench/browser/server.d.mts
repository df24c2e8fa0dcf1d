// Types of server.mjs (the browser bench's Node side), for the tests.
import type { Browser, Page } from 'playwright-core';
import type { RunningServer } from '../../examples/browser/serve.mjs';

export type PeerStatus = { available: true; versions: Record<string, string> } | { available: false; reason: string };

export interface BrowserEntry {
  id: string; label: string; status: 'ok' | 'skipped' | 'unsupported' | 'error'; reason?: string; notes?: string[];
  medianMs?: number; minMs?: number; maxMs?: number; samples?: number; ratioToFloor?: number | null; gbs?: number;
  check?: { err: number; correct: boolean; checked: string[] } | null;
}
export interface BrowserCase {
  op: 'inference' | 'training' | 'backward'; id: string; group: string; name: string; dims: number[];
  layout: 'NCHW' | 'NHWC'; shape: number[]; size: number; C: number; contenders: BrowserEntry[];
  speedup: Record<string, Record<string, number>>;
}
export interface BrowserReport {
  meta: {
    name: 'browser'; mode: 'test' | 'quick' | 'full'; date: string; userAgent: string; wrongAbove: number; wallSeconds: number;
    engine: { build: string }; peers: PeerStatus;
    contenders: { id: string; label: string; status: 'ran' | 'skipped'; reason?: string; version?: string }[];
  };
  cases: BrowserCase[];
  summary: { op: string; layout: string; cases: number; ratio: Record<string, { geomean: number; n: number }>; speedup: Record<string, { geomean: number; n: number }> }[];
}
export interface BenchServer extends RunningServer { pageUrl: string; peers: PeerStatus }

export const PAGE_PATH: string;
export const CHROMIUM_PATH: string;
export function preparePeers(outDir: string): Promise<PeerStatus>;
export function startBenchServer(options?: { outDir?: string; mounts?: Record<string, string>; port?: number; quiet?: boolean }): Promise<BenchServer>;
export function runHeadless(options: {
  pageUrl: string; mode?: 'test' | 'quick' | 'full'; browser?: Browser | null; viewport?: { width: number; height: number };
  timeoutMs?: number; onProgress?: (text: string) => void;
}): Promise<{ done: boolean; error: string | null; report: BrowserReport; scrollWidth: number; json: string; problems: string[]; page: Page }>;
export function writeJson(file: string, report: unknown): void;
