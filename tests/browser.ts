/**
 * Headless Chromium (Debian's package) driven by playwright-core, with WebGPU on (SwiftShader on a
 * machine without a GPU), against the app served by Vite on a loopback port.
 */
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { type Browser, chromium } from 'playwright-core';
import { type ViteDevServer, createServer } from 'vite';
import { REPO } from './helpers.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Browser tests run wherever Chromium is installed and are required in CI (.ci/run installs it). */
export function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}: .ci/run installs Debian's chromium package`);
  console.warn(`skipping browser tests: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  return false;
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-gpu-sandbox',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-quic'],
  });
}

export async function startApp(): Promise<{ server: ViteDevServer; url: string }> {
  const server = await createServer({ root: REPO, configFile: `${REPO}/vite.config.ts`, logLevel: 'error',
    server: { port: 0, host: '127.0.0.1', strictPort: false } });
  await server.listen();
  const { port } = server.httpServer!.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/` };
}
