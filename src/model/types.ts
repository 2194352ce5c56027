/**
 * The model types every layer shares: what a VLM is to the graph builders (`VlmSpec`, converted from
 * config.json by a family's parser), the parameters its graphs read, and what a family must provide. This
 * module holds types only (no code, no imports of the project), so any module can import it without a cycle.
 */
import type { Value } from '../onnx/ir.js';
import type { LinearWeights } from '../onnx/nn.js';
import type { GraphBuilder } from '../onnx/ops.js';
import type { ImageProcessor, ProcessorOptions } from './processor.js';

type Json = Record<string, unknown>;

/** RoPE as the graphs compute it: HF's default inverse frequencies, optionally rescaled */
export type RopeScaling =
  /** `linear`: positions divided by `factor` (inv_freq / factor) */
  | { type: 'linear'; factor: number }
  /** `llama3`: long wavelengths divided by `factor`, short ones kept, a smooth blend between */
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

/** a Llama or Qwen2 decoder, as the text graphs build it */
export interface TextSpec {
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
  ropeTheta: number;
  /** 'default', 'linear' or 'llama3' (anything else is rejected when the config is read) */
  ropeType: string;
  /** the scaling of a non-default ropeType */
  ropeScaling?: RopeScaling;
  /** lm_head shares embed_tokens' weight */
  tieWordEmbeddings: boolean;
  /** bias on q/k/v (qwen2: always; llama: attention_bias) */
  attnBias: boolean;
  /** bias on o_proj (llama: attention_bias; qwen2: never) */
  oBias: boolean;
  /** bias on gate/up/down (llama: mlp_bias) */
  mlpBias: boolean;
  /** always 'silu' (SwiGLU); other activations are rejected when the config is read */
  hiddenAct: string;
  maxPositions: number;
}

/** a SigLIP-style vision tower (patch conv, position embeddings, pre-norm encoder layers) */
export interface VisionSpec {
  modelType: string;
  hidden: number;
  heads: number;
  inter: number;
  layers: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  /** 'gelu_pytorch_tanh' | 'gelu_new' | 'gelu_fast' (tanh form) or 'gelu' (erf form) */
  hiddenAct: string;
}

/**
 * A VLM as the graph builders see it. Each family extends it with its own fields (Idefics3: scale_factor;
 * LLaVA: vision_feature_layer, ...) and only its own module reads them.
 */
export interface VlmSpec {
  /** the family that built this spec (its registry key) */
  family: string;
  /** config.json model_type */
  modelType: string;
  text: TextSpec;
  vision: VisionSpec;
  imageTokenId: number;
  /** image tokens one image (one tile) becomes in the LM sequence */
  tokensPerImage: number;
  /** config fields that took the transformers default because the file omits them */
  defaulted?: string[];
}

/** one weight a graph reads: its module-path name and shape (linears: out × in) */
export interface ParamInfo {
  name: string;
  shape: number[];
  linear?: { out: number; in: number };
}

/** where a graph builder gets its weights: declared as graph inputs on first use */
export interface ParamSource {
  g: GraphBuilder;
  /** a weight input (float32) */
  w(name: string): Value;
  /** a linear module's weight (float or int4), bias and LoRA inputs */
  lin(module: string, bias: boolean): LinearWeights;
}

/**
 * Everything the project needs to know about one VLM family, in one object: how to read its config, how to
 * turn images into pixel tiles and prompt text, and how its graphs differ from the shared parts (a SigLIP-style
 * tower, a Llama/Qwen2 decoder). A family is one file in src/model/families/ registered in families/index.ts.
 */
export interface VlmFamily<S extends VlmSpec = VlmSpec> {
  /** the family name, also `spec.family` */
  name: string;
  /** config.json `model_type` values this family reads */
  modelTypes: readonly string[];
  /** config.json -> the family's spec; every error names the file and the field */
  parseConfig(raw: Json, file: string): S;
  /** the image processor from preprocessor_config.json (and processor_config.json where the family has one) */
  createProcessor(spec: S, preprocessor: Json, processorConfig: Json, options?: ProcessorOptions): ImageProcessor;
  /** the placeholder the chat template writes for an image */
  imagePlaceholder: string;
  /** module-name prefixes of the tower and the LM (PEFT's view of the model, transformers 5 names) */
  prefixes: { vision: string; text: string };
  /** tower layers whose output reaches the LM (LLaVA stops at vision_feature_layer) */
  visionLayersUsed(spec: S): number;
  /** the connector's weights (Idefics3: post-norm + projection; LLaVA: the MLP projector) */
  connectorParams(spec: S): ParamInfo[];
  /** tower output [n, patches, vision hidden] -> image features [n, tokensPerImage, text hidden] */
  connector(p: ParamSource, towerOut: Value, spec: S): Value;
  /** other names a checkpoint may store a parameter under (legacy layouts), tried after the canonical one */
  legacyKeys?(spec: S, param: string): string[];
}
