/**
 * The parts of a VLM graph every family shares: a SigLIP-style vision tower (patch Conv, LayerNorm encoder
 * layers, GELU MLP), the family's connector (src/model/families/*), a Llama/Qwen2 decoder whose <image>
 * token embeddings are replaced by the image features in order, and a head that gives per-token log-probs of
 * the scored tokens only (the lm_head runs on those positions). Graphs work on batches: B rows of L tokens.
 *
 * Weights are graph inputs named by module parameter (`model.text_model.layers.0.self_attn.q_proj.weight`),
 * so one uploaded copy serves every graph; LoRA A/B are inputs named as PEFT names them (without the
 * `base_model.model.` prefix). Frozen linears can be int4 (MatMulNBits); LoRA stays float.
 */
import type { Value } from '../onnx/ir.js';
import {
  type Int4Linear,
  type LinearWeights,
  attention,
  decoderLayer,
  geluErf,
  geluTanh,
  layerNorm,
  linear,
  mergeHeads,
  rmsNorm,
  splitHeads,
  tokenLogprobs,
} from '../onnx/nn.js';
import type { GraphBuilder } from '../onnx/ops.js';
import { GELU_TANH } from './config.js';
import { familyOf } from './families/index.js';
import type { ParamInfo, ParamSource, TextSpec, VlmSpec } from './types.js';

export type { ParamInfo, TextSpec, VisionSpec, VlmSpec } from './types.js';

/** module-name prefixes of the tower, the LM and the head (PEFT's view of the model in transformers 5) */
export function prefixes(s: VlmSpec): { vision: string; text: string; lmHead: string } {
  return { ...familyOf(s).prefixes, lmHead: 'lm_head' };
}

/**
 * The checkpoint keys a module parameter may be stored under, in the order tried: the transformers 5 name,
 * the family's legacy names, and for a tied lm_head every name of the token embeddings.
 */
export function checkpointKeys(s: VlmSpec, param: string): string[] {
  const f = familyOf(s);
  const keys = [param, ...(f.legacyKeys?.(s, param) ?? [])];
  if (param === 'lm_head.weight' && s.text.tieWordEmbeddings)
    keys.push(...checkpointKeys(s, `${f.prefixes.text}.embed_tokens.weight`));
  return keys;
}

/**
 * Where image features go in a sequence (or a batch of sequences laid end to end): image_index (the k-th
 * <image> token takes feature row k) and image_mask; the count must match the images given.
 */
export function imagePositions(ids: ArrayLike<number>, s: VlmSpec, nImages: number): { index: BigInt64Array; mask: Uint8Array } {
  const L = ids.length,
    index = new BigInt64Array(L),
    mask = new Uint8Array(L);
  let k = 0;
  for (let i = 0; i < L; i++)
    if (Number(ids[i]) === s.imageTokenId) {
      index[i] = BigInt(k++);
      mask[i] = 1;
    }
  if (k !== nImages * s.tokensPerImage) {
    throw new Error(
      `sequence has ${k} <image> tokens (id ${s.imageTokenId}) but ${nImages} image(s) of ${s.tokensPerImage} tokens each`,
    );
  }
  return { index, mask };
}

/** images [3, S, S] each, stacked into one pixel_values buffer [n, 3, S, S] */
export function stackImages(images: ReadonlyArray<Float32Array>, s: VlmSpec): Float32Array {
  const n = 3 * s.vision.imageSize ** 2,
    px = new Float32Array(images.length * n);
  images.forEach((im, i) => {
    if (im.length !== n)
      throw new Error(`image ${i} has ${im.length} values; this model takes [3, ${s.vision.imageSize}, ${s.vision.imageSize}]`);
    px.set(im, i * n);
  });
  return px;
}

/** vision layers whose output reaches the LM */
export function visionLayersUsed(s: VlmSpec): number {
  return familyOf(s).visionLayersUsed(s);
}

/**
 * every weight the graphs read, with its shape (for loading and validation); `allVisionLayers` also lists the
 * tower layers past LLaVA's vision_feature_layer, which exist in the model but never reach the LM
 */
