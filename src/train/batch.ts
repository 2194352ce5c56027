/**
 * Batched whole-model graphs for many short single-turn samples (SFT from scratch, yes/no benchmarks): B
 * right-padded rows of length L share one graph shape, so one ORT session serves every step. (The segmented
 * Engine is built for the opposite case: few long preference samples, layer-wise recomputation, LoRA.)
 *
 * Right padding needs no padding mask: with the causal mask a real token never attends to a later pad, and
 * pads are never scored.
 */
import type { Tensor } from 'onnxruntime-common';
import { type Backward, buildBackward } from '../onnx/autodiff.js';
import type { Value } from '../onnx/ir.js';
import { causalMask, linear, rmsNorm, ropeTables, tokenLogprobs } from '../onnx/nn.js';
import { GraphBuilder } from '../onnx/ops.js';
import type { Runtime, Session, WeightStore } from '../runtime/runtime.js';
import type { ImageProcessor, PixelImage } from '../model/processor.js';
import { encodeResponse, promptIds, singleImageMessages } from '../model/prompts.js';
import type { VlmTokenizer } from '../model/tokenizer.js';
import { type BuildOptions, ParamResolver, type VlmSpec, imagePositions, prefixes, stackImages, textLayer,
  visionFeatures } from '../model/vlm.js';

export interface BatchShape {
  /** rows */
  B: number;
  /** row length (prompt + response + padding) */
  L: number;
  /** images in the batch (every row's tiles, in row order) */
  nImages: number;
  /** scored (position, token) pairs */
  R: number;
}

export interface BatchGraph {
  g: GraphBuilder;
  logprobs: Value;
  weights: Map<string, Value>;
  lora: Map<string, { A: Value; B: Value }>;
}

/**
 * Inputs: pixel_values [nImages,3,S,S]; input_ids [B,L]; image_index [B·L] and image_mask [B·L,1] (the k-th
 * <image> token of the flattened batch takes feature row k); rope_cos/rope_sin [L,hd]; attn_mask [L,L];
 * predict_index [R] (flattened positions b·L+t) and targets [R]. Output: logprobs [R].
 */
export function buildBatchGraph(s: VlmSpec, shape: BatchShape, o: BuildOptions = {}): BatchGraph {
  const { B, L, R } = shape, D = s.text.hidden, hd = s.text.headDim;
  const g = new GraphBuilder(`${s.family}_batch_${B}x${L}_${shape.nImages}_${R}`);
  const r = new ParamResolver(g, s, o);
  const px = g.input('pixel_values', 'float32', [shape.nImages, 3, s.vision.imageSize, s.vision.imageSize]);
  const ids = g.input('input_ids', 'int64', [B, L]);
  const index = g.input('image_index', 'int64', [B * L]), mask = g.input('image_mask', 'bool', [B * L, 1]);
  const cos = g.input('rope_cos', 'float32', [L, hd]), sin = g.input('rope_sin', 'float32', [L, hd]);
  const attn = g.input('attn_mask', 'float32', [L, L]);
  const predict = g.input('predict_index', 'int64', [R]), targets = g.input('targets', 'int64', [R]);
  const pfx = prefixes(s).text;
  const tok = g.reshape(g.gather(r.w(`${pfx}.embed_tokens.weight`), g.reshape(ids, [1, B * L]), 0), [B * L, D]);
  let h = g.reshape(g.where(mask, g.gather(visionFeatures(r, px), index, 0), tok), [B, L, D]);
  for (let l = 0; l < s.text.layers; l++) h = textLayer(r, h, l, { cos, sin, mask: attn });
  const hs = g.gather(g.reshape(h, [B * L, D]), predict, 0);
  const logits = linear(g, rmsNorm(g, hs, r.w(`${pfx}.norm.weight`), s.text.rmsEps), { weight: r.w('lm_head.weight') });
  const lp = g.output(g.reshape(tokenLogprobs(g, g.reshape(logits, [1, R, s.text.vocab]), g.reshape(targets, [1, R])), [R]), 'logprobs');
  return { g, logprobs: lp, weights: r.weights, lora: r.lora };
}

/** one row: its ids, its images' tiles and which of its tokens to score (each predicted from the position before) */
export interface Row {
  ids: number[];
  tiles: Float32Array[];
  /** scored tokens: position `at` predicts `token` */
  targets: { at: number; token: number; weight: number }[];
}

export interface ChatModel {
  spec: VlmSpec;
  tokenizer: VlmTokenizer;
  processor: ImageProcessor;
}

/** a single-image question and its answer as a row whose answer tokens (and EOS) are scored */
export function answerRow(m: ChatModel, image: PixelImage, question: string, answer: string): Row {
  const p = m.processor.process(image);
  const prompt = promptIds(m.tokenizer, singleImageMessages(question), [p.text]).ids;
  const resp = encodeResponse(m.tokenizer, answer).ids;
  const ids = [...prompt, ...resp];
  return { ids, tiles: p.tiles, targets: resp.map((token, j) => ({ at: prompt.length - 1 + j, token, weight: 1 })) };
}

/** a single-image question whose next-token log-probs of `candidates` (first tokens) are read off */
export function choiceRow(m: ChatModel, image: PixelImage, question: string, candidates: readonly number[]): Row {
  const p = m.processor.process(image);
  const prompt = promptIds(m.tokenizer, singleImageMessages(question), [p.text]).ids;
  return { ids: prompt, tiles: p.tiles, targets: candidates.map((token) => ({ at: prompt.length - 1, token, weight: 1 })) };
}

