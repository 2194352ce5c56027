/**
 * config.json -> a typed, normalised config for the supported VLM families (Idefics3/SmolVLM, LLaVA with a
 * SigLIP tower and a Qwen2 or Llama LM). Required fields are checked and named in errors
 * (`config.json: field "text_config.num_attention_heads" is missing`); optional ones take the defaults of the
 * transformers config classes (which `save_pretrained` omits when unchanged), and `defaulted` lists which did.
 *
 * The families register their parsers in the family registry (registry.ts), so `checkConfig` serves any
 * model_type registered there.
 */
import { familyFor, registerFamily } from './registry.js';
import { CheckpointError } from './safetensors.js';

type Json = Record<string, unknown>;

export interface TextConfig {
  modelType: 'llama' | 'qwen2';
  hidden: number;
  heads: number;
  kvHeads: number;
  /** config.head_dim, else hidden / heads */
  headDim: number;
  inter: number;
  layers: number;
  vocab: number;
  rmsEps: number;
  /** rope_parameters.rope_theta, else rope_theta */
  ropeTheta: number;
  /** rope_parameters.rope_type (or rope_scaling.rope_type); 'default' is plain RoPE */
  ropeType: string;
  /** top-level tie_word_embeddings, else text_config's */
  tieWordEmbeddings: boolean;
  /** bias on q/k/v (qwen2: always; llama: attention_bias) */
  attnBias: boolean;
  /** bias on o_proj (llama: attention_bias; qwen2: never) */
  oBias: boolean;
  mlpBias: boolean;
  hiddenAct: string;
  maxPositions: number;
}

export interface VisionConfig {
  modelType: string;
  hidden: number;
  heads: number;
  inter: number;
  layers: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  hiddenAct: string;
}

interface BaseConfig {
  modelType: string;
  text: TextConfig;
  vision: VisionConfig;
  imageTokenId: number;
  /** image tokens one image (one tile) becomes in the LM sequence */
  tokensPerImage: number;
  /** fields that took the transformers default because the file omits them */
  defaulted: string[];
}

export interface Idefics3Config extends BaseConfig {
  family: 'idefics3';
  /** pixel-shuffle factor of the connector */
  scaleFactor: number;
}

export interface LlavaConfig extends BaseConfig {
  family: 'llava';
  /** vision_feature_layer as written (negative counts from the end of hidden_states) */
  featureLayer: number;
  /** index into the tower's hidden_states (0 = embeddings, i = after layer i) */
  featureHiddenState: number;
  selectStrategy: 'default' | 'full';
  projectorAct: string;
  projectorBias: boolean;
}

export type ModelConfig = Idefics3Config | LlavaConfig;

/** typed access to a config object; every error names the file and the dotted field */
export class ConfigReader {
  constructor(readonly raw: Json, readonly file: string, readonly prefix = '', private readonly defaulted: string[] = []) {}

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
}

const TEXT_TYPES = ['llama', 'qwen2'] as const;

/** text_config of a Llama or Qwen2 LM (LlamaConfig / Qwen2Config defaults where optional) */
export function parseTextConfig(t: ConfigReader, top: ConfigReader): TextConfig {
  const modelType = t.str('model_type', 'llama');
  if (!(TEXT_TYPES as readonly string[]).includes(modelType)) t.fail('model_type', `is "${modelType}"; supported: ${TEXT_TYPES.join(', ')}`);
  const qwen = modelType === 'qwen2';
  const hidden = t.int('hidden_size');
  const heads = t.int('num_attention_heads');
  const kvHeads = t.int('num_key_value_heads', heads);
  if (heads % kvHeads) t.fail('num_key_value_heads', `(${kvHeads}) must divide num_attention_heads (${heads})`);
  if (!t.has('head_dim') && hidden % heads) t.fail('hidden_size', `(${hidden}) is not a multiple of num_attention_heads (${heads}) and head_dim is absent`);
  const headDim = t.has('head_dim') ? t.int('head_dim') : hidden / heads;
  const rp = t.has('rope_parameters') ? t.obj('rope_parameters') : undefined;
  const rs = t.has('rope_scaling') ? t.obj('rope_scaling') : undefined;
  const ropeTheta = rp?.has('rope_theta') ? rp.num('rope_theta') : t.num('rope_theta', 10000);
  const ropeType = rp?.has('rope_type') ? rp.str('rope_type') : rs?.has('rope_type') ? rs.str('rope_type') : rs?.has('type') ? rs.str('type') : 'default';
  const attentionBias = qwen ? true : t.bool('attention_bias', false);
  const tie = top.has('tie_word_embeddings') ? top.bool('tie_word_embeddings') : t.bool('tie_word_embeddings', false);
  return {
    modelType: modelType as TextConfig['modelType'],
    hidden, heads, kvHeads, headDim,
    inter: t.int('intermediate_size'),
    layers: t.int('num_hidden_layers'),
    vocab: t.int('vocab_size'),
    rmsEps: t.num('rms_norm_eps', 1e-6),
    ropeTheta, ropeType,
    tieWordEmbeddings: tie,
    attnBias: attentionBias,
    oBias: qwen ? false : attentionBias,
    mlpBias: qwen ? false : t.bool('mlp_bias', false),
    hiddenAct: t.str('hidden_act', 'silu'),
    maxPositions: t.int('max_position_embeddings', qwen ? 32768 : 2048),
  };
}

