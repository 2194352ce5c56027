/**
 * The two VLM families as graphs: a SigLIP-style vision tower (patch Conv, LayerNorm encoder layers, GELU
 * MLP), a connector (Idefics3: pixel shuffle + linear; LLaVA: features of `vision_feature_layer`, MLP
 * projector), and a Llama/Qwen2 decoder whose <image> token embeddings are replaced by the image features in
 * order. The graph returns per-token log-probs of the response only (the lm_head runs on those positions).
 *
 * Weights are graph inputs named by module parameter (`model.text_model.layers.0.self_attn.q_proj.weight`),
 * so one uploaded copy serves every graph; LoRA A/B are inputs named as PEFT names them (without the
 * `base_model.model.` prefix). Frozen linears can be int4 (MatMulNBits); LoRA stays float.
 */
import type { Value } from '../onnx/ir.js';
import { type Int4Linear, type LinearWeights, attention, decoderLayer, geluErf, geluTanh, layerNorm, linear, mergeHeads,
  rmsNorm, splitHeads, tokenLogprobs } from '../onnx/nn.js';
import { GraphBuilder } from '../onnx/ops.js';

export interface TextSpec {
  hidden: number; heads: number; kvHeads: number; headDim: number; inter: number; layers: number; vocab: number;
  rmsEps: number; ropeTheta: number; tieWordEmbeddings: boolean; attnBias: boolean; mlpBias: boolean;
}

export interface VisionSpec {
  hidden: number; heads: number; inter: number; layers: number; imageSize: number; patchSize: number;
  layerNormEps: number; hiddenAct: string;
}

export interface VlmSpec {
  family: 'idefics3' | 'llava';
  text: TextSpec;
  vision: VisionSpec;
  imageTokenId: number;
  /** image tokens each image becomes in the LM sequence */
  tokensPerImage: number;
  /** idefics3 */
  scaleFactor?: number;
  /** llava */
  featureLayer?: number;
  selectStrategy?: 'full' | 'default';
  projectorAct?: string;
  projectorBias?: boolean;
}

/** module-name prefixes per family (PEFT's view of the model in transformers 5) */
export function prefixes(s: VlmSpec) {
  return s.family === 'idefics3'
    ? { vision: 'model.vision_model', text: 'model.text_model', lmHead: 'lm_head' }
    : { vision: 'model.vision_tower', text: 'model.language_model', lmHead: 'lm_head' };
}

/**
 * The checkpoint keys a module parameter may be stored under: transformers 5 names, and the legacy names
 * that llava-hf checkpoints (and transformers' own save of LLaVA) use.
 */
export function checkpointKeys(s: VlmSpec, param: string): string[] {
  const keys = [param];
  if (s.family === 'llava') {
    if (param.startsWith('model.language_model.')) keys.push(`language_model.model.${param.slice('model.language_model.'.length)}`);
    if (param.startsWith('model.vision_tower.')) keys.push(param.slice('model.'.length));
    if (param.startsWith('model.multi_modal_projector.')) keys.push(param.slice('model.'.length));
    if (param === 'lm_head.weight') keys.push('language_model.lm_head.weight');
  }
  if (param === 'lm_head.weight' && s.text.tieWordEmbeddings) keys.push(`${prefixes(s).text}.embed_tokens.weight`);
  return keys;
}

/**
 * Where image features go in a sequence: image_index (the k-th <image> token takes feature row k) and
 * image_mask; the count must match the images given.
 */
export function imagePositions(ids: ArrayLike<number>, s: VlmSpec, nImages: number): { index: BigInt64Array; mask: Uint8Array } {
  const L = ids.length, index = new BigInt64Array(L), mask = new Uint8Array(L);
  let k = 0;
  for (let i = 0; i < L; i++) if (Number(ids[i]) === s.imageTokenId) { index[i] = BigInt(k++); mask[i] = 1; }
  if (k !== nImages * s.tokensPerImage) {
    throw new Error(`sequence has ${k} <image> tokens (id ${s.imageTokenId}) but ${nImages} image(s) of ${s.tokensPerImage} tokens each`);
  }
  return { index, mask };
}

