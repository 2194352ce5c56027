/**
 * config.json -> VlmSpec for the graph builders. Defaults are HF's own where a saved config may omit a field
 * (transformers writes only non-default values for some configs).
 */
import { CheckpointError } from './safetensors.js';
import type { TextSpec, VisionSpec, VlmSpec } from './vlm.js';

type Json = Record<string, unknown>;

function field<T>(obj: Json, path: string, file: string, fallback?: T): T {
  const v = path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Json)[k] : undefined), obj);
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new CheckpointError(`${file}: field "${path}" is missing`);
  }
  return v as T;
}

function textSpec(c: Json, file: string, top: Json): TextSpec {
  const t = (k: string, fb?: unknown) => field(c, k, file, fb);
  const mt = String(t('model_type', 'llama'));
  const hidden = Number(field(c, 'hidden_size', `${file} text_config`));
  const heads = Number(field(c, 'num_attention_heads', `${file} text_config`));
  return {
    hidden, heads,
    kvHeads: Number(t('num_key_value_heads', heads)),
    headDim: Number(t('head_dim', hidden / heads)),
    inter: Number(field(c, 'intermediate_size', `${file} text_config`)),
    layers: Number(field(c, 'num_hidden_layers', `${file} text_config`)),
    vocab: Number(field(c, 'vocab_size', `${file} text_config`)),
    rmsEps: Number(t('rms_norm_eps', mt === 'qwen2' ? 1e-6 : 1e-6)),
    ropeTheta: Number((c.rope_parameters as Json | undefined)?.rope_theta ?? c.rope_theta ?? (mt === 'qwen2' ? 10000 : 10000)),
    tieWordEmbeddings: Boolean(top.tie_word_embeddings ?? c.tie_word_embeddings ?? false),
    attnBias: mt === 'qwen2' ? true : Boolean(c.attention_bias ?? false),
    mlpBias: Boolean(c.mlp_bias ?? false),
  };
}

function visionSpec(c: Json, file: string): VisionSpec {
  const f = (k: string, fb?: unknown) => field(c, k, `${file} vision_config`, fb);
  return {
    hidden: Number(f('hidden_size', 768)), heads: Number(f('num_attention_heads', 12)), inter: Number(f('intermediate_size', 3072)),
    layers: Number(f('num_hidden_layers', 12)), imageSize: Number(f('image_size', 224)), patchSize: Number(f('patch_size', 16)),
    layerNormEps: Number(f('layer_norm_eps', 1e-6)), hiddenAct: String(f('hidden_act', 'gelu_pytorch_tanh')),
  };
}

export function specFromConfig(config: Json, file = 'config.json'): VlmSpec {
  const mt = config.model_type;
  const tc = field<Json>(config, 'text_config', file);
  const vc = field<Json>(config, 'vision_config', file);
  const vision = visionSpec(vc, file);
  const P = (vision.imageSize / vision.patchSize) ** 2;
  if (mt === 'idefics3') {
    const sf = Number(field(config, 'scale_factor', file, 2));
    return { family: 'idefics3', text: textSpec(tc, file, config), vision, imageTokenId: Number(field(config, 'image_token_id', file)),
      tokensPerImage: P / (sf * sf), scaleFactor: sf };
  }
  if (mt === 'llava') {
    const strategy = String(field(config, 'vision_feature_select_strategy', file, 'default')) as 'full' | 'default';
    const fl = field<number | number[]>(config, 'vision_feature_layer', file, -2);
    if (Array.isArray(fl)) throw new CheckpointError(`${file}: field "vision_feature_layer" is a list; only one layer is supported`);
    return { family: 'llava', text: textSpec(tc, file, config), vision,
      imageTokenId: Number(config.image_token_id ?? config.image_token_index ?? field(config, 'image_token_index', file)),
      tokensPerImage: strategy === 'default' ? P - 1 : P, featureLayer: Number(fl), selectStrategy: strategy,
      projectorAct: String(field(config, 'projector_hidden_act', file, 'gelu')),
      projectorBias: Boolean(field(config, 'multimodal_projector_bias', file, true)) };
  }
  throw new CheckpointError(`${file}: model_type "${String(mt)}" is not supported; supported: idefics3, llava`);
}
