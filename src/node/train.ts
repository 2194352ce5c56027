/**
 * `vco-lab train`: LoRA preference training of any model the loaders read, on ShapesWorld or a user's
 * preference set, with the loss module and the engine every other part of VCO Lab uses. One loop in one
 * file, in the spirit of nanoGPT's train.py:
 *
 *   prepare   model, adapter, data (every row and image checked), the validation split: nothing is written
 *             to output_dir until all of it succeeded
 *   loop      Trainer.step(); metrics.jsonl (TRL names, plus the official trainer_log.jsonl's entries and
 *             `train_`-prefixed keys); checkpoint-N/ every save_steps (PEFT adapter + the resumable state);
 *             evaluation every eval_steps (held-out reward accuracies per branch, the ShapesWorld benchmark)
 *   finish    adapter/ (the PEFT folder), a final evaluation, train_results.json
 *
 * `--resume DIR` restores the last checkpoint-N of DIR and continues to the bitwise-identical result (on the
 * same EP: the data order, the RNG and AdamW's moments are in the checkpoint). Ctrl-C saves a checkpoint at the
 * current step, then exits 130.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { shapesworldSet } from '../data/sets.js';
import { checkpointFiles, exportPeft, readTrainerState, restoreCheckpoint, trainerStateFile } from '../engine/checkpoint.js';
import { TileCache, recordSamples, shapesworldSamples } from '../engine/datasets.js';
import { evaluateObjective, heldOutAccuracy } from '../engine/heldout.js';
import type { EngineSample } from '../engine/sample.js';
import { type StepLog, type TrainBackend, type TrainConfig, Trainer } from '../engine/trainer.js';
import { shapesBenchmark } from '../eval/shapesworld.js';
import { benchmarkMetrics, yesNoMargins } from '../eval/yesno.js';
import { parseSafetensorsHeader } from '../model/safetensors.js';
import { createNodeRuntime } from '../runtime/node.js';
import { rng } from '../util/prng.js';
import { fillFolderAtomic, readFolder, writeFolderAtomic } from './checkpoint-io.js';
import { readDatasetFromDisk } from './dataset-files.js';
import { REPO_ROOT, loadModelDir, readAdapterDir } from './model-dir.js';
import { readCheckpointFiles } from './load-dir.js';
import type { Engine } from '../engine/engine.js';
import type { ChatModel } from '../engine/rows.js';
import { modelDataFromFiles } from '../model/data.js';
import type { TorchBackend } from './torch/backend.js';
import { resolveDeepSpeedConfig } from './torch/deepspeed.js';
import { UsageError } from './options.js';
import { type TrainRunConfig } from './train-config.js';

type Out = (s: string) => void;

export interface PreparedRun {
  config: TrainRunConfig;
  /** what builds the samples: spec, tokenizer, image processor */
  chat: ChatModel;
  /** backend "ort": the engine (with the benchmark's scoring); backend "torch": the PyTorch ranks */
  engine?: Engine;
  torch?: TorchBackend;
  /** where the trainer's scores, gradients and updates are computed */
  backend: Engine | TrainBackend;
  train: EngineSample[];
  validation: EngineSample[];
  /** one line: what the run trains on */
  data: string;
  /** the ShapesWorld benchmark runs at each evaluation */
  benchmark: boolean;
  totalSteps: number;
  trainConfig: TrainConfig;
}

/** a model folder: as given, else under the repository (models/shapesworld-tiny from anywhere) */
function modelDir(p: string): string {
  for (const d of [resolve(p), join(REPO_ROOT, p)]) if (existsSync(join(d, 'config.json'))) return d;
  return resolve(p);
}

/** the default model and models retrained by `vco-lab train-default` say so in their safetensors metadata */
function isShapesWorldModel(dir: string): boolean {
  const f = join(dir, 'model.safetensors');
  if (!existsSync(f)) return false;
  const bytes = new Uint8Array(readFileSync(f));
  try {
    return parseSafetensorsHeader(bytes, f).metadata.trained_by === 'vco-lab train-default';
  } catch {
    return false;
  }
}

