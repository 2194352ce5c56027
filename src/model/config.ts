/**
 * Reading config.json: a typed reader whose errors name the file and the dotted field, and the converters of
 * the parts every family shares (a Llama/Qwen2 text config, a SigLIP-style vision config). Conversion is
 * explicit: each field the graphs use is read and checked; optional ones take the transformers config
 * classes' defaults (which `save_pretrained` omits when unchanged) and are listed in `defaulted`; a value the
 * graphs do not implement (another activation, a RoPE scaling other than linear or llama3, sliding-window
 * attention, partial rotary embeddings) is an error naming the field, the value and what is supported.
 *
 * The family parsers (src/model/families/*) build on these; this module registers nothing.
 */
import { CheckpointError } from './safetensors.js';
import type { RopeScaling, TextSpec, VisionSpec } from './types.js';

type Json = Record<string, unknown>;

/** typed access to a config object; every error names the file and the dotted field */
export class ConfigReader {
  constructor(
    readonly raw: Json,
    readonly file: string,
    readonly prefix = '',
    private readonly defaulted: string[] = [],
  ) {}

  private path(k: string) {
    return this.prefix ? `${this.prefix}.${k}` : k;
  }

  has(k: string): boolean {
    return this.raw[k] !== undefined && this.raw[k] !== null;
  }

  fail(k: string, what: string): never {
    throw new CheckpointError(`${this.file}: field "${this.path(k)}" ${what}`);
  }

  private take<T>(k: string, fallback: T | undefined): unknown {
    if (!this.has(k)) {
      if (fallback === undefined) this.fail(k, 'is missing');
      this.defaulted.push(this.path(k));
      return fallback;
    }
    return this.raw[k];
  }

