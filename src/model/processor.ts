/**
 * Image preprocessing as Hugging Face's (slow, PIL-based) image processors do it, from
 * preprocessor_config.json: resize, rescale (rescale_factor), normalise (image_mean / image_std), output
 * [C,H,W] float32 per image or tile. This module holds what every processor shares; each family's own
 * processor (tiling, the text an image placeholder expands to) is in its file in src/model/families/.
 *
 * Resampling reproduces Pillow's `Image.resize` on 8-bit RGB (the path transformers takes for uint8 images):
 * separable convolution with the filter stretched by the scale on downscale (antialiasing), coefficients in
 * 22-bit fixed point, horizontal pass then vertical, each rounded and clamped to 0..255. For an RGB input the
 * result is Pillow's to the bit. Deviations: RGBA input is made RGB before resizing (alpha dropped, as the
 * IC-VCO code's `Image.convert("RGB")` does, or composited on white), whereas Idefics3's processor resizes
 * RGBA (premultiplied) and composites afterwards; the two agree where alpha is 255. transformers' "fast"
 * (torchvision) processors are not reproduced: they use bicubic where Idefics3 asks for Lanczos, and float
 * antialiasing.
 */
type Json = Record<string, unknown>;

export class ProcessorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProcessorError';
  }
}

/** pixels as the browser (ImageData: RGBA) or a test gives them; row-major, interleaved */
export interface PixelImage {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
  /** 3 (RGB) or 4 (RGBA); default: data.length / (width * height) */
  channels?: 3 | 4;
}

