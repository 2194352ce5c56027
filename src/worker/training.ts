/**
 * LoRA training in the page's worker: the same Trainer (src/engine/trainer.ts) and loss module as `vco-lab`,
 * on the loaded model's engine, with the run made durable in IndexedDB: its config and data (a ShapesWorld
 * set is kept as its options; a user's set as its rows with their image bytes), a checkpoint (the PEFT
 * adapter, AdamW moments, data order and RNG: `checkpointFiles`) every N steps and on Pause, and every step's
 * metrics. A run interrupted by a closed tab resumes from its last checkpoint to the bitwise-identical adapter
 * of an uninterrupted run: everything that decides a step is in that checkpoint.
 */
import { decodePng } from '../data/png.js';
import type { PreferenceRecord } from '../data/dataset.js';
import { type SetOptions, shapesworldSet } from '../data/sets.js';
import { checkpointFiles, exportPeft, restoreCheckpoint } from '../engine/checkpoint.js';
import type { Engine } from '../engine/engine.js';
import { recordSamples, shapesworldSamples } from '../engine/datasets.js';
import type { ChatModel } from '../engine/rows.js';
import type { EngineSample } from '../engine/sample.js';
import { Trainer, type StepLog, type TrainConfig } from '../engine/trainer.js';
import { resolveObjective } from '../loss/registry.js';
import type { PixelImage } from '../model/processor.js';
import { type StoredAdapter, db } from './storage.js';

export interface RunConfig {
  name: string;
  /** a loss-module id and the settings that differ from its defaults */
  objective: string;
  settings: Record<string, unknown>;
  lora: {
    r: number;
    alpha: number;
    /** written to adapter_config.json; preference training runs with dropout off, as TRL's DPOTrainer (disable_dropout) */
    dropout: number;
    /** PEFT target_modules: names matched as dotted suffixes (so q_proj adapts the vision tower too), or a regex */
    targets: string[] | string;
    /** LoRA on the top k LM layers only */
    topK?: number;
  };
  lr: number;
  weightDecay: number;
  warmupRatio: number;
  schedule: 'cosine' | 'linear' | 'constant';
  /** null: no clipping */
  maxGradNorm: number | null;
  batch: number;
  gradAccum: number;
  steps: number;
  seed: number;
  /** save a checkpoint every this many steps (and on Pause) */
  checkpointEvery: number;
}

/** a user's row with its two images' bytes, as stored with the run */
export interface StoredRecord extends Omit<PreferenceRecord, 'images'> {
  images: [{ name: string; bytes: Uint8Array }, { name: string; bytes: Uint8Array }];
}

export type RunData = { kind: 'shapesworld'; options: SetOptions } | { kind: 'records'; source: string; records: StoredRecord[] };

export type RunStatus = 'running' | 'paused' | 'done' | 'stopped' | 'failed';

export interface StepReport extends StepLog {
  /** wall seconds of this step */
  seconds: number;
  samples_per_second: number;
  tokens_per_second: number;
  /** bytes in GPU buffers (WebGPU) or host memory held by the weight store */
  weight_memory: number;
  /** every GPU buffer of the runtime's device after the step, and the most during it (where the runtime counts them) */
  gpu_buffer_bytes?: number;
  gpu_peak_bytes?: number;
}

export interface RunRecord {
  id: string;
  config: RunConfig;
  data: RunData;
  /** the model the run trains, to reload it for a resume */
  model: { name: string; source: unknown; int4: boolean };
  status: RunStatus;
  step: number;
  createdAt: number;
  updatedAt: number;
  samples: number;
  logs: StepReport[];
  /** the latest checkpoint (its step is checkpointStep) */
  checkpoint?: Record<string, Uint8Array>;
  checkpointStep: number;
  message?: string;
}

export type RunSummary = Omit<RunRecord, 'checkpoint' | 'data' | 'logs'> & { lastLog?: StepReport; dataSummary: string };

export type TrainEvent =
  | { type: 'step'; runId: string; report: StepReport }
  | { type: 'status'; runId: string; status: RunStatus; step: number; message?: string }
  /** a checkpoint of `step` is stored (IndexedDB) */
  | { type: 'checkpoint'; runId: string; step: number };

