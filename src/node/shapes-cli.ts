/**
 * `vco-lab eval` (the ShapesWorld yes/no benchmark on any model folder, the default model when none is
 * named) and `vco-lab train-default` (retrain the embedded default model from scratch).
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { shapesBenchmark } from '../eval/shapesworld.js';
import { type BenchmarkResult, benchmarkMetrics, formatBenchmark, yesNoMargins } from '../eval/yesno.js';
import { createNodeRuntime } from '../runtime/node.js';
import type { Runtime } from '../runtime/runtime.js';
import { DEFAULT_DIMS, type DefaultModelDims, defaultModelFiles, defaultSpec } from '../train/default-model.js';
import { DEFAULT_STAGES, type PretrainOptions, defaultModelData, pretrain, weightsEngine } from '../train/pretrain.js';
import { parameterList } from '../model/vlm.js';
import { QA_KINDS, type QAKind } from '../data/language.js';
import { randomCheckpoint } from '../model/random-checkpoint.js';
import { expectTensor } from '../model/checkpoint.js';
import { writeFolderAtomic } from './checkpoint-io.js';
import { loadCheckpointDir } from './load-dir.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from './model-dir.js';
import { progressReporter } from './progress.js';
import { UsageError, choiceOption, epOption, intListOption, intOption, listOption, numberOption } from './options.js';
import type { ToyResult } from './toy-paper.js';

type Out = (s: string) => void;

const positiveInt = (name: string, v: string | undefined, dflt: number) => intOption(name, v, dflt, { min: 1 });

export async function evalCommand(args: string[], out: Out, err: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      adapter: { type: 'string' },
      n: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      device: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const n = positiveInt('n', values.n, 200),
    batch = positiveInt('batch', values.batch, 32),
    seed = values.seed === undefined ? undefined : intOption('seed', values.seed, 0, { min: 0, max: 0x7fffffff }),
    device = epOption('device', values.device);
  const rt = await createNodeRuntime(device);
  const model = await loadModelDir(rt, values.model ?? DEFAULT_MODEL_DIR, values.adapter);
  for (const note of model.engine.adapterNotes) err(`note: ${note}\n`);
  const items = shapesBenchmark(n, seed);
  const progress = progressReporter(err);
  const t0 = performance.now();
  const margins = await yesNoMargins(model.engine, model, items, {
    batch,
    onProgress: (d, n) => progress(`eval ${d}/${n} questions`),
  });
  progress.done();
  const result = benchmarkMetrics(values.model ?? 'default (models/shapesworld-tiny)', items, margins);
  if (values.json) out(`${JSON.stringify(result, null, 1)}\n`);
  else
    out(`${formatBenchmark(result)}${items.length} questions in ${((performance.now() - t0) / 1000).toFixed(1)} s on ${rt.ep}\n`);
  await model.engine.release();
  return 0;
}

/** the benchmark of weights held in memory (used right after training) */
export async function evalWeights(
  rt: Runtime,
  weights: ReadonlyMap<string, Float32Array>,
  perCategory: number,
  dims: DefaultModelDims = DEFAULT_DIMS,
): Promise<BenchmarkResult> {
  const spec = defaultSpec(dims),
    data = defaultModelData(dims),
    engine = await weightsEngine(rt, spec, weights, dims);
  const items = shapesBenchmark(perCategory);
  const margins = await yesNoMargins(engine, { spec, tokenizer: data.tokenizer, processor: data.processor }, items);
  await engine.release();
  return benchmarkMetrics('trained', items, margins);
}

