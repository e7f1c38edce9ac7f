// A real browser for tests and screenshots: Debian's Chromium driven by playwright-core (which
// carries no browser of its own; `.ci/run` installs the `chromium` package).
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** `BACKFILL_CHROMIUM`, else `chromium` (or `chromium-browser`) found on PATH the way `.ci/run` looks for it. */
function findChromium(): string {
  if (process.env.BACKFILL_CHROMIUM) return process.env.BACKFILL_CHROMIUM;
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean))
    for (const name of ['chromium', 'chromium-browser']) if (existsSync(join(dir, name))) return join(dir, name);
  return '/usr/bin/chromium';
}

export const CHROMIUM = findChromium();

/**
 * Why the browser tests are skipped here, or undefined when they run. Under the README's test
 * command (`npm test`) and under CI they always run: a missing Chromium fails them instead of
 * passing them unseen. A single file run by hand without Chromium skips them, saying why.
 */
export function browserMissing(): string | undefined {
  if (existsSync(CHROMIUM) || process.env.CI || process.env.npm_lifecycle_event === 'test') return undefined;
  return `no Chromium at ${CHROMIUM} (apt-get install chromium, or set BACKFILL_CHROMIUM)`;
}

export async function launchBrowser(): Promise<Browser> {
  // --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
}