/** the ranks that share a micro-batch: the PyTorch backend's processes (the engine is one) */
const ranks = (c: TrainRunConfig) => (c.backend === 'torch' ? c.nproc_per_node * c.nnodes : 1);

export function trainConfigOf(c: TrainRunConfig, totalSteps: number): TrainConfig {
  return {
    objective: c.objective,
    objectiveSettings: c.objective_settings,
    optimizer: { lr: c.learning_rate, betas: [0.9, 0.999], eps: 1e-8, weightDecay: c.weight_decay },
    schedule: { kind: c.lr_scheduler_type, warmupSteps: Math.round(c.warmup_ratio * totalSteps), totalSteps },
    // the micro-batch over every rank (torch): per device × ranks, as HF's global batch
    batchSize: c.per_device_train_batch_size * ranks(c),
    gradAccum: c.gradient_accumulation_steps,
    maxGradNorm: c.max_grad_norm,
    seed: c.seed,
    shuffle: true,
  };
}

/** the model in PyTorch worker processes (transformers + PEFT), the sample builder from the folder's own files */
async function prepareTorch(c: TrainRunConfig, dir: string, log: Out): Promise<{ chat: ChatModel; torch: TorchBackend }> {
  if (c.lora_top_k !== null)
    throw new UsageError('lora_top_k is an option of the ort backend; with torch, pick layers in lora_target_modules (a regex)');
  if (c.int4) throw new UsageError('int4 is an option of the ort backend; with torch, use torch_dtype bfloat16');
  const ds = c.deepspeed ? resolveDeepSpeedConfig(resolve(c.deepspeed), { ...c, world: ranks(c) }) : undefined;
  const d = modelDataFromFiles(readCheckpointFiles(dir), dir);
  const chat: ChatModel = { spec: d.config, tokenizer: d.tokenizer, processor: d.processor, placeholder: d.placeholder };
  const { TorchWorkers } = await import('./torch/workers.js');
  const { torchBackend } = await import('./torch/backend.js');
  const workers = await TorchWorkers.start({
    nproc: c.nproc_per_node,
    nnodes: c.nnodes,
    host: c.master_addr,
    log,
  });
  try {
    const loaded = await workers.all<{ lora: unknown[]; world: number }>('load', {
      model: dir,
      adapter: c.adapter_name_or_path ? resolve(c.adapter_name_or_path) : undefined,
      lora: { r: c.lora_r, alpha: c.lora_alpha, target_modules: c.lora_target_modules },
      dtype: c.torch_dtype,
      device: c.torch_device,
      seed: c.seed,
      deepspeed: ds?.config,
    });
    for (const n of ds?.notes ?? []) log(n);
    log(`PyTorch backend: ${workers.size} rank(s), ${loaded[0].lora.length} LoRA tensors, ${c.torch_dtype} on ${c.torch_device}`);
  } catch (e) {
    await workers.close();
    throw e;
  }
  return { chat, torch: torchBackend(workers) };
}

/** everything a run needs, checked; writes nothing */
export async function prepareRun(c: TrainRunConfig, log: Out = () => {}): Promise<PreparedRun> {
  const dir = modelDir(c.model_name_or_path);
  let chat: ChatModel, engine: Engine | undefined, torch: TorchBackend | undefined;
  if (c.deepspeed && c.backend !== 'torch')
    throw new UsageError('deepspeed is an option of the torch backend: add --backend torch, or leave out --deepspeed');
  if (c.backend === 'torch') ({ chat, torch } = await prepareTorch(c, dir, log));
  else {
    const rt = await createNodeRuntime(c.ep);
    log(`model ${dir} on ${rt.ep}${c.int4 ? ' (int4 frozen linears)' : ''}`);
    const model = await loadModelDir(rt, dir, undefined, { int4: c.int4 });
    if (c.adapter_name_or_path) {
      await model.engine.setAdapter(readAdapterDir(resolve(c.adapter_name_or_path)));
      for (const n of model.engine.adapterNotes) log(`note: ${n}`);
    } else {
      await model.engine.setAdapter(
        { r: c.lora_r, alpha: c.lora_alpha, targets: c.lora_target_modules, topK: c.lora_top_k ?? undefined },
        c.seed,
      );
    }
    if (!model.engine.lora.size)
      throw new UsageError(`lora_target_modules ${JSON.stringify(c.lora_target_modules)} matches no linear module of ${dir}`);
    chat = model;
    engine = model.engine;
  }
  try {
    return await prepareData(c, dir, chat, engine, torch, log);
  } catch (e) {
    await torch?.workers.close();
    throw e;
  }
}

