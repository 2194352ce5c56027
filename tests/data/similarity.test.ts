import { describe, expect, it } from 'vitest';
import { render } from '../../src/data/raster.js';
import { SSIM_C1, similarityReport, ssim } from '../../src/data/similarity.js';
import { randomScene, rng } from '../../src/data/world.js';

const flat = (v: number, w = 64, h = 64) => ({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(v) });

describe('SSIM', () => {
  it('is 1 for identical images and symmetric', () => {
    const a = render(randomScene(rng(1))),
      b = render(randomScene(rng(2)));
    expect(ssim(a, a)).toBeCloseTo(1, 12);
    expect(ssim(a, b)).toBeCloseTo(ssim(b, a), 12);
    expect(ssim(a, b)).toBeLessThan(1);
  });

  it('matches the closed form for two constant images', () => {
    // σ = 0 everywhere, so every window gives (2 μa μb + C1) / (μa² + μb² + C1); luma of grey v is v
    expect(SSIM_C1).toBeCloseTo(6.5025, 10);
    expect(ssim(flat(100), flat(200))).toBeCloseTo((2 * 100 * 200 + 6.5025) / (100 ** 2 + 200 ** 2 + 6.5025), 9);
    expect(ssim(flat(0), flat(255))).toBeCloseTo(6.5025 / (255 ** 2 + 6.5025), 9);
  });

  it('matches a hand-computed single window', () => {
    // one 8x8 window: a = left half 0, right half 200; b = constant 100
    const a = flat(0, 8, 8),
      b = flat(100, 8, 8);
    for (let y = 0; y < 8; y++) for (let x = 4; x < 8; x++) a.data.fill(200, 3 * (y * 8 + x), 3 * (y * 8 + x) + 3);
    const ma = 100,
      mb = 100,
      va = 100 ** 2,
      C1 = 6.5025,
      C2 = 58.5225;
    const want = ((2 * ma * mb + C1) * C2) / ((ma * ma + mb * mb + C1) * (va + C2));
    expect(ssim(a, b)).toBeCloseTo(want, 9);
  });

  it("edited pairs are far more similar than synthetic ones (the paper's Figure 3)", () => {
    const r = similarityReport(24, 3);
    expect(r.n).toBe(24);
    expect(r.edited.mean).toBeGreaterThan(0.85);
    expect(r.edited.mean).toBeGreaterThan(r.synthetic.mean + 0.1);
    expect(r.edited.sd).toBeGreaterThan(0);
    expect(similarityReport(4, 3)).toEqual(similarityReport(4, 3));
  });
});
