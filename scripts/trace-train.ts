/**
 * Where the page's main thread spends a training run: trains 6 IC-VCO steps of the default model in the
 * Fine-tune panel (bench page-train's settings, `trainInPage`) under Chrome's tracing from Start on, then
 * prints the main thread's tasks over 30 ms (wall-clock / CPU ms) and what runs inside the two longest.
 *
 *   npx tsx scripts/trace-train.ts [wasm|webgpu]
 */
import { trainInPage } from '../src/node/bench-page-train.js';
import { mainThreadEvents } from '../src/node/chromium.js';
import { launchChromium, startApp } from '../tests/browser.js';

const backend = process.argv[2] === 'webgpu' ? '' : '?backend=wasm';
const { server, url } = await startApp();
const browser = await launchChromium();
try {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  await page.goto(`${url}${backend}#/train`, { timeout: 300_000 });
  await page.waitForSelector('[data-testid="model-status"][data-loaded="true"]', { timeout: 300_000 });
  await trainInPage(page, { pairs: 16, steps: 6, batch: 1, topK: 1 }, undefined, () =>
    browser.startTracing(page, { categories: ['toplevel', 'devtools.timeline', 'disabled-by-default-devtools.timeline'] }),
  );
  const ev = mainThreadEvents(await browser.stopTracing());
  const tasks = ev.filter((e) => e.name === 'RunTask').sort((a, b) => b.dur! - a.dur!);
  const ms = (us = 0) => (us / 1000).toFixed(1);
  console.log(`main-thread tasks over 30 ms while training on ${backend ? 'wasm' : 'WebGPU'} (wall-clock / CPU ms):`);
  for (const t of tasks.filter((t) => t.dur! > 30_000)) console.log(`  ${ms(t.dur)} / ${ms(t.tdur)}`);
  console.log(`most CPU one task used: ${ms(Math.max(...tasks.map((t) => t.tdur ?? 0)))} ms`);
  for (const top of tasks.slice(0, 2)) {
    console.log(`inside the ${ms(top.dur)} ms task (offset, event, wall / CPU ms):`);
    for (const e of ev.filter(
      (e) => e !== top && e.ts >= top.ts && e.ts + (e.dur ?? 0) <= top.ts + top.dur! && (e.dur ?? 0) > 3000,
    ))
      console.log(`  +${ms(e.ts - top.ts)} ${e.name} ${ms(e.dur)} / ${ms(e.tdur)}`);
  }
} finally {
  await browser.close();
  await server.close();
}