interface VisionDefaults { hidden: number; inter: number; layers: number; heads: number; imageSize: number; patchSize: number }
/** Idefics3VisionConfig's defaults */
const IDEFICS3_VISION: VisionDefaults = { hidden: 1152, inter: 3072, layers: 12, heads: 16, imageSize: 224, patchSize: 32 };
/** SiglipVisionConfig's defaults */
const SIGLIP_VISION: VisionDefaults = { hidden: 768, inter: 3072, layers: 12, heads: 12, imageSize: 224, patchSize: 16 };

export function parseVisionConfig(v: ConfigReader, types: readonly string[], d: VisionDefaults): VisionConfig {
  const modelType = v.str('model_type', types[0]);
  if (!types.includes(modelType)) v.fail('model_type', `is "${modelType}"; expected ${types.join(' or ')}`);
  const hidden = v.int('hidden_size', d.hidden), heads = v.int('num_attention_heads', d.heads);
  if (hidden % heads) v.fail('hidden_size', `(${hidden}) is not a multiple of num_attention_heads (${heads})`);
  // the patch conv has stride patch_size: floor(image_size / patch_size) patches a side (SigLIP 384/14: 27)
  const imageSize = v.int('image_size', d.imageSize), patchSize = v.int('patch_size', d.patchSize);
  if (patchSize > imageSize) v.fail('patch_size', `(${patchSize}) is larger than image_size (${imageSize})`);
  return {
    modelType, hidden, heads,
    inter: v.int('intermediate_size', d.inter),
    layers: v.int('num_hidden_layers', d.layers),
    imageSize, patchSize,
    numChannels: v.int('num_channels', 3),
    layerNormEps: v.num('layer_norm_eps', 1e-6),
    hiddenAct: v.str('hidden_act', 'gelu_pytorch_tanh'),
  };
}

/** model_type "idefics3" (Idefics3, SmolVLM): vision_config, text_config (llama), scale_factor, image_token_id */
export function parseIdefics3Config(raw: Json, file = 'config.json'): Idefics3Config {
  const r = new ConfigReader(raw, file);
  const vision = parseVisionConfig(r.obj('vision_config'), ['idefics3_vision', 'idefics3', 'smolvlm_vision'], IDEFICS3_VISION);
  const text = parseTextConfig(r.obj('text_config'), r);
  const scaleFactor = r.int('scale_factor');
  const side = Math.floor(vision.imageSize / vision.patchSize);
  if (side % scaleFactor) r.fail('scale_factor', `(${scaleFactor}) must divide the patch grid side (${side} = image_size / patch_size)`);
  return {
    family: 'idefics3', modelType: 'idefics3', text, vision, scaleFactor,
    imageTokenId: r.int('image_token_id'),
    tokensPerImage: (side / scaleFactor) ** 2,
    defaulted: r.list(),
  };
}

/**
 * model_type "llava" with a SigLIP tower: vision_config (siglip_vision_model), text_config (qwen2 or llama),
 * image_token_index (or image_token_id), vision_feature_layer, vision_feature_select_strategy
 */
export function parseLlavaConfig(raw: Json, file = 'config.json'): LlavaConfig {
  const r = new ConfigReader(raw, file);
  const vision = parseVisionConfig(r.obj('vision_config'), ['siglip_vision_model'], SIGLIP_VISION);
  const text = parseTextConfig(r.obj('text_config'), r);
  if (!r.has('image_token_index') && !r.has('image_token_id')) r.fail('image_token_index', 'is missing (nor is image_token_id there)');
  const imageTokenId = r.has('image_token_index') ? r.int('image_token_index') : r.int('image_token_id');
  if (Array.isArray(raw.vision_feature_layer)) r.fail('vision_feature_layer', 'is a list; only one layer is supported');
  const featureLayer = r.num('vision_feature_layer');
  const states = vision.layers + 1;
  if (!Number.isInteger(featureLayer) || featureLayer < -states || featureLayer >= states) {
    r.fail('vision_feature_layer', `(${featureLayer}) is outside the tower's ${states} hidden states`);
  }
  const selectStrategy = r.str('vision_feature_select_strategy') as LlavaConfig['selectStrategy'];
  if (selectStrategy !== 'default' && selectStrategy !== 'full') r.fail('vision_feature_select_strategy', `is "${selectStrategy}"; expected "default" or "full"`);
  const patches = Math.floor(vision.imageSize / vision.patchSize) ** 2;
  return {
    family: 'llava', modelType: 'llava', text, vision, imageTokenId,
    featureLayer, featureHiddenState: featureLayer < 0 ? states + featureLayer : featureLayer,
    selectStrategy,
    projectorAct: r.str('projector_hidden_act', 'gelu'),
    projectorBias: r.bool('multimodal_projector_bias', true),
    tokensPerImage: selectStrategy === 'default' ? patches - 1 : patches,
    defaulted: r.list(),
  };
}

registerFamily<Idefics3Config>('idefics3', { family: 'idefics3', parseConfig: parseIdefics3Config, imagePlaceholder: '<image>' });
registerFamily<LlavaConfig>('llava', { family: 'llava', parseConfig: parseLlavaConfig, imagePlaceholder: '<image>' });

/**
 * Check a config.json and normalise it, by its model_type (any family registered in registry.ts). Errors name
 * the file and the field; an unknown model_type lists the supported ones.
 */
export function checkConfig(config: Json, file = 'config.json'): ModelConfig {
  const spec = familyFor(config, file);
  if (!spec.parseConfig) throw new CheckpointError(`${file}: model_type "${spec.modelType}" has no config parser registered`);
  return spec.parseConfig(config, file) as ModelConfig;
}
