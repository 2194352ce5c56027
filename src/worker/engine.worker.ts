/**
 * The engine in a module worker, behind comlink (the page talks to it through client.ts): an onnxruntime-web
 * Runtime (WebGPU, else wasm) and the loaded model in an `Engine`, the same class `vco-lab` runs in Node, so
 * every number the page shows comes from the code the CLI and the trainers run. Loading (streamed, with
 * progress, kept in IndexedDB), decoding images and scoring happen here; the page's main thread only draws.
 * Raw ONNX models (`runModel`) share the runtime's one session cache, keyed by their SHA-256.
 */
import { expose, transfer } from 'comlink';
import type { Tensor } from 'onnxruntime-common';
import { decodePng } from '../data/png.js';
import { Engine } from '../engine/engine.js';
import type { ChatModel } from '../engine/rows.js';
import { yesNoMargins } from '../eval/yesno.js';
import { computeMargins } from '../inspect/margins.js';
import { modelDataFromFiles } from '../model/data.js';
import { checkConfig } from '../model/families/index.js';
import { parseJsonFile } from '../model/files.js';
import { type WebLoadOptions, loadCheckpointFromFiles, loadCheckpointFromUrl } from '../model/load-web.js';
import { hubBaseUrl, manifestById, webLoadOptions } from '../model/manifests.js';
import { type Adapter, adapterFromFiles } from '../model/peft.js';
import type { PixelImage } from '../model/processor.js';
import { parameterList } from '../model/vlm.js';
import { checkWeights } from '../model/weights.js';
import { serialize } from '../onnx/serialize.js';
import type { Runtime, WeightStore } from '../runtime/runtime.js';
import { createWebRuntime, loseWebGpuDevice } from '../runtime/web.js';
import type {
  AdapterSource,
  DemoBackwardResult,
  EngineInfo,
  EngineWorkerApi,
  ImageInput,
  LoadOptions,
  LoadProgress,
  ModelSource,
  ModelSummary,
  StoredWeight,
  WireArray,
  WireTensor,
  WireTensorIn,
  WorkerEvent,
} from './api.js';
import { DEFAULT_MODEL_NAME, defaultModelUrls } from './default-model.js';
import { buildDemoGraphs } from './demo.js';
import { cachingFetch, deleteStored, listStored, storageEstimate } from './storage.js';
import { deleteAdapter, exportAdapterZip, getAdapter, importAdapter, listAdapters, renameAdapter } from './adapters.js';
import { prepareData } from './data-input.js';
import {
  type RunData,
  type RunRecord,
  type RunSummary,
  TrainingSession,
  type TrainEvent,
  deleteRun,
  getRun,
  listRuns,
} from './training.js';
import { shapesBenchmark } from '../eval/shapesworld.js';
import { benchmarkMetrics } from '../eval/yesno.js';
import { toWireArray } from './wire.js';

/** the loaded model: its engine, what turns text and images into rows, and what the page is told about it */
interface Loaded extends ChatModel {
  name: string;
  engine: Engine;
  options: LoadOptions;
  /** where it came from (a run records it, to reload the model for a resume) */
  source: ModelSource;
  /** the adapter on the engine: loaded from PEFT files, or a training run's */
  adapter: { name: string; adapter?: Adapter } | null;
  seconds: { download: number; upload: number };
}

let model: Loaded | undefined;
let runtime: Runtime | undefined;
/** weights that raw `runModel` graphs read by name */
let store: WeightStore | undefined;
let starting: Promise<Runtime> | undefined;
let emit: (e: WorkerEvent) => void = () => {};
let emitTrain: (e: TrainEvent) => void = () => {};
/** the data set prepared for the next run, and the run being trained */
let pending: RunData | null = null;
let session: TrainingSession | null = null;
/** the load or scoring in progress, which cancel() aborts */
let current: AbortController | undefined;

