/**
 * Idefics3 (SmolVLM): a SigLIP-style tower, a connector that pixel-shuffles scale_factor² neighbouring
 * patches into one image token and projects them (after the tower's post-layernorm), and a Llama LM.
 *
 * Its image processor (Idefics3ImageProcessor): resize so the longest edge is size.longest_edge, then with
 * do_image_splitting resize each side up to a multiple of max_image_size.longest_edge, cut row-major tiles of
 * that size and append the whole image resized to one tile (the global image); without splitting, one square
 * tile. Each tile is image_seq_len `<image>` tokens, wrapped as Idefics3Processor writes its prompt
 * (`<fake_token_around_image><row_r_col_c>`, a newline after each row, then
 * `\n<fake_token_around_image><global-img>...<fake_token_around_image>`).
 */
import type { Value } from '../../onnx/ir.js';
import { layerNorm, linear } from '../../onnx/nn.js';
import { ConfigReader, type VisionDefaults, parseTextConfig, parseVisionConfig } from '../config.js';
import {
  type ImageProcessor,
  type PixelImage,
  type ProcessedImage,
  type ProcessorOptions,
  ProcessorError,
  type Rgb8,
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

export interface Idefics3Spec extends VlmSpec {
  family: 'idefics3';
  /** pixel-shuffle factor of the connector */
  scaleFactor: number;
}

/** Idefics3VisionConfig's defaults */
const IDEFICS3_VISION: VisionDefaults = { hidden: 1152, inter: 3072, layers: 12, heads: 16, imageSize: 224, patchSize: 32 };

/** config.json of model_type "idefics3": vision_config, text_config (llama), scale_factor, image_token_id */
export function parseIdefics3Config(raw: Json, file = 'config.json'): Idefics3Spec {
  const r = new ConfigReader(raw, file);
  const vision = parseVisionConfig(r.obj('vision_config'), ['idefics3_vision', 'idefics3', 'smolvlm_vision'], IDEFICS3_VISION);
  const text = parseTextConfig(r.obj('text_config'), r);
  const scaleFactor = r.int('scale_factor');
  const side = Math.floor(vision.imageSize / vision.patchSize);
  if (side % scaleFactor)
    r.fail('scale_factor', `(${scaleFactor}) must divide the patch grid side (${side} = image_size / patch_size)`);
  return {
    family: 'idefics3',
    modelType: 'idefics3',
    text,
    vision,
    scaleFactor,
    imageTokenId: r.int('image_token_id'),
    tokensPerImage: (side / scaleFactor) ** 2,
    defaulted: r.list(),
  };
}

const MAX_IMAGE_SIZE = 4096;

/** Idefics3's get_resize_output_image_size: the longest edge to `maxLen` (even short side), then below 4096 */
export function idefics3ResizeSize(height: number, width: number, maxLen: number): [number, number] {
  let h = height,
    w = width;
  const ar = w / h;
  if (w >= h) {
    w = maxLen;
    h = Math.trunc(w / ar);
    if (h % 2 !== 0) h += 1;
  } else {
    h = maxLen;
    w = Math.trunc(h * ar);
    if (w % 2 !== 0) w += 1;
  }
  h = Math.max(h, 1);
  w = Math.max(w, 1);
  const ar2 = w / h;
  if (w >= h && w > MAX_IMAGE_SIZE) {
    w = MAX_IMAGE_SIZE;
    h = Math.trunc(w / ar2);
  } else if (h > w && h > MAX_IMAGE_SIZE) {
    h = MAX_IMAGE_SIZE;
    w = Math.trunc(h * ar2);
  }
  return [Math.max(h, 1), Math.max(w, 1)];
}

/** Idefics3's resize_for_vision_encoder: each side up to a multiple of `tile` */
export function idefics3TileGridSize(height: number, width: number, tile: number): [number, number] {
  let h = height,
    w = width;
  const ar = w / h;
  if (w >= h) {
    w = Math.ceil(w / tile) * tile;
    h = Math.trunc(w / ar);
    h = Math.ceil(h / tile) * tile;
  } else {
    h = Math.ceil(h / tile) * tile;
    w = Math.trunc(h * ar);
    w = Math.ceil(w / tile) * tile;
  }
  return [h, w];
}

/** the prompt text for one image, as Idefics3Processor's get_image_prompt_string writes it */
export function idefics3ImageText(
  rows: number,
  cols: number,
  seqLen: number,
  tokens = { fake: '<fake_token_around_image>', image: '<image>', global: '<global-img>' },
): string {
  const img = tokens.image.repeat(seqLen);
  if (rows === 0 && cols === 0) return `${tokens.fake}${tokens.global}${img}${tokens.fake}`;
  let s = '';
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) s += `${tokens.fake}<row_${r + 1}_col_${c + 1}>${img}`;
    s += '\n';
  }
  return `${s}\n${tokens.fake}${tokens.global}${img}${tokens.fake}`;
}

