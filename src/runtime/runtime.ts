/**
 * One interface over onnxruntime-node and onnxruntime-web (both implement onnxruntime-common's API; this
 * layer is thin on purpose, like onnxruntime's own js/ packages). What it adds:
 *  - weights are uploaded once into a WeightStore and fed by name to every session whose graph takes them
 *    as inputs (GPU buffers in the browser), instead of being copied as initializers into each session;
 *  - outputs a later session consumes can stay on the device (`keepOnDevice`);
 *  - one session cache per runtime (`rt.sessions`), keyed by what the graph is: a compiled session serves
 *    every engine and caller on the runtime, because weights are fed per run, never baked in;
 *  - the EP actually used, and why, is reported.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { Graph } from '../onnx/ir.js';
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

  /** drop a weight (and its GPU buffer) */
  delete(name: string): void {
    const t = this.tensors.get(name);
    if (t) this.runtime.disposeTensor(t);
    this.tensors.delete(name);
  }

  /** bytes held, by where they live ('gpu-buffer' or 'cpu') */
  bytes(): Record<string, number> {
    const out: Record<string, number> = {};
    const size: Record<string, number> = { float32: 4, float64: 8, int64: 8, int32: 4, uint8: 1, bool: 1, float16: 2 };
    for (const t of this.tensors.values()) out[t.location] = (out[t.location] ?? 0) + t.size * (size[t.type] ?? 4);
    return out;
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

export interface RunOptions {
  /** outputs to compute (default: all) */
  fetches?: string[];
  /** the store unfed inputs come from (default: the session's own, if it was created with one) */
  weights?: WeightStore;
  /** store name of a graph input (one layer graph serves every layer: its `layer.*` inputs map to layer l's) */
  alias?: (input: string) => string;
}

export class Session {
  /** what the cache's builder attached to this session (e.g. the graph's seed and gradient names) */
  meta: unknown;

  constructor(
    private readonly inner: InferenceSession,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    private readonly weights?: WeightStore,
    /** where runs must not overlap (onnxruntime-web), the runtime's queue that serialises them */
    private readonly queue?: { tail: Promise<unknown> },
  ) {}

  /** run with `feeds`; any graph input not in `feeds` is taken from the weight store by (aliased) name */
  async run(feeds: Feeds, o: RunOptions = {}): Promise<Record<string, Tensor>> {
    const all: Feeds = {};
    const missing: string[] = [];
    const store = o.weights ?? this.weights;
    for (const name of this.inputNames) {
      const t = feeds[name] ?? store?.get(o.alias ? o.alias(name) : name);
      if (t) all[name] = t;
      else missing.push(name);
    }
    if (missing.length) {
      throw new Error(`session input(s) ${missing.join(', ')} were neither fed nor found in the weight store`);
    }
    const go = () => (o.fetches ? this.inner.run(all, o.fetches) : this.inner.run(all));
    if (!this.queue) return go();
    const next = this.queue.tail.then(go, go);
    this.queue.tail = next.catch(() => undefined);
    return next;
  }

  async release(): Promise<void> {
    await this.inner.release();
  }
}

/**
 * Compiled sessions by key (the caller's name for what the graph is: a segment and its shape, or a model's
 * SHA-256). Creating a session is the expensive part on WebGPU (shader compilation), so every engine on a
 * runtime shares this one cache; a failed creation is forgotten so that a retry builds again.
 */
export class SessionCache {
  private readonly sessions = new Map<string, Promise<Session>>();
  constructor(private readonly rt: Runtime) {}

  get(
    key: string,
    build: () => Graph | Uint8Array | { graph: Graph | Uint8Array; meta: unknown },
    opts: Omit<SessionOptions, 'weights'> = {},
  ): Promise<Session> {
    let s = this.sessions.get(key);
    if (!s) {
      s = Promise.resolve().then(async () => {
        const b = build();
        const isModel = b instanceof Uint8Array || b instanceof Graph;
        const session = await this.rt.session(isModel ? (b as Graph | Uint8Array) : b.graph, opts);
        if (!isModel) session.meta = b.meta;
        return session;
      });
      this.sessions.set(key, s);
      s.catch(() => {
        if (this.sessions.get(key) === s) this.sessions.delete(key);
      });
    }
    return s;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** release every session (e.g. when the model changes, or before the runtime goes) */
  async releaseAll(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(
      all.map(async (p) => {
        try {
          await (await p).release();
        } catch {
          /* it failed to build */
        }
      }),
    );
  }
}

export class Runtime {
  /** the one session cache of this runtime */
  readonly sessions: SessionCache = new SessionCache(this);
  /**
   * onnxruntime-web (1.30, JSEP build) cannot run sessions at the same time: overlapping runs (an engine
   * scores a sample's contexts concurrently, which onnxruntime-node overlaps) failed here with "memory access
   * out of bounds" in its wasm module, so on the web they queue
   */
  private readonly runQueue = { tail: Promise.resolve() as Promise<unknown> };
  /** where the platform can count them (the page's WebGPU device), the GPU buffers held: live bytes and peak */
  gpuMemory?: { live: number; peak: number; buffers: number; resetPeak(): void };

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
    return new Session(
      s,
      s.inputNames,
      s.outputNames,
      opts.weights,
      this.platform === 'web' || this.ep === 'wasm' ? this.runQueue : undefined,
    );
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