export function parameterList(s: VlmSpec, allVisionLayers = false): ParamInfo[] {
  const f = familyOf(s),
    pv = f.prefixes.vision,
    pt = f.prefixes.text,
    t = s.text,
    v = s.vision;
  const out: ParamInfo[] = [];
  const lin = (name: string, o: number, i: number, bias: boolean) => {
    out.push({ name: `${name}.weight`, shape: [o, i], linear: { out: o, in: i } });
    if (bias) out.push({ name: `${name}.bias`, shape: [o] });
  };
  const vec = (name: string, n: number) => out.push({ name, shape: [n] });
  out.push({ name: `${pv}.embeddings.patch_embedding.weight`, shape: [v.hidden, 3, v.patchSize, v.patchSize] });
  vec(`${pv}.embeddings.patch_embedding.bias`, v.hidden);
  // the patch Conv yields floor(size / patch) patches a side (SigLIP 384/14: 27, not 27.4)
  out.push({ name: `${pv}.embeddings.position_embedding.weight`, shape: [Math.floor(v.imageSize / v.patchSize) ** 2, v.hidden] });
  for (let l = 0; l < (allVisionLayers ? v.layers : f.visionLayersUsed(s)); l++) {
    const layer = `${pv}.encoder.layers.${l}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${layer}.self_attn.${n}`, v.hidden, v.hidden, true);
    lin(`${layer}.mlp.fc1`, v.inter, v.hidden, true);
    lin(`${layer}.mlp.fc2`, v.hidden, v.inter, true);
    for (const n of ['layer_norm1', 'layer_norm2']) {
      vec(`${layer}.${n}.weight`, v.hidden);
      vec(`${layer}.${n}.bias`, v.hidden);
    }
  }
  out.push(...f.connectorParams(s));
  out.push({ name: `${pt}.embed_tokens.weight`, shape: [t.vocab, t.hidden] });
  for (let l = 0; l < t.layers; l++) {
    const layer = `${pt}.layers.${l}`;
    lin(`${layer}.self_attn.q_proj`, t.heads * t.headDim, t.hidden, t.attnBias);
    lin(`${layer}.self_attn.k_proj`, t.kvHeads * t.headDim, t.hidden, t.attnBias);
    lin(`${layer}.self_attn.v_proj`, t.kvHeads * t.headDim, t.hidden, t.attnBias);
    lin(`${layer}.self_attn.o_proj`, t.hidden, t.heads * t.headDim, t.oBias);
    lin(`${layer}.mlp.gate_proj`, t.inter, t.hidden, t.mlpBias);
    lin(`${layer}.mlp.up_proj`, t.inter, t.hidden, t.mlpBias);
    lin(`${layer}.mlp.down_proj`, t.hidden, t.inter, t.mlpBias);
    vec(`${layer}.input_layernorm.weight`, t.hidden);
    vec(`${layer}.post_attention_layernorm.weight`, t.hidden);
  }
  vec(`${pt}.norm.weight`, t.hidden);
  out.push({ name: 'lm_head.weight', shape: [t.vocab, t.hidden], linear: { out: t.vocab, in: t.hidden } });
  return out;
}

/** the linear modules PEFT could target, by module name (every tower layer, used or not) */
export function linearModules(s: VlmSpec): string[] {
  return parameterList(s, true)
    .filter((p) => p.linear && p.name !== 'lm_head.weight')
    .map((p) => p.name.slice(0, -'.weight'.length));
}

/** RoPE inverse frequencies of the text model, with its scaling (HF's rope_init_fn for default, linear, llama3) */
export function ropeInvFreq(t: TextSpec): Float64Array {
  const h = t.headDim / 2;
  const inv = Float64Array.from({ length: h }, (_, i) => 1 / t.ropeTheta ** ((2 * i) / t.headDim));
  const sc = t.ropeScaling;
  if (!sc) return inv;
  if (sc.type === 'linear') return inv.map((f) => f / sc.factor);
  const lowWavelen = sc.originalMaxPositions / sc.lowFreqFactor,
    highWavelen = sc.originalMaxPositions / sc.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / sc.factor;
    const smooth = (sc.originalMaxPositions / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor);
    return (1 - smooth) * (f / sc.factor) + smooth * f;
  });
}

export interface LoraInput {
  r: number;
  scale: number;
}

export interface BuildOptions {
  /** LoRA on these modules (absent: the reference, adapter off) */
  lora?: ReadonlyMap<string, LoraInput> | null;
  /** frozen linears as int4 blocks (module names); the rest stay float */
  int4?: ReadonlySet<string>;
  /** block size per int4 module */
  int4Block?: (module: string, K: number) => number;
  /**
   * graph input name for a canonical parameter or LoRA name: a layer graph shared by all layers names its
   * inputs generically (`layer.self_attn.q_proj.weight`) and the runtime maps them to each layer's weights
   */
  rename?: (name: string) => string;
}

/** Declares weight, int4 and LoRA inputs on first use, so a graph takes exactly the parameters it reads. */
export class ParamResolver implements ParamSource {
  readonly weights = new Map<string, Value>();
  readonly lora = new Map<string, { A: Value; B: Value }>();
  private readonly info: Map<string, ParamInfo>;

