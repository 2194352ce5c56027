/**
 * `vco-lab bench page-train`: LoRA training in the page's worker, measured in headless Chromium.
 *  - A training step on the default model in the page against the same step through the Node engine on the
 *    same EP (WebGPU: onnxruntime-web's JSEP in the page, onnxruntime-node's WebGPU EP in Node, both on
 *    whatever adapter the machine has; wasm: onnxruntime-web's wasm EP in the page and in Node): one run,
 *    the median of the warm steps (the first compiles the sessions).
 *  - GPU buffer memory of a SmolVLM-256M-shaped int4 base with LoRA r=16 on every linear of the language
 *    model, training IC-VCO in the page: every buffer of ORT's WebGPU device, counted where it is created
 *    (GpuMemoryMeter), after the step and at its peak; the weight store's share apart.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { Trainer } from '../engine/trainer.js';
import { createNodeRuntime } from '../runtime/node.js';
import type { EP } from '../runtime/runtime.js';
import type { RunConfig, StepReport } from '../worker/training.js';
import { runSamples, trainConfig } from '../worker/training.js';
import { decodePng } from '../data/png.js';
import { loadByUrl } from './bench-page.js';
import {
  type MainThreadTasks,
  launchChromium,
  longestTask,
  serveFolder,
  startApp,
  startMainThreadTrace,
  watchLongTasks,
} from './chromium.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from './model-dir.js';
import { writeRandomSmolvlm256 } from './random-model-dir.js';

export interface StepComparison {
  ep: 'webgpu' | 'wasm';
  /** what the page ran on (the adapter's name, or the wasm threads) */
  page_backend: string;
  steps: number;
  page_step_s: number;
  node_step_s: number;
  page_over_node: number;
  /** the longest main-thread task of the page while it trained, wall-clock (0: none over 50 ms) */
  longest_task_ms: number;
  /** the most CPU time one main-thread task took while it trained (Chrome's trace) */
  longest_task_cpu_ms: number;
}

export interface TrainMemory {
  model: string;
  lora: string;
  step_s: number;
  weight_bytes: number;
  gpu_buffer_bytes: number;
  gpu_peak_bytes: number;
}

export interface PageTrainBench {
  suite: 'page-train';
  machine: string;
  default_model: StepComparison[];
  smolvlm256_int4?: TrainMemory;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface PanelSettings {
  pairs: number;
  steps: number;
  batch: number;
  topK: number;
  rank?: number;
  alpha?: number;
}

/** set the Fine-tune panel's fields by their labels, generate the ShapesWorld pairs, start, and wait for the end */
export async function trainInPage(
  page: Page,
  s: PanelSettings,
  timeout = 3_600_000,
  /** called just before Start is clicked (the run's window begins there) */
  atStart?: () => Promise<void>,
): Promise<{ config: RunConfig; logs: StepReport[] }> {
  if (!page.url().includes('#/train')) await page.evaluate(() => (location.hash = '#/train'));
  await page.getByLabel('Number of pairs').fill(String(s.pairs));
  await page.getByRole('button', { name: 'Generate pairs' }).click();
  await page.waitForSelector('[data-testid="data-summary"]', { timeout: 120_000 });
  await page.getByLabel('Steps', { exact: true }).fill(String(s.steps));
  await page.getByLabel('Batch (samples)').fill(String(s.batch));
  await page.getByLabel('Top-k layers (0: all)').fill(String(s.topK));
  if (s.rank) await page.getByLabel('LoRA rank r').fill(String(s.rank));
  if (s.alpha) await page.getByLabel('LoRA α').fill(String(s.alpha));
  await page.getByLabel('Objective').selectOption('icvco');
  // the responsiveness figure covers the run itself (from Start on), not the data preview before it
  await page.evaluate(() => performance.mark('vco-lab:train-start'));
  await atStart?.();
  await page.getByRole('button', { name: 'Start training' }).click();
  await page.waitForFunction(
    () => {
      const st = document.querySelector('[data-testid="run-status"]')?.getAttribute('data-status');
      const err = document.querySelector('[data-testid="run-error"]')?.textContent;
      if (err) throw new Error(err);
      return st === 'done' || st === 'failed';
    },
    null,
    { timeout, polling: 1000 },
  );
  const run = await page.evaluate(() => {
    const app = (
      window as unknown as { vcoLab: { app: { run: { status: string; message?: string; config: unknown }; logs: unknown[] } } }
    ).vcoLab.app;
    return {
      status: app.run.status,
      message: app.run.message,
      config: app.run.config as RunConfig,
      logs: app.logs as StepReport[],
    };
  });
  if (run.status !== 'done') throw new Error(`the page's run ended ${run.status}: ${run.message}`);
  return run;
}

/** the same steps through the Node engine: seconds of each step */
async function nodeSteps(config: RunConfig, ep: EP, wasmThreads?: number): Promise<number[]> {
  const rt = await createNodeRuntime(ep, { wasmThreads });
  const m = await loadModelDir(rt, DEFAULT_MODEL_DIR);
  try {
    const samples = await runSamples(
      m,
      {
        kind: 'shapesworld',
        options: { pairs: 16, seed: 1, priorShare: 0.25, negative: 'edited', types: ['existence', 'attribute', 'relation'] },
      },
      async (b, n) => decodePng(b, n),
    );
    const c = config.lora;
    await m.engine.setAdapter({ r: c.r, alpha: c.alpha, targets: c.targets, topK: c.topK }, config.seed);
    const t = new Trainer(m.engine, samples, trainConfig(config));
    const secs: number[] = [];
    for (let i = 0; i < config.steps; i++) {
      const t0 = performance.now();
      await t.step();
      secs.push((performance.now() - t0) / 1000);
    }
    return secs;
  } finally {
    await m.engine.release();
  }
}

async function compare(
  browser: Browser,
  url: string,
  ep: 'webgpu' | 'wasm',
  steps: number,
  log?: (s: string) => void,
): Promise<StepComparison> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  try {
    const page = await context.newPage();
    await watchLongTasks(page);
    await page.goto(`${url}${ep === 'wasm' ? '?backend=wasm' : ''}#/train`);
    await page.waitForSelector('[data-testid="model-status"][data-loaded="true"]', { timeout: 300_000 });
    const backend = (await page.getByTestId('backend-status').textContent())?.trim() ?? '';
    if ((await page.getByTestId('backend-status').getAttribute('data-backend')) !== ep)
      throw new Error(`the page runs ${backend}, not ${ep}`);
    log?.(`default model, ${steps} steps of IC-VCO in the page on ${ep}`);
    // the trace covers the run from Start on, as the long-task figure (not the data preview before it)
    let stop: (() => Promise<MainThreadTasks>) | undefined;
    const { config, logs } = await trainInPage(page, { pairs: 16, steps, batch: 1, topK: 1 }, undefined, async () => {
      stop = await startMainThreadTrace(browser, page);
    });
    const tasks = await stop!();
    const longest = await longestTask(page, 'vco-lab:train-start');
    log?.(`  the same in Node on ${ep}`);
    // wasm: as many threads as the page's EP has
    const threads = Number(backend.match(/(\d+) wasm thread/)?.[1]) || undefined;
    const node = await nodeSteps(config, ep, ep === 'wasm' ? threads : undefined);
    const pageS = median(logs.slice(1).map((l) => l.seconds)),
      nodeS = median(node.slice(1));
    return {
      ep,
      page_backend: backend,
      steps,
      page_step_s: pageS,
      node_step_s: nodeS,
      page_over_node: pageS / nodeS,
      longest_task_ms: longest,
      longest_task_cpu_ms: tasks.longestCpuMs,
    };
  } finally {
    await context.close();
  }
}