export function validateRunConfig(c: RunConfig): void {
  const bad = (field: string, what: string): never => {
    throw new Error(`run settings: ${field} ${what}`);
  };
  const posInt = (field: string, v: number, max = 1e9) => {
    if (!Number.isInteger(v) || v < 1 || v > max) bad(field, `must be an integer from 1 to ${max} (got ${v})`);
  };
  resolveObjective(c.objective, c.settings);
  posInt('lora.r', c.lora.r, 4096);
  if (!(c.lora.alpha > 0)) bad('lora.alpha', `must be positive (got ${c.lora.alpha})`);
  if (!(c.lora.dropout >= 0 && c.lora.dropout < 1)) bad('lora.dropout', `must be in [0, 1) (got ${c.lora.dropout})`);
  if (Array.isArray(c.lora.targets) ? !c.lora.targets.length : !c.lora.targets)
    bad('lora.targets', 'must name at least one module');
  if (c.lora.topK !== undefined) posInt('lora.topK', c.lora.topK);
  if (!(c.lr > 0 && c.lr < 1)) bad('lr', `must be in (0, 1) (got ${c.lr})`);
  if (!(c.weightDecay >= 0)) bad('weightDecay', `must be >= 0 (got ${c.weightDecay})`);
  if (!(c.warmupRatio >= 0 && c.warmupRatio < 1)) bad('warmupRatio', `must be in [0, 1) (got ${c.warmupRatio})`);
  if (c.maxGradNorm !== null && !(c.maxGradNorm > 0)) bad('maxGradNorm', `must be positive, or none (got ${c.maxGradNorm})`);
  posInt('batch', c.batch, 1024);
  posInt('gradAccum', c.gradAccum, 1024);
  posInt('steps', c.steps, 1e6);
  if (!Number.isInteger(c.seed) || c.seed < 0) bad('seed', `must be a non-negative integer (got ${c.seed})`);
  posInt('checkpointEvery', c.checkpointEvery);
}

export function trainConfig(c: RunConfig): TrainConfig {
  return {
    objective: c.objective,
    objectiveSettings: c.settings,
    optimizer: { lr: c.lr, betas: [0.9, 0.999], eps: 1e-8, weightDecay: c.weightDecay },
    schedule: { kind: c.schedule, warmupSteps: Math.round(c.warmupRatio * c.steps), totalSteps: c.steps },
    batchSize: c.batch,
    gradAccum: c.gradAccum,
    maxGradNorm: c.maxGradNorm,
    seed: c.seed,
    shuffle: true,
  };
}

/** the engine samples of a run's data (images decoded as the inspector decodes them: PNG with the CLI's decoder) */
export async function runSamples(
  m: ChatModel,
  data: RunData,
  decode: (bytes: Uint8Array, name: string) => Promise<PixelImage>,
): Promise<EngineSample[]> {
  if (data.kind === 'shapesworld') return shapesworldSamples(m, shapesworldSet(data.options));
  const images: Array<[PixelImage, PixelImage]> = [];
  for (const r of data.records) {
    const pair: PixelImage[] = [];
    for (const im of r.images) {
      try {
        pair.push(await decode(im.bytes, im.name));
      } catch (e) {
        throw new Error(`${r.where}: image ${im.name}: ${(e as Error).message}`, { cause: e });
      }
    }
    images.push(pair as [PixelImage, PixelImage]);
  }
  const recs: PreferenceRecord[] = data.records.map((r) => ({
    ...r,
    images: [{ path: r.images[0].name }, { path: r.images[1].name }],
  }));
  return recordSamples(m, recs, images);
}

const tokensOf = (s: EngineSample) =>
  (['m', "m'", 'M>m', "M>m'"] as const).reduce(
    (n, c) => n + s.prompts[c].length + s.responses.y.length + s.responses["y'"].length,
    0,
  );

