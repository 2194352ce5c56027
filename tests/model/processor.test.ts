import { describe, expect, it } from 'vitest';
import { checkConfig, familyForConfig } from '../../src/model/families/index.js';
import {
  type Idefics3Spec as Idefics3Config,
  idefics3ImageText,
  idefics3Processor,
  idefics3ResizeSize,
  idefics3TileGridSize,
} from '../../src/model/families/idefics3.js';
import { type LlavaSpec as LlavaConfig, siglipProcessor } from '../../src/model/families/llava.js';
import { PIL_RESAMPLE, resizeRgb8, toChw, toRgb8 } from '../../src/model/processor.js';
import type { VlmSpec } from '../../src/model/types.js';

/** the image processor a config's family makes */
const createImageProcessor = (config: VlmSpec, pre: Record<string, unknown>, proc: Record<string, unknown> = {}) =>
  familyForConfig({ model_type: config.modelType }).createProcessor(config, pre, proc);
import norm from './fixtures/numpy-normalize.json';
import pil from './fixtures/pil-resize.json';

type Case = { w: number; h: number; ow: number; oh: number; filter: number; src: number[]; out: number[] };

const tinyIdefics3 = (): Idefics3Config =>
  checkConfig({
    model_type: 'idefics3',
    scale_factor: 2,
    image_token_id: 9,
    vision_config: {
      hidden_size: 8,
      num_attention_heads: 2,
      intermediate_size: 16,
      num_hidden_layers: 1,
      image_size: 16,
      patch_size: 4,
    },
    text_config: {
      model_type: 'llama',
      hidden_size: 8,
      num_attention_heads: 2,
      intermediate_size: 16,
      num_hidden_layers: 1,
      vocab_size: 20,
    },
  }) as Idefics3Config;

const tinyLlava = (strategy: 'full' | 'default' = 'full'): LlavaConfig =>
  checkConfig({
    model_type: 'llava',
    image_token_index: 9,
    vision_feature_layer: -1,
    vision_feature_select_strategy: strategy,
    vision_config: {
      model_type: 'siglip_vision_model',
      hidden_size: 8,
      num_attention_heads: 2,
      intermediate_size: 16,
      num_hidden_layers: 1,
      image_size: 4,
      patch_size: 2,
    },
    text_config: {
      model_type: 'qwen2',
      hidden_size: 8,
      num_attention_heads: 2,
      intermediate_size: 16,
      num_hidden_layers: 1,
      vocab_size: 20,
    },
  }) as LlavaConfig;

const HALF = { image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], rescale_factor: 0.00392156862745098 };

describe('Pillow resampling, bit for bit', () => {
  for (const [name, c] of Object.entries(pil).filter(([k]) => !['alpha_white', 'idefics3_pipeline'].includes(k)) as [
    string,
    Case,
  ][]) {
    it(`${name}: ${c.w}x${c.h} -> ${c.ow}x${c.oh} with ${PIL_RESAMPLE[c.filter]} equals PIL's Image.resize`, () => {
      const r = resizeRgb8({ width: c.w, height: c.h, data: Uint8Array.from(c.src) }, c.ow, c.oh, PIL_RESAMPLE[c.filter]);
      expect([...r.data]).toEqual(c.out);
    });
  }

  it('a hand-computed case: bicubic 4 -> 2 (antialiased: the kernel stretched x2, support 4)', () => {
    // output pixel 0: centre 1.0, inputs 0..3 at distances (x + 0.5 - 1) / 2 = -0.25, 0.25, 0.75, 1.25;
    // Keys' cubic (a = -0.5): f(0.25) = 0.8671875, f(0.75) = 0.2265625, f(1.25) = -0.0703125, sum 1.890625
    // pixel 1: centre 3.0, distances -1.25, -0.75, -0.25, 0.25
    const f = [0.8671875, 0.8671875, 0.2265625, -0.0703125],
      g = [-0.0703125, 0.2265625, 0.8671875, 0.8671875];
    const row = [0, 100, 200, 255];
    const exact = [f, g].map((w) => w.reduce((s, wi, i) => s + wi * row[i], 0) / 1.890625); // 60.35..., 220.68...
    expect(exact[0]).toBeCloseTo(60.3512, 3);
    expect(exact[1]).toBeCloseTo(220.6818, 3);
    const src = Uint8Array.from(row.flatMap((v) => [v, v, v]));
    const out = resizeRgb8({ width: 4, height: 1, data: src }, 2, 1, 'bicubic');
    expect([...out.data]).toEqual([60, 60, 60, 221, 221, 221]);
    // the only deviation from exact arithmetic is the 8-bit rounding Pillow does too: at most half a level
    for (let i = 0; i < 2; i++) expect(Math.abs(out.data[i * 3] - exact[i])).toBeLessThanOrEqual(0.5);
  });

  it('RGBA: alpha dropped (convert("RGB")), or composited on white as PIL alpha_composite does', () => {
    const c = pil.alpha_white;
    const rgba = Uint8Array.from(c.src);
    expect([...toRgb8({ width: 5, height: 1, data: rgba }, 'white').data]).toEqual(c.out);
    expect([...toRgb8({ width: 5, height: 1, data: rgba }, 'drop').data]).toEqual(c.src.filter((_, i) => i % 4 !== 3));
    expect(() => toRgb8({ width: 2, height: 2, data: new Uint8Array(5) })).toThrow(/not 2x2x3/);
  });

  it('rescale + normalise reproduce numpy float32 to the bit (transformers rescale/normalize)', () => {
    const vals = Uint8Array.from({ length: 256 }, (_, i) => i);
    const img = { width: 256, height: 1, data: Uint8Array.from([...vals].flatMap((v) => [v, v, v])) };
    for (const k of ['half', 'clip'] as const) {
      const n = norm[k];
      const chw = toChw(img, {
        doRescale: true,
        rescaleFactor: 0.00392156862745098,
        doNormalize: true,
        mean: n.mean,
        std: n.std,
      });
      const bits = new Uint32Array(chw.buffer);
      for (let ch = 0; ch < 3; ch++) expect([...bits.subarray(ch * 256, ch * 256 + 256)]).toEqual(n.bits[ch]);
    }
  });
});