/** one IC-VCO step of a SmolVLM-256M-shaped int4 model with LoRA r=16 in the page (WebGPU), its GPU memory */
export async function memory256(
  browser: Browser,
  url: string,
  log?: (s: string) => void,
  depth: { text?: number; vision?: number } = {},
): Promise<TrainMemory> {
  const dir = mkdtempSync(join(tmpdir(), 'vco-smolvlm256-'));
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  try {
    writeRandomSmolvlm256(dir, 1, depth);
    const server = await serveFolder(dir);
    try {
      const page = await context.newPage();
      await page.goto(`${url}#/models`);
      log?.('SmolVLM-256M-shaped: loading it by URL with int4 frozen weights');
      await loadByUrl(page, server.url, true);
      log?.('  one IC-VCO step, LoRA r=16 on every linear of the language model (slow on a CPU Vulkan)');
      const { logs } = await trainInPage(page, { pairs: 2, steps: 1, batch: 1, topK: 0, rank: 16, alpha: 32 }, 7_200_000);
      const l = logs[0];
      return {
        model: `SmolVLM-256M-shaped${depth.text || depth.vision ? ` at ${depth.text ?? 30} LM / ${depth.vision ?? 12} vision layers` : ''}, int4 frozen linears`,
        lora: `r 16, alpha 32, q/k/v/o/gate/up/down of all ${depth.text ?? 30} LM layers`,
        step_s: l.seconds,
        weight_bytes: l.weight_memory,
        gpu_buffer_bytes: l.gpu_buffer_bytes ?? NaN,
        gpu_peak_bytes: l.gpu_peak_bytes ?? NaN,
      };
    } finally {
      await server.close();
    }
  } finally {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchPageTrain(
  o: { steps?: number; memory?: boolean; log?: (s: string) => void } = {},
): Promise<PageTrainBench> {
  const { server, url } = await startApp();
  const browser = await launchChromium();
  try {
    const steps = o.steps ?? 4;
    const out: PageTrainBench = {
      suite: 'page-train',
      machine: `${cpus().length} x ${cpus()[0]?.model ?? 'CPU'}`,
      default_model: [],
    };
    for (const ep of ['webgpu', 'wasm'] as const) {
      out.default_model.push(await compare(browser, url, ep, steps, o.log));
      // each figure as soon as it is measured: the 256M-shaped part after it takes long on a CPU Vulkan
      o.log?.(formatPageTrainBench(out).trim().split('\n').pop()!);
    }
    if (o.memory !== false) out.smolvlm256_int4 = await memory256(browser, url, o.log);
    return out;
  } finally {
    await browser.close();
    await server.close();
  }
}

export function formatPageTrainBench(r: PageTrainBench): string {
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const lines = [`bench page-train on ${r.machine}`];
  for (const c of r.default_model) {
    lines.push(
      `default model, one IC-VCO step (batch 1, LoRA r 8 on the top layer), median of ${c.steps - 1} warm steps on ${c.ep}: ` +
        `page ${c.page_step_s.toFixed(2)} s, Node ${c.node_step_s.toFixed(2)} s: page/Node ${c.page_over_node.toFixed(2)} (${c.page_backend}); ` +
        `longest main-thread task ${c.longest_task_ms.toFixed(0)} ms wall-clock, ${c.longest_task_cpu_ms.toFixed(0)} ms of CPU`,
    );
  }
  const m = r.smolvlm256_int4;
  if (m) {
    lines.push(
      `${m.model}, LoRA ${m.lora}: one step ${m.step_s.toFixed(0)} s; GPU buffers after the step ${mb(m.gpu_buffer_bytes)}, ` +
        `peak ${mb(m.gpu_peak_bytes)} (weights ${mb(m.weight_bytes)})`,
    );
  }
  return `${lines.join('\n')}\n`;
}
