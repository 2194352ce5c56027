/**
 * `vco-lab eval` (the ShapesWorld yes/no benchmark on any model folder, the default model when none is
 * named) and `vco-lab train-default` (retrain the embedded default model from scratch).
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { shapesBenchmark } from '../eval/shapesworld.js';
import { type BenchmarkResult, benchmarkMetrics, formatBenchmark, yesNoMargins } from '../eval/yesno.js';
import { createNodeRuntime } from '../runtime/node.js';
import type { EP, Runtime } from '../runtime/runtime.js';
import { DEFAULT_DIMS, defaultModelFiles, defaultSpec } from '../train/default-model.js';
import { DEFAULT_STAGES, type PretrainOptions, defaultModelData, pretrain, weightsEngine } from '../train/pretrain.js';
import { parameterList } from '../model/vlm.js';
import { writeFolderAtomic } from './checkpoint-io.js';
import { loadCheckpointDir } from './load-dir.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from './model-dir.js';

type Out = (s: string) => void;

function progressLine(err: Out, json: boolean) {
  return !json && process.stderr.isTTY ? (s: string) => err(`\r${s}\x1b[K`) : undefined;
}

function positiveInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} takes a positive integer, got "${v}"`);
  return n;
}

export async function evalCommand(args: string[], out: Out, err: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      adapter: { type: 'string' },
      n: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      device: { type: 'string', default: 'cpu' },
      json: { type: 'boolean', default: false },
    },
  });
  const rt = await createNodeRuntime(values.device as EP);
  const model = await loadModelDir(rt, values.model ?? DEFAULT_MODEL_DIR, values.adapter);
  const items = shapesBenchmark(positiveInt('n', values.n, 200), values.seed === undefined ? undefined : Number(values.seed));
  const progress = progressLine(err, values.json);
  const t0 = performance.now();
  const margins = await yesNoMargins(model.engine, model, items, {
    batch: positiveInt('batch', values.batch, 32),
    onProgress: progress && ((d, n) => progress(`eval ${d}/${n} questions`)),
  });
  if (progress) err('\r\x1b[K');
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
): Promise<BenchmarkResult> {
  const spec = defaultSpec(),
    data = defaultModelData(),
    engine = await weightsEngine(rt, spec, weights);
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
        .join(', ')}; ${(st.seconds / 60).toFixed(1)} min`,
  );
  return `---
library_name: transformers
pipeline_tag: image-text-to-text
tags: [idefics3, shapesworld, vco-lab, trained-from-scratch]
---

# shapesworld-tiny

A small Idefics3 (SmolVLM-architecture) vision-language model trained from scratch by VCO Lab's own engine
(every weight trainable, onnxruntime CPU EP) on ShapesWorld SFT data, to be the playground's default model.
Its training data plants a language prior: stars are yellow with probability ${stages[0]?.options.starYellow}. The
benchmark's "trap" subset (stars of other colours) measures the hallucination that prior causes.

Retrain with \`npx vco-lab train-default\` (${(seconds / 60).toFixed(1)} minutes in all on ${machine}):
${recipe.join('\n')}

Images are 64×64 with one 16-px patch per grid cell (16 image tokens); the tokenizer is word-level over the
world's vocabulary.

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
      device: { type: 'string', default: 'cpu' },
      'eval-every': { type: 'string' },
      stage: { type: 'string' },
      init: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  // the recipe's stages (all by default; --stage K runs only stage K, from --init's weights when K > 1)
  const only = values.stage === undefined ? null : positiveInt('stage', values.stage, 1);
  if (only !== null && only > DEFAULT_STAGES.length) throw new Error(`--stage: the recipe has ${DEFAULT_STAGES.length} stages`);
  if (only !== null && only > 1 && !values.init)
    throw new Error(`--stage ${only} continues a model: give the stage ${only - 1} folder with --init DIR`);
  const stages = DEFAULT_STAGES.map((st, i) => ({ ...st, index: i + 1 })).filter((st) => only === null || st.index === only);
  for (const st of stages) {
    // --steps and friends override every stage run (a quick run: --stage 1 --steps 300)
    st.steps = positiveInt('steps', values.steps, st.steps);
    st.batch = positiveInt('batch', values.batch, st.batch);
    if (values.lr !== undefined) st.lr = Number(values.lr);
    if (values.seed !== undefined) st.seed = Number(values.seed);
    if (values['star-yellow'] !== undefined) st.starYellow = Number(values['star-yellow']);
    if (!(st.lr > 0) || !(st.starYellow >= 0 && st.starYellow <= 1))
      throw new Error('--lr must be > 0 and --star-yellow in [0, 1]');
  }
  const dir = values.out ?? DEFAULT_MODEL_DIR;
  const rt = await createNodeRuntime(values.device as EP);
  const progress = progressLine(err, values.json);
  const evalEvery = values['eval-every'] === undefined ? 0 : positiveInt('eval-every', values['eval-every'], 0);
  const records: StageRecord[] = [];
  let weights: ReadonlyMap<string, Float32Array> | undefined;
  if (values.init) {
    const ckpt = loadCheckpointDir(values.init);
    weights = new Map(
      parameterList(defaultSpec()).map(
        (p) => [p.name, Float32Array.from(ckpt.tensors.get(p.name).data as ArrayLike<number>)] as const,
      ),
    );
    // the earlier stages' record travels with the weights, so training.json tells the whole recipe
    const prev = existsSync(join(values.init, 'training.json'))
      ? JSON.parse(readFileSync(join(values.init, 'training.json'), 'utf8'))
      : null;
    if (Array.isArray(prev?.stages)) records.push(...prev.stages);
  }
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
      init: weights,
      onStep: async ({ step, loss, lr, seconds: s, weights: w }) => {
        ema = Number.isNaN(ema) ? loss : 0.95 * ema + 0.05 * loss;
        if (step % 25 === 0) rec.loss_curve.push({ step, loss: ema });
        const eta = (s / step) * (st.steps - step);
        const line = `train-default stage ${st.index} step ${step}/${st.steps}  loss ${ema.toFixed(4)}  lr ${lr.toExponential(2)}  ${s.toFixed(0)} s, ~${eta.toFixed(0)} s left`;
        if (progress) progress(line);
        else if (!values.json && step % 100 === 0) err(`${line}\n`);
        if (evalEvery && step % evalEvery === 0 && step < st.steps) {
          const b = await evalWeights(rt, w, 50);
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
  if (progress) err('\r\x1b[K');
  const bench = await evalWeights(rt, weights!, 200);
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'CPU'}`;
  const seconds = records.reduce((a, r) => a + r.seconds, 0);
  const training = {
    command: `vco-lab train-default ${args.join(' ')}`.trim(),
    dims: DEFAULT_DIMS,
    seconds,
    machine,
    ep: rt.ep,
    stages: records,
    benchmark: bench.categories,
  };
  const files = defaultModelFiles(weights!, DEFAULT_DIMS, {
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
      pairs: { type: 'string' },
      steps: { type: 'string' },
      n: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      objectives: { type: 'string' },
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const { DEFAULT_TOY, formatToy, toyPaper } = await import('./toy-paper.js');
  const o = { ...DEFAULT_TOY, modelDir: values.model ?? DEFAULT_MODEL_DIR };
  o.pairs = positiveInt('pairs', values.pairs, o.pairs);
  o.steps = positiveInt('steps', values.steps, o.steps);
  o.batch = positiveInt('batch', values.batch, o.batch);
  o.perCategory = positiveInt('n', values.n, o.perCategory);
  if (values.lr !== undefined) o.lr = Number(values.lr);
  const rt = await createNodeRuntime('cpu');
  const r = await toyPaper(rt, {
    ...o,
    objectives: values.objectives?.split(','),
    log: values.json ? undefined : (s) => err(`  ${s}\n`),
  });
  const text = JSON.stringify(r, null, 1);
  if (values.out) writeFileSync(values.out, `${text}\n`);
  out(values.json ? `${text}\n` : formatToy(r));
  return 0;
}