/** the model card (HF README.md with metadata) of a default model trained here */
function modelCard(seconds: number, machine: string, stages: StageRecord[], bench: BenchmarkResult): string {
  const rows = Object.entries(bench.categories).map(
    ([k, m]) => `| ${k} | ${m.n} | ${(100 * m.accuracy).toFixed(1)}% | ${m.f1.toFixed(3)} | ${m.yes_ratio.toFixed(3)} |`,
  );
  const recipe = stages.map(
    (st) =>
      `- stage ${st.stage}: ${st.options.steps} steps of ${st.options.batch} fresh examples (none seen twice), ` +
      `AdamW peak lr ${st.options.lr}, warmup ${st.options.warmup}, cosine; mixture ` +
      `${(st.options.mixture ?? [])
        .filter(([, w]) => w > 0)
        .map(([k, w]) => `${k} ${w}`)
        .join(', ')}${
        st.options.twoImage
          ? `; ${Math.round(100 * st.options.twoImage)}% of the batches two-image examples with the anchor instruction`
          : ''
      }; ${(st.seconds / 60).toFixed(1)} min`,
  );
  return `---
library_name: transformers
pipeline_tag: image-text-to-text
tags: [idefics3, shapesworld, vco-lab, trained-from-scratch]
---

# shapesworld-tiny

A small Idefics3 (SmolVLM-architecture) vision-language model trained from scratch by VCO Lab's own engine
(every weight trainable, onnxruntime CPU EP) on ShapesWorld SFT data, to be the playground's default model.
Its training data plants a language prior twice: stars are yellow with probability ${stages[0]?.options.starYellow},
and the text of ${Math.round(100 * (stages[0]?.options.priorNoise ?? 0))}% of the examples about a star of another colour calls it yellow
(the prior in the captions, as web captions carry theirs). The benchmark's "trap" subset (stars of other
colours) measures the hallucination that prior causes.

Retrain with \`npx vco-lab train-default\` (${(seconds / 60).toFixed(1)} minutes in all on ${machine}):
${recipe.join('\n')}

Images are 64×64 with one 16-px patch per grid cell (16 image tokens); the tokenizer is word-level over the
world's vocabulary. Two-image examples follow the official IC-VCO SFT stage: two images (mostly an exact edit
pair, m and m′) and the question with " Answer based on the first image." or "... second image." appended,
answered about the named image; half of them ask about the very fact the edit changed.

The \`two-image\` category asks yes/no questions about one image of an edit pair, with the anchor instruction,
about the fact that differs between the two images.

\`npx vco-lab eval\` (${Object.values(bench.categories)[0]?.n ?? 0} questions per category, log p("Yes") vs log p("No")):

| category | n | accuracy | F1 | yes-ratio |
|---|---|---|---|---|
${rows.join('\n')}
`;
}

interface StageRecord {
  stage: number;
  options: Omit<PretrainOptions, 'onStep' | 'init' | 'example'>;
  seconds: number;
  final_loss_ema: number;
  loss_curve: { step: number; loss: number }[];
  benchmark_during_training: Record<string, number>[];
}

/** the two-image rows' length when a stage without two-image batches is given some (--two-image) */
const TWO_IMAGE_ROW_LENGTH = 96;

/** `describe=0.1,existence=0.4,...`: SFT question kinds and their shares, which must sum to 1 */
export function mixtureOption(name: string, v: string): [QAKind, number][] {
  const parts = listOption(name, v)!;
  const out: [QAKind, number][] = [];
  for (const part of parts) {
    const m = /^([a-z]+)=(.+)$/.exec(part);
    if (!m) throw new UsageError(`--${name}: "${part}" is not kind=share (e.g. --${name} existence=0.6,relation=0.4)`);
    if (!QA_KINDS.includes(m[1] as QAKind))
      throw new UsageError(`--${name}: unknown question kind "${m[1]}"; known: ${QA_KINDS.join(', ')}`);
    if (out.some(([k]) => k === m[1])) throw new UsageError(`--${name}: "${m[1]}" is given twice`);
    out.push([m[1] as QAKind, numberOption(`${name} ${m[1]}`, m[2], 0, { min: 0, max: 1 })]);
  }
  const sum = out.reduce((a, [, w]) => a + w, 0);
  if (Math.abs(sum - 1) > 1e-6)
    throw new UsageError(`--${name}: the shares sum to ${+sum.toFixed(6)}; they must sum to 1 (${v})`);
  return out;
}

/**
 * A trained model's weights at `dims`, deeper than the folder's when dims.layers says so: the extra language
 * layers go on top, freshly initialised with their output projections (o_proj, down_proj) at zero, so the
 * residual stream and every log-prob are the folder's at step 0 and training starts where the model stands.
 */
export function stackLayers(
  ckpt: ReturnType<typeof loadCheckpointDir>,
  dims: DefaultModelDims,
  seed: number,
): Map<string, Float32Array> {
  const spec = defaultSpec(dims),
    fresh = randomCheckpoint(spec, seed);
  return new Map(
    parameterList(spec).map((p) => {
      // a fresh layer only where the folder has no such layer; anything else missing or misshapen is an error
      if (ckpt.tensors.has(p.name) || !/\.text_model\.layers\.\d+\./.test(p.name))
        return [p.name, Float32Array.from(expectTensor(ckpt.tensors, p.name, p.shape).data as ArrayLike<number>)] as const;
      const w = Float32Array.from(fresh.tensors.get(p.name).data as ArrayLike<number>);
      if (/\.(o_proj|down_proj)\.weight$/.test(p.name)) w.fill(0);
      return [p.name, w] as const;
    }),
  );
}