/** images [3, S, S] each, stacked into one pixel_values buffer [n, 3, S, S] */
export function stackImages(images: ReadonlyArray<Float32Array>, s: VlmSpec): Float32Array {
  const n = 3 * s.vision.imageSize ** 2, px = new Float32Array(images.length * n);
  images.forEach((im, i) => {
    if (im.length !== n) throw new Error(`image ${i} has ${im.length} values; this model takes [3, ${s.vision.imageSize}, ${s.vision.imageSize}]`);
    px.set(im, i * n);
  });
  return px;
}

export interface ParamInfo { name: string; shape: number[]; linear?: { out: number; in: number } }

/**
 * every weight the graphs read, with its shape (for loading and validation); `allVisionLayers` also lists the
 * tower layers past LLaVA's vision_feature_layer, which exist in the model but never reach the LM
 */
export function parameterList(s: VlmSpec, allVisionLayers = false): ParamInfo[] {
  const p = prefixes(s), t = s.text, v = s.vision;
  const out: ParamInfo[] = [];
  const lin = (name: string, o: number, i: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [o, i], linear: { out: o, in: i } });
    if (bias) out.push({ name: `${name}.bias`, shape: [o] });
  };
  const vec = (name: string, n: number) => out.push({ name, shape: [n] });
  out.push({ name: `${p.vision}.embeddings.patch_embedding.weight`, shape: [v.hidden, 3, v.patchSize, v.patchSize] });
  vec(`${p.vision}.embeddings.patch_embedding.bias`, v.hidden);
  // the patch Conv yields floor(size / patch) patches a side (SigLIP 384/14: 27, not 27.4)
  out.push({ name: `${p.vision}.embeddings.position_embedding.weight`, shape: [Math.floor(v.imageSize / v.patchSize) ** 2, v.hidden] });
  for (let l = 0; l < (allVisionLayers ? v.layers : visionLayersUsed(s)); l++) {
    const q = `${p.vision}.encoder.layers.${l}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${q}.self_attn.${n}`, v.hidden, v.hidden, true);
    lin(`${q}.mlp.fc1`, v.inter, v.hidden, true);
    lin(`${q}.mlp.fc2`, v.hidden, v.inter, true);
    for (const n of ['layer_norm1', 'layer_norm2']) { vec(`${q}.${n}.weight`, v.hidden); vec(`${q}.${n}.bias`, v.hidden); }
  }
  if (s.family === 'idefics3') {
    vec(`${p.vision}.post_layernorm.weight`, v.hidden);
    vec(`${p.vision}.post_layernorm.bias`, v.hidden);
    lin('model.connector.modality_projection.proj', t.hidden, v.hidden * (s.scaleFactor ?? 1) ** 2, false);
  } else {
    lin('model.multi_modal_projector.linear_1', t.hidden, v.hidden, s.projectorBias ?? true);
    lin('model.multi_modal_projector.linear_2', t.hidden, t.hidden, s.projectorBias ?? true);
  }
  out.push({ name: `${p.text}.embed_tokens.weight`, shape: [t.vocab, t.hidden] });
  for (let l = 0; l < t.layers; l++) {
    const q = `${p.text}.layers.${l}`;
    lin(`${q}.self_attn.q_proj`, t.heads * t.headDim, t.hidden, t.attnBias);
    lin(`${q}.self_attn.k_proj`, t.kvHeads * t.headDim, t.hidden, t.attnBias);
    lin(`${q}.self_attn.v_proj`, t.kvHeads * t.headDim, t.hidden, t.attnBias);
    lin(`${q}.self_attn.o_proj`, t.hidden, t.heads * t.headDim, false);
    lin(`${q}.mlp.gate_proj`, t.inter, t.hidden, t.mlpBias);
    lin(`${q}.mlp.up_proj`, t.inter, t.hidden, t.mlpBias);
    lin(`${q}.mlp.down_proj`, t.hidden, t.inter, t.mlpBias);
    vec(`${q}.input_layernorm.weight`, t.hidden);
    vec(`${q}.post_attention_layernorm.weight`, t.hidden);
  }
  vec(`${p.text}.norm.weight`, t.hidden);
  out.push({ name: 'lm_head.weight', shape: [t.vocab, t.hidden], linear: { out: t.vocab, in: t.hidden } });
  return out;
}

