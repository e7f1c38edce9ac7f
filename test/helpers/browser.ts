// A real browser for tests and screenshots: Debian's Chromium driven by playwright-core (which
// carries no browser of its own; `.ci/run` installs the `chromium` package).
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.BACKFILL_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Why the browser tests are skipped here, or undefined when they run. Under CI they always run:
 * `.ci/run` installs Chromium, so a missing one fails them instead of passing them unseen.
 */
export function browserMissing(): string | undefined {
  if (existsSync(CHROMIUM) || process.env.CI) return undefined;
  return `no Chromium at ${CHROMIUM} (apt-get install chromium, or set BACKFILL_CHROMIUM)`;
}

export async function launchBrowser(): Promise<Browser> {
  // --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
}