/** host feeds for rows padded to the shape (missing rows are all padding; unused targets have weight 0) */
export function batchFeeds(rt: Runtime, s: VlmSpec, shape: BatchShape, rows: readonly Row[], padId: number):
  { feeds: Record<string, Tensor>; weights: Float32Array } {
  const { B, L, R } = shape;
  if (rows.length > B) throw new Error(`internal: ${rows.length} rows for a batch of ${B}`);
  const ids = new BigInt64Array(B * L).fill(BigInt(padId));
  const tiles: Float32Array[] = [];
  const predict = new BigInt64Array(R), targets = new BigInt64Array(R), weights = new Float32Array(R);
  let k = 0;
  rows.forEach((row, b) => {
    if (row.ids.length > L) throw new Error(`a sample has ${row.ids.length} tokens; this batch holds ${L} per row`);
    row.ids.forEach((t, i) => { ids[b * L + i] = BigInt(t); });
    tiles.push(...row.tiles);
    for (const t of row.targets) {
      if (k >= R) throw new Error(`internal: more than ${R} scored tokens in a batch`);
      predict[k] = BigInt(b * L + t.at); targets[k] = BigInt(t.token); weights[k] = t.weight; k++;
    }
  });
  // pad with copies of the first image so the feature rows line up with the shape
  while (tiles.length < shape.nImages) tiles.push(tiles[0] ?? new Float32Array(3 * s.vision.imageSize ** 2));
  if (tiles.length > shape.nImages) throw new Error(`internal: ${tiles.length} image tiles for a batch of ${shape.nImages}`);
  const { index, mask } = imagePositions(Array.from(ids, Number), s, rows.reduce((n, r) => n + r.tiles.length, 0));
  const { cos, sin } = ropeTables(Array.from({ length: L }, (_, i) => i), s.text.headDim, s.text.ropeTheta);
  const S = s.vision.imageSize;
  return {
    weights,
    feeds: {
      pixel_values: rt.tensor('float32', stackImages(tiles, s), [shape.nImages, 3, S, S]),
      input_ids: rt.tensor('int64', ids, [B, L]),
      image_index: rt.tensor('int64', index, [B * L]),
      image_mask: rt.tensor('bool', mask, [B * L, 1]),
      rope_cos: rt.tensor('float32', cos, [L, s.text.headDim]),
      rope_sin: rt.tensor('float32', sin, [L, s.text.headDim]),
      attn_mask: rt.tensor('float32', causalMask(L), [L, L]),
      predict_index: rt.tensor('int64', predict, [R]),
      targets: rt.tensor('int64', targets, [R]),
    },
  };
}

/** forward (and, for training, backward to every weight) sessions for one batch shape */
export class BatchRunner {
  private fwd?: Promise<Session>;
  private bwd?: Promise<{ session: Session; bw: Backward }>;

  constructor(readonly rt: Runtime, readonly spec: VlmSpec, readonly store: WeightStore, readonly shape: BatchShape,
    readonly padId: number, readonly build: BuildOptions = {}) {}

  /** per-target log-probs of each row, in the rows' target order */
  async logprobs(rows: readonly Row[]): Promise<number[][]> {
    this.fwd ??= this.rt.session(buildBatchGraph(this.spec, this.shape, this.build).g, { weights: this.store });
    const { feeds } = batchFeeds(this.rt, this.spec, this.shape, rows, this.padId);
    const out = await (await this.fwd).run(feeds);
    const lp = (await out.logprobs.getData()) as Float32Array;
    let k = 0;
    return rows.map((r) => r.targets.map(() => lp[k++]));
  }

  /**
   * mean weighted NLL of the rows' targets and its gradient for every weight the graph reads (or every LoRA
   * A/B when the runner has LoRA), by store name
   */
  async nllGrad(rows: readonly Row[]): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
    this.bwd ??= (async () => {
      const bg = buildBatchGraph(this.spec, this.shape, this.build);
      const wrt = bg.lora.size ? [...bg.lora.values()].flatMap((l) => [l.A, l.B]) : [...bg.weights.values()];
      const bw = buildBackward(bg.g, { objective: { weighted: [bg.logprobs] }, wrt, keep: [bg.logprobs] });
      return { session: await this.rt.session(bw.graph, { weights: this.store }), bw };
    })();
    const { session, bw } = await this.bwd;
    const { feeds, weights } = batchFeeds(this.rt, this.spec, this.shape, rows, this.padId);
    const total = weights.reduce((a, b) => a + b, 0);
    if (!(total > 0)) throw new Error('a training batch has no scored tokens');
    const seed = weights.map((w) => -w / total);
    const seedName = Object.values(bw.seeds)[0];
    const out = await session.run({ ...feeds, [seedName]: this.rt.tensor('float32', seed, [this.shape.R]) });
    const lp = (await out.logprobs.getData()) as Float32Array;
    let loss = 0;
    for (let i = 0; i < lp.length; i++) loss -= (weights[i] * lp[i]) / total;
    const grads = new Map<string, Float32Array>();
    for (const [input, name] of Object.entries(bw.grads)) grads.set(input, (await out[name].getData()) as Float32Array);
    return { loss, grads };
  }

  async release(): Promise<void> {
    if (this.fwd) await (await this.fwd).release();
    if (this.bwd) await (await this.bwd).session.release();
  }
}