async function prepareData(
  c: TrainRunConfig,
  dir: string,
  chat: ChatModel,
  engine: Engine | undefined,
  torch: TorchBackend | undefined,
  log: Out,
): Promise<PreparedRun> {
  const model = chat;
  let all: EngineSample[];
  let data: string;
  if (c.dataset === 'shapesworld') {
    all = shapesworldSamples(
      model,
      shapesworldSet({
        pairs: c.shapesworld_pairs,
        seed: c.shapesworld_seed,
        priorShare: c.shapesworld_prior_share,
        negative: c.shapesworld_negative,
      }),
    );
    data = `ShapesWorld: ${c.shapesworld_pairs} pairs (seed ${c.shapesworld_seed}, ${c.shapesworld_negative} negatives, ${Math.round(100 * c.shapesworld_prior_share)}% about the planted prior)`;
  } else {
    const d = await readDatasetFromDisk(c.dataset, { skipBad: c.skip_bad_rows });
    all = recordSamples(model, d.records, d.images, new TileCache(c.image_cache_mb * 2 ** 20));
    data = `${d.records.length} rows of ${d.source}${d.skipped.length ? `; ${d.skipped.length} bad rows skipped` : ''}`;
    for (const p of d.skipped.slice(0, 5)) log(`skipped ${p.message}`);
  }
  // the validation split: a fixed draw from the seed, so a resumed run gets the same one
  const order = all.map((_, i) => i);
  const rand = rng(c.seed ^ 0x5f3759df);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const nVal = c.validation_split > 0 && all.length >= 2 ? Math.max(1, Math.round(c.validation_split * all.length)) : 0;
  const validation = order
    .slice(0, nVal)
    .sort((a, b) => a - b)
    .map((i) => all[i]);
  let train = order
    .slice(nVal)
    .sort((a, b) => a - b)
    .map((i) => all[i]);
  if (c.max_samples !== null) train = train.slice(0, c.max_samples);
  if (!train.length)
    throw new UsageError(`no training samples left (${all.length} rows, validation_split ${c.validation_split})`);
  const perStep = c.per_device_train_batch_size * ranks(c) * c.gradient_accumulation_steps;
  const totalSteps = c.max_steps ?? Math.max(1, Math.ceil((c.num_train_epochs * train.length) / perStep));
  // the benchmark scores yes/no answers with the engine; a torch run's adapter is benchmarked with vco-lab eval --adapter
  const benchmark = !!engine && (c.benchmark === 'auto' ? isShapesWorldModel(dir) : c.benchmark);
  return {
    config: c,
    chat,
    engine,
    torch,
    backend: engine ?? torch!,
    train,
    validation,
    data,
    benchmark,
    totalSteps,
    trainConfig: trainConfigOf(c, totalSteps),
  };
}

/** the official trainer's 14 logged keys (`train_` + suffix), from the loss module's TRL names and terms */
const OFFICIAL_KEYS = [
  'single_loss',
  'multi_loss',
  'single_rewards/accuracies',
  'multi_rewards/accuracies',
  'single_rewards/margins',
  'multi_rewards/margins',
  'vcdist_loss',
  'loss_single_weighted',
  'loss_multi_weighted',
  'loss_anchor_weighted',
  'loss_vcdist_weighted',
  'vcdist_active_rate',
  'vcdist_teacher_acc',
];