/** vision layers whose output reaches the LM (LLaVA stops at vision_feature_layer) */
export function visionLayersUsed(s: VlmSpec): number {
  if (s.family !== 'llava') return s.vision.layers;
  const f = s.featureLayer ?? -1;
  return f < 0 ? s.vision.layers + 1 + f : f;
}

/** the linear modules PEFT could target, by module name (every tower layer, used or not) */
export function linearModules(s: VlmSpec): string[] {
  return parameterList(s, true).filter((p) => p.linear && p.name !== 'lm_head.weight').map((p) => p.name.slice(0, -'.weight'.length));
}

export interface LoraInput { r: number; scale: number }

export interface GraphShape {
  /** sequence length (prompt + responses) */
  L: number;
  nImages: number;
  /** response tokens scored (all responses of a packed sequence) */
  R: number;
}

export interface VlmGraph {
  g: GraphBuilder;
  /** per-token log-probs of the scored tokens, [R] */
  logprobs: Value;
  /** LoRA inputs present in this graph, by PEFT module name */
  lora: Map<string, { A: Value; B: Value }>;
  /** weight inputs, by parameter name */
  weights: Map<string, Value>;
}

export interface BuildOptions {
  /** LoRA on these modules (absent: the reference, adapter off) */
  lora?: Map<string, LoraInput> | null;
  /** frozen linears as int4 blocks (module names); the rest stay float */
  int4?: Set<string>;
  /** block size per int4 module */
  int4Block?: (module: string, K: number) => number;
  /**
   * graph input name for a canonical parameter or LoRA name: a layer graph shared by all layers names its
   * inputs generically (`layer.self_attn.q_proj.weight`) and the runtime maps them to each layer's weights
   */
  rename?: (name: string) => string;
}

/** Declares weight, int4 and LoRA inputs on first use, so a graph takes exactly the parameters it reads. */
export class ParamResolver {
  readonly weights = new Map<string, Value>();
  readonly lora = new Map<string, { A: Value; B: Value }>();
  private readonly info: Map<string, ParamInfo>;

  constructor(readonly g: GraphBuilder, readonly s: VlmSpec, readonly o: BuildOptions = {}) {
    this.info = new Map(parameterList(s, true).map((p) => [p.name, p]));
  }

  private input(name: string, dtype: 'float32' | 'uint8', shape: number[]): Value {
    let x = this.weights.get(name);
    if (!x) {
      x = this.g.input(this.o.rename ? this.o.rename(name) : name, dtype, shape);
      this.weights.set(name, x);
    }
    return x;
  }

  w(name: string): Value {
    const p = this.info.get(name);
    if (!p) throw new Error(`internal: ${name} is not a parameter of ${this.s.family}`);
    return this.input(name, 'float32', p.shape);
  }

  lin(module: string, bias: boolean): LinearWeights {
    const p = this.info.get(`${module}.weight`);
    if (!p?.linear) throw new Error(`internal: ${module} is not a linear layer of ${this.s.family}`);
    const K = p.linear.in, N = p.linear.out;
    let weight: Value | Int4Linear;
    if (this.o.int4?.has(module)) {
      const bs = this.o.int4Block?.(module, K) ?? 32, nb = K / bs;
      weight = { K, N, blockSize: bs, bq: this.input(`${module}.qweight`, 'uint8', [N, nb, bs / 2]),
        scales: this.input(`${module}.scales`, 'float32', [N * nb]),
        zeroPoints: this.input(`${module}.qzeros`, 'uint8', [N, Math.ceil(nb / 2)]) };
    } else {
      weight = this.w(`${module}.weight`);
    }
    const l = this.o.lora?.get(module);
    let lora: LinearWeights['lora'] = null;
    if (l) {
      const name = (ab: string) => (this.o.rename ? this.o.rename(`${module}.lora_${ab}.weight`) : `${module}.lora_${ab}.weight`);
      const A = this.g.input(name('A'), 'float32', [l.r, K]);
      const B = this.g.input(name('B'), 'float32', [N, l.r]);
      this.lora.set(module, { A, B });
      lora = { A, B, scale: l.scale };
    }
    return { weight, bias: bias ? this.w(`${module}.bias`) : null, lora };
  }
}

