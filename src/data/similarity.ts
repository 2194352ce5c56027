/**
 * How alike two images are, to show the paper's Figure 3 point at toy scale: an edited counterfactual m'
 * stays almost identical to m, a negative re-generated from text alone does not. Mean SSIM on BT.601 luma
 * over 8x8 windows with stride 4 (uniform weights, population moments).
 */
import { makePreferenceSample, syntheticNegative } from './edits.js';
import { render, type RgbImage } from './raster.js';
import { deriveSeed, rng } from './world.js';

export const SSIM_C1 = (0.01 * 255) ** 2;
export const SSIM_C2 = (0.03 * 255) ** 2;
const WIN = 8,
  STRIDE = 4;

export function luma(img: RgbImage): Float64Array {
  const n = img.width * img.height,
    y = new Float64Array(n),
    d = img.data;
  for (let i = 0; i < n; i++) y[i] = 0.299 * d[3 * i] + 0.587 * d[3 * i + 1] + 0.114 * d[3 * i + 2];
  return y;
}

export function ssim(a: RgbImage, b: RgbImage): number {
  if (a.width !== b.width || a.height !== b.height)
    throw new Error(`ssim: sizes differ (${a.width}x${a.height} vs ${b.width}x${b.height})`);
  if (a.width < WIN || a.height < WIN) throw new Error(`ssim: images must be at least ${WIN}x${WIN}`);
  const ya = luma(a),
    yb = luma(b),
    W = a.width,
    N = WIN * WIN;
  let sum = 0,
    count = 0;
  for (let y0 = 0; y0 + WIN <= a.height; y0 += STRIDE) {
    for (let x0 = 0; x0 + WIN <= W; x0 += STRIDE) {
      let sa = 0,
        sb = 0,
        saa = 0,
        sbb = 0,
        sab = 0;
      for (let y = y0; y < y0 + WIN; y++)
        for (let x = x0; x < x0 + WIN; x++) {
          const p = ya[y * W + x],
            q = yb[y * W + x];
          sa += p;
          sb += q;
          saa += p * p;
          sbb += q * q;
          sab += p * q;
        }
      const ma = sa / N,
        mb = sb / N;
      const va = saa / N - ma * ma,
        vb = sbb / N - mb * mb,
        cov = sab / N - ma * mb;
      sum += ((2 * ma * mb + SSIM_C1) * (2 * cov + SSIM_C2)) / ((ma * ma + mb * mb + SSIM_C1) * (va + vb + SSIM_C2));
      count++;
    }
  }
  return sum / count;
}

export interface MeanSd {
  mean: number;
  sd: number;
}
export interface SimilarityReport {
  edited: MeanSd;
  synthetic: MeanSd;
  n: number;
}

function meanSd(xs: number[]): MeanSd {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}

/** SSIM(m, m') over n preference samples, with m' edited vs re-generated (synthetic) for the same seeds */
export function similarityReport(n: number, seed: number): SimilarityReport {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`similarityReport: n must be a positive integer, got ${n}`);
  const edited: number[] = [],
    synthetic: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = makePreferenceSample(deriveSeed(seed, i));
    const img = render(s.m);
    edited.push(ssim(img, render(s.mPrime)));
    synthetic.push(ssim(img, render(syntheticNegative(s, rng(deriveSeed(seed ^ 0x5eed, i))))));
  }
  return { edited: meanSd(edited), synthetic: meanSd(synthetic), n };
}