export function metricsLine(
  s: StepLog,
  o: { seconds: number; elapsed: number; total: number; samples: number },
): Record<string, unknown> {
  const line: Record<string, unknown> = {
    step: s.step,
    epoch: s.epoch,
    timestamp: new Date().toISOString(),
    loss: s.loss,
    grad_norm: s.grad_norm,
    learning_rate: s.learning_rate,
    ...s.terms,
    ...s.metrics,
  };
  const all = { ...s.terms, ...s.metrics };
  line.train_loss_combined = s.loss;
  for (const k of OFFICIAL_KEYS) if (k in all) line[`train_${k}`] = all[k];
  Object.assign(line, {
    step_seconds: o.seconds,
    samples_per_second: o.samples / o.seconds,
    elapsed_time: o.elapsed,
    remaining_time: (o.elapsed / s.step) * (o.total - s.step),
    total_steps: o.total,
  });
  return line;
}

async function evaluate(run: PreparedRun, trainer: Trainer, step: number): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { step, event: 'evaluation', timestamp: new Date().toISOString() };
  if (run.validation.length) {
    const own = await evaluateObjective(trainer.backend, run.validation, run.config.objective, run.config.objective_settings);
    out.eval_loss = own.loss;
    for (const [k, v] of Object.entries(own.metrics)) if (k.includes('rewards/accuracies')) out[`eval_${k}`] = v;
    for (const [k, v] of Object.entries(await heldOutAccuracy(trainer.backend, run.validation)))
      out[`eval_heldout_${k}_accuracy`] = v;
    out.eval_samples = run.validation.length;
  }
  if (run.benchmark && run.engine) {
    const items = shapesBenchmark(run.config.benchmark_n);
    const b = benchmarkMetrics('', items, await yesNoMargins(run.engine, run.chat, items));
    for (const [k, v] of Object.entries(b.categories)) out[`benchmark/${k}`] = v.accuracy;
  }
  return out;
}

const fmt = (x: unknown) =>
  typeof x === 'number' ? (Math.abs(x) >= 100 || x === 0 ? x.toFixed(0) : x.toPrecision(3)) : String(x);

function bar(step: number, total: number, width = 24): string {
  const k = Math.round((step / total) * width);
  return `[${'#'.repeat(k)}${'-'.repeat(width - k)}]`;
}

function checkpoints(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => /^checkpoint-(\d+)$/.exec(f))
    .filter((m): m is RegExpExecArray => !!m && existsSync(join(dir, m[0], 'trainer_state.json')))
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

export interface TrainResult {
  output_dir: string;
  steps: number;
  seconds: number;
  interrupted: boolean;
  final_evaluation: Record<string, unknown> | null;
}

/**
 * Train (or resume) a run. `interrupt` is polled after each step (Ctrl-C); when it returns true the run saves a
 * checkpoint at that step and returns with interrupted: true.
 */
export async function train(
  c: TrainRunConfig,
  o: { resume?: boolean; log?: Out; progress?: (line: string) => void; interrupt?: () => boolean } = {},
): Promise<TrainResult> {
  const log = o.log ?? (() => {});
  const out = resolve(c.output_dir);
  if (!o.resume && existsSync(out) && readdirSync(out).length)
    throw new UsageError(
      `output_dir ${out} is not empty${existsSync(join(out, 'run.json')) ? ' (it holds a run: continue it with --resume)' : ''}; choose another`,
    );
  const run = await prepareRun(c, log);
  try {
    return await trainPrepared(run, c, out, o);
  } finally {
    if (run.engine) await run.engine.release();
    if (run.torch) await run.torch.workers.close();
  }
}

