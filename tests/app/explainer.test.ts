/**
 * The partition-function explainer in headless Chromium: a slider moved from the keyboard changes the residual
 * shown to what src/loss/partition.ts gives for the state in the URL (and to Eq. 8 summed by hand), the URL
 * alone restores the view, the hard-image preset trains image-swap DPO to the wrong side and IC-VCO to the
 * right one, step 5 splits an inspector report's margin gaps as the closed form says, and no step overflows a
 * phone's width. The page needs no model for any of it.
 */
import type { Browser, Page } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STEPS, TRAIN_STEPS, readExplainerUrl } from '../../src/app/explain/url.js';
import { partition } from '../../src/loss/index.js';
import { chromiumAvailable, launchChromium, longestTask, startApp, watchLongTasks } from '../browser.js';

const value = async (page: Page, testid: string) => Number(await page.getByTestId(testid).getAttribute('data-value'));

/**
 * The page loads the default model at start (the explainer does not use it); on a two-core machine that load
 * competes for the CPU, so timings are taken once it is done, to measure the explainer's own work.
 */
const modelLoaded = (page: Page) =>
  page.waitForFunction(() => !!(window as unknown as { vcoLab: { app: { model: unknown } } }).vcoLab.app.model, null, {
    timeout: 120_000,
  });

/** β log Z(m,x)/Z(m′,x) summed by hand from the URL's settings (Eq. 8), not through partition.ts */
function residualByHand(s: partition.ToySettings): number {
  const z = (w: number[], r: number[]) => {
    const tot = w.reduce((a, x) => a + x, 0);
    return w.reduce((a, x, i) => a + (x / tot) * Math.exp(r[i] / s.beta), 0);
  };
  return s.beta * Math.log(z(s.refWeights.m, s.rewards.m) / z(s.refWeights.mPrime, s.rewards.mPrime));
}