/** PNG with the same decoder as the CLI; other formats by the browser (in a worker: OffscreenCanvas) */
export async function decodeImageBytes(bytes: Uint8Array, name: string): Promise<PixelImage> {
  if (bytes.length >= 4 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47)
    return decodePng(bytes, name);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes as BlobPart]));
  } catch (e) {
    throw new Error(`${name}: not an image this browser can decode (${(e as Error).message}); use PNG or JPEG`, { cause: e });
  }
  const c = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = c.getContext('2d')!;
  ctx.drawImage(bitmap, 0, 0);
  const d = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  return { width: d.width, height: d.height, data: d.data, channels: 4 };
}

/** one run being trained in this worker */
export class TrainingSession {
  private trainer!: Trainer;
  private pauseRequested = false;
  private stopRequested = false;
  private looping: Promise<void> | null = null;

  private constructor(
    readonly record: RunRecord,
    private readonly engine: Engine,
    private readonly samples: EngineSample[],
    private readonly emit: (e: TrainEvent) => void,
  ) {}

  /** a new run, or (record with a checkpoint) a resumed one */
  static async open(
    record: RunRecord,
    engine: Engine,
    model: ChatModel,
    emit: (e: TrainEvent) => void,
  ): Promise<TrainingSession> {
    validateRunConfig(record.config);
    const samples = await runSamples(model, record.data, decodeImageBytes);
    if (!samples.length) throw new Error('the run has no samples');
    record.samples = samples.length;
    const c = record.config;
    await engine.setAdapter({ r: c.lora.r, alpha: c.lora.alpha, targets: c.lora.targets, topK: c.lora.topK }, c.seed);
    const s = new TrainingSession(record, engine, samples, emit);
    if (record.checkpoint) {
      const { state } = await restoreCheckpoint(
        engine,
        record.checkpoint,
        `run ${record.config.name}, step ${record.checkpointStep}`,
      );
      s.trainer = new Trainer(engine, samples, trainConfig(c), state);
      // metrics logged after the checkpoint are redone
      record.logs = record.logs.filter((l) => l.step <= record.checkpointStep);
      record.step = record.checkpointStep;
    } else {
      s.trainer = new Trainer(engine, samples, trainConfig(c));
    }
    return s;
  }

  get done(): boolean {
    return this.trainer.state.step >= this.record.config.steps;
  }

  private async save(): Promise<void> {
    this.record.updatedAt = Date.now();
    await (await db()).put('runs', this.record as unknown as { id: string });
  }

  /** write a checkpoint of the current state into the run's record (a full quota fails the save, the old one stays) */
  async checkpoint(): Promise<void> {
    const c = this.record.config;
    const files = checkpointFiles(
      this.engine,
      this.trainer.state,
      trainConfig(c),
      this.samples.map((s) => s.id),
    );
    const prev = { checkpoint: this.record.checkpoint, step: this.record.checkpointStep };
    this.record.checkpoint = files;
    this.record.checkpointStep = this.trainer.state.step;
    try {
      await this.save();
      this.emit({ type: 'checkpoint', runId: this.record.id, step: this.record.checkpointStep });
    } catch (e) {
      Object.assign(this.record, { checkpoint: prev.checkpoint, checkpointStep: prev.step });
      const quota = (e as Error).name === 'QuotaExceededError';
      throw new Error(
        `the checkpoint at step ${this.trainer.state.step} could not be stored (${quota ? 'the browser storage quota is full: delete stored models or runs' : (e as Error).message}); the last good one is at step ${prev.step}`,
        { cause: e },
      );
    }
  }

  private setStatus(status: RunStatus, message?: string) {
    this.record.status = status;
    this.record.message = message;
    this.emit({ type: 'status', runId: this.record.id, status, step: this.trainer.state.step, message });
  }

  /** one optimizer step, reported */
  async step(): Promise<StepReport> {
    const meter = this.engine.rt.gpuMemory;
    meter?.resetPeak();
    const t0 = performance.now();
    const log = await this.trainer.step();
    const seconds = (performance.now() - t0) / 1000;
    const tokens = (log.samples / Math.max(1, this.samples.length)) * this.samples.reduce((n, s) => n + tokensOf(s), 0);
    const mem = this.engine.weights.bytes();
    const report: StepReport = {
      ...log,
      seconds,
      samples_per_second: log.samples / seconds,
      tokens_per_second: tokens / seconds,
      weight_memory: (mem['gpu-buffer'] ?? 0) + (mem.cpu ?? 0),
      ...(meter ? { gpu_buffer_bytes: meter.live, gpu_peak_bytes: meter.peak } : {}),
    };
    this.record.logs.push(report);
    this.record.step = log.step;
    this.emit({ type: 'step', runId: this.record.id, report });
    return report;
  }

