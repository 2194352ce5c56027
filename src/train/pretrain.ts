/**
 * Training the embedded default model from scratch: every weight trainable, ORT (CPU EP by default) through
 * the project's own graphs and autodiff, AdamW on the host, on a fresh stream of ShapesWorld SFT examples
 * (a new scene per example, so the model cannot memorise). The stream plants the language prior
 * "stars are yellow" (`starYellow`), which the benchmark's trap subset then measures.
 *
 * One file, one loop, in the spirit of nanoGPT's train.py.
 */
import { render } from '../data/raster.js';
import { type Scene, rng } from '../data/world.js';
import { type QA, type QAKind, sftExample } from '../data/language.js';
import { Engine } from '../engine/engine.js';
import { type AdamWConfig, adamwStep, clipGradNorm, lrFactor, newAdamWState } from '../engine/optim.js';
import { type ChatModel, answerRow } from '../engine/rows.js';
import { memoryCheckpoint } from '../model/checkpoint.js';
import { type ModelData, modelDataFromFiles } from '../model/data.js';
import { randomCheckpoint } from '../model/random-checkpoint.js';
import { type VlmSpec, parameterList } from '../model/vlm.js';
import type { Runtime } from '../runtime/runtime.js';
import { type DefaultModelDims, DEFAULT_DIMS, defaultAuxFiles, defaultConfig, defaultSpec } from './default-model.js';

export interface PretrainOptions {
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  seed: number;
  /** probability that a training star is yellow (the planted prior) */
  starYellow: number;
  /** tokens per row (prompt + answer + padding) */
  rowLength: number;
  dims?: DefaultModelDims;
  /** SFT question kinds and their shares (default DEFAULT_MIXTURE) */
  mixture?: readonly [QAKind, number][];
  /** start from these weights (a previous stage) instead of a fresh initialisation */
  init?: ReadonlyMap<string, Float32Array>;
  /** the example stream (default: ShapesWorld's SFT mixture with the planted prior) */
  example?: (rand: () => number) => { scene: Scene; qa: QA };
  /** called after each step */
  onStep?: (s: {
    step: number;
    loss: number;
    lr: number;
    gradNorm: number;
    seconds: number;
    weights: ReadonlyMap<string, Float32Array>;
  }) => void | Promise<void>;
}

/**
 * The default model's SFT mixture: more existence questions than the data module's default, because the
 * hard negatives ("a red square?" beside a red circle and a blue square) need colour-shape binding, the
 * slowest skill to appear when training from scratch.
 */
export const DEFAULT_MIXTURE: readonly [QAKind, number][] = [
  ['describe', 0.2],
  ['existence', 0.35],
  ['attribute', 0.15],
  ['color', 0.1],
  ['count', 0.05],
  ['relation', 0.15],
];

/** stage 2's mixture: half existence questions, where binding colour to shape is what is left to learn */
export const BINDING_MIXTURE: readonly [QAKind, number][] = [
  ['describe', 0.1],
  ['existence', 0.5],
  ['attribute', 0.15],
  ['color', 0.1],
  ['count', 0.0],
  ['relation', 0.15],
];

/**
 * The default model's recipe: (1) from scratch, 9000 steps at peak lr 5e-4 (1e-3 and above stall: the
 * single-object colour probe stays at log 5 per colour token); (2) a warm restart, 3000 steps at 3e-4 on the
 * binding mixture, fresh optimizer state and a new data seed.
 */
export const DEFAULT_STAGES: readonly PretrainOptions[] = [
  { steps: 9000, batch: 16, lr: 5e-4, warmup: 200, seed: 1, starYellow: 0.95, rowLength: 80, mixture: DEFAULT_MIXTURE },
  { steps: 3000, batch: 16, lr: 3e-4, warmup: 100, seed: 2, starYellow: 0.95, rowLength: 80, mixture: BINDING_MIXTURE },
];

