/**
 * LLaVA with a SigLIP tower (llava-interleave-qwen, LLaVA-OneVision's LM side): the tower's hidden state of
 * `vision_feature_layer` (all patches with the "full" strategy, the first dropped with "default"), a two-layer
 * MLP projector, and a Qwen2 or Llama LM.
 *
 * Its image processor (SiglipImageProcessor / CLIPImageProcessor): a fixed {height, width} resize (or CLIP's
 * shortest_edge resize + center crop); (image_size / patch_size)² image tokens with the "full" strategy, one
 * fewer with "default" (LlavaProcessor's count, plus processor_config's num_additional_image_tokens).
 *
 * llava-hf checkpoints (and transformers 4's save of LLaVA) store the LM under `language_model.model.*`, the
 * tower and projector without the `model.` prefix, and lm_head as `language_model.lm_head.weight`.
 */
import type { Value } from '../../onnx/ir.js';
import { geluErf, geluTanh, linear } from '../../onnx/nn.js';
import { ConfigReader, GELU_TANH, type VisionDefaults, geluField, parseTextConfig, parseVisionConfig } from '../config.js';
import {
  type ImageProcessor,
  type PixelImage,
  type ProcessedImage,
  type ProcessorOptions,
  ProcessorError,
  IMAGENET_STANDARD,
  common,
  cropRgb8,
  resizeRgb8,
  sizeField,
  toChw,
  toRgb8,
} from '../processor.js';
import type { ParamInfo, ParamSource, VlmFamily, VlmSpec } from '../types.js';

type Json = Record<string, unknown>;

export interface LlavaSpec extends VlmSpec {
  family: 'llava';
  /** vision_feature_layer as written (negative counts from the end of hidden_states) */
  featureLayer: number;
  /** index into the tower's hidden_states (0 = embeddings, i = after layer i) */
  featureHiddenState: number;
  selectStrategy: 'default' | 'full';
  projectorAct: string;
  projectorBias: boolean;
}

/** SiglipVisionConfig's defaults */
const SIGLIP_VISION: VisionDefaults = { hidden: 768, inter: 3072, layers: 12, heads: 12, imageSize: 224, patchSize: 16 };

/**
 * config.json of model_type "llava" with a SigLIP tower: vision_config (siglip_vision_model), text_config
 * (qwen2 or llama), image_token_index (or image_token_id), vision_feature_layer, vision_feature_select_strategy
 */
export function parseLlavaConfig(raw: Json, file = 'config.json'): LlavaSpec {
  const r = new ConfigReader(raw, file);
  const vision = parseVisionConfig(r.obj('vision_config'), ['siglip_vision_model'], SIGLIP_VISION);
  const text = parseTextConfig(r.obj('text_config'), r);
  if (!r.has('image_token_index') && !r.has('image_token_id'))
    r.fail('image_token_index', 'is missing (nor is image_token_id there)');
  const imageTokenId = r.has('image_token_index') ? r.int('image_token_index') : r.int('image_token_id');
  if (Array.isArray(raw.vision_feature_layer)) r.fail('vision_feature_layer', 'is a list; only one layer is supported');
  const featureLayer = r.num('vision_feature_layer');
  const states = vision.layers + 1;
  if (!Number.isInteger(featureLayer) || featureLayer < -states || featureLayer >= states) {
    r.fail('vision_feature_layer', `(${featureLayer}) is outside the tower's ${states} hidden states`);
  }
  const selectStrategy = r.str('vision_feature_select_strategy') as LlavaSpec['selectStrategy'];
  if (selectStrategy !== 'default' && selectStrategy !== 'full')
    r.fail('vision_feature_select_strategy', `is "${selectStrategy}"; expected "default" or "full"`);
  const patches = Math.floor(vision.imageSize / vision.patchSize) ** 2;
  return {
    family: 'llava',
    modelType: 'llava',
    text,
    vision,
    imageTokenId,
    featureLayer,
    featureHiddenState: featureLayer < 0 ? states + featureLayer : featureLayer,
    selectStrategy,
    projectorAct: geluField(r, 'projector_hidden_act', 'gelu'),
    projectorBias: r.bool('multimodal_projector_bias', true),
    tokensPerImage: selectStrategy === 'default' ? patches - 1 : patches,
    defaulted: r.list(),
  };
}

