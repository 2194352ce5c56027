/**
 * What the panels share: the engine worker, the backend it runs on, the loaded model, and the notices the
 * page shows (a lost GPU device, a file that could not be stored). Panels never import each other; they read
 * and change this.
 *
 * A lost GPU device leaves the worker's onnxruntime unusable, so recovery replaces the worker: a new one
 * starts, re-creates the runtime and reloads the model that was loaded (from IndexedDB or the bundle, no
 * download), and the page says what happened.
 */
import { proxy, type Remote } from 'comlink';
import { createEngineWorker, terminateEngineWorker } from '../worker/client.js';
import type {
  EngineInfo,
  EngineWorkerApi,
  LoadOptions,
  MarginsReport,
  ModelSource,
  ModelSummary,
  RunSummary,
  StepReport,
  TrainEvent,
  WorkerEvent,
} from '../worker/api.js';

export interface Notice {
  kind: 'info' | 'warning' | 'error';
  text: string;
}

class AppState {
  /**
   * the worker's comlink proxy, kept out of Svelte's reactivity: a reactive store would probe its properties,
   * and every property of a comlink proxy is a remote call (`generation` tells panels when it changes)
   */
  #engine: Remote<EngineWorkerApi> = createEngineWorker();
  info = $state<EngineInfo | null>(null);
  model = $state<ModelSummary | null>(null);
  /** the source and options of the loaded model, to reload it after a restart */
  loadedFrom = $state.raw<{ source: ModelSource; options: LoadOptions } | null>(null);
  notices = $state<Notice[]>([]);
  /** the training run the worker has open and its metrics so far (the train panel draws them) */
  run = $state.raw<RunSummary | null>(null);
  logs = $state.raw<StepReport[]>([]);
  /** the margin inspector's latest report (the explainer's "your sample" reads it) */
  report = $state.raw<MarginsReport | null>(null);
  /** models loaded so far (scripts and tests wait for it to move) */
  loads = $state(0);
  /** bumps when the worker is replaced, so panels can redo what they showed */
  generation = $state(0);
  /**
   * settles (rejects) when the worker is replaced: a call to the old worker never answers, so long calls race
   * against this (`app.call`)
   */
  #replaced: { promise: Promise<never>; reject: (e: Error) => void } = this.newReplaced();

  private newReplaced() {
    let reject!: (e: Error) => void;
    const promise = new Promise<never>((_, r) => (reject = r));
    promise.catch(() => undefined);
    return { promise, reject };
  }

  /** a call to the worker that fails, instead of hanging, if the engine restarts meanwhile */
  call<T>(f: (engine: Remote<EngineWorkerApi>) => Promise<T>): Promise<T> {
    return Promise.race([f(this.#engine), this.#replaced.promise]);
  }
  private prefer: 'webgpu' | 'wasm' = 'webgpu';
  private starting: Promise<EngineInfo> | null = null;

  get engine(): Remote<EngineWorkerApi> {
    return this.#engine;
  }

  constructor() {
    const q = new URLSearchParams(location.search);
    if (q.get('backend') === 'wasm') this.prefer = 'wasm';
    this.listen();
  }

  private listen() {
    void this.engine.onEvent(proxy((e: WorkerEvent) => this.onEvent(e)));
    void this.engine.onTrain(proxy((e: TrainEvent) => this.onTrain(e)));
  }

  private onTrain(e: TrainEvent) {
    if (!this.run || this.run.id !== e.runId) return;
    if (e.type === 'step') {
      this.logs = [...this.logs, e.report];
      this.run = { ...this.run, step: e.report.step, lastLog: e.report };
    } else if (e.type === 'checkpoint') {
      this.run = { ...this.run, checkpointStep: e.step };
    } else {
      this.run = { ...this.run, status: e.status, step: e.step, message: e.message };
      if (e.status === 'failed') this.notify('error', `Training stopped: ${e.message}`);
    }
  }

  private onEvent(e: WorkerEvent) {
    if (e.type === 'device-lost') void this.recover(e.reason, e.message);
    else if (e.type === 'store-failed')
      this.notify('warning', `A downloaded file was not kept for next time (${e.why}): ${e.url}`);
  }

  notify(kind: Notice['kind'], text: string) {
    this.notices = [...this.notices.filter((n) => n.text !== text), { kind, text }];
  }

  dismiss(n: Notice) {
    this.notices = this.notices.filter((x) => x !== n);
  }

  /** start the runtime once (WebGPU, else wasm; `?backend=wasm` asks for wasm) */
  start(): Promise<EngineInfo> {
    if (!this.starting) performance.mark('vco-lab:engine-start');
    this.starting ??= this.engine.init(this.prefer).then((info) => {
      this.info = info;
      return info;
    });
    return this.starting;
  }

  async load(
    source: ModelSource,
    options: LoadOptions,
    onProgress?: Parameters<EngineWorkerApi['loadModel']>[2],
  ): Promise<ModelSummary> {
    await this.start();
    const summary = await this.call((e) => e.loadModel(source, options, onProgress && proxy(onProgress)));
    this.model = summary;
    this.loadedFrom = { source, options };
    this.loads++;
    return summary;
  }

  /** the GPU device is gone: a new worker, a new runtime, the same model */
  private async recover(reason: string, message: string) {
    const was = this.loadedFrom;
    this.notify(
      'warning',
      `The GPU device was lost (${reason}${message ? `: ${message}` : ''}). The engine restarted${was ? ' and is reloading the model' : ''}.`,
    );
    terminateEngineWorker(this.#engine);
    this.#replaced.reject(new Error('the engine restarted after the GPU device was lost; try again'));
    this.#replaced = this.newReplaced();
    this.#engine = createEngineWorker();
    this.listen();
    this.starting = null;
    this.model = null;
    this.info = null;
    await this.start();
    if (was) {
      try {
        const m = await this.load(was.source, was.options);
        this.notify('info', `The engine runs again on ${m.ep === 'webgpu' ? 'WebGPU' : 'WebAssembly'}; ${m.name} is reloaded.`);
      } catch (e) {
        this.notify(
          'error',
          `Reloading ${was.source.kind === 'default' ? 'the default model' : 'the model'} after the GPU loss failed: ${(e as Error).message}`,
        );
      }
    }
    this.generation++;
  }
}

export const app = new AppState();
