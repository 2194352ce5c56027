/**
 * The engine in a module worker: an onnxruntime-web Runtime (WebGPU, else wasm), a weight store (GPU
 * buffers on WebGPU) and a session cache, behind comlink. The page talks to it through client.ts.
 */
import { expose, transfer } from 'comlink';
import type { Tensor } from 'onnxruntime-common';
import type { Runtime, Session, WeightStore } from '../runtime/runtime.js';
import { createWebRuntime } from '../runtime/web.js';
import { serialize } from '../onnx/serialize.js';
import type { DemoBackwardResult, EngineInfo, EngineWorkerApi, StoredWeight, WireArray, WireTensor, WireTensorIn } from './api.js';
import { buildDemoGraphs } from './demo.js';
import { toWireArray } from './wire.js';
import { defaultModelUrls, DEFAULT_MODEL_NAME } from './default-model.js';
import { checkpointFromFiles, parseJsonFile } from '../model/files.js';
import { modelDataFromFiles } from '../model/data.js';
import { parameterList } from '../model/vlm.js';
import { specFromConfig } from '../model/spec.js';
import { uploadWeights } from '../model/weights.js';
import { BatchRunner, type ChatModel, choiceRow } from '../train/batch.js';
import { yesNoTokens } from '../eval/yesno.js';
import type { ModelSummary } from './api.js';

/** the loaded model and one scoring runner per prompt length */
let model: (ChatModel & { summary: ModelSummary; runners: Map<string, BatchRunner> }) | undefined;