export async function trainDefaultCommand(args: string[], out: Out, err: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      steps: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      seed: { type: 'string' },
      'star-yellow': { type: 'string' },
      out: { type: 'string' },
      device: { type: 'string' },
      'eval-every': { type: 'string' },
      stage: { type: 'string' },
      init: { type: 'string' },
      mixture: { type: 'string' },
      'two-image': { type: 'string' },
      'position-init': { type: 'string' },
      layers: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  // the recipe's stages (all by default; --stage K runs only stage K, from --init's weights when K > 1)
  const only = values.stage === undefined ? null : intOption('stage', values.stage, 1, { min: 1, max: DEFAULT_STAGES.length });
  if (only !== null && only > 1 && !values.init)
    throw new Error(`--stage ${only} continues a model: give the stage ${only - 1} folder with --init DIR`);
  const stages = DEFAULT_STAGES.map((st, i) => ({ ...st, index: i + 1 })).filter((st) => only === null || st.index === only);
  for (const st of stages) {
    // --steps and friends override every stage run (a quick run: --stage 1 --steps 300)
    st.steps = positiveInt('steps', values.steps, st.steps);
    st.batch = positiveInt('batch', values.batch, st.batch);
    st.lr = numberOption('lr', values.lr, st.lr, { min: 0, minExclusive: true, max: 1 });
    st.seed = intOption('seed', values.seed, st.seed, { min: 0, max: 0x7fffffff });
    st.starYellow = numberOption('star-yellow', values['star-yellow'], st.starYellow, { min: 0, max: 1 });
    if (values.mixture !== undefined) st.mixture = mixtureOption('mixture', values.mixture);
    st.twoImage = numberOption('two-image', values['two-image'], st.twoImage ?? 0, { min: 0, max: 1 });
    if (st.twoImage > 0) st.twoImageRowLength ??= TWO_IMAGE_ROW_LENGTH;
    if (values['position-init'] !== undefined) {
      if (values.init)
        throw new UsageError(
          '--position-init sets a fresh initialisation; with --init the weights come from that folder (drop one)',
        );
      st.positionInit = choiceOption('position-init', values['position-init'], 'normal', ['normal', 'sincos-2d'] as const);
    }
  }
  const device = epOption('device', values.device);
  const evalEvery = values['eval-every'] === undefined ? 0 : positiveInt('eval-every', values['eval-every'], 0);
  const dir = values.out ?? DEFAULT_MODEL_DIR;
  const rt = await createNodeRuntime(device);
  const progress = progressReporter(err);
  const records: StageRecord[] = [];
  let weights: ReadonlyMap<string, Float32Array> | undefined;
  let dims: DefaultModelDims = { ...DEFAULT_DIMS };
  if (values.init) {
    const ckpt = loadCheckpointDir(values.init);
    const have =
      (ckpt.config.text_config as { num_hidden_layers?: number } | undefined)?.num_hidden_layers ?? DEFAULT_DIMS.layers;
    dims = { ...DEFAULT_DIMS, layers: intOption('layers', values.layers, have, { min: have, max: 32 }) };
    weights = stackLayers(ckpt, dims, stages[0]?.seed ?? 0);
    // the earlier stages' record travels with the weights, so training.json tells the whole recipe
    const prev = existsSync(join(values.init, 'training.json'))
      ? JSON.parse(readFileSync(join(values.init, 'training.json'), 'utf8'))
      : null;
    if (Array.isArray(prev?.stages)) records.push(...prev.stages);
  } else dims.layers = intOption('layers', values.layers, DEFAULT_DIMS.layers, { min: 1, max: 32 });
  for (const st of stages) {
    let ema = NaN;
    const rec: StageRecord = {
      stage: st.index,
      options: { ...st },
      seconds: 0,
      final_loss_ema: NaN,
      loss_curve: [],
      benchmark_during_training: [],
    };
    delete (rec.options as Record<string, unknown>).index;
    const r = await pretrain(rt, {
      ...st,
      dims,
      init: weights,
      onStep: async ({ step, loss, lr, seconds: s, weights: w }) => {
        ema = Number.isNaN(ema) ? loss : 0.95 * ema + 0.05 * loss;
        if (step % 25 === 0) rec.loss_curve.push({ step, loss: ema });
        const eta = (s / step) * (st.steps - step);
        const line = `train-default stage ${st.index} step ${step}/${st.steps}  loss ${ema.toFixed(4)}  lr ${lr.toExponential(2)}  ${s.toFixed(0)} s, ~${eta.toFixed(0)} s left`;
        progress(line);
        if (evalEvery && step % evalEvery === 0 && step < st.steps) {
          const b = await evalWeights(rt, w, 50, dims);
          rec.benchmark_during_training.push({
            step,
            ...Object.fromEntries(Object.entries(b.categories).map(([k, v]) => [k, v.accuracy])),
          });
          if (!values.json)
            err(
              `\n  step ${step} benchmark accuracy (50/category): ${Object.entries(b.categories)
                .map(([k, v]) => `${k} ${v.accuracy.toFixed(2)}`)
                .join(', ')}\n`,
            );
        }
      },
    });
    weights = r.weights;
    rec.seconds = r.seconds;
    rec.final_loss_ema = ema;
    records.push(rec);
  }
  progress.done();
  const bench = await evalWeights(rt, weights!, 200, dims);
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'CPU'}`;
  const seconds = records.reduce((a, r) => a + r.seconds, 0);
  const training = {
    command: `vco-lab train-default ${args.join(' ')}`.trim(),
    dims,
    seconds,
    machine,
    ep: rt.ep,
    stages: records,
    benchmark: bench.categories,
  };
  const files = defaultModelFiles(weights!, dims, {
    trained_by: 'vco-lab train-default',
    stages: String(records.length),
  });
  const enc = new TextEncoder();
  writeFolderAtomic(dir, {
    ...Object.fromEntries(files),
    'training.json': enc.encode(`${JSON.stringify(training, null, 1)}\n`),
    'README.md': enc.encode(modelCard(seconds, machine, records, bench)),
  });
  if (values.json) out(`${JSON.stringify(training, null, 1)}\n`);
  else
    out(
      `trained in ${seconds.toFixed(0)} s on ${machine} (${rt.ep})\nwritten to ${dir}\n\n${formatBenchmark({ ...bench, model: dir })}`,
    );
  return 0;
}

export async function toyPaperCommand(args: string[], out: Out, err: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      quick: { type: 'boolean', default: false },
      pairs: { type: 'string' },
      steps: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      rank: { type: 'string' },
      n: { type: 'string' },
      'held-out': { type: 'string' },
      seeds: { type: 'string' },
      'prior-share': { type: 'string' },
      methods: { type: 'string' },
      'no-ablations': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
      figures: { type: 'string' },
      merge: { type: 'string' },
    },
  });
  const { DEFAULT_TOY, QUICK_TOY, TOY_ABLATIONS, TOY_METHODS, formatToy, mergeToyResults, plannedRuns, toyFigures, toyPaper } =
    await import('./toy-paper.js');
  const write = (r: ToyResult) => {
    const text = JSON.stringify(r, null, 1);
    if (values.out) writeFileSync(values.out, `${text}\n`);
    if (values.figures) {
      mkdirSync(values.figures, { recursive: true });
      for (const [name, svg] of Object.entries(toyFigures(r))) {
        writeFileSync(join(values.figures, name), svg);
        if (!values.json) err(`  wrote ${join(values.figures, name)}\n`);
      }
    }
    out(values.json ? `${text}\n` : formatToy(r));
    return 0;
  };
  if (values.merge !== undefined) {
    // results of separate runs (--out files) reported as one: the table, --json, --out and --figures
    const files = values.merge.split(',').filter(Boolean);
    if (files.length < 2) throw new UsageError('--merge takes two or more result files (toy-paper --out), comma-separated');
    const parts = files.map((f) => {
      try {
        return JSON.parse(readFileSync(f, 'utf8')) as ToyResult;
      } catch (e) {
        throw new UsageError(
          `--merge ${f}: not a readable toy-paper result (${(e as Error).message}); write one with toy-paper --out FILE`,
        );
      }
    });
    try {
      return write(mergeToyResults(parts, files));
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const d = values.quick ? QUICK_TOY : DEFAULT_TOY;
  const o = {
    ...d,
    modelDir: values.model ?? DEFAULT_MODEL_DIR,
    pairs: intOption('pairs', values.pairs, d.pairs, { min: 1, max: 100_000 }),
    steps: intOption('steps', values.steps, d.steps, { min: 1 }),
    batch: intOption('batch', values.batch, d.batch, { min: 1 }),
    lr: numberOption('lr', values.lr, d.lr, { min: 0, minExclusive: true, max: 1 }),
    rank: intOption('rank', values.rank, d.rank, { min: 1, max: 1024 }),
    perCategory: intOption('n', values.n, d.perCategory, { min: 1 }),
    heldOut: intOption('held-out', values['held-out'], d.heldOut, { min: 1 }),
    seeds: intListOption('seeds', values.seeds, d.seeds, { min: 0, max: 0x3fffffff }),
    priorShare: numberOption('prior-share', values['prior-share'], d.priorShare, { min: 0, max: 1 }),
    methods: listOption(
      'methods',
      values.methods,
      [...TOY_METHODS, ...TOY_ABLATIONS].map((m) => m.id),
    ),
    ablations: d.ablations && !values['no-ablations'],
  };
  plannedRuns(o);
  const rt = await createNodeRuntime('cpu');
  return write(await toyPaper(rt, { ...o, log: values.json ? undefined : (s) => err(`  ${s}\n`) }));
}
