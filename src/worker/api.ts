/**
 * What crosses the boundary between the page and the engine worker: plain data (typed arrays, which
 * structured clone and transfer carry; File objects) and the worker's API. No onnxruntime types appear here.
 */
import type { ImageOrder, MarginsReport, MarginsRequest } from '../inspect/margins.js';
import type { CategoryMetrics } from '../eval/yesno.js';
import type { AdapterInfo } from './adapters.js';
import type { DataInput, DataPreview, PreviewRow } from './data-input.js';
import type { StoredFile } from './storage.js';
import type { RunConfig, RunStatus, RunSummary, StepReport, TrainEvent } from './training.js';

export type { ImageOrder, MarginsReport, MarginsRequest, StoredFile };
export type {
  AdapterInfo,
  CategoryMetrics,
  DataInput,
  DataPreview,
  PreviewRow,
  RunConfig,
  RunStatus,
  RunSummary,
  StepReport,
  TrainEvent,
};

/** the element types the engine exchanges (onnxruntime's names) */
export type WireType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'uint32' | 'int8' | 'uint8' | 'bool';

export type WireArray =
  Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint32Array | Int8Array | Uint8Array;

/** a tensor going in: data may be a typed array of the right kind, or plain numbers (int64 as numbers or bigints) */
export interface WireTensorIn {
  type: WireType | string;
  data: ArrayLike<number> | ArrayLike<bigint> | WireArray;
  dims: number[];
}

/** a tensor coming out: the typed array of its type (float16 as raw Uint16Array bits, bool as Uint8Array) */
export interface WireTensor {
  type: string;
  data: WireArray;
  dims: number[];
}

export interface EngineInfo {
  /** the EP in use: 'webgpu' or 'wasm' */
  ep: string;
  /** why this EP: the adapter's name, or why WebGPU is not used */
  detail: string;
  /** wasm threads need cross-origin isolation (COOP/COEP headers); without it ORT runs on one thread */
  crossOriginIsolated: boolean;
}

export interface DemoBackwardResult extends EngineInfo {
  /** the forward graph's output `y` = softmax(x @ W + b) */
  forward: Record<string, WireTensor>;
  /** the backward graph's outputs: `grad_W`, `grad_b` (of Σ seed ⊙ y) and `y` recomputed */
  backward: Record<string, WireTensor>;
  /** gradient output name for each differentiated input */
  grads: Record<string, string>;
}

export interface StoredWeight {
  type: string;
  dims: number[];
  /** 'gpu-buffer' on WebGPU (float64 stays on the host: ORT takes no GPU buffer of it), else 'cpu' */
  location: string;
}

/** where a model's files come from */
export type ModelSource =
  /** the embedded default model (bundled with the page) */
  | { kind: 'default' }
  /** a Hub checkpoint listed in models/*.json, fetched from huggingface.co (kept in IndexedDB) */
  | { kind: 'manifest'; id: string; hub?: string }
  /** any base URL laid out like a Hub repo (kept in IndexedDB); `files` skips probing for optional files */
  | { kind: 'url'; base: string; files?: string[]; name?: string }
  /** a folder dropped or picked in the page */
  | { kind: 'files'; files: File[]; name: string };

export type AdapterSource = { kind: 'files'; files: File[]; name: string } | { kind: 'url'; base: string; name?: string };

export interface LoadOptions {
  /** frozen linears of the tower and the LM as int4 blocks (MatMulNBits); LoRA stays float32 */
  int4?: boolean;
}

export interface LoadProgress {
  phase: 'download' | 'upload';
  /** bytes so far and in all (download), or tensors uploaded (upload) */
  done: number;
  total: number;
  file?: string;
}

export interface ModelSummary {
  name: string;
  family: string;
  /** parameters (weights of the graphs) */
  parameters: number;
  /** bytes of frozen weights as stored in the weight store (int4 blocks as stored) */
  bytes: number;
  /** the weight store by where it lives: GPU buffers on WebGPU, host memory on wasm */
  memory: Record<string, number>;
  imageTokens: number;
  ep: string;
  int4: boolean;
  /** the adapter on top (policy = base + adapter), or null (policy = reference) */
  adapter: { name: string; modules: number; rank: number; parameters: number; notes: string[] } | null;
  /** how long the last load took, by phase */
  seconds: { download: number; upload: number };
}

export interface YesNoAnswer {
  /** log p(first token of "Yes.") − log p(first token of "No.") after the prompt, as `vco-lab eval` scores */
  margin: number;
  /** σ(margin): p(yes) against p(no) */
  pYes: number;
}

/** an RGB or RGBA image, row-major */
export interface WireImage {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
}

/** an image for the inspector: pixels the page made (a ShapesWorld render), or a file's bytes to decode */
export type ImageInput = { kind: 'pixels'; image: WireImage } | { kind: 'file'; name: string; type: string; bytes: Uint8Array };

