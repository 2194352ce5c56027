/**
 * A Hugging Face model folder of a real model's shape with random weights, for proving the real-size path
 * where the Hub cannot be reached: SmolVLM-256M-Instruct's architecture (config as the Hub has it, weights
 * stored as BF16 as the Hub's are), with the default model's word-level tokenizer and chat template (the
 * config's image token is that tokenizer's <image>), and an Idefics3 processor of one 512-px tile.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkConfig } from '../model/families/index.js';
import { randomCheckpoint } from '../model/random-checkpoint.js';
import { writeSafetensors } from '../model/safetensors.js';
import { parameterList } from '../model/vlm.js';
import { defaultAuxFiles, defaultVocabulary } from '../train/default-model.js';

/**
 * `depth` overrides the number of layers of each tower (same widths): memory at several depths, fitted as
 * affine in the layer counts, gives the full model's where running it is too slow (a CPU Vulkan)
 */
export function smolvlm256Config(depth: { text?: number; vision?: number } = {}): Record<string, unknown> {
  return {
    architectures: ['Idefics3ForConditionalGeneration'],
    model_type: 'idefics3',
    image_token_id: defaultVocabulary().indexOf('<image>'),
    scale_factor: 4,
    tie_word_embeddings: false,
    text_config: {
      model_type: 'llama',
      hidden_size: 576,
      intermediate_size: 1536,
      num_hidden_layers: depth.text ?? 30,
      num_attention_heads: 9,
      num_key_value_heads: 3,
      head_dim: 64,
      vocab_size: 49280,
      rms_norm_eps: 1e-5,
      rope_theta: 100000,
      max_position_embeddings: 8192,
    },
    vision_config: {
      model_type: 'idefics3_vision',
      hidden_size: 768,
      intermediate_size: 3072,
      num_hidden_layers: depth.vision ?? 12,
      num_attention_heads: 12,
      image_size: 512,
      patch_size: 16,
    },
  };
}

/** write the folder; returns its files' names and sizes */
export function writeRandomSmolvlm256(
  dir: string,
  seed = 1,
  depth: { text?: number; vision?: number } = {},
): Record<string, number> {
  mkdirSync(dir, { recursive: true });
  const config = smolvlm256Config(depth);
  const spec = checkConfig(config, 'SmolVLM-256M-shaped config');
  const ckpt = randomCheckpoint(spec, seed);
  const tensors: Parameters<typeof writeSafetensors>[0] = {};
  for (const p of parameterList(spec))
    tensors[p.name] = { dtype: 'BF16', shape: p.shape, data: ckpt.tensors.get(p.name).data as Float32Array };
  const files: Record<string, Uint8Array> = { 'model.safetensors': writeSafetensors(tensors, { format: 'pt' }) };
  const enc = new TextEncoder();
  const aux = defaultAuxFiles();
  const own: Record<string, unknown> = {
    ...aux,
    'config.json': config,
    'preprocessor_config.json': {
      ...(aux['preprocessor_config.json'] as object),
      size: { longest_edge: 512 },
      max_image_size: { longest_edge: 512 },
    },
    'processor_config.json': { processor_class: 'Idefics3Processor', image_seq_len: 64 },
  };
  for (const [name, v] of Object.entries(own))
    files[name] = enc.encode(typeof v === 'string' ? v : `${JSON.stringify(v, null, 2)}\n`);
  const sizes: Record<string, number> = {};
  for (const [name, b] of Object.entries(files)) {
    writeFileSync(join(dir, name), b);
    sizes[name] = b.byteLength;
  }
  return sizes;
}