/** pixels [n, 3, H, W] -> image features in LM space [n·tokensPerImage, text hidden] (tower + connector) */
export function visionFeatures(r: ParamResolver, px: Value): Value {
  const { g, s } = r, v = s.vision, t = s.text, pfx = prefixes(s), n = px.shape[0];
  const side = Math.floor(v.imageSize / v.patchSize), P = side * side;
  let x = g.conv(px, r.w(`${pfx.vision}.embeddings.patch_embedding.weight`), r.w(`${pfx.vision}.embeddings.patch_embedding.bias`),
    { strides: [v.patchSize, v.patchSize] });
  x = g.transpose(g.reshape(x, [n, v.hidden, P]), [0, 2, 1]);
  x = g.add(x, r.w(`${pfx.vision}.embeddings.position_embedding.weight`));
  const act = (h: Value, name: string) => (name === 'gelu_pytorch_tanh' || name === 'gelu_new' ? geluTanh(g, h) : geluErf(g, h));
  for (let l = 0; l < visionLayersUsed(s); l++) {
    const q = `${pfx.vision}.encoder.layers.${l}`;
    const h = layerNorm(g, x, r.w(`${q}.layer_norm1.weight`), r.w(`${q}.layer_norm1.bias`), v.layerNormEps);
    const heads = (nm: string) => splitHeads(g, linear(g, h, r.lin(`${q}.self_attn.${nm}`, true)), v.heads);
    const a = mergeHeads(g, attention(g, heads('q_proj'), heads('k_proj'), heads('v_proj'), null));
    x = g.add(x, linear(g, a, r.lin(`${q}.self_attn.out_proj`, true)));
    const h2 = layerNorm(g, x, r.w(`${q}.layer_norm2.weight`), r.w(`${q}.layer_norm2.bias`), v.layerNormEps);
    x = g.add(x, linear(g, act(linear(g, h2, r.lin(`${q}.mlp.fc1`, true)), v.hiddenAct), r.lin(`${q}.mlp.fc2`, true)));
  }
  let feats: Value;
  if (s.family === 'idefics3') {
    x = layerNorm(g, x, r.w(`${pfx.vision}.post_layernorm.weight`), r.w(`${pfx.vision}.post_layernorm.bias`), v.layerNormEps);
    const sf = s.scaleFactor ?? 1, D = v.hidden;
    // HF Idefics3Connector.pixel_shuffle
    let y = g.reshape(x, [n, side, side / sf, D * sf]);
    y = g.transpose(y, [0, 2, 1, 3]);
    y = g.reshape(y, [n, side / sf, side / sf, D * sf * sf]);
    y = g.transpose(y, [0, 2, 1, 3]);
    y = g.reshape(y, [n, P / (sf * sf), D * sf * sf]);
    feats = linear(g, y, r.lin('model.connector.modality_projection.proj', false));
  } else {
    if (s.selectStrategy === 'default') x = g.slice(x, [1], [P], [1]);
    const h = linear(g, x, r.lin('model.multi_modal_projector.linear_1', s.projectorBias ?? true));
    feats = linear(g, act(h, s.projectorAct ?? 'gelu'), r.lin('model.multi_modal_projector.linear_2', s.projectorBias ?? true));
  }
  return g.reshape(feats, [feats.shape[0] * feats.shape[1], t.hidden]);
}