async function trainPrepared(
  run: PreparedRun,
  c: TrainRunConfig,
  out: string,
  o: { resume?: boolean; log?: Out; progress?: (line: string) => void; interrupt?: () => boolean },
): Promise<TrainResult> {
  const log = o.log ?? (() => {});
  log(`data: ${run.data}; ${run.train.length} training samples, ${run.validation.length} held out`);
  log(
    `${run.totalSteps} steps of ${c.per_device_train_batch_size * ranks(c)}×${c.gradient_accumulation_steps} samples, ${c.objective}`,
  );
  const { engine, torch } = run;
  const sampleIds = run.train.map((s) => s.id);
  let trainer: Trainer;
  const metricsFile = join(out, 'metrics.jsonl');
  if (o.resume) {
    const steps = checkpoints(out);
    if (!steps.length) throw new UsageError(`${out} holds no checkpoint-N folder to resume from`);
    const at = steps[steps.length - 1];
    const where = join(out, `checkpoint-${at}`);
    let r: { state: Trainer['state']; sampleIds: string[] };
    if (engine) r = await restoreCheckpoint(engine, readFolder(where), where);
    else {
      r = readTrainerState(readFileSync(join(where, 'trainer_state.json')), where);
      await torch!.restore(where);
    }
    if (r.sampleIds.join('\n') !== sampleIds.join('\n'))
      throw new UsageError(`${out}/checkpoint-${at}: its samples are not this run's data (was the dataset changed?)`);
    trainer = new Trainer(run.backend, run.train, run.trainConfig, r.state);
    // the metrics of steps after the checkpoint are done again: drop them
    const kept = existsSync(metricsFile)
      ? readFileSync(metricsFile, 'utf8')
          .split('\n')
          .filter((l) => l.trim() && !(Number((JSON.parse(l) as { step?: number }).step) > at))
      : [];
    writeFileSync(metricsFile, kept.map((l) => `${l}\n`).join(''));
    log(`resumed ${out} at step ${at}`);
  } else {
    trainer = new Trainer(run.backend, run.train, run.trainConfig);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'run.json'), `${JSON.stringify(c, null, 2)}\n`);
    writeFileSync(metricsFile, '');
  }
  const append = (x: Record<string, unknown>) => appendFileSync(metricsFile, `${JSON.stringify(x)}\n`);
  append({
    event: o.resume ? 'training_resumed' : 'training_start',
    step: trainer.state.step,
    timestamp: new Date().toISOString(),
    model_name: out,
    data: run.data,
    machine: `${cpus().length} x ${cpus()[0]?.model ?? 'CPU'}`,
    backend: engine ? `ort ${engine.rt.ep}` : `torch ${ranks(c)} rank(s) ${c.torch_device}${c.deepspeed ? ' deepspeed' : ''}`,
  });
  const peft = () =>
    exportPeft(engine!, {
      baseModel: c.model_name_or_path,
      targets: c.adapter_name_or_path || c.lora_top_k ? undefined : c.lora_target_modules,
      dropout: c.lora_dropout,
    });
  // a checkpoint: the PEFT adapter, the optimizer's state and the trainer's (data order, RNG, step)
  const save = async (step: number) => {
    const dir = join(out, `checkpoint-${step}`);
    if (engine) writeFolderAtomic(dir, { ...checkpointFiles(engine, trainer.state, run.trainConfig, sampleIds), ...peft() });
    else
      await fillFolderAtomic(dir, async (tmp) => {
        await torch!.save(tmp, true);
        writeFileSync(join(tmp, 'trainer_state.json'), trainerStateFile(trainer.state, run.trainConfig, sampleIds));
      });
  };
  const saveAdapter = async () => {
    if (engine) writeFolderAtomic(join(out, 'adapter'), peft());
    else await fillFolderAtomic(join(out, 'adapter'), (tmp) => torch!.save(tmp, false));
  };
  const t0 = performance.now();
  const startStep = trainer.state.step;
  let interrupted = false;
  while (trainer.state.step < run.totalSteps) {
    const ts = performance.now();
    const s = await trainer.step();
    const seconds = (performance.now() - ts) / 1000;
    const elapsed = (performance.now() - t0) / 1000;
    const line = metricsLine(s, {
      seconds,
      elapsed,
      total: run.totalSteps,
      samples: s.samples,
    });
    if (s.step % c.logging_steps === 0 || s.step === run.totalSteps) append(line);
    const rate = (s.step - startStep) / elapsed;
    const acc =
      s.metrics['multi_rewards/accuracies'] ?? s.metrics['rewards/accuracies'] ?? s.metrics['single_rewards/accuracies'];
    o.progress?.(
      `${bar(s.step, run.totalSteps)} ${s.step}/${run.totalSteps}  loss ${fmt(s.loss)}` +
        `${acc !== undefined ? `  acc ${fmt(acc)}` : ''}  ${(rate * s.samples).toFixed(2)} samples/s  ~${((run.totalSteps - s.step) / rate).toFixed(0)} s left`,
    );
    if (s.step % c.save_steps === 0 && s.step < run.totalSteps) await save(s.step);
    if (c.eval_steps && s.step % c.eval_steps === 0 && s.step < run.totalSteps) {
      const ev = await evaluate(run, trainer, s.step);
      append(ev);
      log(
        `step ${s.step} evaluation: ${Object.entries(ev)
          .filter(([k]) => k.startsWith('eval_heldout') || k.startsWith('benchmark/'))
          .map(([k, v]) => `${k} ${fmt(v)}`)
          .join(', ')}`,
      );
    }
    if (o.interrupt?.()) {
      interrupted = true;
      await save(s.step);
      append({ event: 'training_interrupted', step: s.step, timestamp: new Date().toISOString() });
      log(`interrupted: checkpoint-${s.step} saved; continue with --resume ${out}`);
      break;
    }
  }
  let final: Record<string, unknown> | null = null;
  if (!interrupted) {
    await save(trainer.state.step);
    await saveAdapter();
    final = await evaluate(run, trainer, trainer.state.step);
    append(final);
    append({ event: 'training_end', total_steps: trainer.state.step, timestamp: new Date().toISOString() });
    writeFileSync(
      join(out, 'train_results.json'),
      `${JSON.stringify({ steps: trainer.state.step, seconds: (performance.now() - t0) / 1000, data: run.data, final_evaluation: final }, null, 2)}\n`,
    );
  }
  return {
    output_dir: out,
    steps: trainer.state.step,
    seconds: (performance.now() - t0) / 1000,
    interrupted,
    final_evaluation: final,
  };
}