async function rt(): Promise<Runtime> {
  if (runtime) return runtime;
  await api.init();
  return runtime!;
}

/** run `f` as the cancellable job of the moment */
async function job<T>(f: (signal: AbortSignal) => Promise<T>): Promise<T> {
  current?.abort(new DOMException('replaced by a newer request', 'AbortError'));
  const ctl = new AbortController();
  current = ctl;
  try {
    return await f(ctl.signal);
  } finally {
    if (current === ctl) current = undefined;
  }
}

/** SHA-256 of the model bytes (crypto.subtle is there in secure contexts), else FNV-1a and the length */
async function modelKey(bytes: Uint8Array): Promise<string> {
  if (globalThis.crypto?.subtle) {
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
    return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return `${(h >>> 0).toString(16)}:${bytes.length}`;
}

function toTensor(r: Runtime, name: string, t: WireTensorIn): Tensor {
  try {
    return r.tensor(t.type as Tensor.Type, toWireArray(t.type, t.data) as Tensor.DataType, t.dims);
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
  r: Runtime,
  bytes: Uint8Array,
  feeds: Record<string, WireTensorIn>,
  fetches?: string[],
): Promise<Record<string, WireTensor>> {
  const session = await r.sessions.get(`onnx:${await modelKey(bytes)}`, () => bytes);
  const tensors = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toTensor(r, k, v)]));
  const out = await session.run(tensors, { fetches, weights: store });
  const res: Record<string, WireTensor> = {};
  for (const [k, t] of Object.entries(out)) res[k] = await download(t);
  return res;
}

function transferables(res: Record<string, WireTensor>): ArrayBuffer[] {
  return [...new Set(Object.values(res).map((t) => t.data.buffer as ArrayBuffer))];
}

/** a model's files, streamed (from the network, IndexedDB, or dropped files) with progress */
async function fetchModel(source: ModelSource, signal: AbortSignal, onProgress?: (p: LoadProgress) => void) {
  const progress: WebLoadOptions['onProgress'] =
    onProgress && ((done, total, file) => onProgress({ phase: 'download', done, total, file }));
  const failed = (url: string, why: string) => emit({ type: 'store-failed', url, why });
  switch (source.kind) {
    case 'default': {
      const urls = defaultModelUrls();
      const r = await loadCheckpointFromUrl(DEFAULT_MODEL_NAME, {
        files: Object.keys(urls),
        urlOf: (f) => urls[f],
        signal,
        onProgress: progress,
      });
      return { ...r, name: DEFAULT_MODEL_NAME };
    }
    case 'manifest': {
      const m = manifestById(source.id);
      const r = await loadCheckpointFromUrl(hubBaseUrl(m, source.hub), {
        ...webLoadOptions(m, { hub: source.hub, signal, onProgress: progress }),
        fetch: cachingFetch(m.repo, { onStoreFailed: failed }),
      });
      return { ...r, name: m.repo };
    }
    case 'url': {
      const base = source.base.replace(/\/+$/, '');
      const r = await loadCheckpointFromUrl(base, {
        files: source.files,
        signal,
        onProgress: progress,
        fetch: cachingFetch(base, { onStoreFailed: failed }),
      });
      return { ...r, name: source.name ?? base };
    }
    case 'files': {
      const r = await loadCheckpointFromFiles(source.files, { signal, onProgress: progress });
      return { ...r, name: source.name };
    }
  }
}

function summary(m: Loaded): ModelSummary {
  const parameters = parameterList(m.spec).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  const lora = [...m.engine.lora.values()];
  return {
    name: m.name,
    family: m.spec.family,
    parameters,
    bytes: m.engine.weightBytes,
    memory: m.engine.weights.bytes(),
    imageTokens: m.spec.tokensPerImage,
    ep: m.engine.rt.ep,
    int4: m.engine.int4Modules > 0,
    adapter: m.adapter
      ? {
          name: m.adapter.name,
          modules: lora.length,
          rank: Math.max(0, ...lora.map((p) => p.r)),
          parameters: lora.reduce((n, p) => n + p.A.length + p.B.length, 0),
          notes: m.engine.adapterNotes,
        }
      : null,
    seconds: m.seconds,
  };
}