/** token embeddings with the <image> positions replaced by image features, in order: [1, L, D] */
export function embedTokens(r: ParamResolver, ids: Value, feats: Value, imageIndex: Value, imageMask: Value): Value {
  const { g, s } = r, L = ids.shape[1], D = s.text.hidden;
  const tok = g.reshape(g.gather(r.w(`${prefixes(s).text}.embed_tokens.weight`), ids, 0), [L, D]);
  return g.reshape(g.where(imageMask, g.gather(feats, imageIndex, 0), tok), [1, L, D]);
}

export function textLayer(r: ParamResolver, h: Value, l: number, c: { cos: Value; sin: Value; mask: Value }): Value {
  const t = r.s.text, q = `${prefixes(r.s).text}.layers.${l}`;
  return decoderLayer(r.g, h, {
    inputNorm: r.w(`${q}.input_layernorm.weight`), postNorm: r.w(`${q}.post_attention_layernorm.weight`),
    q: r.lin(`${q}.self_attn.q_proj`, t.attnBias), k: r.lin(`${q}.self_attn.k_proj`, t.attnBias),
    v: r.lin(`${q}.self_attn.v_proj`, t.attnBias), o: r.lin(`${q}.self_attn.o_proj`, false),
    gate: r.lin(`${q}.mlp.gate_proj`, t.mlpBias), up: r.lin(`${q}.mlp.up_proj`, t.mlpBias), down: r.lin(`${q}.mlp.down_proj`, t.mlpBias),
  }, { heads: t.heads, kvHeads: t.kvHeads, eps: t.rmsEps, cos: c.cos, sin: c.sin, mask: c.mask });
}

/**
 * log p(target_j) predicted at position predictIndex_j: the final norm and the lm_head run on those R
 * positions only (a packed sequence predicts each response's first token from the prompt's last position)
 */
export function headLogprobs(r: ParamResolver, h: Value, predictIndex: Value, targets: Value): Value {
  const { g, s } = r, R = targets.shape[0], D = s.text.hidden;
  const hs = g.gather(g.reshape(h, [h.shape[1], D]), predictIndex, 0);
  const logits = linear(g, rmsNorm(g, hs, r.w(`${prefixes(s).text}.norm.weight`), s.text.rmsEps), { weight: r.w('lm_head.weight') });
  return g.reshape(tokenLogprobs(g, g.reshape(logits, [1, R, s.text.vocab]), g.reshape(targets, [1, R])), [R]);
}

/**
 * The whole model in one graph. Inputs: input_ids [1, L] int64; pixel_values [nImages, 3, H, W];
 * image_index [L] int64 and image_mask [L, 1] bool (where image features go); rope_cos/rope_sin [L, headDim];
 * attn_mask [L, L] additive; predict_index [R] int64 and targets [R] int64 (which position predicts which
 * token). Output: `logprobs` [R].
 */
export function buildVlmGraph(s: VlmSpec, shape: GraphShape, o: BuildOptions = {}): VlmGraph {
  const g = new GraphBuilder(`${s.family}_score_${shape.L}_${shape.nImages}_${shape.R}`);
  const r = new ParamResolver(g, s, o);
  const L = shape.L, hd = s.text.headDim;
  const px = g.input('pixel_values', 'float32', [shape.nImages, 3, s.vision.imageSize, s.vision.imageSize]);
  const ids = g.input('input_ids', 'int64', [1, L]);
  const imageIndex = g.input('image_index', 'int64', [L]);
  const imageMask = g.input('image_mask', 'bool', [L, 1]);
  const cos = g.input('rope_cos', 'float32', [L, hd]), sin = g.input('rope_sin', 'float32', [L, hd]);
  const mask = g.input('attn_mask', 'float32', [L, L]);
  const predict = g.input('predict_index', 'int64', [shape.R]), targets = g.input('targets', 'int64', [shape.R]);
  let h = embedTokens(r, ids, visionFeatures(r, px), imageIndex, imageMask);
  for (let l = 0; l < s.text.layers; l++) h = textLayer(r, h, l, { cos, sin, mask });
  const logprobs = g.output(headLogprobs(r, h, predict, targets), 'logprobs');
  return { g, logprobs, lora: r.lora, weights: r.weights };
}