  constructor(
    readonly g: GraphBuilder,
    readonly s: VlmSpec,
    readonly o: BuildOptions = {},
  ) {
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
    const K = p.linear.in,
      N = p.linear.out;
    let weight: Value | Int4Linear;
    if (this.o.int4?.has(module)) {
      const bs = this.o.int4Block?.(module, K) ?? 32,
        nb = K / bs;
      weight = {
        K,
        N,
        blockSize: bs,
        bq: this.input(`${module}.qweight`, 'uint8', [N, nb, bs / 2]),
        scales: this.input(`${module}.scales`, 'float32', [N * nb]),
        zeroPoints: this.input(`${module}.qzeros`, 'uint8', [N, Math.ceil(nb / 2)]),
      };
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

/** GELU as the config names it: the tanh approximation or the exact erf form */
export function gelu(g: GraphBuilder, x: Value, act: string): Value {
  return (GELU_TANH as readonly string[]).includes(act) ? geluTanh(g, x) : geluErf(g, x);
}

/** pixels [n, 3, H, W] -> image features in LM space [n·tokensPerImage, text hidden] (tower + connector) */
export function visionFeatures(r: ParamResolver, px: Value): Value {
  const { g, s } = r,
    f = familyOf(s),
    v = s.vision,
    pv = f.prefixes.vision,
    n = px.shape[0];
  const side = Math.floor(v.imageSize / v.patchSize),
    P = side * side;
  let x = g.conv(px, r.w(`${pv}.embeddings.patch_embedding.weight`), r.w(`${pv}.embeddings.patch_embedding.bias`), {
    strides: [v.patchSize, v.patchSize],
  });
  x = g.transpose(g.reshape(x, [n, v.hidden, P]), [0, 2, 1]);
  x = g.add(x, r.w(`${pv}.embeddings.position_embedding.weight`));
  for (let l = 0; l < f.visionLayersUsed(s); l++) {
    const layer = `${pv}.encoder.layers.${l}`;
    const h = layerNorm(g, x, r.w(`${layer}.layer_norm1.weight`), r.w(`${layer}.layer_norm1.bias`), v.layerNormEps);
    const heads = (proj: string) => splitHeads(g, linear(g, h, r.lin(`${layer}.self_attn.${proj}`, true)), v.heads);
    const a = mergeHeads(g, attention(g, heads('q_proj'), heads('k_proj'), heads('v_proj'), null));
    x = g.add(x, linear(g, a, r.lin(`${layer}.self_attn.out_proj`, true)));
    const h2 = layerNorm(g, x, r.w(`${layer}.layer_norm2.weight`), r.w(`${layer}.layer_norm2.bias`), v.layerNormEps);
    x = g.add(
      x,
      linear(g, gelu(g, linear(g, h2, r.lin(`${layer}.mlp.fc1`, true)), v.hiddenAct), r.lin(`${layer}.mlp.fc2`, true)),
    );
  }
  const feats = f.connector(r, x, s);
  return g.reshape(feats, [feats.shape[0] * feats.shape[1], s.text.hidden]);
}

/**
 * token embeddings of a batch [B, L] with the <image> positions replaced by image features, in order over the
 * flattened batch (imageIndex and imageMask are [B·L] and [B·L, 1]): [B, L, D]
 */
export function embedTokens(r: ParamResolver, ids: Value, feats: Value, imageIndex: Value, imageMask: Value): Value {
  const { g, s } = r,
    [B, L] = ids.shape,
    D = s.text.hidden;
  const tok = g.reshape(g.gather(r.w(`${prefixes(s).text}.embed_tokens.weight`), g.reshape(ids, [1, B * L]), 0), [B * L, D]);
  return g.reshape(g.where(imageMask, g.gather(feats, imageIndex, 0), tok), [B, L, D]);
}

/** LM layer l on hidden states [B, L, D]; cos/sin [B, 1, L, headDim], mask [B, 1, L, L] additive */
export function textLayer(r: ParamResolver, h: Value, l: number, c: { cos: Value; sin: Value; mask: Value }): Value {
  const t = r.s.text,
    layer = `${prefixes(r.s).text}.layers.${l}`;
  return decoderLayer(
    r.g,
    h,
    {
      inputNorm: r.w(`${layer}.input_layernorm.weight`),
      postNorm: r.w(`${layer}.post_attention_layernorm.weight`),
      q: r.lin(`${layer}.self_attn.q_proj`, t.attnBias),
      k: r.lin(`${layer}.self_attn.k_proj`, t.attnBias),
      v: r.lin(`${layer}.self_attn.v_proj`, t.attnBias),
      o: r.lin(`${layer}.self_attn.o_proj`, t.oBias),
      gate: r.lin(`${layer}.mlp.gate_proj`, t.mlpBias),
      up: r.lin(`${layer}.mlp.up_proj`, t.mlpBias),
      down: r.lin(`${layer}.mlp.down_proj`, t.mlpBias),
    },
    { heads: t.heads, kvHeads: t.kvHeads, eps: t.rmsEps, cos: c.cos, sin: c.sin, mask: c.mask },
  );
}

/**
 * log p(target_j) predicted at flattened position predictIndex_j (b·L + t) of hidden states [B, L, D]: the
 * final norm and the lm_head run on those R positions only (a packed sequence predicts each response's first
 * token from the prompt's last position)
 */
export function headLogprobs(r: ParamResolver, h: Value, predictIndex: Value, targets: Value): Value {
  const { g, s } = r,
    R = targets.shape[0],
    D = s.text.hidden,
    [B, L] = h.shape;
  const hs = g.gather(g.reshape(h, [B * L, D]), predictIndex, 0);
  const logits = linear(g, rmsNorm(g, hs, r.w(`${prefixes(s).text}.norm.weight`), s.text.rmsEps), {
    weight: r.w('lm_head.weight'),
  });
  return g.reshape(tokenLogprobs(g, g.reshape(logits, [1, R, s.text.vocab]), g.reshape(targets, [1, R])), [R]);
}