  /** train until the last step, a pause or a stop; checkpoints every N steps and at the end */
  run(): Promise<void> {
    this.looping ??= (async () => {
      this.pauseRequested = this.stopRequested = false;
      this.setStatus('running');
      await this.save();
      try {
        while (!this.done && !this.pauseRequested && !this.stopRequested) {
          await this.step();
          if (this.trainer.state.step % this.record.config.checkpointEvery === 0 || this.done) await this.checkpoint();
        }
        if (this.done) {
          if (this.record.checkpointStep !== this.trainer.state.step) await this.checkpoint();
          this.setStatus('done');
        } else if (this.stopRequested) {
          this.setStatus('stopped');
        } else {
          await this.checkpoint();
          this.setStatus('paused');
        }
        await this.save();
      } catch (e) {
        this.setStatus(
          'failed',
          `${(e as Error).message}${this.record.checkpoint ? ` (the last good checkpoint, step ${this.record.checkpointStep}, is kept)` : ''}`,
        );
        await this.save().catch(() => undefined);
      } finally {
        this.looping = null;
      }
    })();
    return this.looping;
  }

  /** stop after the current step and checkpoint (a paused run resumes, also after the tab is closed) */
  async pause(): Promise<void> {
    this.pauseRequested = true;
    await this.looping;
  }

  async stop(): Promise<void> {
    this.stopRequested = true;
    await this.looping;
    if (this.record.status !== 'stopped') this.setStatus('stopped');
    await this.save();
  }

  /** one step from a paused run */
  async single(): Promise<StepReport> {
    if (this.looping) throw new Error('the run is training; pause it first');
    if (this.done) throw new Error('the run has done all its steps');
    const r = await this.step();
    if (this.trainer.state.step % this.record.config.checkpointEvery === 0 || this.done) await this.checkpoint();
    this.record.status = this.done ? 'done' : 'paused';
    await this.save();
    return r;
  }

  /** the adapter as PEFT files */
  peft(): Record<string, Uint8Array> {
    return exportPeft(this.engine, {
      targets: this.record.config.lora.targets,
      dropout: this.record.config.lora.dropout,
      baseModel: this.record.model.name,
    });
  }

  /** keep the current adapter in the page's adapter library */
  async saveAdapter(name: string): Promise<StoredAdapter> {
    const last = this.record.logs[this.record.logs.length - 1];
    const a: StoredAdapter = {
      id: `${this.record.id}-${this.trainer.state.step}`,
      name,
      baseModel: this.record.model.name,
      objective: this.record.config.objective,
      steps: this.trainer.state.step,
      createdAt: Date.now(),
      metrics: last ? { loss: last.loss, ...last.metrics } : {},
      files: this.peft(),
    };
    await (await db()).put('adapters', a);
    return a;
  }
}

export async function listRuns(): Promise<RunSummary[]> {
  const all = (await (await db()).getAll('runs')) as unknown as RunRecord[];
  return all
    .map(({ checkpoint: _c, data, logs, ...r }) => ({
      ...r,
      lastLog: logs[logs.length - 1],
      dataSummary:
        data.kind === 'shapesworld'
          ? `ShapesWorld: ${data.options.pairs} pairs, seed ${data.options.seed}`
          : `${data.records.length} rows of ${data.source}`,
    }))
    .sort((a, b) => b.updatedAt - a.updatedAt);
}

export async function getRun(id: string): Promise<RunRecord | undefined> {
  return (await (await db()).get('runs', id)) as unknown as RunRecord | undefined;
}

export async function deleteRun(id: string): Promise<void> {
  await (await db()).delete('runs', id);
}