/** what the worker tells the page without being asked */
export type WorkerEvent =
  { type: 'device-lost'; reason: string; message: string } | { type: 'store-failed'; url: string; why: string };

export interface EngineWorkerApi {
  /** (re)start the runtime; WebGPU if this browser gives an adapter, else wasm with the reason */
  init(prefer?: 'webgpu' | 'wasm'): Promise<EngineInfo>;
  /** events (a lost GPU device, a file that could not be stored) go to this callback */
  onEvent(cb: (e: WorkerEvent) => void): void;
  /** load a model into the engine (replacing the one loaded), with progress; cancel() stops it */
  loadModel(source: ModelSource, options?: LoadOptions, onProgress?: (p: LoadProgress) => void): Promise<ModelSummary>;
  /** put a PEFT adapter on the loaded model (policy = base + adapter), or take it off (null) */
  setAdapter(source: AdapterSource | null): Promise<ModelSummary>;
  /** the loaded model, or null */
  model(): Promise<ModelSummary | null>;
  /** stop the load or scoring in progress (it rejects with an AbortError) */
  cancel(): void;
  /** the files kept in IndexedDB, and the browser's storage estimate */
  storage(): Promise<{ files: StoredFile[]; usage: number; quota: number; persisted: boolean }>;
  deleteStored(o: { url?: string; model?: string }): Promise<void>;
  /** the margin inspector: one sample in every context, as `vco-lab margins --json` */
  scoreMargins(
    images: { m: ImageInput; mPrime: ImageInput },
    request: MarginsRequest,
    onProgress?: (done: number, total: number, what: string) => void,
  ): Promise<MarginsReport>;
  /** the loaded model's answers to yes/no questions about one image */
  yesNo(image: WireImage, questions: string[]): Promise<YesNoAnswer[]>;
  /**
   * Run a serialized ONNX model. Sessions are cached (the runtime's cache) by the model's SHA-256. Graph inputs
   * missing from `feeds` are taken by name from the weights set with setWeights. Outputs come back to the host.
   */
  runModel(model: Uint8Array, feeds: Record<string, WireTensorIn>, fetches?: string[]): Promise<Record<string, WireTensor>>;
  /** upload (or replace) named weights in the weight store (GPU buffers on WebGPU); returns the whole store */
  setWeights(weights: Record<string, WireTensorIn>): Promise<Record<string, StoredWeight>>;
  /** what the weight store holds */
  weightInfo(): Promise<Record<string, StoredWeight>>;
  /** drop every stored weight (and its GPU buffer) */
  clearWeights(): Promise<void>;
  /** release every session in the runtime's cache */
  releaseSessions(): Promise<void>;
  /** build a small graph and its backward graph in the worker with the project's IR and run both */
  demoBackward(): Promise<DemoBackwardResult>;
  /** destroy the GPUDevice as a driver reset would (tests of the recovery path); false when not on WebGPU */
  loseDeviceForTest(): Promise<boolean>;
  /** fill one of the model's weights with NaN, as a corrupted buffer would be (tests of a run's NaN stop) */
  poisonWeightForTest(name: string): Promise<void>;

  // ---- training (src/worker/training.ts): the same Trainer as vco-lab, durable in IndexedDB
  /** training events (a step's report, a status change) go to this callback */
  onTrain(cb: (e: TrainEvent) => void): void;
  /** read and check a data set for the next run (every row, every image); its preview */
  prepareData(input: DataInput, options?: { skipBad?: boolean }): Promise<DataPreview>;
  /** a new run on the loaded model and the prepared data; it trains in the background until done or paused */
  startRun(config: RunConfig): Promise<RunSummary>;
  /** a stored run from its last checkpoint (the same model must be loaded) */
  resumeRun(id: string): Promise<RunSummary>;
  /** stop after the current step and checkpoint */
  pauseRun(): Promise<void>;
  stopRun(): Promise<void>;
  /** one step of a paused run */
  stepRun(): Promise<StepReport>;
  runs(): Promise<RunSummary[]>;
  runLogs(id: string): Promise<StepReport[]>;
  deleteRun(id: string): Promise<void>;
  /** the ShapesWorld benchmark on the base model and (with an adapter on) the adapter */
  evaluate(
    perCategory: number,
    onProgress?: (done: number, total: number) => void,
  ): Promise<Record<string, Record<string, CategoryMetrics>>>;
  /** keep the open run's adapter in the library */
  saveRunAdapter(name: string): Promise<AdapterInfo>;
  adapters(): Promise<AdapterInfo[]>;
  renameAdapter(id: string, name: string): Promise<void>;
  deleteAdapter(id: string): Promise<void>;
  /** a zip of the PEFT folder */
  exportAdapter(id: string): Promise<{ name: string; zip: Uint8Array }>;
  importAdapter(files: File[], name: string): Promise<AdapterInfo>;
  /** put a library adapter on the engine (the inspector's policy) */
  useAdapter(id: string): Promise<ModelSummary>;
}
