/**
 * One interface over onnxruntime-node and onnxruntime-web (both implement onnxruntime-common's API; this
 * layer is thin on purpose, like onnxruntime's own js/ packages). What it adds:
 *  - weights are uploaded once into a WeightStore and fed by name to every session whose graph takes them
 *    as inputs (GPU buffers in the browser), instead of being copied as initializers into each session;
 *  - outputs a later session consumes can stay on the device (`keepOnDevice`);
 *  - the EP actually used, and why, is reported.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import type { Graph } from '../onnx/ir.js';
import { serialize } from '../onnx/serialize.js';

export type EP = 'cpu' | 'webgpu' | 'wasm' | 'cuda';
export type TensorDType = Tensor.Type;

/** the parts of an onnxruntime module (node or web) this layer uses */
export interface OrtModule {
  InferenceSession: { create(model: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession> };
  Tensor: new (type: TensorDType, data: Tensor.DataType, dims: readonly number[]) => Tensor;
}

export type Feeds = Record<string, Tensor>;

export class WeightStore {
  private readonly tensors = new Map<string, Tensor>();
  constructor(private readonly runtime: Runtime) {}

  /** upload (or replace) a named weight; on a WebGPU runtime in the browser it moves into a GPU buffer */
  async set(name: string, t: Tensor): Promise<void> {
    const old = this.tensors.get(name);
    this.tensors.set(name, await this.runtime.upload(t));
    if (old && old !== t) this.runtime.disposeTensor(old);
  }

  get(name: string): Tensor | undefined {
    return this.tensors.get(name);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  dispose(): void {
    for (const t of this.tensors.values()) this.runtime.disposeTensor(t);
    this.tensors.clear();
  }
}

export interface SessionOptions {
  /** outputs to leave on the device (GPU buffer) for a later session; others come back to the host */
  keepOnDevice?: string[];
  /** weights to feed by name when a run does not pass them */
  weights?: WeightStore;
  /**
   * ORT graph optimisation level (default 'all'). 'basic' keeps ORT from fusing into contrib ops that have
   * only float32 kernels (QuickGelu, SkipLayerNorm, ...): float64 graphs need it.
   */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

export class Session {
  constructor(
    private readonly inner: InferenceSession,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    private readonly weights?: WeightStore,
  ) {}

  /**
   * run with `feeds`; any graph input not in `feeds` is taken from the weight store by name, through `alias`
   * when given (one layer graph serves every layer: its `layer.*` inputs map to each layer's weights)
   */
  async run(feeds: Feeds, fetches?: string[], alias?: (input: string) => string): Promise<Record<string, Tensor>> {
    const all: Feeds = {};
    const missing: string[] = [];
    for (const name of this.inputNames) {
      const t = feeds[name] ?? this.weights?.get(alias ? alias(name) : name);
      if (t) all[name] = t; else missing.push(name);
    }
    if (missing.length) {
      throw new Error(`session input(s) ${missing.join(', ')} were neither fed nor found in the weight store`);
    }
    return fetches ? this.inner.run(all, fetches) : this.inner.run(all);
  }

  async release(): Promise<void> {
    await this.inner.release();
  }
}

export class Runtime {
  constructor(
    readonly ort: OrtModule,
    readonly platform: 'node' | 'web',
    readonly ep: EP,
    /** why this EP (an adapter name, or why a faster one was not used) */
    readonly detail: string,
    private readonly uploader?: (t: Tensor) => Promise<Tensor>,
  ) {}

  async session(model: Graph | Uint8Array, opts: SessionOptions = {}): Promise<Session> {
    const bytes = model instanceof Uint8Array ? model : serialize(model);
    const options: InferenceSession.SessionOptions = {
      executionProviders: [this.ep],
      graphOptimizationLevel: opts.optimization ?? 'all',
      // errors only: ORT's routine warnings (e.g. shape ops assigned to the CPU on purpose) would flood stdout
      logSeverityLevel: 3,
    };
    if (opts.keepOnDevice?.length && this.platform === 'web' && this.ep === 'webgpu') {
      options.preferredOutputLocation = Object.fromEntries(opts.keepOnDevice.map((n) => [n, 'gpu-buffer' as const]));
    }
    const s = await this.ort.InferenceSession.create(bytes, options);
    return new Session(s, s.inputNames, s.outputNames, opts.weights);
  }

  tensor(type: TensorDType, data: Tensor.DataType, dims: readonly number[]): Tensor {
    return new this.ort.Tensor(type, data, dims);
  }

  weightStore(): WeightStore {
    return new WeightStore(this);
  }

  /** move a host tensor to where sessions read it fastest (identity on the CPU) */
  async upload(t: Tensor): Promise<Tensor> {
    return this.uploader && t.location === 'cpu' ? this.uploader(t) : t;
  }

  disposeTensor(t: Tensor): void {
    if (t.location === 'gpu-buffer') t.dispose();
  }
}
