/**
 * Headless Chromium (Debian's package) driven by playwright-core, with WebGPU on (SwiftShader on a machine
 * without a GPU), the app served by Vite on a loopback port, and the helpers the browser tests and
 * `vco-lab bench page` share: a static server on another origin, and main-thread long-task measurement.
 * Needs the dev dependencies (playwright-core, vite) and a Chromium.
 */
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
// type-only at the top: the runtime modules load when a browser or the dev server is wanted, so the CLI's
// other commands start without them (and run where the dev dependencies are not installed)
import type { Browser, Page } from 'playwright-core';
import type { ViteDevServer } from 'vite';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--enable-unsafe-webgpu',
      '--disable-gpu-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

export async function startApp(): Promise<{ server: ViteDevServer; url: string }> {
  const { createServer } = await import('vite');
  const server = await createServer({
    root: REPO,
    configFile: `${REPO}/vite.config.ts`,
    logLevel: 'error',
    // no HMR and no file watching: an edit to the sources during a run must not reload the page under test
    server: { port: 0, host: '127.0.0.1', strictPort: false, hmr: false, watch: null },
  });
  await server.listen();
  const { port } = server.httpServer!.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/` };
}

/**
 * A plain static file server on its own loopback port (another origin than the page's): a folder, with the
 * CORS and CORP headers a Hub-like host sends (so a cross-origin-isolated page may fetch from it), or none
 * at all (`bare`: a static host without COOP/COEP). Counts the requests for each path.
 */
export async function serveFolder(
  dir: string,
  o: { bare?: boolean } = {},
): Promise<{ url: string; requests: string[]; close: () => Promise<void> }> {
  const { createServer } = await import('node:http');
  const { createReadStream, statSync } = await import('node:fs');
  const { join, extname, normalize } = await import('node:path');
  const TYPES: Record<string, string> = {
    '.html': 'text/html',
    '.js': 'text/javascript',
    '.mjs': 'text/javascript',
    '.css': 'text/css',
    '.json': 'application/json',
    '.wasm': 'application/wasm',
    '.svg': 'image/svg+xml',
    '.png': 'image/png',
  };
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requests.push(path);
    const cors = o.bare ? {} : { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'access-control-allow-headers': '*' });
      res.end();
      return;
    }
    let file = join(dir, normalize(path));
    let size: number;
    try {
      let st = statSync(file);
      // a folder serves its index.html, as static hosts do
      if (st.isDirectory()) st = statSync((file = join(file, 'index.html')));
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      res.writeHead(404, { ...cors, 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, {
      ...cors,
      'content-length': String(size),
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
    });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => server.close(() => r())) };
}

/**
 * Record main-thread long tasks (PerformanceObserver 'longtask', every task over 50 ms) from the first script
 * on: `longestTask(page)` reads the longest so far, or the longest that started after a performance mark
 * (the page marks 'vco-lab:engine-start' when it starts the engine: from there on it loads and scores).
 */
export async function watchLongTasks(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const w = window as unknown as { __longTasks: Array<[number, number]> };
    w.__longTasks = [];
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) w.__longTasks.push([e.startTime, e.duration]);
    }).observe({ type: 'longtask', buffered: true });
  });
}

export async function longestTask(page: Page, after?: string): Promise<number> {
  return page.evaluate((mark) => {
    const from = mark ? (performance.getEntriesByName(mark)[0]?.startTime ?? 0) : -1;
    const tasks = (window as unknown as { __longTasks: Array<[number, number]> }).__longTasks;
    return Math.max(0, ...tasks.filter(([start]) => start >= from).map(([, d]) => d));
  }, after);
}

export interface MainThreadTasks {
  /** the longest task of the page's main thread, wall-clock ms (what a user waits) */
  longestWallMs: number;
  /** the most CPU time one main-thread task took, ms: the page's own work, whatever else the machine runs */
  longestCpuMs: number;
  /** tasks over 50 ms of wall-clock time */
  over50: number;
}

/**
 * The page's main-thread tasks while `during` runs, from Chrome's trace (RunTask events: `dur` wall-clock,
 * `tdur` the thread's CPU time). Where the two differ the thread was waiting for a core or another process,
 * which on a 2-core machine without a GPU (the worker's compute and SwiftShader's on the same cores) is most of
 * a long task.
 */
export async function traceMainThread(browser: Browser, page: Page, during: () => Promise<void>): Promise<MainThreadTasks> {
  const stop = await startMainThreadTrace(browser, page);
  try {
    await during();
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
  return stop();
}

/** the same, started now and read when `stop()` is called (for a window that begins inside another helper) */
export async function startMainThreadTrace(browser: Browser, page: Page): Promise<() => Promise<MainThreadTasks>> {
  await browser.startTracing(page, { categories: ['toplevel', 'disabled-by-default-devtools.timeline'] });
  return async () => mainThreadTasks(await browser.stopTracing());
}

export interface TraceEvent {
  ph: string;
  name: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  tdur?: number;
  args?: { name?: string; data?: unknown };
}

/** the complete ('X') events of the page's main thread (CrRendererMain) in a Chrome trace */
export function mainThreadEvents(buf: Buffer): TraceEvent[] {
  const ev = (JSON.parse(buf.toString()) as { traceEvents: TraceEvent[] }).traceEvents;
  const main = new Set(
    ev
      .filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === 'CrRendererMain')
      .map((e) => `${e.pid}:${e.tid}`),
  );
  return ev.filter((e) => e.ph === 'X' && main.has(`${e.pid}:${e.tid}`));
}

function mainThreadTasks(buf: Buffer): MainThreadTasks {
  const tasks = mainThreadEvents(buf).filter((e) => e.name === 'RunTask');
  if (!tasks.length) throw new Error("the trace holds no main-thread task of the page (Chrome's trace format changed?)");
  return {
    longestWallMs: Math.max(...tasks.map((t) => (t.dur ?? 0) / 1000)),
    longestCpuMs: Math.max(...tasks.map((t) => (t.tdur ?? 0) / 1000)),
    over50: tasks.filter((t) => (t.dur ?? 0) > 50_000).length,
  };
}