describe.runIf(chromiumAvailable())('the partition-function explainer in headless Chromium', () => {
  let browser: Browser, server: ViteDevServer, url: string;

  beforeAll(async () => {
    ({ server, url } = await startApp());
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  async function open(hash: string, viewport = { width: 1400, height: 900 }): Promise<Page & { errors: string[] }> {
    const page = (await browser.newPage({ viewport })) as Page & { errors: string[] };
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    await watchLongTasks(page);
    await page.goto(`${url}${hash}`);
    await page.getByTestId('step-title').waitFor({ timeout: 60_000 });
    return page;
  }

  it('a slider moved from the keyboard changes the residual to partition.ts’s value for the new state; the URL restores the view', async () => {
    const page = await open('#/explain?step=2&preset=prior');
    const before = partition.directionTheory(partition.toyWorld(partition.toyPreset('prior').settings), 'visdpo')[0];
    expect(await value(page, 'residual')).toBeCloseTo(before.residual, 12);

    await modelLoaded(page);
    await page.evaluate(() => performance.mark('explain:sliders'));
    const reward = page.getByLabel('r(m, yellow)', { exact: true });
    await reward.focus();
    for (let i = 0; i < 3; i++) await reward.press('ArrowRight');
    const weight = page.getByLabel('π_ref(red | m′)', { exact: true });
    await weight.focus();
    for (let i = 0; i < 20; i++) await weight.press('ArrowLeft');
    // the URL follows a little after the last key (its writes are debounced)
    await page.waitForFunction(() => location.hash.includes('rm=1.15,') && location.hash.includes('wmp=0.1,0.65,'));
    // the JS cost of one slider move: Svelte's update of everything on the step, flushed in a microtask
    const moveMs = await page.evaluate(async () => {
      const el = document.getElementById('explain-r-mPrime-2') as HTMLInputElement;
      const times: number[] = [];
      for (const v of ['-0.95', '-1']) {
        const t0 = performance.now();
        el.value = v;
        el.dispatchEvent(new Event('input', { bubbles: true }));
        await Promise.resolve();
        await Promise.resolve();
        times.push(performance.now() - t0);
      }
      return Math.max(...times);
    });

    const state = readExplainerUrl(new URL(page.url()).hash);
    expect(state.step).toBe(2);
    expect(state.settings.rewards.m[0]).toBeCloseTo(1.15, 12);
    expect(state.settings.refWeights.mPrime[1]).toBeCloseTo(0.65, 12);
    const w = partition.toyWorld(state.settings);
    const after = partition.crossContextPair(w.m, w.mPrime, w.beta, 0);
    expect(Math.abs(after.residual - before.residual)).toBeGreaterThan(0.05);
    const shown = await value(page, 'residual');
    expect(shown).toBeCloseTo(after.residual, 12);
    expect(shown).toBeCloseTo(residualByHand(state.settings), 10);
    expect(await value(page, 'residual-step2')).toBe(shown);
    const longest = await longestTask(page, 'explain:sliders');
    console.log(
      `explainer: slider update ${moveMs.toFixed(1)} ms of script; longest main-thread task while sliding ${longest.toFixed(0)} ms`,
    );
    expect(longest).toBeLessThan(50);

    // the link alone: same step, same sliders, same residual; Next moves the step in the URL too
    const link = page.url();
    const again = await open(new URL(link).hash);
    expect(await again.getByTestId('step-title').getAttribute('data-step')).toBe('2');
    expect(await again.getByLabel('r(m, yellow)', { exact: true }).inputValue()).toBe('1.15');
    expect(await again.getByLabel('π_ref(red | m′)', { exact: true }).inputValue()).toBe('0.65');
    expect(await value(again, 'residual')).toBe(shown);
    await again.getByRole('button', { name: 'Next →' }).click();
    await again.waitForFunction(() => location.hash.includes('step=3'));
    await again.reload();
    await again.getByTestId('step-title').waitFor();
    expect(await again.getByTestId('step-title').getAttribute('data-step')).toBe('3');
    expect(await value(again, 'residual-step3')).toBe(shown);
    expect(await value(again, 'residual-shared')).toBe(0);
    expect([...page.errors, ...again.errors]).toEqual([]);
    await page.close();
    await again.close();
  });

  it('the hard-image preset: image-swap DPO trains to the wrong side, IC-VCO to the right one, each at its fixed point', async () => {
    const page = await open('#/explain?step=4&preset=wrong');
    await modelLoaded(page);
    await page.evaluate(() => performance.mark('explain:train'));
    await page.getByRole('button', { name: 'Run to the end' }).click();
    await page.waitForSelector(`[data-testid="train-step"][data-value="${TRAIN_STEPS}"]`, { timeout: 60_000 });
    expect(await page.getByTestId('side-visdpo').getAttribute('data-side')).toBe('wrong');
    expect(await page.getByTestId('side-icvco').getAttribute('data-side')).toBe('right');
    expect(await page.getByTestId('side-visdpo-mprime').getAttribute('data-side')).toBe('right');
    // where they ended: the true margins of their pairs, from the preset's rewards
    const r = partition.toyPreset('wrong').settings.rewards;
    expect(Math.abs((await value(page, 'bh-visdpo-0')) - (r.m[0] - r.mPrime[0]))).toBeLessThan(1e-6);
    expect(Math.abs((await value(page, 'bh-icvco-0')) - (r.m[0] - r.m[1]))).toBeLessThan(1e-6);
    // the run is ~300 ms of compute (two trainers, 1500 steps) spread over frames of a few ms each; the bound
    // leaves room for a garbage collection on a busy two-core machine, and fails if the run ever blocks in one go
    const longest = await longestTask(page, 'explain:train');
    console.log(`explainer: longest main-thread task while training ${longest.toFixed(0)} ms`);
    expect(longest).toBeLessThan(100);
    // the progress is in the URL, and the link replays it
    await page.waitForFunction((t) => location.hash.includes(`t=${t}`), TRAIN_STEPS);
    const again = await open(new URL(page.url()).hash);
    await again.waitForSelector(`[data-testid="train-step"][data-value="${TRAIN_STEPS}"]`, { timeout: 60_000 });
    expect(await again.getByTestId('side-visdpo').getAttribute('data-side')).toBe('wrong');
    expect([...page.errors, ...again.errors]).toEqual([]);
    await page.close();
    await again.close();
  });

  it('your sample: the inspector’s report split into the partition-shaped part and the rest', async () => {
    const page = await open('#/explain?step=5');
    await page.getByTestId('sample-none').waitFor();
    // log-ratios (nats) of the eight scores, as a report carries them; β = 0.2
    const lr: Record<string, number> = {
      'm|y': 1.5,
      "m|y'": -0.5,
      "m'|y": -0.25,
      "m'|y'": 2,
      'M>m|y': 1,
      "M>m|y'": -2,
      "M>m'|y": -1,
      "M>m'|y'": 0.5,
    };
    await page.evaluate((lr) => {
      const sequences = Object.fromEntries(Object.entries(lr).map(([k, v]) => [k, { log_ratio: { full: v, masked: v } }]));
      (window as unknown as { vcoLab: { app: { report: unknown } } }).vcoLab.app.report = {
        model: { name: 'test-model', adapter: 'test-adapter' },
        input: { question: 'What colour is the star?', chosen: 'yellow', rejected: 'red' },
        sequences,
        comparison: { icvco: { settings: { beta: 0.2 } } },
      };
    }, lr);
    await page.getByTestId('sample-partition').waitFor();
    // by hand: D_t = β(h_multi − h_swap); target m: h_swap = 1.5 + 0.25, h_multi = 1 + 2; target m′: 2 + 0.5, 0.5 + 1
    const dm = 0.2 * (3 - 1.75),
      dmp = 0.2 * (1.5 - 2.5);
    expect(await value(page, 'sample-partition')).toBeCloseTo((dm - dmp) / 2, 12);
    expect(await value(page, 'sample-unexplained')).toBeCloseTo((dm + dmp) / 2, 12);
    const a = (dm - dmp) / 2,
      s = (dm + dmp) / 2;
    expect(await value(page, 'sample-explained')).toBeCloseTo((a * a) / (a * a + s * s), 12);

    // a policy without an adapter: every margin 0, and the page says why instead of splitting nothing
    await page.evaluate(() => {
      const app = (
        window as unknown as { vcoLab: { app: { report: { sequences: Record<string, { log_ratio: { full: number } }> } } } }
      ).vcoLab.app;
      const sequences = Object.fromEntries(
        Object.keys(app.report.sequences).map((k) => [k, { log_ratio: { full: 0, masked: 0 } }]),
      );
      app.report = { ...app.report, sequences };
    });
    await page.getByTestId('sample-flat').waitFor();
    expect(page.errors).toEqual([]);
    await page.close();
  });

  it('no step overflows a phone’s width; every control has a visible label', async () => {
    const page = await open('#/explain?step=1&preset=wrong', { width: 390, height: 844 });
    for (let step = 1; step <= STEPS.length; step++) {
      if (step > 1) await page.getByRole('button', { name: 'Next →' }).click();
      await page.waitForSelector(`[data-testid="step-title"][data-step="${step}"]`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      expect(overflow, `step ${step}`).toBeLessThanOrEqual(0);
    }
    // inputs and selects in the explainer: each named by a <label> whose text is on screen
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('.explainer input, .explainer select')]
        .filter((el) => {
          const labels = (el as HTMLInputElement).labels;
          return !labels || ![...labels].some((l) => l.textContent!.trim() && l.getBoundingClientRect().height > 0);
        })
        .map((el) => el.id || el.outerHTML.slice(0, 80)),
    );
    expect(unlabelled).toEqual([]);
    expect(page.errors).toEqual([]);
    await page.close();
  });
});