/** an 8-bit RGB image, row-major, interleaved */
export interface Rgb8 {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface ProcessedImage {
  /** [C,H,W] float32 per tile; Idefics3: the crops row-major, then the global image */
  tiles: Float32Array[];
  channels: number;
  height: number;
  width: number;
  /** Idefics3's split grid (0, 0 when the image is one tile); LLaVA: 0, 0 */
  rows: number;
  cols: number;
  /** the text one image placeholder becomes in the prompt */
  text: string;
  /** how many image tokens (the config's image_token_id) that text holds */
  imageTokens: number;
}

export interface ImageProcessor {
  readonly kind: 'idefics3' | 'siglip';
  process(image: PixelImage): ProcessedImage;
}

export type ResampleFilter = 'nearest' | 'box' | 'bilinear' | 'hamming' | 'bicubic' | 'lanczos';
/** PIL's Image.Resampling numbers, as preprocessor_config.json writes `resample` */
export const PIL_RESAMPLE: Record<number, ResampleFilter> = {
  0: 'nearest',
  1: 'lanczos',
  2: 'bilinear',
  3: 'bicubic',
  4: 'box',
  5: 'hamming',
};

export type AlphaMode = 'drop' | 'white';

// ------------------------------------------------------------------------------------------ Pillow resampling

interface Filter {
  support: number;
  f: (x: number) => number;
}

const FILTERS: Record<Exclude<ResampleFilter, 'nearest'>, Filter> = {
  box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: {
    support: 1,
    f: (x) => {
      x = Math.abs(x);
      return x < 1 ? 1 - x : 0;
    },
  },
  hamming: {
    support: 1,
    f: (x) => {
      x = Math.abs(x);
      if (x === 0) return 1;
      if (x >= 1) return 0;
      x *= Math.PI;
      return (Math.sin(x) / x) * (0.54 + 0.46 * Math.cos(x));
    },
  },
  bicubic: {
    support: 2,
    f: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
  lanczos: {
    support: 3,
    f: (x) => {
      const sinc = (t: number) => (t === 0 ? 1 : Math.sin(t * Math.PI) / (t * Math.PI));
      return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
    },
  },
};

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output pixel, first input index and int weights */
function coefficients(inSize: number, outSize: number, filter: Filter): { bounds: Int32Array; kk: Int32Array; ksize: number } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = filter.f((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

const clip8 = (ss: number) => {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

function resampleHorizontal(src: Rgb8, outW: number, filter: Filter): Rgb8 {
  const { bounds, kk, ksize } = coefficients(src.width, outW, filter);
  const out = new Uint8Array(outW * src.height * 3);
  const inRow = src.width * 3;
  for (let y = 0; y < src.height; y++) {
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2],
        xmax = bounds[xx * 2 + 1],
        k0 = xx * ksize;
      let s0 = ONE / 2,
        s1 = ONE / 2,
        s2 = ONE / 2;
      for (let x = 0; x < xmax; x++) {
        const k = kk[k0 + x],
          p = y * inRow + (x + xmin) * 3;
        s0 += src.data[p] * k;
        s1 += src.data[p + 1] * k;
        s2 += src.data[p + 2] * k;
      }
      const o = (y * outW + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { width: outW, height: src.height, data: out };
}

function resampleVertical(src: Rgb8, outH: number, filter: Filter): Rgb8 {
  const { bounds, kk, ksize } = coefficients(src.height, outH, filter);
  const W = src.width;
  const out = new Uint8Array(W * outH * 3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2],
      ymax = bounds[yy * 2 + 1],
      k0 = yy * ksize;
    for (let x = 0; x < W; x++) {
      let s0 = ONE / 2,
        s1 = ONE / 2,
        s2 = ONE / 2;
      for (let y = 0; y < ymax; y++) {
        const k = kk[k0 + y],
          p = ((y + ymin) * W + x) * 3;
        s0 += src.data[p] * k;
        s1 += src.data[p + 1] * k;
        s2 += src.data[p + 2] * k;
      }
      const o = (yy * W + x) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { width: W, height: outH, data: out };
}

/** Pillow's Image.resize((width, height), resample) for an 8-bit RGB image */
export function resizeRgb8(src: Rgb8, width: number, height: number, filter: ResampleFilter): Rgb8 {
  if (!(width >= 1 && height >= 1 && Number.isInteger(width) && Number.isInteger(height)))
    throw new ProcessorError(`resize to ${width}x${height}: not a positive size`);
  if (width === src.width && height === src.height) return { width, height, data: src.data.slice() };
  if (filter === 'nearest') {
    const out = new Uint8Array(width * height * 3);
    const sx = src.width / width,
      sy = src.height / height;
    for (let y = 0; y < height; y++) {
      const yi = Math.min(src.height - 1, Math.floor((y + 0.5) * sy));
      for (let x = 0; x < width; x++) {
        const xi = Math.min(src.width - 1, Math.floor((x + 0.5) * sx));
        out.set(src.data.subarray((yi * src.width + xi) * 3, (yi * src.width + xi) * 3 + 3), (y * width + x) * 3);
      }
    }
    return { width, height, data: out };
  }
  const f = FILTERS[filter];
  let im = src;
  if (width !== src.width) im = resampleHorizontal(im, width, f);
  if (height !== src.height) im = resampleVertical(im, height, f);
  return im;
}

/** RGB bytes from RGB or RGBA pixels; RGBA: drop alpha (PIL convert("RGB")) or composite on white (PIL alpha_composite) */
export function toRgb8(img: PixelImage, alpha: AlphaMode = 'drop'): Rgb8 {
  const { width, height, data } = img;
  const n = width * height;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0))
    throw new ProcessorError(`image size ${width}x${height} is not positive`);
  const ch = img.channels ?? data.length / n;
  if ((ch !== 3 && ch !== 4) || data.length !== n * ch)
    throw new ProcessorError(`image data holds ${data.length} bytes, not ${width}x${height}x3 (RGB) or x4 (RGBA)`);
  if (ch === 3) return { width, height, data: Uint8Array.from(data) };
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = data[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const v = data[i * 4 + c];
      if (alpha === 'drop' || a === 255) out[i * 3 + c] = v;
      else if (a === 0) out[i * 3 + c] = 255;
      else {
        // Pillow's ImagingAlphaComposite over opaque white (7-bit fixed point, divide by 255 by shifts)
        const coef1 = Math.floor((a * 255 * 255 * 128) / (255 * 255));
        const coef2 = 255 * 128 - coef1;
        const t = v * coef1 + 255 * coef2 + (0x80 << 7);
        out[i * 3 + c] = (((t >> 8) + t) >> 8) >> 7;
      }
    }
  }
  return { width, height, data: out };
}

/** crop [x0, x1) x [y0, y1) */
export function cropRgb8(src: Rgb8, x0: number, y0: number, x1: number, y1: number): Rgb8 {
  const w = x1 - x0,
    h = y1 - y0;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    out.set(src.data.subarray(((y0 + y) * src.width + x0) * 3, ((y0 + y) * src.width + x1) * 3), y * w * 3);
  return { width: w, height: h, data: out };
}

/** rescale then normalise to [C,H,W] float32, with numpy's float32 arithmetic */
export function toChw(
  src: Rgb8,
  p: { doRescale: boolean; rescaleFactor: number; doNormalize: boolean; mean: number[]; std: number[] },
): Float32Array {
  const { width: W, height: H } = src;
  const out = new Float32Array(3 * H * W);
  const f32 = Math.fround;
  const mean = p.mean.map(f32),
    std = p.std.map(f32);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < H * W; i++) {
      let v = src.data[i * 3 + c];
      if (p.doRescale) v = f32(v * p.rescaleFactor);
      if (p.doNormalize) v = f32(f32(v - mean[c]) / std[c]);
      out[c * H * W + i] = v;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------ preprocessor_config

export interface Common {
  doResize: boolean;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  mean: number[];
  std: number[];
  resample: ResampleFilter;
  alpha: AlphaMode;
}

export interface ProcessorOptions {
  /** override preprocessor_config's do_image_splitting (Idefics3) */
  doImageSplitting?: boolean;
  /** override preprocessor_config's resample */
  resample?: ResampleFilter;
  /** how RGBA input becomes RGB (default 'drop', as the IC-VCO code's Image.convert("RGB")) */
  alpha?: AlphaMode;
}

/** the mean and std SigLIP and Idefics3 normalise with */
export const IMAGENET_STANDARD = [0.5, 0.5, 0.5];

function num(p: Json, k: string, fallback: number, file: string): number {
  const v = p[k] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ProcessorError(`${file}: field "${k}" must be a number`);
  return v;
}

function triple(p: Json, k: string, fallback: number[], file: string): number[] {
  const v = p[k] ?? fallback;
  const a = typeof v === 'number' ? [v, v, v] : v;
  if (!Array.isArray(a) || a.length !== 3 || a.some((x) => typeof x !== 'number'))
    throw new ProcessorError(`${file}: field "${k}" must be 3 numbers`);
  return a as number[];
}

/** the preprocessor_config.json fields every HF image processor has (resize, rescale, normalise) */
export function common(
  p: Json,
  defaults: { resample: number; mean: number[]; std: number[] },
  opts: ProcessorOptions,
  file: string,
): Common {
  const r = p.resample ?? defaults.resample;
  const resample = opts.resample ?? PIL_RESAMPLE[r as number];
  if (!resample)
    throw new ProcessorError(`${file}: field "resample" (${JSON.stringify(r)}) is not a PIL resampling filter (0-5)`);
  return {
    doResize: p.do_resize !== false,
    doRescale: p.do_rescale !== false,
    rescaleFactor: num(p, 'rescale_factor', 1 / 255, file),
    doNormalize: p.do_normalize !== false,
    mean: triple(p, 'image_mean', defaults.mean, file),
    std: triple(p, 'image_std', defaults.std, file),
    resample,
    alpha: opts.alpha ?? 'drop',
  };
}

/** a `size`-like field: {height, width}, {longest_edge}, {shortest_edge}, or one number */
export function sizeField(p: Json, k: string, file: string): Record<string, number> | undefined {
  const v = p[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return { height: v, width: v, shortest_edge: v };
  if (typeof v !== 'object') throw new ProcessorError(`${file}: field "${k}" must be an object`);
  return v as Record<string, number>;
}