export function idefics3Processor(
  config: Pick<Idefics3Spec, 'vision' | 'tokensPerImage'>,
  pre: Json,
  procCfg: Json = {},
  opts: ProcessorOptions = {},
  file = 'preprocessor_config.json',
): ImageProcessor {
  const c = common(pre, { resample: 1, mean: IMAGENET_STANDARD, std: IMAGENET_STANDARD }, opts, file);
  const size = sizeField(pre, 'size', file) ?? { longest_edge: 4 * 364 };
  const tile = sizeField(pre, 'max_image_size', file)?.longest_edge ?? config.vision.imageSize;
  const split = opts.doImageSplitting ?? pre.do_image_splitting !== false;
  const seqLen = Number(procCfg.image_seq_len ?? config.tokensPerImage);
  if (!Number.isInteger(seqLen) || seqLen <= 0)
    throw new ProcessorError(`processor_config.json: image_seq_len (${procCfg.image_seq_len}) is not a positive integer`);
  if (tile !== config.vision.imageSize) {
    throw new ProcessorError(
      `${file}: max_image_size.longest_edge (${tile}) differs from the vision tower's image_size (${config.vision.imageSize})`,
    );
  }
  return {
    kind: 'idefics3',
    process(image: PixelImage): ProcessedImage {
      let im = toRgb8(image, c.alpha);
      if (c.doResize) {
        if (!size.longest_edge) throw new ProcessorError(`${file}: field "size" needs longest_edge`);
        const [h, w] = idefics3ResizeSize(im.height, im.width, size.longest_edge);
        im = resizeRgb8(im, w, h, c.resample);
      }
      const tiles: Rgb8[] = [];
      let rows = 0,
        cols = 0;
      if (split) {
        const [h, w] = idefics3TileGridSize(im.height, im.width, tile);
        im = resizeRgb8(im, w, h, c.resample);
        if (im.height > tile || im.width > tile) {
          rows = Math.ceil(im.height / tile);
          cols = Math.ceil(im.width / tile);
          const th = Math.ceil(im.height / rows),
            tw = Math.ceil(im.width / cols);
          for (let r = 0; r < rows; r++) {
            for (let q = 0; q < cols; q++) {
              const x0 = q * tw,
                y0 = r * th;
              tiles.push(cropRgb8(im, x0, y0, Math.min(x0 + tw, im.width), Math.min(y0 + th, im.height)));
            }
          }
          im = resizeRgb8(im, tile, tile, c.resample);
        }
        tiles.push(im);
      } else {
        tiles.push(resizeRgb8(im, tile, tile, c.resample));
      }
      for (const t of tiles) {
        if (t.width !== tile || t.height !== tile)
          throw new ProcessorError(`a tile came out ${t.width}x${t.height}, not ${tile}x${tile}`);
      }
      return {
        tiles: tiles.map((t) => toChw(t, c)),
        channels: 3,
        height: tile,
        width: tile,
        rows,
        cols,
        text: idefics3ImageText(rows, cols, seqLen),
        imageTokens: seqLen * tiles.length,
      };
    },
  };
}

const VISION = 'model.vision_model';
const PROJ = 'model.connector.modality_projection.proj';

export const idefics3: VlmFamily<Idefics3Spec> = {
  name: 'idefics3',
  modelTypes: ['idefics3'],
  parseConfig: parseIdefics3Config,
  createProcessor: (spec, pre, proc, opts) => idefics3Processor(spec, pre, proc, opts),
  imagePlaceholder: '<image>',
  prefixes: { vision: VISION, text: 'model.text_model' },
  visionLayersUsed: (s) => s.vision.layers,
  connectorParams(s): ParamInfo[] {
    const v = s.vision.hidden,
      K = v * s.scaleFactor ** 2;
    return [
      { name: `${VISION}.post_layernorm.weight`, shape: [v] },
      { name: `${VISION}.post_layernorm.bias`, shape: [v] },
      { name: `${PROJ}.weight`, shape: [s.text.hidden, K], linear: { out: s.text.hidden, in: K } },
    ];
  },
  connector(p: ParamSource, x: Value, s): Value {
    const { g } = p,
      [n, P, D] = x.shape,
      sf = s.scaleFactor,
      side = Math.round(Math.sqrt(P));
    x = layerNorm(g, x, p.w(`${VISION}.post_layernorm.weight`), p.w(`${VISION}.post_layernorm.bias`), s.vision.layerNormEps);
    // HF Idefics3Connector.pixel_shuffle
    let y = g.reshape(x, [n, side, side / sf, D * sf]);
    y = g.transpose(y, [0, 2, 1, 3]);
    y = g.reshape(y, [n, side / sf, side / sf, D * sf * sf]);
    y = g.transpose(y, [0, 2, 1, 3]);
    y = g.reshape(y, [n, P / (sf * sf), D * sf * sf]);
    return linear(g, y, p.lin(PROJ, false));
  },
};
