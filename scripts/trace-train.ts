/**
 * Where the page's main thread spends a training run: trains 6 IC-VCO steps of the default model in the
 * Fine-tune panel (the settings of tests/app/train.test.ts) under Chrome's tracing, then prints the main
 * thread's tasks over 30 ms (wall-clock / CPU ms) and what runs inside the two longest.
 *
 *   npx tsx scripts/trace-train.ts [wasm|webgpu]
 */
import { launchChromium, startApp } from '../tests/browser.js';

const backend = process.argv[2] === 'webgpu' ? '' : '?backend=wasm';
const { server, url } = await startApp();
const browser = await launchChromium();
try {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  await page.goto(`${url}${backend}#/train`, { timeout: 300_000 });
  await page.waitForSelector('[data-testid="model-status"][data-loaded="true"]', { timeout: 300_000 });
  await page.getByLabel('Number of pairs').fill('16');
  await page.getByRole('button', { name: 'Generate pairs' }).click();
  await page.waitForSelector('[data-testid="data-summary"]', { timeout: 60_000 });
  await page.getByLabel('Steps', { exact: true }).fill('6');
  await page.getByLabel('Batch (samples)').fill('1');
  await page.getByLabel('Top-k layers (0: all)').fill('1');
  await page.getByLabel('Checkpoint every (steps)').fill('3');
  await page.getByLabel('Learning rate').fill('0.005');
  await page.getByLabel('Objective').selectOption('icvco');
  await browser.startTracing(page, { categories: ['toplevel', 'devtools.timeline', 'disabled-by-default-devtools.timeline'] });
  await page.getByRole('button', { name: 'Start training' }).click();
  await page.waitForFunction(
    () => ['done', 'failed'].includes(document.querySelector('[data-testid="run-status"]')?.getAttribute('data-status') ?? ''),
    null,
    { timeout: 1_200_000 },
  );
  type Ev = {
    ph: string;
    name: string;
    pid: number;
    tid: number;
    ts: number;
    dur?: number;
    tdur?: number;
    args?: { name?: string; data?: unknown };
  };
  const ev = (JSON.parse((await browser.stopTracing()).toString()) as { traceEvents: Ev[] }).traceEvents;
  const main = new Set(
    ev
      .filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === 'CrRendererMain')
      .map((e) => `${e.pid}:${e.tid}`),
  );
  const onMain = (e: Ev) => e.ph === 'X' && main.has(`${e.pid}:${e.tid}`);
  const tasks = ev.filter((e) => onMain(e) && e.name === 'RunTask').sort((a, b) => b.dur! - a.dur!);
  const ms = (us = 0) => (us / 1000).toFixed(1);
  console.log(`main-thread tasks over 30 ms while training on ${backend ? 'wasm' : 'WebGPU'} (wall-clock / CPU ms):`);
  for (const t of tasks.filter((t) => t.dur! > 30_000)) console.log(`  ${ms(t.dur)} / ${ms(t.tdur)}`);
  console.log(`most CPU one task used: ${ms(Math.max(...tasks.map((t) => t.tdur ?? 0)))} ms`);
  for (const top of tasks.slice(0, 2)) {
    console.log(`inside the ${ms(top.dur)} ms task (offset, event, wall / CPU ms):`);
    for (const e of ev.filter(
      (e) => onMain(e) && e !== top && e.ts >= top.ts && e.ts + (e.dur ?? 0) <= top.ts + top.dur! && (e.dur ?? 0) > 3000,
    ))
      console.log(`  +${ms(e.ts - top.ts)} ${e.name} ${ms(e.dur)} / ${ms(e.tdur)}`);
  }
} finally {
  await browser.close();
  await server.close();
}