/** fetch files concurrently, reporting bytes received over all of them */
async function fetchAll(urls: Record<string, string>, onProgress?: (done: number, total: number) => void): Promise<Map<string, Uint8Array>> {
  const got = new Map<string, number>(), size = new Map<string, number>();
  const report = () => onProgress?.([...got.values()].reduce((a, b) => a + b, 0), [...size.values()].reduce((a, b) => a + b, 0));
  const entries = await Promise.all(Object.entries(urls).map(async ([name, url]) => {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${name}: HTTP ${res.status} from ${url}`);
    size.set(name, Number(res.headers.get('content-length')) || 0);
    const chunks: Uint8Array[] = [];
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      got.set(name, (got.get(name) ?? 0) + value.length);
      report();
    }
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) { out.set(c, at); at += c.length; }
    return [name, out] as const;
  }));
  return new Map(entries);
}

let runtime: Runtime | undefined;
let store: WeightStore | undefined;
let starting: Promise<Runtime> | undefined;
const sessions = new Map<string, Promise<Session>>();

async function current(): Promise<Runtime> {
  if (runtime) return runtime;
  await api.init();
  return runtime!;
}

async function releaseAll(): Promise<void> {
  const all = [...sessions.values()];
  sessions.clear();
  await Promise.all(all.map(async (s) => { try { await (await s).release(); } catch { /* failed to create */ } }));
}

/** SHA-256 of the model bytes (crypto.subtle is there in secure contexts), else FNV-1a and the length */
async function modelKey(model: Uint8Array): Promise<string> {
  if (globalThis.crypto?.subtle) {
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', model as Uint8Array<ArrayBuffer>));
    return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  let h = 0x811c9dc5;
  for (let i = 0; i < model.length; i++) h = Math.imul(h ^ model[i], 0x01000193);
  return `${(h >>> 0).toString(16)}:${model.length}`;
}

function toTensor(rt: Runtime, name: string, t: WireTensorIn): Tensor {
  try {
    return rt.tensor(t.type as Tensor.Type, toWireArray(t.type, t.data) as Tensor.DataType, t.dims);
  } catch (e) {
    throw new Error(`feed ${name}: ${(e as Error).message}`);
  }
}

/** bring an output to the host as a typed array that owns its buffer (so it can be transferred) */
async function download(t: Tensor): Promise<WireTensor> {
  const data = (await t.getData()) as WireArray;
  if (t.location === 'gpu-buffer') t.dispose();
  const owned = data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
    ? data : (data.slice() as WireArray);
  return { type: t.type, data: owned, dims: [...t.dims] };
}

async function run(rt: Runtime, model: Uint8Array, feeds: Record<string, WireTensorIn>, fetches?: string[]): Promise<Record<string, WireTensor>> {
  const key = await modelKey(model);
  let s = sessions.get(key);
  if (!s) {
    s = rt.session(model, { weights: store });
    sessions.set(key, s);
    s.catch(() => sessions.delete(key));
  }
  const session = await s;
  const tensors = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toTensor(rt, k, v)]));
  const out = await session.run(tensors, fetches);
  const res: Record<string, WireTensor> = {};
  for (const [k, t] of Object.entries(out)) res[k] = await download(t);
  return res;
}

function transferables(res: Record<string, WireTensor>): ArrayBuffer[] {
  return [...new Set(Object.values(res).map((t) => t.data.buffer as ArrayBuffer))];
}

const api: EngineWorkerApi = {
  async init(prefer: 'webgpu' | 'wasm' = 'webgpu'): Promise<EngineInfo> {
    const prev = starting;
    starting = (async () => {
      await prev?.catch(() => undefined);
      await releaseAll();
      store?.dispose();
      runtime = undefined;
      const rt = await createWebRuntime(prefer);
      store = rt.weightStore();
      runtime = rt;
      return rt;
    })();
    const rt = await starting;
    return { ep: rt.ep, detail: rt.detail };
  },

  async loadModel(urls, onProgress) {
    const rt = await current();
    const name = urls ? 'model' : DEFAULT_MODEL_NAME;
    const files = await fetchAll(urls ?? defaultModelUrls(), onProgress);
    const data = modelDataFromFiles(files, name);
    const spec = specFromConfig(parseJsonFile(files.get('config.json')!, `${name}/config.json`), `${name}/config.json`);
    for (const r of model?.runners.values() ?? []) await r.release();
    store!.dispose();
    const up = await uploadWeights(rt, store!, spec, checkpointFromFiles(name, files));
    const parameters = parameterList(spec).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
    const summary: ModelSummary = { name, family: spec.family, parameters, bytes: up.bytes, imageTokens: spec.tokensPerImage, ep: rt.ep };
    model = { spec, tokenizer: data.tokenizer, processor: data.processor, summary, runners: new Map() };
    return summary;
  },

  async yesNo(image, questions) {
    if (!model) throw new Error('no model is loaded: call loadModel first');
    const rt = await current();
    const { yes, no } = yesNoTokens(model);
    const rows = questions.map((q) => choiceRow(model!, image, q, [yes, no]));
    if (!rows.length) return [];
    // one graph shape for every call (rows padded to a multiple of 32 tokens, 8 per batch): a session per
    // shape costs shader compilation on WebGPU, so shapes must not follow each question's length
    const B = 8, L = 32 * Math.ceil(Math.max(...rows.map((r) => r.ids.length)) / 32), tiles = rows[0]?.tiles.length ?? 1;
    const key = `${L}:${tiles}`;
    let r = model.runners.get(key);
    if (!r) model.runners.set(key, (r = new BatchRunner(rt, model.spec, store!, { B, L, nImages: B * tiles, R: 2 * B }, model.tokenizer.eosId)));
    const out: { logpYes: number; logpNo: number }[] = [];
    for (let i = 0; i < rows.length; i += B) {
      for (const [logpYes, logpNo] of await r.logprobs(rows.slice(i, i + B))) out.push({ logpYes, logpNo });
    }
    return out;
  },

  async runModel(model, feeds, fetches) {
    const res = await run(await current(), model, feeds, fetches);
    return transfer(res, transferables(res));
  },

  async setWeights(weights) {
    const rt = await current();
    for (const [name, t] of Object.entries(weights)) await store!.set(name, toTensor(rt, name, t));
    return api.weightInfo();
  },

  async weightInfo() {
    const info: Record<string, StoredWeight> = {};
    for (const name of store?.names() ?? []) {
      const t = store!.get(name)!;
      info[name] = { type: t.type, dims: [...t.dims], location: t.location };
    }
    return info;
  },

  async clearWeights() {
    store?.dispose();
  },

  async releaseSessions() {
    await releaseAll();
  },

  async demoBackward(): Promise<DemoBackwardResult> {
    const rt = await current();
    const d = buildDemoGraphs();
    const pick = (names: readonly { name: string }[]) => Object.fromEntries(names.map((v) => [v.name, d.feeds[v.name]]));
    const forward = await run(rt, serialize(d.forward), pick(d.forward.inputs));
    const backward = await run(rt, serialize(d.backward.graph), pick(d.backward.graph.inputs));
    const res: DemoBackwardResult = { ep: rt.ep, detail: rt.detail, forward, backward, grads: d.backward.grads };
    return transfer(res, [...transferables(forward), ...transferables(backward)]);
  },
};

expose(api);
