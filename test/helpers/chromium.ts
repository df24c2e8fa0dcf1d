// The Debian `chromium`, headless, through playwright-core: shared by test/browser.test.ts and
// test/package.test.ts. Outside CI a missing chromium skips those tests with a loud reason; under
// CI=true it is an error (.ci/run installs it with apt-get).
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export const IN_CI = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';
export const HAVE_CHROMIUM = existsSync(CHROMIUM_PATH);
export const SKIP_REASON = `chromium not found at ${CHROMIUM_PATH}: real-browser tests SKIPPED `
  + '(install it with `apt-get install -y chromium`, or set CHROMIUM_PATH; under CI=true they fail instead)';

/** Throws under CI when chromium is missing, warns loudly otherwise; true when tests can run. */
export function requireChromium(): boolean {
  if (HAVE_CHROMIUM) return true;
  if (IN_CI) {
    throw new Error(`CI=true and chromium is not at ${CHROMIUM_PATH}: the real-browser tests must run in CI `
      + '(.ci/run installs it with `apt-get install -y chromium`)');
  }
  const bar = '!'.repeat(100);
  console.warn(`\n${bar}\n!! ${SKIP_REASON}\n${bar}\n`);
  return false;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_FLAGS, timeout: 30_000 });
}

/** Collects uncaught page errors and console errors, for asserting a clean page. */
export function watchPage(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console.error: ${message.text()} (${message.location().url})`);
  });
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()} ${request.failure()?.errorText ?? ''}`));
  return problems;
}
