/**
 * What crosses the boundary between the page and the engine worker: plain tensors (typed arrays, which
 * structured clone and transfer carry) and the worker's API. No onnxruntime types appear here.
 */

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

export interface ModelSummary {
  name: string;
  family: string;
  /** parameters (weights of the graphs) */
  parameters: number;
  bytes: number;
  imageTokens: number;
  ep: string;
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

export interface EngineWorkerApi {
  /**
   * Load a model from its HF files (name -> URL; the embedded default model when none are given), reporting
   * bytes fetched; the weights go into the weight store
   */
  loadModel(urls?: Record<string, string>, onProgress?: (done: number, total: number) => void): Promise<ModelSummary>;
  /** the loaded model's answers to yes/no questions about one image */
  yesNo(image: WireImage, questions: string[]): Promise<YesNoAnswer[]>;
  /** (re)start the runtime; WebGPU if this browser gives an adapter, else wasm with the reason */
  init(prefer?: 'webgpu' | 'wasm'): Promise<EngineInfo>;
  /**
   * Run a serialized ONNX model. Sessions are cached (the runtime's cache) by the model's SHA-256. Graph inputs missing from
   * `feeds` are taken by name from the weights set with setWeights. Outputs come back to the host.
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
}
