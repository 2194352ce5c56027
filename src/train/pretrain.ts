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
import { type Anchor, twoImageExample } from '../data/two-image.js';
import { Engine } from '../engine/engine.js';
import { type AdamWConfig, adamwStep, clipGradNorm, lrFactor, newAdamWState } from '../engine/optim.js';
import { type ChatModel, answerRow } from '../engine/rows.js';
import { memoryCheckpoint } from '../model/checkpoint.js';
import type { PixelImage } from '../model/processor.js';
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
  /** probability that the text of an example calls a non-yellow star yellow (`priorView`: the prior in the
   *  captions, which is what keeps it when the model's grounding is good) */
  priorNoise?: number;
  /** tokens per row (prompt + answer + padding) */
  rowLength: number;
  dims?: DefaultModelDims;
  /** SFT question kinds and their shares (default DEFAULT_MIXTURE) */
  mixture?: readonly [QAKind, number][];
  /** the share of steps whose batch is two-image examples with the anchor instruction (src/data/two-image.ts) */
  twoImage?: number;
  /** tokens per row of a two-image batch (default rowLength) */
  twoImageRowLength?: number;
  /** the question kinds of two-image examples (default: the stage's mixture) */
  twoImageMixture?: readonly [QAKind, number][];
  /** share of two-image examples whose images are an exact edit pair (default 1/2; the rest are unrelated scenes) */
  twoImageEditedShare?: number;
  /** at most this many objects per scene (a curriculum: fewer objects make grounding easier to start) */
  maxObjects?: number;
  /** start from these weights (a previous stage) instead of a fresh initialisation */
  init?: ReadonlyMap<string, Float32Array>;
  /** a fresh initialisation's vision position embedding: 'sincos-2d' (MAE's fixed 2-D sin-cos code, as a
   *  starting point that still trains) or 'normal' (HF's std 0.02, default) */
  positionInit?: 'sincos-2d' | 'normal';
  /** the example stream (default: ShapesWorld's SFT mixture with the planted prior); `two` asks for a two-image one */
  example?: (rand: () => number, two: boolean) => SftExample;
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

/**
 * stage 2's mixture: existence-heavy (binding colour to shape is what is left to learn), with "where"
 * questions (an object's grid cell: the single hop from an object to its place that a relation makes twice)
 */
export const BINDING_MIXTURE: readonly [QAKind, number][] = [
  ['describe', 0.1],
  ['existence', 0.4],
  ['attribute', 0.15],
  ['color', 0.05],
  ['count', 0.0],
  ['relation', 0.2],
  ['where', 0.1],
];

/**
 * The default model's recipe: (1) from scratch on single images, 8000 steps at peak lr 5e-4 (1e-3 and above
 * stall: the single-object colour probe stays at log 5 per colour token); two-image examples this early only
 * slow the grounding everything else needs; (2) a warm restart at 3e-4, fresh optimizer state and a new data
 * seed, where half the batches show two images with the anchor instruction (the official SFT's anchored
 * samples) and the single-image half is existence-heavy with "where" questions. Both stages plant the prior
 * twice: 95% of stars are yellow, and half the examples about a non-yellow star call it yellow (`priorView`);
 * without the second, a model that grounds colours well (stage 2's) answers the trap questions from the image.
 */
export const DEFAULT_STAGES: readonly PretrainOptions[] = [
  {
    steps: 8000,
    batch: 16,
    lr: 5e-4,
    warmup: 200,
    seed: 1,
    starYellow: 0.95,
    priorNoise: 0.5,
    rowLength: 64,
    mixture: DEFAULT_MIXTURE,
  },
  {
    steps: 6000,
    batch: 16,
    lr: 3e-4,
    warmup: 100,
    seed: 2,
    starYellow: 0.95,
    priorNoise: 0.5,
    rowLength: 64,
    twoImageRowLength: 96,
    twoImage: 0.5,
    mixture: BINDING_MIXTURE,
  },
];

export const DEFAULT_PRETRAIN: PretrainOptions = DEFAULT_STAGES[0];

