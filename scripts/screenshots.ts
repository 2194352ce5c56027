/**
 * Screenshots of the playground for looking at what we build (and for the README): starts the dev server,
 * opens each view in headless Chromium (WebGPU on SwiftShader here) at 1400×900 and 390×844, waits for it to
 * settle, and writes PNGs.
 *
 *   npx tsx scripts/screenshots.ts [out-dir] [view ...]      views: inspect, models, explain, train (default: all)
 *
 * `train` is a sequence: the panel before a run (pairs generated), during it, and after it (evaluated), on wasm
 * (faster than SwiftShader's WebGPU), each at both sizes from the same page.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium, startApp } from '../tests/browser.js';

const out = process.argv[2] ?? '/tmp/screens';
const only = process.argv.slice(3);
mkdirSync(out, { recursive: true });

type Page = import('playwright-core').Page;
const SIZES = [
  [1400, 900, 'wide'],
  [390, 844, 'phone'],
] as const;

/** both sizes of the page as it is now */
async function snap(page: Page, name: string): Promise<void> {
  for (const [w, h, tag] of SIZES) {
    await page.setViewportSize({ width: w, height: h });
    await page.waitForTimeout(400);
    // charts are built and redrawn only near the viewport: pass over the whole page first
    await page.evaluate(async () => {
      for (let y = 0; y < document.body.scrollHeight; y += 300) {
        scrollTo(0, y);
        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 60)));
      }
      scrollTo(0, 0);
      await new Promise((r) => setTimeout(r, 200));
    });
    // what sticks out past the viewport's right edge (a phone layout must not scroll sideways)
    const over = await page.evaluate((width) => {
      const els = [...document.querySelectorAll('body *')].filter((e) => {
        const r = e.getBoundingClientRect();
        if (!(r.width > 0 && r.right > width + 1) || getComputedStyle(e).position === 'fixed') return false;
        // inside a box that scrolls sideways, it widens that box only
        for (let a = e.parentElement; a && a !== document.body; a = a.parentElement)
          if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return false;
        return true;
      });
      // the outermost offenders: their children stick out because they do
      const outer = els.filter((e) => !els.includes(e.parentElement!));
      return {
        scrollWidth: document.documentElement.scrollWidth,
        outer: outer
          .slice(0, 8)
          .map(
            (e) =>
              `${e.tagName.toLowerCase()}${e.className ? `.${String(e.className).split(' ')[0]}` : ''} right=${Math.round(e.getBoundingClientRect().right)}`,
          ),
      };
    }, w);
    if (over.scrollWidth > w)
      console.log(`${name}-${tag}: page ${over.scrollWidth} px wide in a ${w} px viewport: ${over.outer.join('; ')}`);
    const file = join(out, `${name}-${tag}.png`);
    await page.screenshot({ path: file, fullPage: true });
    if (tag === 'wide') await page.screenshot({ path: join(out, `${name}.png`) });
    console.log(file);
  }
  await page.setViewportSize({ width: 1400, height: 900 });
}

const status = (page: Page) => page.getByTestId('run-status').getAttribute('data-status');

async function trainSequence(page: Page): Promise<void> {
  await page.getByLabel('Number of pairs').fill('32');
  await page.getByRole('button', { name: 'Generate pairs' }).click();
  await page.waitForSelector('[data-testid="data-summary"]');
  await page.getByLabel('Steps', { exact: true }).fill('16');
  await page.getByLabel('Top-k layers (0: all)').fill('1');
  await page.getByLabel('Learning rate').fill('0.003');
  await snap(page, 'train-before');
  await page.getByRole('button', { name: 'Start training' }).click();
  await page.waitForFunction(
    () => Number(document.querySelector('[data-testid="run-status"]')?.getAttribute('data-step')) >= 6,
    null,
    {
      timeout: 600_000,
    },
  );
  await snap(page, 'train-during');
  await page.waitForFunction(
    () => document.querySelector('[data-testid="run-status"]')?.getAttribute('data-status') !== 'running',
    null,
    {
      timeout: 600_000,
    },
  );
  if ((await status(page)) !== 'done') throw new Error(`the run ended ${await status(page)}`);
  await page.getByLabel('Questions per category').fill('20');
  await page.getByRole('button', { name: 'Evaluate' }).click();
  await page.waitForSelector('[data-testid="bench-table"]', { timeout: 600_000 });
  await page.getByLabel('Adapter name').fill('icvco-16-steps');
  await page.getByRole('button', { name: "Keep the run's adapter" }).click();
  await page.waitForSelector('[data-testid="adapter-row"]');
  await snap(page, 'train-after');
}

const SEQUENCES: Record<string, { path: string; ready: string; run: (page: Page) => Promise<void> }> = {
  train: { path: '?backend=wasm#/train', ready: '[data-testid="model-status"][data-loaded="true"]', run: trainSequence },
};

const VIEWS: Record<string, { hash: string; ready: string; act?: (page: Page) => Promise<void> }> = {
  inspect: { hash: '#/inspect?sw=3&order=m-first&objective=icvco', ready: '[data-testid="score-table"]' },
  models: { hash: '#/models', ready: '[data-testid="current-model"]' },
  explain: { hash: '#/explain?step=3&preset=wrong', ready: '[data-testid="residual-step3"]' },
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
  for (const [name, q] of Object.entries(SEQUENCES)) {
    if (only.length && !only.includes(name)) continue;
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('pageerror', (e) => console.error(`${name}: page error: ${e.message}`));
    await page.goto(`${url}${q.path}`);
    await page.waitForSelector(q.ready, { timeout: 180_000 });
    await q.run(page);
    await page.close();
  }
} finally {
  await browser.close();
  await server.close();
}