/** `vco-lab train`: a run's config from --config and flags, or --resume DIR */
export function runConfigOf(dir: string): TrainRunConfig {
  const f = join(resolve(dir), 'run.json');
  if (!existsSync(f) || !statSync(f).isFile()) throw new UsageError(`${dir}: no run.json (is it a vco-lab train output_dir?)`);
  return JSON.parse(readFileSync(f, 'utf8')) as TrainRunConfig;
}

export async function trainCommand(args: string[], out: Out, err: Out): Promise<number> {
  const { parseTrainFlags, resolveTrainConfig, TRAIN_DEFAULTS } = await import('./train-config.js');
  const { progressReporter } = await import('./progress.js');
  const a = parseTrainFlags(args);
  if (a.printConfig) {
    out(
      `${JSON.stringify(a.config || Object.keys(a.flags).length ? resolveTrainConfig({ file: a.config, flags: a.flags }) : TRAIN_DEFAULTS, null, 2)}\n`,
    );
    return 0;
  }
  let c: TrainRunConfig;
  if (a.resume) {
    if (a.config || Object.keys(a.flags).length)
      throw new UsageError('--resume continues a run as it was configured: give no other option (its run.json holds them)');
    c = resolveTrainConfig({ json: runConfigOf(a.resume) as unknown as Record<string, unknown> });
    c.output_dir = a.resume;
  } else c = resolveTrainConfig({ file: a.config, flags: a.flags });
  const progress = progressReporter(err);
  let stop = false;
  const onInt = () => {
    if (stop) process.exit(130);
    stop = true;
    err('\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to quit without saving)\n');
  };
  process.on('SIGINT', onInt);
  try {
    const r = await train(c, {
      resume: !!a.resume,
      log: (s) => {
        progress.done();
        err(`${s}\n`);
      },
      progress,
      interrupt: () => stop,
    });
    progress.done();
    out(
      r.interrupted
        ? `interrupted at step ${r.steps}; continue with: vco-lab train --resume ${r.output_dir}\n`
        : `trained ${r.steps} steps in ${r.seconds.toFixed(0)} s; the PEFT adapter is in ${join(r.output_dir, 'adapter')}\n` +
            Object.entries(r.final_evaluation ?? {})
              .filter(([k]) => k.startsWith('eval_') || k.startsWith('benchmark/'))
              .map(([k, v]) => `  ${k} ${fmt(v)}\n`)
              .join(''),
    );
    return r.interrupted ? 130 : 0;
  } finally {
    process.off('SIGINT', onInt);
  }
}