/**
 * MAE's 2-D sin-cos position code (get_2d_sincos_pos_embed): the first half of the dimensions encode the
 * patch's column, the second half its row, each as sin and cos of pos·ω with ω = 10000^(-i/(D/4)).
 * Why it is an option: HF's std-0.02 init leaves the position signal at a few percent of the patch
 * embedding's (the shipped model's never moved from it), so this start makes each image token say its grid
 * cell from step 0. Measured (BENCHMARKS.md): it does not by itself make the model read columns sooner;
 * "where" and relation questions do.
 */
export function sincos2d(dim: number, side: number): Float32Array<ArrayBuffer> {
  if (dim % 4 !== 0) throw new Error(`sincos2d: the embedding width ${dim} must be a multiple of 4`);
  const quarter = dim / 4,
    out = new Float32Array(side * side * dim);
  for (let p = 0; p < side * side; p++) {
    const row = Math.floor(p / side),
      col = p % side;
    for (let i = 0; i < quarter; i++) {
      const omega = 1 / Math.pow(10000, i / quarter);
      out[p * dim + i] = Math.sin(col * omega);
      out[p * dim + quarter + i] = Math.cos(col * omega);
      out[p * dim + 2 * quarter + i] = Math.sin(row * omega);
      out[p * dim + 3 * quarter + i] = Math.cos(row * omega);
    }
  }
  return out;
}

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

/** one SFT example: one image, or two with the anchor that names the one the answer is about */
export interface SftExample {
  scenes: Scene | [Scene, Scene];
  anchor?: Anchor;
  qa: QA;
}

/** the recipe's example stream: a single-image question, or (two) a two-image one with the anchor */
export function defaultExample(
  o: Pick<PretrainOptions, 'starYellow' | 'priorNoise' | 'mixture' | 'maxObjects' | 'twoImageMixture' | 'twoImageEditedShare'>,
) {
  const mix = { starYellow: o.starYellow, priorNoise: o.priorNoise, mixture: o.mixture ?? DEFAULT_MIXTURE };
  const two = { ...mix, mixture: o.twoImageMixture ?? mix.mixture, editedShare: o.twoImageEditedShare };
  return (rand: () => number, isTwo: boolean): SftExample => {
    if (isTwo) return twoImageExample(rand, two);
    const { scene, qa } = sftExample(rand, { ...mix, maxObjects: o.maxObjects });
    return { scenes: scene, qa };
  };
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
  if (!o.init && o.positionInit === 'sincos-2d') {
    const name = 'model.vision_model.embeddings.position_embedding.weight';
    weights.set(name, sincos2d(dims.visionHidden, spec.vision.imageSize / spec.vision.patchSize));
  }
  const engine = await weightsEngine(rt, spec, weights, dims);
  // two graph shapes: a batch is all single-image rows (B rows of rowLength tokens) or, with probability
  // twoImage, all two-image rows (longer, two images each), so short rows are not padded to the long length
  const shapes = {
    one: { rows: o.batch, length: o.rowLength, scored: o.batch * 40, images: o.batch, allWeights: true },
    two: {
      rows: o.batch,
      length: o.twoImageRowLength ?? o.rowLength,
      scored: o.batch * 40,
      images: 2 * o.batch,
      allWeights: true,
    },
  };
  const example = o.example ?? defaultExample(o);
  const adam = newAdamWState();
  const opt: AdamWConfig = { lr: o.lr, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 };
  const rand = rng(o.seed * 1000003 + 17);
  const t0 = performance.now();
  for (let step = 0; step < o.steps; step++) {
    const two = !!o.twoImage && rand() < o.twoImage;
    const rows = Array.from({ length: o.batch }, () => {
      const { scenes, anchor, qa } = example(rand, two);
      const pixels: PixelImage | [PixelImage, PixelImage] = Array.isArray(scenes)
        ? [render(scenes[0]), render(scenes[1])]
        : render(scenes);
      return answerRow(m, pixels, qa.question, qa.answer, anchor);
    });
    const shape = two ? shapes.two : shapes.one;
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