  num(k: string, fallback?: number): number {
    const v = this.take(k, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(k, `must be a number (got ${JSON.stringify(v)})`);
    return v;
  }

  /** a positive integer */
  int(k: string, fallback?: number): number {
    const v = this.num(k, fallback);
    if (!Number.isInteger(v) || v <= 0) this.fail(k, `must be a positive integer (got ${v})`);
    return v;
  }

  str(k: string, fallback?: string): string {
    const v = this.take(k, fallback);
    if (typeof v !== 'string') this.fail(k, `must be a string (got ${JSON.stringify(v)})`);
    return v;
  }

  bool(k: string, fallback?: boolean): boolean {
    const v = this.take(k, fallback);
    if (typeof v !== 'boolean') this.fail(k, `must be true or false (got ${JSON.stringify(v)})`);
    return v;
  }

  obj(k: string): ConfigReader {
    const v = this.take(k, undefined);
    if (!v || typeof v !== 'object' || Array.isArray(v)) this.fail(k, 'must be an object');
    return new ConfigReader(v as Json, this.file, this.path(k), this.defaulted);
  }

  list(): string[] {
    return this.defaulted;
  }

  /** a field as written, for fields that may take several types */
  value(k: string): unknown {
    return this.raw[k];
  }
}

const TEXT_TYPES = ['llama', 'qwen2'] as const;
const ROPE_TYPES = ['default', 'linear', 'llama3'] as const;

/**
 * rope_parameters (transformers 5) or rope_scaling (4.x): the RoPE variant, converted to what ropeTables
 * computes. Dynamic NTK, YaRN, LongRoPE and the like change attention in ways the graphs do not implement.
 */
function parseRope(t: ConfigReader): { ropeTheta: number; ropeType: string; ropeScaling?: RopeScaling } {
  const rp = t.has('rope_parameters') ? t.obj('rope_parameters') : undefined;
  const rs = t.has('rope_scaling') ? t.obj('rope_scaling') : undefined;
  const ropeTheta = rp?.has('rope_theta') ? rp.num('rope_theta') : t.num('rope_theta', 10000);
  if (!(ropeTheta > 0)) (rp?.has('rope_theta') ? rp : t).fail('rope_theta', `must be positive (got ${ropeTheta})`);
  // where the scaling is written: rope_parameters when it names a type, else rope_scaling
  const src = rp?.has('rope_type') ? rp : rs;
  const typeKey = src?.has('rope_type') ? 'rope_type' : src?.has('type') ? 'type' : undefined;
  const ropeType = src && typeKey ? src.str(typeKey) : 'default';
  if (!(ROPE_TYPES as readonly string[]).includes(ropeType)) {
    src!.fail(
      typeKey!,
      `is "${ropeType}"; supported: ${ROPE_TYPES.join(', ')} (dynamic, yarn, longrope and other scalings are not implemented)`,
    );
  }
  for (const r of [rp, rs]) {
    if (r?.has('partial_rotary_factor') && r.num('partial_rotary_factor') !== 1) {
      r.fail('partial_rotary_factor', `is ${r.num('partial_rotary_factor')}; only full rotary embeddings (1.0) are supported`);
    }
  }
  if (t.has('partial_rotary_factor') && t.num('partial_rotary_factor') !== 1) {
    t.fail('partial_rotary_factor', `is ${t.num('partial_rotary_factor')}; only full rotary embeddings (1.0) are supported`);
  }
  if (ropeType === 'default') return { ropeTheta, ropeType };
  const factor = src!.num('factor');
  if (!(factor > 0)) src!.fail('factor', `must be positive (got ${factor})`);
  if (ropeType === 'linear') return { ropeTheta, ropeType, ropeScaling: { type: 'linear', factor } };
  const lowFreqFactor = src!.num('low_freq_factor'),
    highFreqFactor = src!.num('high_freq_factor');
  if (!(highFreqFactor > lowFreqFactor))
    src!.fail('high_freq_factor', `(${highFreqFactor}) must exceed low_freq_factor (${lowFreqFactor})`);
  const originalMaxPositions = src!.int('original_max_position_embeddings');
  return { ropeTheta, ropeType, ropeScaling: { type: 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositions } };
}

/** text_config of a Llama or Qwen2 LM (LlamaConfig / Qwen2Config defaults where optional) */
export function parseTextConfig(t: ConfigReader, top: ConfigReader): TextSpec {
  const modelType = t.str('model_type', 'llama');
  if (!(TEXT_TYPES as readonly string[]).includes(modelType))
    t.fail('model_type', `is "${modelType}"; supported: ${TEXT_TYPES.join(', ')}`);
  const qwen = modelType === 'qwen2';
  const hidden = t.int('hidden_size');
  const heads = t.int('num_attention_heads');
  const kvHeads = t.int('num_key_value_heads', heads);
  if (heads % kvHeads) t.fail('num_key_value_heads', `(${kvHeads}) must divide num_attention_heads (${heads})`);
  if (!t.has('head_dim') && hidden % heads)
    t.fail('hidden_size', `(${hidden}) is not a multiple of num_attention_heads (${heads}) and head_dim is absent`);
  const headDim = t.has('head_dim') ? t.int('head_dim') : hidden / heads;
  if (headDim % 2) t.fail('head_dim', `(${headDim}) must be even for rotary embeddings`);
  const hiddenAct = t.str('hidden_act', 'silu');
  if (hiddenAct !== 'silu') t.fail('hidden_act', `is "${hiddenAct}"; the decoder's MLP is SwiGLU: only "silu" is supported`);
  // Qwen2 applies a sliding window to layers >= max_window_layers when use_sliding_window is on
  if (qwen && t.has('use_sliding_window') && t.bool('use_sliding_window')) {
    t.fail(
      'use_sliding_window',
      'is true; sliding-window attention is not implemented (every layer attends to the whole sequence)',
    );
  }
  const layerTypes = t.value('layer_types');
  if (Array.isArray(layerTypes) && layerTypes.some((x) => x !== 'full_attention')) {
    t.fail(
      'layer_types',
      `lists ${[...new Set(layerTypes.filter((x) => x !== 'full_attention'))].map((x) => JSON.stringify(x)).join(', ')}; only "full_attention" layers are supported`,
    );
  }
  const attentionBias = qwen ? true : t.bool('attention_bias', false);
  const tie = top.has('tie_word_embeddings') ? top.bool('tie_word_embeddings') : t.bool('tie_word_embeddings', false);
  const rmsEps = t.num('rms_norm_eps', 1e-6);
  if (!(rmsEps > 0)) t.fail('rms_norm_eps', `must be positive (got ${rmsEps})`);
  return {
    modelType: modelType as TextSpec['modelType'],
    hidden,
    heads,
    kvHeads,
    headDim,
    inter: t.int('intermediate_size'),
    layers: t.int('num_hidden_layers'),
    vocab: t.int('vocab_size'),
    rmsEps,
    ...parseRope(t),
    tieWordEmbeddings: tie,
    attnBias: attentionBias,
    oBias: qwen ? false : attentionBias,
    mlpBias: qwen ? false : t.bool('mlp_bias', false),
    hiddenAct,
    maxPositions: t.int('max_position_embeddings', qwen ? 32768 : 2048),
  };
}

export interface VisionDefaults {
  hidden: number;
  inter: number;
  layers: number;
  heads: number;
  imageSize: number;
  patchSize: number;
}

/** the GELU forms the tower graphs implement: the tanh approximation and the exact (erf) one */
export const GELU_TANH = ['gelu_pytorch_tanh', 'gelu_new', 'gelu_fast'] as const;
export const GELU_ERF = ['gelu'] as const;
const GELUS: readonly string[] = [...GELU_TANH, ...GELU_ERF];

/** an activation field the graphs implement (tower MLP, LLaVA projector) */
export function geluField(r: ConfigReader, k: string, fallback: string): string {
  const v = r.str(k, fallback);
  if (!GELUS.includes(v)) r.fail(k, `is "${v}"; supported: ${GELUS.join(', ')}`);
  return v;
}

/** a SigLIP-style vision_config (the family passes the model_types it accepts and its config class's defaults) */
export function parseVisionConfig(v: ConfigReader, types: readonly string[], d: VisionDefaults): VisionSpec {
  const modelType = v.str('model_type', types[0]);
  if (!types.includes(modelType)) v.fail('model_type', `is "${modelType}"; expected ${types.join(' or ')}`);
  const hidden = v.int('hidden_size', d.hidden),
    heads = v.int('num_attention_heads', d.heads);
  if (hidden % heads) v.fail('hidden_size', `(${hidden}) is not a multiple of num_attention_heads (${heads})`);
  // the patch conv has stride patch_size: floor(image_size / patch_size) patches a side (SigLIP 384/14: 27)
  const imageSize = v.int('image_size', d.imageSize),
    patchSize = v.int('patch_size', d.patchSize);
  if (patchSize > imageSize) v.fail('patch_size', `(${patchSize}) is larger than image_size (${imageSize})`);
  const numChannels = v.int('num_channels', 3);
  if (numChannels !== 3) v.fail('num_channels', `is ${numChannels}; the image processors give RGB (3 channels)`);
  const layerNormEps = v.num('layer_norm_eps', 1e-6);
  if (!(layerNormEps > 0)) v.fail('layer_norm_eps', `must be positive (got ${layerNormEps})`);
  return {
    modelType,
    hidden,
    heads,
    inter: v.int('intermediate_size', d.inter),
    layers: v.int('num_hidden_layers', d.layers),
    imageSize,
    patchSize,
    numChannels,
    layerNormEps,
    hiddenAct: geluField(v, 'hidden_act', 'gelu_pytorch_tanh'),
  };
}
