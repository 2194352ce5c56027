/**
 * Model shapes for benchmarks and tests with random weights: the architectures of real checkpoints
 * (values from their config.json on the Hub), without their weights.
 */
import type { Idefics3Spec } from './families/idefics3.js';
import type { LlavaSpec } from './families/llava.js';
import type { VlmSpec } from './types.js';

/** HuggingFaceTB/SmolVLM-256M-Instruct: SigLIP-style tower 768x12 at 512 px / 16, pixel shuffle 4, Llama 576x30 */
export const SMOLVLM_256M: Idefics3Spec = {
  family: 'idefics3',
  modelType: 'idefics3',
  vision: {
    modelType: 'idefics3_vision',
    hidden: 768,
    heads: 12,
    inter: 3072,
    layers: 12,
    imageSize: 512,
    patchSize: 16,
    numChannels: 3,
    layerNormEps: 1e-6,
    hiddenAct: 'gelu_pytorch_tanh',
  },
  text: {
    modelType: 'llama',
    hidden: 576,
    heads: 9,
    kvHeads: 3,
    headDim: 64,
    inter: 1536,
    layers: 30,
    vocab: 49280,
    rmsEps: 1e-5,
    ropeTheta: 100000,
    ropeType: 'default',
    tieWordEmbeddings: true,
    attnBias: false,
    oBias: false,
    mlpBias: false,
    hiddenAct: 'silu',
    maxPositions: 8192,
  },
  imageTokenId: 49190,
  tokensPerImage: 64,
  scaleFactor: 4,
};

/**
 * llava-hf/llava-interleave-qwen-0.5b-hf: SigLIP 1152x26 at 384 px / 14 (729 tokens, 'full'), MLP projector,
 * Qwen1.5-0.5B (1024x24, 16 heads); the shape ../shared/anchors/pytorch-eager-h200.json was timed on
 */
export const LLAVA_INTERLEAVE_05B: LlavaSpec = {
  family: 'llava',
  modelType: 'llava',
  vision: {
    modelType: 'siglip_vision_model',
    hidden: 1152,
    heads: 16,
    inter: 4304,
    layers: 26,
    imageSize: 384,
    patchSize: 14,
    numChannels: 3,
    layerNormEps: 1e-6,
    hiddenAct: 'gelu_pytorch_tanh',
  },
  text: {
    modelType: 'qwen2',
    hidden: 1024,
    heads: 16,
    kvHeads: 16,
    headDim: 64,
    inter: 2816,
    layers: 24,
    vocab: 152000,
    rmsEps: 1e-6,
    ropeTheta: 1000000,
    ropeType: 'default',
    tieWordEmbeddings: true,
    attnBias: true,
    oBias: false,
    mlpBias: false,
    hiddenAct: 'silu',
    maxPositions: 32768,
  },
  imageTokenId: 151646,
  tokensPerImage: 729,
  featureLayer: -1,
  featureHiddenState: 26,
  selectStrategy: 'full',
  projectorAct: 'gelu',
  projectorBias: true,
};

/** a small model of the same architecture, for fast tests */
export function shrink<S extends VlmSpec>(s: S, o: { layers?: number; visionLayers?: number; vocab?: number } = {}): S {
  const visionLayers = o.visionLayers ?? 2;
  const shrunk = {
    ...s,
    text: { ...s.text, layers: o.layers ?? 2, vocab: o.vocab ?? s.text.vocab },
    vision: { ...s.vision, layers: visionLayers },
  };
  // LLaVA's vision_feature_layer counts from the end when negative: the hidden state it names moves with the depth
  const fl = (shrunk as { featureLayer?: number }).featureLayer;
  if (fl !== undefined) Object.assign(shrunk, { featureHiddenState: fl < 0 ? visionLayers + 1 + fl : fl });
  return shrunk;
}