describe('LLaVA (SigLIP) processor', () => {
  it('fixed resize, [C,H,W] layout, (v/255 - 0.5) / 0.5', () => {
    const p = siglipProcessor(tinyLlava(), { size: { height: 4, width: 4 }, resample: 3, ...HALF });
    const data = Uint8Array.from({ length: 4 * 4 * 3 }, (_, i) => (i * 37) % 256);
    const out = p.process({ width: 4, height: 4, data });
    expect(out.tiles).toHaveLength(1);
    expect([out.channels, out.height, out.width, out.rows, out.cols]).toEqual([3, 4, 4, 0, 0]);
    const t = out.tiles[0];
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 16; i++) {
        const v = data[i * 3 + c];
        expect(t[c * 16 + i]).toBe(Math.fround(Math.fround(Math.fround(v * 0.00392156862745098) - 0.5) / 0.5));
      }
    }
    expect(t[0]).toBe(-1);
  });

  it('downscales with PIL bicubic (the fixture image, 7x5 -> 3x2)', () => {
    const c = pil.down_bicubic as Case;
    const p = siglipProcessor(tinyLlava(), {
      size: { height: 2, width: 3 },
      resample: 3,
      do_normalize: false,
      do_rescale: false,
    });
    const out = p.process({ width: 7, height: 5, data: Uint8Array.from(c.src) });
    const t = out.tiles[0];
    const hwc = Array.from({ length: 6 * 3 }, (_, j) => t[(j % 3) * 6 + Math.floor(j / 3)]);
    expect(hwc).toEqual(c.out);
  });

  it('image tokens: (image_size / patch)^2 with "full", one fewer with "default", + num_additional_image_tokens', () => {
    const pre = { size: { height: 4, width: 4 }, ...HALF };
    const img = { width: 4, height: 4, data: new Uint8Array(48) };
    expect(siglipProcessor(tinyLlava('full'), pre).process(img)).toMatchObject({ imageTokens: 4, text: '<image>'.repeat(4) });
    expect(siglipProcessor(tinyLlava('default'), pre).process(img)).toMatchObject({ imageTokens: 3, text: '<image>'.repeat(3) });
    expect(siglipProcessor(tinyLlava('default'), pre, { num_additional_image_tokens: 1 }).process(img).imageTokens).toBe(4);
    // llava-interleave: 384/14 -> 27 patches a side, 729 tokens
    const big = checkConfig({
      model_type: 'llava',
      image_token_index: 9,
      vision_feature_layer: -1,
      vision_feature_select_strategy: 'full',
      vision_config: { model_type: 'siglip_vision_model', image_size: 384, patch_size: 14 },
      text_config: {
        model_type: 'qwen2',
        hidden_size: 8,
        num_attention_heads: 2,
        intermediate_size: 16,
        num_hidden_layers: 1,
        vocab_size: 20,
      },
    }) as LlavaConfig;
    const r = createImageProcessor(big, { size: { height: 384, width: 384 }, resample: 3, ...HALF }).process({
      width: 5,
      height: 3,
      data: new Uint8Array(45),
    });
    expect([r.imageTokens, r.height, r.width, r.tiles[0].length]).toEqual([729, 384, 384, 3 * 384 * 384]);
  });

  it('CLIP-style shortest_edge + center crop', () => {
    const p = siglipProcessor(tinyLlava(), {
      size: { shortest_edge: 4 },
      do_center_crop: true,
      crop_size: { height: 4, width: 4 },
      resample: 3,
      ...HALF,
    });
    const out = p.process({ width: 12, height: 6, data: new Uint8Array(12 * 6 * 3).fill(200) });
    expect([out.height, out.width]).toEqual([4, 4]);
    expect(out.tiles[0][0]).toBeCloseTo((200 / 255) * 2 - 1, 6);
  });
});

