/**
 * Screenshots of the playground for looking at what we build (and for the README): starts the dev server,
 * opens each view in headless Chromium (WebGPU on SwiftShader here) at 1400×900 and 390×844, waits for it to
 * settle, and writes PNGs.
 *
 *   npx tsx scripts/screenshots.ts [out-dir] [view ...]      views: inspect, models (default: all)
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium, startApp } from '../tests/browser.js';

const out = process.argv[2] ?? '/tmp/screens';
const only = process.argv.slice(3);
mkdirSync(out, { recursive: true });

const VIEWS: Record<string, { hash: string; ready: string; act?: (page: import('playwright-core').Page) => Promise<void> }> = {
  inspect: { hash: '#/inspect?sw=3&order=m-first&objective=icvco', ready: '[data-testid="score-table"]' },
  models: { hash: '#/models', ready: '[data-testid="current-model"]' },
};

const { server, url } = await startApp();
const browser = await launchChromium();
try {
  for (const [name, v] of Object.entries(VIEWS)) {
    if (only.length && !only.includes(name)) continue;
    for (const [w, h, tag] of [
      [1400, 900, 'wide'],
      [390, 844, 'phone'],
    ] as const) {
      const page = await browser.newPage({ viewport: { width: w, height: h } });
      page.on('pageerror', (e) => console.error(`${name}/${tag}: page error: ${e.message}`));
      await page.goto(`${url}${v.hash}`);
      await page.waitForSelector(v.ready, { timeout: 180_000 });
      await v.act?.(page);
      await page.waitForTimeout(300);
      const file = join(out, `${name}-${tag}.png`);
      await page.screenshot({ path: file, fullPage: true });
      // the first screenful, as a reader of the README sees it
      if (tag === 'wide') await page.screenshot({ path: join(out, `${name}.png`) });
      console.log(file);
      await page.close();
    }
  }
} finally {
  await browser.close();
  await server.close();
}
