/**
 * Headless Chromium (Debian's package) driven by playwright-core, with WebGPU on (SwiftShader on a
 * machine without a GPU), against the app served by Vite on a loopback port.
 */
import { existsSync } from 'node:fs';
import type { Page } from 'playwright-core';
import type { StoredWeight, WireTensor, WireTensorIn, WireType } from '../src/worker/api.js';
import { fromBytes, toWireArray } from '../src/worker/wire.js';
import { CHROMIUM } from '../src/node/chromium.js';

export type { WireTensor } from '../src/worker/api.js';
export {
  CHROMIUM,
  launchChromium,
  longestTask,
  serveFolder,
  startApp,
  traceMainThread,
  watchLongTasks,
} from '../src/node/chromium.js';

/** Browser tests run wherever Chromium is installed and are required in CI (.ci/run installs it). */
export function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}: .ci/run installs Debian's chromium package`);
  console.warn(`skipping browser tests: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  return false;
}

/** a tensor for runInBrowserWorker: a typed array of its type, or plain numbers (int64: numbers or bigints) */
export interface BrowserTensorIn {
  type: WireType | string;
  data: WireTensorIn['data'];
  dims: number[];
}

export interface BrowserRunOptions {
  /** the EP to ask the worker for (default 'webgpu'); one worker per EP is kept on the page and reused */
  prefer?: 'webgpu' | 'wasm';
  /** weights to upload into the worker's weight store first (GPU buffers on WebGPU); a run's graph inputs
   *  that are not fed are taken from the store by name */
  weights?: Record<string, BrowserTensorIn>;
  /** empty the worker's weight store before this run */
  clearWeights?: boolean;
  /** outputs to fetch (default: all) */
  fetches?: string[];
  /** accept a worker that fell back from `prefer` (default false: throw, with the reason) */
  allowFallback?: boolean;
}

export interface BrowserRunResult {
  /** each output as the typed array of its type (Float32Array, Float64Array, BigInt64Array, Uint8Array, ...) */
  outputs: Record<string, WireTensor>;
  /** the EP the worker ran on and why */
  ep: string;
  /** what the worker's weight store holds after this run (name -> type, dims, location) */
  weights: Record<string, StoredWeight>;
  detail: string;
}

interface B64Tensor {
  type: string;
  dims: number[];
  b64: string;
}

const toB64 = (t: BrowserTensorIn): B64Tensor => {
  const a = toWireArray(t.type, t.data);
  return { type: t.type, dims: [...t.dims], b64: Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64') };
};

/**
 * Run a serialized ONNX model in the engine worker of a page served by startApp(), and bring its outputs back
 * to Node. Everything crosses page.evaluate as base64 bytes, so any dtype and size survives exactly.
 */
export async function runInBrowserWorker(
  page: Page,
  modelBytes: Uint8Array,
  feeds: Record<string, BrowserTensorIn>,
  opts: BrowserRunOptions = {},
): Promise<BrowserRunResult> {
  const prefer = opts.prefer ?? 'webgpu';
  const arg = {
    prefer,
    model: Buffer.from(modelBytes.buffer, modelBytes.byteOffset, modelBytes.byteLength).toString('base64'),
    feeds: Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, toB64(t)])),
    weights: opts.weights ? Object.fromEntries(Object.entries(opts.weights).map(([k, t]) => [k, toB64(t)])) : null,
    clearWeights: !!opts.clearWeights,
    fetches: opts.fetches ?? null,
  };
  const res = await page.evaluate(async (a) => {
    const CTORS: Record<string, { new (b: ArrayBuffer): ArrayBufferView; BYTES_PER_ELEMENT: number }> = {
      float32: Float32Array,
      float64: Float64Array,
      float16: Uint16Array,
      int32: Int32Array,
      uint32: Uint32Array,
      int8: Int8Array,
      uint8: Uint8Array,
      bool: Uint8Array,
      int64: BigInt64Array,
    };
    const bytesOf = (s: string): Uint8Array => {
      const bin = atob(s),
        u = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
      return u;
    };
    const b64Of = (v: ArrayBufferView): string => {
      const u = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      let s = '';
      for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
      return btoa(s);
    };
    const decode = (t: { type: string; dims: number[]; b64: string }) => {
      const C = CTORS[t.type];
      if (!C) throw new Error(`unsupported tensor type ${t.type}`);
      return { type: t.type, dims: t.dims, data: new C(bytesOf(t.b64).buffer as ArrayBuffer) };
    };
    const decodeAll = (r: Record<string, { type: string; dims: number[]; b64: string }>) =>
      Object.fromEntries(Object.entries(r).map(([k, t]) => [k, decode(t)]));

    type Api = {
      init(p: string): Promise<{ ep: string; detail: string }>;
      runModel(
        m: Uint8Array,
        f: unknown,
        fetches?: string[],
      ): Promise<Record<string, { type: string; dims: number[]; data: ArrayBufferView }>>;
      setWeights(w: unknown): Promise<unknown>;
      clearWeights(): Promise<void>;
      weightInfo(): Promise<Record<string, StoredWeight>>;
    };
    const w = window as unknown as { __vcoEngines?: Record<string, Promise<{ api: Api; info: { ep: string; detail: string } }>> };
    w.__vcoEngines ??= {};
    w.__vcoEngines[a.prefer] ??= (async () => {
      // (vitest rewrites a literal import() in this function for Node; build it in the page instead)
      const load = new Function('u', 'return import(u)') as (u: string) => Promise<Record<string, () => unknown>>;
      const { createEngineWorker } = await load('/src/worker/client.ts');
      const api = createEngineWorker() as Api;
      return { api, info: await api.init(a.prefer) };
    })();
    const { api, info } = await w.__vcoEngines[a.prefer];
    if (a.clearWeights) await api.clearWeights();
    if (a.weights) await api.setWeights(decodeAll(a.weights));
    const out = await api.runModel(bytesOf(a.model), decodeAll(a.feeds), a.fetches ?? undefined);
    return {
      ...info,
      weights: await api.weightInfo(),
      outputs: Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { type: t.type, dims: t.dims, b64: b64Of(t.data) }])),
    };
  }, arg);
  if (res.ep !== prefer && !opts.allowFallback) {
    throw new Error(`the engine worker asked for ${prefer} runs on ${res.ep}: ${res.detail}`);
  }
  const outputs = Object.fromEntries(
    Object.entries(res.outputs).map(([k, t]) => [
      k,
      { type: t.type, dims: t.dims, data: fromBytes(t.type, new Uint8Array(Buffer.from(t.b64, 'base64'))) },
    ]),
  );
  return { outputs, ep: res.ep, detail: res.detail, weights: res.weights };
}
