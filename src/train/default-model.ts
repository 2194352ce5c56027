/**
 * The embedded default model: a small Idefics3 (SmolVLM architecture) VLM for ShapesWorld, written as the
 * HF files a checkpoint folder holds (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
 * chat_template.jinja, preprocessor_config.json, processor_config.json, generation_config.json), so the
 * project loads it through the same code path as any Hub checkpoint and transformers can load it too.
 *
 * Why these sizes: 64-px images with 16-px patches give one patch per ShapesWorld grid cell (the world draws
 * each object inside one cell), scale_factor 1 keeps the 16 patches as 16 image tokens, and a word-level
 * tokenizer over the world's 43 words keeps the embedding tables tiny; the whole model trains from scratch on
 * two CPU cores in under an hour and stays far below the 20 MB budget (3.7 MB).
 */
import { VOCABULARY } from '../data/language.js';
import { IMAGE_SIZE } from '../data/world.js';
import { writeSafetensors } from '../model/safetensors.js';
import { checkConfig } from '../model/families/index.js';
import { type VlmSpec, parameterList } from '../model/vlm.js';

/** special tokens first (ids 0..6), then the chat template's words, then ShapesWorld's vocabulary */
export const SPECIAL_TOKENS = [
  '<pad>',
  '<|im_start|>',
  '<end_of_utterance>',
  '<image>',
  '<fake_token_around_image>',
  '<global-img>',
  '<unk>',
] as const;
const TEMPLATE_WORDS = ['user', 'assistant', ':'];

export function defaultVocabulary(): string[] {
  const words = [...SPECIAL_TOKENS, ...TEMPLATE_WORDS];
  for (const w of VOCABULARY) if (!words.includes(w)) words.push(w);
  return words;
}

/** SmolVLM-Instruct's chat template, verbatim */
export const IDEFICS3_CHAT_TEMPLATE =
  "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

export interface DefaultModelDims {
  visionHidden: number;
  visionLayers: number;
  visionHeads: number;
  visionInter: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  inter: number;
  /** Idefics3's pixel shuffle: scaleFactor² neighbouring patches become one image token */
  scaleFactor: number;
}

export const DEFAULT_DIMS: DefaultModelDims = {
  visionHidden: 64,
  visionLayers: 2,
  visionHeads: 2,
  visionInter: 128,
  hidden: 128,
  layers: 4,
  heads: 4,
  kvHeads: 2,
  inter: 384,
  scaleFactor: 1,
};

export function defaultConfig(d: DefaultModelDims = DEFAULT_DIMS): Record<string, unknown> {
  const vocab = defaultVocabulary(),
    id = (t: string) => vocab.indexOf(t);
  return {
    architectures: ['Idefics3ForConditionalGeneration'],
    model_type: 'idefics3',
    dtype: 'float32',
    image_token_id: id('<image>'),
    pad_token_id: id('<pad>'),
    scale_factor: d.scaleFactor,
    tie_word_embeddings: false,
    use_cache: true,
    text_config: {
      model_type: 'llama',
      hidden_act: 'silu',
      hidden_size: d.hidden,
      intermediate_size: d.inter,
      num_hidden_layers: d.layers,
      num_attention_heads: d.heads,
      num_key_value_heads: d.kvHeads,
      head_dim: d.hidden / d.heads,
      rms_norm_eps: 1e-5,
      rope_parameters: { rope_theta: 10000.0, rope_type: 'default' },
      max_position_embeddings: 256,
      vocab_size: vocab.length,
      attention_bias: false,
      mlp_bias: false,
      tie_word_embeddings: false,
      bos_token_id: id('<|im_start|>'),
      eos_token_id: id('<end_of_utterance>'),
      pad_token_id: id('<pad>'),
      initializer_range: 0.02,
    },
    vision_config: {
      model_type: 'idefics3_vision',
      hidden_act: 'gelu_pytorch_tanh',
      hidden_size: d.visionHidden,
      intermediate_size: d.visionInter,
      num_hidden_layers: d.visionLayers,
      num_attention_heads: d.visionHeads,
      image_size: IMAGE_SIZE,
      patch_size: 16,
      num_channels: 3,
      layer_norm_eps: 1e-6,
      initializer_range: 0.02,
    },
  };
}

export function defaultSpec(d: DefaultModelDims = DEFAULT_DIMS): VlmSpec {
  return checkConfig(defaultConfig(d), 'default model config.json');
}

/** tokenizer.json: word level, lower-cased, split as /\w+|[^\w\s]+/ (HF's Whitespace pre-tokenizer) */
export function defaultTokenizerJson(): Record<string, unknown> {
  const vocab = defaultVocabulary();
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: Object.fromEntries(vocab.map((w, i) => [w, i])), unk_token: '<unk>' },
  };
}

export function defaultAuxFiles(d: DefaultModelDims = DEFAULT_DIMS): Record<string, unknown> {
  const cfg = defaultConfig(d),
    text = cfg.text_config as Record<string, number>;
  const side = IMAGE_SIZE / 16 / d.scaleFactor;
  return {
    'config.json': cfg,
    'tokenizer.json': defaultTokenizerJson(),
    'tokenizer_config.json': {
      tokenizer_class: 'PreTrainedTokenizerFast',
      model_max_length: 256,
      clean_up_tokenization_spaces: false,
      bos_token: '<|im_start|>',
      eos_token: '<end_of_utterance>',
      pad_token: '<pad>',
      unk_token: '<unk>',
      additional_special_tokens: ['<fake_token_around_image>', '<image>', '<end_of_utterance>', '<global-img>'],
    },
    'chat_template.jinja': IDEFICS3_CHAT_TEMPLATE,
    'preprocessor_config.json': {
      image_processor_type: 'Idefics3ImageProcessor',
      processor_class: 'Idefics3Processor',
      do_convert_rgb: true,
      do_resize: true,
      size: { longest_edge: IMAGE_SIZE },
      resample: 1,
      do_image_splitting: false,
      max_image_size: { longest_edge: IMAGE_SIZE },
      do_rescale: true,
      rescale_factor: 1 / 255,
      do_normalize: true,
      image_mean: [0.5, 0.5, 0.5],
      image_std: [0.5, 0.5, 0.5],
      do_pad: true,
    },
    'processor_config.json': { processor_class: 'Idefics3Processor', image_seq_len: side * side },
    'generation_config.json': {
      bos_token_id: text.bos_token_id,
      eos_token_id: text.eos_token_id,
      pad_token_id: text.pad_token_id,
    },
  };
}

/** every file of the model folder, weights included */
export function defaultModelFiles(
  weights: ReadonlyMap<string, Float32Array>,
  d: DefaultModelDims = DEFAULT_DIMS,
  metadata: Record<string, string> = {},
): Map<string, Uint8Array> {
  const spec = defaultSpec(d),
    enc = new TextEncoder();
  const tensors: Parameters<typeof writeSafetensors>[0] = {};
  for (const p of parameterList(spec)) {
    const w = weights.get(p.name);
    if (!w) throw new Error(`internal: no weight for ${p.name}`);
    tensors[p.name] = { dtype: 'F32', shape: p.shape, data: w };
  }
  const files = new Map<string, Uint8Array>();
  for (const [name, v] of Object.entries(defaultAuxFiles(d))) {
    files.set(name, enc.encode(typeof v === 'string' ? v : `${JSON.stringify(v, null, 2)}\n`));
  }
  files.set('model.safetensors', writeSafetensors(tensors, { format: 'pt', ...metadata }));
  return files;
}