export const DEFAULT_PRETRAIN: PretrainOptions = DEFAULT_STAGES[0];

/** the default model's tokenizer and processor, from the same files the model folder holds */
export function defaultModelData(dims: DefaultModelDims = DEFAULT_DIMS): ModelData {
  const enc = new TextEncoder();
  const files = new Map(
    Object.entries(defaultAuxFiles(dims)).map(([k, v]) => [k, enc.encode(typeof v === 'string' ? v : JSON.stringify(v))]),
  );
  return modelDataFromFiles(files, 'default model');
}

/** an engine over weights held in memory (no adapter): for training every weight, or scoring them */
export async function weightsEngine(
  rt: Runtime,
  spec: VlmSpec,
  weights: ReadonlyMap<string, Float32Array>,
  dims = DEFAULT_DIMS,
): Promise<Engine> {
  const shapes = new Map(parameterList(spec).map((p) => [p.name, p.shape]));
  const tensors = new Map([...weights].map(([k, data]) => [k, { shape: shapes.get(k) ?? [data.length], data }]));
  return Engine.create(rt, spec, memoryCheckpoint(defaultConfig(dims), tensors));
}

export async function pretrain(
  rt: Runtime,
  o: PretrainOptions,
): Promise<{ weights: Map<string, Float32Array>; spec: VlmSpec; seconds: number }> {
  const dims = o.dims ?? DEFAULT_DIMS;
  const spec = defaultSpec(dims),
    data = defaultModelData(dims);
  const m: ChatModel = { spec, tokenizer: data.tokenizer, processor: data.processor };
  const init = o.init ? null : randomCheckpoint(spec, o.seed);
  const weights = new Map(
    parameterList(spec).map((p) => {
      const w = o.init ? o.init.get(p.name) : (init!.tensors.get(p.name).data as Float32Array);
      if (!w) throw new Error(`the initial weights lack ${p.name}`);
      return [p.name, Float32Array.from(w)];
    }),
  );
  const engine = await weightsEngine(rt, spec, weights, dims);
  // one graph shape for every step: B rows of rowLength tokens, up to 40 scored tokens a row
  const shape = { rows: o.batch, length: o.rowLength, scored: o.batch * 40, images: o.batch, allWeights: true };
  const adam = newAdamWState();
  const opt: AdamWConfig = { lr: o.lr, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 };
  const rand = rng(o.seed * 1000003 + 17);
  const t0 = performance.now();
  for (let step = 0; step < o.steps; step++) {
    const rows = Array.from({ length: o.batch }, () => {
      const { scene, qa } = o.example
        ? o.example(rand)
        : sftExample(rand, { starYellow: o.starYellow, mixture: o.mixture ?? DEFAULT_MIXTURE });
      return answerRow(m, render(scene), qa.question, qa.answer);
    });
    // the mean token NLL: every answer token weighs 1 / (tokens in the batch)
    const total = rows.reduce((n, r) => n + r.responses[0].length, 0);
    const seeds = rows.map((r) => [new Float32Array(r.responses[0].length).fill(-1 / total)]);
    const { logprobs, grads } = await engine.fusedGradient(rows, seeds, shape);
    const loss = -logprobs.reduce((a, row) => a + row[0].reduce((x, y) => x + y, 0), 0) / total;
    const g64 = new Map([...grads].map(([k, v]) => [k, Float64Array.from(v)]));
    const gradNorm = clipGradNorm(g64, 1.0);
    const lr = o.lr * lrFactor({ kind: 'cosine', warmupSteps: o.warmup, totalSteps: o.steps }, step);
    adamwStep(weights, g64, adam, opt, lr);
    await engine.setWeights(weights);
    await o.onStep?.({ step: step + 1, loss, lr, gradNorm, seconds: (performance.now() - t0) / 1000, weights });
  }
  await engine.release();
  return { weights, spec, seconds: (performance.now() - t0) / 1000 };
}