export function siglipProcessor(
  config: Pick<LlavaSpec, 'vision' | 'selectStrategy'>,
  pre: Json,
  procCfg: Json = {},
  opts: ProcessorOptions = {},
  file = 'preprocessor_config.json',
): ImageProcessor {
  const c = common(pre, { resample: 3, mean: IMAGENET_STANDARD, std: IMAGENET_STANDARD }, opts, file);
  const size = sizeField(pre, 'size', file) ?? { height: config.vision.imageSize, width: config.vision.imageSize };
  const crop = pre.do_center_crop === true ? sizeField(pre, 'crop_size', file) : undefined;
  const patch = Number(procCfg.patch_size ?? config.vision.patchSize);
  const extra = Number(procCfg.num_additional_image_tokens ?? 0);
  const strategy = String(procCfg.vision_feature_select_strategy ?? config.selectStrategy);
  const token = '<image>';
  return {
    kind: 'siglip',
    process(image: PixelImage): ProcessedImage {
      let im = toRgb8(image, c.alpha);
      if (c.doResize) {
        if (size.height && size.width) im = resizeRgb8(im, size.width, size.height, c.resample);
        else if (size.shortest_edge) {
          // CLIP: the short side to shortest_edge, the long side int(shortest_edge * long / short)
          const s = size.shortest_edge,
            w = im.width,
            h = im.height;
          const [nw, nh] = w <= h ? [s, Math.trunc((s * h) / w)] : [Math.trunc((s * w) / h), s];
          im = resizeRgb8(im, nw, nh, c.resample);
        } else throw new ProcessorError(`${file}: field "size" needs height and width, or shortest_edge`);
      }
      if (crop) {
        const ch = crop.height,
          cw = crop.width;
        if (ch > im.height || cw > im.width)
          throw new ProcessorError(`${file}: crop_size ${cw}x${ch} is larger than the resized image ${im.width}x${im.height}`);
        const top = Math.floor((im.height - ch) / 2),
          left = Math.floor((im.width - cw) / 2);
        im = cropRgb8(im, left, top, left + cw, top + ch);
      }
      let n = Math.floor(im.height / patch) * Math.floor(im.width / patch) + extra;
      if (strategy === 'default') n -= 1;
      return {
        tiles: [toChw(im, c)],
        channels: 3,
        height: im.height,
        width: im.width,
        rows: 0,
        cols: 0,
        text: token.repeat(n),
        imageTokens: n,
      };
    },
  };
}

const LM = 'model.language_model.';
const P1 = 'model.multi_modal_projector.linear_1',
  P2 = 'model.multi_modal_projector.linear_2';

export const llava: VlmFamily<LlavaSpec> = {
  name: 'llava',
  modelTypes: ['llava'],
  parseConfig: parseLlavaConfig,
  createProcessor: (spec, pre, proc, opts) => siglipProcessor(spec, pre, proc, opts),
  imagePlaceholder: '<image>',
  prefixes: { vision: 'model.vision_tower', text: 'model.language_model' },
  visionLayersUsed: (s) => s.featureHiddenState,
  connectorParams(s): ParamInfo[] {
    const t = s.text.hidden,
      v = s.vision.hidden;
    const lin = (name: string, o: number, i: number): ParamInfo[] => [
      { name: `${name}.weight`, shape: [o, i], linear: { out: o, in: i } },
      ...(s.projectorBias ? [{ name: `${name}.bias`, shape: [o] }] : []),
    ];
    return [...lin(P1, t, v), ...lin(P2, t, t)];
  },
  connector(p: ParamSource, x: Value, s): Value {
    const { g } = p;
    if (s.selectStrategy === 'default') x = g.slice(x, [1], [x.shape[1]], [1]);
    const h = linear(g, x, p.lin(P1, s.projectorBias));
    const act = (GELU_TANH as readonly string[]).includes(s.projectorAct) ? geluTanh(g, h) : geluErf(g, h);
    return linear(g, act, p.lin(P2, s.projectorBias));
  },
  legacyKeys(_s, param): string[] {
    if (param.startsWith(LM)) return [`language_model.model.${param.slice(LM.length)}`];
    if (param.startsWith('model.vision_tower.') || param.startsWith('model.multi_modal_projector.'))
      return [param.slice('model.'.length)];
    if (param === 'lm_head.weight') return ['language_model.lm_head.weight'];
    return [];
  },
};
