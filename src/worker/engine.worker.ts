/**
 * The engine in a module worker: an onnxruntime-web Runtime (WebGPU, else wasm) and the loaded model in an
 * `Engine` (the same class `vco-lab` runs in Node), behind comlink. The page talks to it through client.ts.
 * Raw ONNX models (`runModel`) share the runtime's one session cache, keyed by their SHA-256.
 */
import { expose, transfer } from 'comlink';
import type { Tensor } from 'onnxruntime-common';
import type { Runtime, WeightStore } from '../runtime/runtime.js';
import { createWebRuntime } from '../runtime/web.js';
import { serialize } from '../onnx/serialize.js';
import type {
  DemoBackwardResult,
  EngineInfo,
  EngineWorkerApi,
  StoredWeight,
  WireArray,
  WireTensor,
  WireTensorIn,
} from './api.js';
import { buildDemoGraphs } from './demo.js';
import { toWireArray } from './wire.js';
import { defaultModelUrls, DEFAULT_MODEL_NAME } from './default-model.js';
import { Engine } from '../engine/engine.js';
import type { ChatModel } from '../engine/rows.js';
import { yesNoMargins } from '../eval/yesno.js';
import { modelDataFromFiles } from '../model/data.js';
import { checkConfig } from '../model/families/index.js';
import { parseJsonFile } from '../model/files.js';
import { loadCheckpointFromUrl } from '../model/load-web.js';
import { parameterList } from '../model/vlm.js';
import type { ModelSummary } from './api.js';

/** the loaded model: its engine and what turns questions into rows */
let model: (ChatModel & { summary: ModelSummary; engine: Engine }) | undefined;

let runtime: Runtime | undefined;
/** weights that raw `runModel` graphs read by name */
let store: WeightStore | undefined;
let starting: Promise<Runtime> | undefined;

async function current(): Promise<Runtime> {
  if (runtime) return runtime;
  await api.init();
  return runtime!;
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
    throw new Error(`feed ${name}: ${(e as Error).message}`, { cause: e });
  }
}

/** bring an output to the host as a typed array that owns its buffer (so it can be transferred) */
async function download(t: Tensor): Promise<WireTensor> {
  const data = (await t.getData()) as WireArray;
  if (t.location === 'gpu-buffer') t.dispose();
  const owned =
    data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
      ? data
      : (data.slice() as WireArray);
  return { type: t.type, data: owned, dims: [...t.dims] };
}

async function run(
  rt: Runtime,
  model: Uint8Array,
  feeds: Record<string, WireTensorIn>,
  fetches?: string[],
): Promise<Record<string, WireTensor>> {
  const session = await rt.sessions.get(`onnx:${await modelKey(model)}`, () => model);
  const tensors = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toTensor(rt, k, v)]));
  const out = await session.run(tensors, { fetches, weights: store });
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
      await model?.engine.release();
      model = undefined;
      await runtime?.sessions.releaseAll();
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
    const fileUrls = urls ?? defaultModelUrls();
    const { checkpoint, files } = await loadCheckpointFromUrl(name, {
      files: Object.keys(fileUrls),
      urlOf: (f) => fileUrls[f],
      onProgress: onProgress && ((loaded, total) => onProgress(loaded, total)),
    });
    const data = modelDataFromFiles(files, name);
    const spec = checkConfig(parseJsonFile(files.get('config.json')!, `${name}/config.json`), `${name}/config.json`);
    await model?.engine.release();
    model = undefined;
    const engine = await Engine.create(rt, spec, checkpoint);
    const parameters = parameterList(spec).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
    const summary: ModelSummary = {
      name,
      family: spec.family,
      parameters,
      bytes: engine.weightBytes,
      imageTokens: spec.tokensPerImage,
      ep: rt.ep,
    };
    model = { spec, tokenizer: data.tokenizer, processor: data.processor, placeholder: data.placeholder, summary, engine };
    return summary;
  },

  async yesNo(image, questions) {
    if (!model) throw new Error('no model is loaded: call loadModel first');
    const m = model;
    // the benchmark's own scoring (eval/yesno.ts), rows of one shape per batch as in `vco-lab eval`
    const margins = await yesNoMargins(
      m.engine,
      m,
      questions.map((question) => ({ category: '', image, question, answer: 'yes' as const })),
    );
    return margins.map((d) => ({ margin: d, pYes: 1 / (1 + Math.exp(-d)) }));
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
    await runtime?.sessions.releaseAll();
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