function summaryOfRun(r: RunRecord): RunSummary {
  const { checkpoint: _c, data, logs, ...rest } = r;
  return {
    ...rest,
    lastLog: logs[logs.length - 1],
    dataSummary:
      data.kind === 'shapesworld'
        ? `ShapesWorld: ${data.options.pairs} pairs, seed ${data.options.seed}`
        : `${data.records.length} rows of ${data.source}`,
  };
}

function need(): Loaded {
  if (!model) throw new Error('no model is loaded: load one in the model library first');
  return model;
}

/** decode an inspector image: PNG with the same decoder as the CLI (identical pixels), other formats by the browser */
async function decodeImage(input: ImageInput, label: string): Promise<PixelImage> {
  if (input.kind === 'pixels') return input.image;
  const isPng =
    input.bytes.length >= 8 &&
    input.bytes[0] === 0x89 &&
    input.bytes[1] === 0x50 &&
    input.bytes[2] === 0x4e &&
    input.bytes[3] === 0x47;
  if (isPng || input.type === 'image/png' || /\.png$/i.test(input.name))
    return decodePng(input.bytes, `${label} (${input.name})`);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(new Blob([input.bytes as BlobPart], { type: input.type }));
  } catch (e) {
    throw new Error(
      `${label} (${input.name}): not an image this browser can decode (${(e as Error).message}); use a PNG or JPEG`,
      { cause: e },
    );
  }
  const c = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = c.getContext('2d')!;
  ctx.drawImage(bitmap, 0, 0);
  const d = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  return { width: d.width, height: d.height, data: d.data, channels: 4 };
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
      const r = await createWebRuntime(prefer, { onDeviceLost: (info) => emit({ type: 'device-lost', ...info }) });
      store = r.weightStore();
      runtime = r;
      return r;
    })();
    const r = await starting;
    return { ep: r.ep, detail: r.detail, crossOriginIsolated: typeof crossOriginIsolated !== 'undefined' && crossOriginIsolated };
  },

  onEvent(cb) {
    emit = cb;
  },

  async loadModel(source, options = {}, onProgress) {
    return job(async (signal) => {
      const r = await rt();
      const t0 = performance.now();
      const { checkpoint, files, name } = await fetchModel(source, signal, onProgress);
      const t1 = performance.now();
      const data = modelDataFromFiles(files, name);
      const spec = checkConfig(parseJsonFile(files.get('config.json')!, `${name}/config.json`), `${name}/config.json`);
      // a broken checkpoint fails here, while the model loaded before stays usable
      checkWeights(spec, checkpoint);
      await model?.engine.release();
      model = undefined;
      const engine = await Engine.create(r, spec, checkpoint, { int4: options.int4 }, (done, total) => {
        if (signal.aborted) throw signal.reason;
        onProgress?.({ phase: 'upload', done, total });
      });
      model = {
        name,
        spec,
        tokenizer: data.tokenizer,
        processor: data.processor,
        placeholder: data.placeholder,
        engine,
        options,
        source,
        adapter: null,
        seconds: { download: (t1 - t0) / 1000, upload: (performance.now() - t1) / 1000 },
      };
      return summary(model);
    });
  },

  async setAdapter(source: AdapterSource | null) {
    const m = need();
    if (!source) {
      await m.engine.setAdapter(null);
      m.adapter = null;
      return summary(m);
    }
    return job(async (signal) => {
      let files: Map<string, Uint8Array>;
      if (source.kind === 'files') {
        files = new Map();
        for (const f of source.files) {
          const n = ((f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name).split('/').pop()!;
          if (n === 'adapter_config.json' || n === 'adapter_model.safetensors')
            files.set(n, new Uint8Array(await f.arrayBuffer()));
        }
      } else {
        const base = source.base.replace(/\/+$/, '');
        files = new Map();
        for (const n of ['adapter_config.json', 'adapter_model.safetensors']) {
          const res = await fetch(`${base}/${n}`, { signal });
          if (!res.ok) throw new Error(`${base}/${n}: HTTP ${res.status}`);
          files.set(n, new Uint8Array(await res.arrayBuffer()));
        }
      }
      const name = source.name ?? (source.kind === 'url' ? source.base : 'adapter');
      const adapter = adapterFromFiles(files, name);
      await m.engine.setAdapter(adapter);
      m.adapter = { name, adapter };
      return summary(m);
    });
  },

  async model() {
    return model ? summary(model) : null;
  },

  cancel() {
    current?.abort(new DOMException('cancelled', 'AbortError'));
  },

  async storage() {
    return { files: await listStored(), ...(await storageEstimate()) };
  },

  async deleteStored(o) {
    await deleteStored(o);
  },

  async scoreMargins(images, request, onProgress) {
    const m = need();
    return job(async (signal) => {
      const [im, ip] = await Promise.all([
        decodeImage(images.m, 'First image (m)'),
        decodeImage(images.mPrime, 'Contrastive image (m′)'),
      ]);
      return computeMargins({ ...m, adapter: m.adapter?.name ?? null }, { m: im, mPrime: ip }, request, { signal, onProgress });
    });
  },

  async yesNo(image, questions) {
    const m = need();
    // the benchmark's own scoring (eval/yesno.ts), rows of one shape per batch as in `vco-lab eval`
    const margins = await yesNoMargins(
      m.engine,
      m,
      questions.map((question) => ({ category: '', image, question, answer: 'yes' as const })),
    );
    return margins.map((d) => ({ margin: d, pYes: 1 / (1 + Math.exp(-d)) }));
  },

  onTrain(cb) {
    emitTrain = cb;
  },

  async prepareData(input, o = {}) {
    return job(async (signal) => {
      const r = await prepareData(input, { skipBad: o.skipBad, signal });
      pending = r.data;
      return r.preview;
    });
  },

  async startRun(config) {
    const m = need();
    if (session?.record.status === 'running') throw new Error('a run is training: pause or stop it first');
    if (!pending) throw new Error('no training data: generate a ShapesWorld set or pick a data folder first');
    const now = Date.now();
    const record: RunRecord = {
      id: `run-${now.toString(36)}`,
      config,
      data: pending,
      model: { name: m.name, source: m.source, int4: !!m.options.int4 },
      status: 'paused',
      step: 0,
      createdAt: now,
      updatedAt: now,
      samples: 0,
      logs: [],
      checkpointStep: 0,
    };
    session = await TrainingSession.open(record, m.engine, m, emitTrain);
    m.adapter = { name: `run ${config.name}` };
    void session.run();
    return summaryOfRun(record);
  },

  async resumeRun(id) {
    const m = need();
    if (session?.record.status === 'running') throw new Error('a run is training: pause or stop it first');
    const record = await getRun(id);
    if (!record) throw new Error(`no run "${id}" in this browser (deleted?)`);
    if (record.model.name !== m.name || record.model.int4 !== !!m.options.int4) {
      throw new Error(
        `the run trains ${record.model.name}${record.model.int4 ? ' (int4)' : ''}, but ${m.name}${m.options.int4 ? ' (int4)' : ''} is loaded: load that model first`,
      );
    }
    session = await TrainingSession.open(record, m.engine, m, emitTrain);
    m.adapter = { name: `run ${record.config.name}` };
    if (!session.done) void session.run();
    return summaryOfRun(record);
  },

  async pauseRun() {
    await session?.pause();
  },

  async stopRun() {
    await session?.stop();
  },

  async stepRun() {
    if (!session) throw new Error('no run is open');
    return session.single();
  },

  async runs() {
    return listRuns();
  },

  async runLogs(id) {
    if (session?.record.id === id) return session.record.logs;
    return (await getRun(id))?.logs ?? [];
  },

  async deleteRun(id) {
    if (session?.record.id === id) {
      if (session.record.status === 'running') throw new Error('the run is training: stop it first');
      session = null;
    }
    await deleteRun(id);
  },

  async evaluate(perCategory, onProgress) {
    const m = need();
    return job(async (signal) => {
      const items = shapesBenchmark(perCategory);
      const out: Record<string, Record<string, { accuracy: number; f1: number; yes_ratio: number; n: number }>> = {};
      const which = m.engine.lora.size ? (['reference', 'policy'] as const) : (['reference'] as const);
      for (const [k, w] of which.entries()) {
        const margins = await yesNoMargins(m.engine, m, items, {
          which: w,
          signal,
          onProgress: onProgress && ((d, n) => onProgress(k * n + d, which.length * n)),
        });
        out[w === 'reference' ? 'base' : 'adapter'] = benchmarkMetrics(m.name, items, margins).categories;
      }
      return out;
    });
  },

  async saveRunAdapter(name) {
    if (!session) throw new Error('no run is open');
    const { files: _f, ...a } = await session.saveAdapter(name);
    return { ...a, bytes: 0 };
  },

  async adapters() {
    return listAdapters();
  },

  async renameAdapter(id, name) {
    await renameAdapter(id, name);
  },

  async deleteAdapter(id) {
    await deleteAdapter(id);
  },

  async exportAdapter(id) {
    const r = await exportAdapterZip(id);
    return transfer(r, [r.zip.buffer as ArrayBuffer]);
  },

  async importAdapter(files, name) {
    const m = need();
    const map = new Map<string, Uint8Array>();
    for (const f of files) {
      const n = ((f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name).split('/').pop()!;
      if (n === 'adapter_config.json' || n === 'adapter_model.safetensors') map.set(n, new Uint8Array(await f.arrayBuffer()));
    }
    return importAdapter(map, name, m.name);
  },

  async useAdapter(id) {
    const m = need();
    const a = await getAdapter(id);
    const adapter = adapterFromFiles(new Map(Object.entries(a.files)), a.name);
    await m.engine.setAdapter(adapter);
    m.adapter = { name: a.name, adapter };
    return summary(m);
  },

  async runModel(bytes, feeds, fetches) {
    const res = await run(await rt(), bytes, feeds, fetches);
    return transfer(res, transferables(res));
  },

  async setWeights(weights) {
    const r = await rt();
    for (const [name, t] of Object.entries(weights)) await store!.set(name, toTensor(r, name, t));
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
    const r = await rt();
    const d = buildDemoGraphs();
    const pick = (names: readonly { name: string }[]) => Object.fromEntries(names.map((v) => [v.name, d.feeds[v.name]]));
    const forward = await run(r, serialize(d.forward), pick(d.forward.inputs));
    const backward = await run(r, serialize(d.backward.graph), pick(d.backward.graph.inputs));
    const res: DemoBackwardResult = {
      ep: r.ep,
      detail: r.detail,
      crossOriginIsolated: typeof crossOriginIsolated !== 'undefined' && crossOriginIsolated,
      forward,
      backward,
      grads: d.backward.grads,
    };
    return transfer(res, [...transferables(forward), ...transferables(backward)]);
  },

  async loseDeviceForTest() {
    return loseWebGpuDevice();
  },

  async poisonWeightForTest(name) {
    const m = need();
    const t = m.engine.weights.get(name);
    if (!t) throw new Error(`the model has no weight ${name}`);
    const r = await rt();
    await m.engine.weights.set(name, r.tensor('float32', new Float32Array(t.size).fill(NaN), t.dims));
  },
};

expose(api);