describe('Idefics3 (SmolVLM) processor', () => {
  it('resize sizes: longest edge to size.longest_edge with an even short side, then multiples of the tile', () => {
    expect(idefics3ResizeSize(700, 1000, 2048)).toEqual([1434, 2048]); // 2048 / (1000/700) = 1433.6 -> 1433 -> even 1434
    expect(idefics3TileGridSize(1434, 2048, 512)).toEqual([1536, 2048]); // 3 rows x 4 cols
    expect(idefics3ResizeSize(1000, 700, 2048)).toEqual([2048, 1434]);
    expect(idefics3ResizeSize(32, 32, 2048)).toEqual([2048, 2048]); // small images are scaled up
    expect(idefics3ResizeSize(6, 10, 32)).toEqual([20, 32]);
    expect(idefics3TileGridSize(20, 32, 16)).toEqual([32, 32]);
    expect(idefics3TileGridSize(512, 512, 512)).toEqual([512, 512]);
  });

  it('split: PIL Lanczos at every step, crops row-major then the global image (fixture made with PIL)', () => {
    const c = pil.idefics3_pipeline;
    const p = idefics3Processor(
      tinyIdefics3(),
      {
        size: { longest_edge: 32 },
        max_image_size: { longest_edge: 16 },
        resample: 1,
        do_image_splitting: true,
        do_rescale: false,
        do_normalize: false,
      },
      { image_seq_len: 4 },
    );
    const out = p.process({ width: c.w, height: c.h, data: Uint8Array.from(c.src) });
    expect([out.rows, out.cols, out.tiles.length, out.height, out.width, out.imageTokens]).toEqual([2, 2, 5, 16, 16, 20]);
    const hwc = (t: Float32Array) => Array.from({ length: 16 * 16 * 3 }, (_, j) => t[(j % 3) * 256 + Math.floor(j / 3)]);
    out.tiles.forEach((t, k) => expect(hwc(t), `tile ${k}`).toEqual(c.tiles[k]));
    const F = '<fake_token_around_image>',
      I = '<image>'.repeat(4);
    expect(out.text).toBe(
      `${F}<row_1_col_1>${I}${F}<row_1_col_2>${I}\n${F}<row_2_col_1>${I}${F}<row_2_col_2>${I}\n\n${F}<global-img>${I}${F}`,
    );
    // do_image_splitting off: one square tile
    const q = idefics3Processor(
      tinyIdefics3(),
      {
        size: { longest_edge: 32 },
        max_image_size: { longest_edge: 16 },
        resample: 1,
        do_image_splitting: true,
        do_rescale: false,
        do_normalize: false,
      },
      { image_seq_len: 4 },
      { doImageSplitting: false },
    );
    const one = q.process({ width: c.w, height: c.h, data: Uint8Array.from(c.src) });
    expect([one.rows, one.cols, one.tiles.length, one.imageTokens]).toEqual([0, 0, 1, 4]);
    expect(hwc(one.tiles[0])).toEqual(c.nosplit);
    expect(one.text).toBe(`${F}<global-img>${I}${F}`);
  });

  it('an image that fits one tile is not split; SmolVLM-256M numbers: 512 tiles, 64 tokens each', () => {
    const p = idefics3Processor(
      tinyIdefics3(),
      { size: { longest_edge: 16 }, max_image_size: { longest_edge: 16 }, ...HALF },
      {},
    );
    const out = p.process({ width: 5, height: 9, data: new Uint8Array(135) });
    expect([out.rows, out.cols, out.tiles.length, out.imageTokens]).toEqual([0, 0, 1, 4]);
    expect(idefics3ImageText(3, 4, 64).split('<image>').length - 1).toBe(13 * 64);
    expect(idefics3ImageText(0, 0, 64)).toBe(
      `<fake_token_around_image><global-img>${'<image>'.repeat(64)}<fake_token_around_image>`,
    );
  });

  it('the registry hands out the family processor; mismatched tile size is an error', () => {
    const cfg = tinyIdefics3();
    const p = familyForConfig({ model_type: 'idefics3' }).createProcessor(
      cfg,
      { size: { longest_edge: 16 }, max_image_size: { longest_edge: 16 } },
      { image_seq_len: 4 },
    );
    expect(p.kind).toBe('idefics3');
    expect(() => idefics3Processor(cfg, { size: { longest_edge: 32 }, max_image_size: { longest_edge: 8 } })).toThrow(
      /max_image_size.longest_edge \(8\) differs from the vision tower's image_size \(16\)/,
    );
    expect(() => idefics3Processor(cfg, { resample: 9 })).toThrow(/"resample" \(9\) is not a PIL resampling filter/);
  });
});
