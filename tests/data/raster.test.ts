import { createHash } from 'node:crypto';
import { encode } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { decodePng, encodePng } from '../../src/data/png.js';
import { BACKGROUND_RGB, PALETTE, footprint, render } from '../../src/data/raster.js';
import { type Scene, type SceneObject, SHAPES, randomScene, rng } from '../../src/data/world.js';

const FIXED: Scene = {
  background: 1,
  style: 0,
  objects: [
    { id: 0, shape: 'circle', color: 'red', size: 'large', row: 0, col: 0 },
    { id: 1, shape: 'star', color: 'yellow', size: 'small', row: 2, col: 3 },
    { id: 2, shape: 'triangle', color: 'blue', size: 'large', row: 3, col: 1 },
    { id: 3, shape: 'square', color: 'purple', size: 'small', row: 1, col: 2 },
  ],
};
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const px = (img: { data: Uint8Array }, x: number, y: number) => [...img.data.subarray(3 * (y * 64 + x), 3 * (y * 64 + x) + 3)];

describe('rasteriser', () => {
  it('is deterministic, with a pinned hash so engine- or code-dependent drift shows up', () => {
    const a = render(FIXED),
      b = render(FIXED);
    expect(a.width).toBe(64);
    expect(a.data.length).toBe(64 * 64 * 3);
    expect(sha(a.data)).toBe(sha(b.data));
    expect(sha(a.data)).toMatchInlineSnapshot(`"6b9b4281c85e75a2f336d13dce43139d197c38741cfa05f2138fa231e37c2e90"`);
  });

  it('paints the palette colour at a shape centre and the background at cell corners and empty cells', () => {
    for (let style = 0; style < 3; style++)
      for (let background = 0; background < 3; background++) {
        const s = { ...FIXED, style, background },
          img = render(s);
        for (const o of s.objects) {
          const cx = o.col * 16 + 8,
            cy = o.row * 16 + 8;
          expect(px(img, cx, cy)).toEqual([...PALETTE[style][o.color]]);
          for (const [x, y] of [
            [0, 0],
            [15, 0],
            [0, 15],
            [15, 15],
          ])
            expect(px(img, o.col * 16 + x, o.row * 16 + y)).toEqual([...BACKGROUND_RGB[background]]);
        }
        expect(px(img, 16 * 3 + 8, 8)).toEqual([...BACKGROUND_RGB[background]]); // cell (0, 3) is empty
      }
  });

  it('keeps colours nameable in every style', () => {
    for (const pal of PALETTE) {
      const { red, green, blue, yellow, purple } = pal;
      expect(red[0] > 150 && red[1] < 90 && red[2] < 90).toBe(true);
      expect(green[1] > 120 && green[0] < 90 && green[2] < 100).toBe(true);
      expect(blue[2] > 150 && blue[0] < 90 && blue[1] < 130).toBe(true);
      expect(yellow[0] > 200 && yellow[1] > 170 && yellow[2] < 80).toBe(true);
      expect(purple[0] > 100 && purple[2] > 140 && purple[1] < 100).toBe(true);
    }
  });

  it('draws each shape with about its analytic area, inside its own cell', () => {
    const R = 7,
      inner = 0.381966 * R;
    const area: Record<string, number> = {
      circle: Math.PI * R * R,
      square: (2 * 0.85 * R) ** 2,
      triangle: ((3 * Math.sqrt(3)) / 4) * R * R,
      star: 5 * R * inner * Math.sin(Math.PI / 5),
    };
    for (const shape of SHAPES) {
      const o: SceneObject = { id: 0, shape, color: 'blue', size: 'large', row: 1, col: 2 };
      const img = render({ objects: [o], background: 0, style: 0 }),
        f = footprint(o);
      const bg = BACKGROUND_RGB[0][0],
        fg = PALETTE[0].blue[0];
      let cover = 0;
      for (let y = 0; y < 64; y++)
        for (let x = 0; x < 64; x++) {
          const inCell = x >= f.x0 && x < f.x1 && y >= f.y0 && y < f.y1;
          if (!inCell) expect(px(img, x, y)).toEqual([...BACKGROUND_RGB[0]]);
          else cover += (bg - img.data[3 * (y * 64 + x)]) / (bg - fg);
        }
      expect(Math.abs(cover - area[shape]) / area[shape]).toBeLessThan(0.04);
    }
  });

  it('small shapes are smaller than large ones', () => {
    for (const shape of SHAPES) {
      const count = (size: 'small' | 'large') => {
        const img = render({ objects: [{ id: 0, shape, color: 'red', size, row: 0, col: 0 }], background: 0, style: 0 });
        let n = 0;
        for (let i = 0; i < 64 * 64; i++) if (img.data[3 * i + 1] < 200) n++;
        return n;
      };
      expect(count('small')).toBeLessThan(count('large') * 0.6);
    }
  });

  it('round-trips through PNG, accepts RGBA, and names the file on unsupported PNGs', () => {
    for (let seed = 0; seed < 5; seed++) {
      const img = render(randomScene(rng(seed)));
      const png = encodePng(img);
      expect([...png.subarray(1, 4)]).toEqual([80, 78, 71]); // "PNG"
      expect(decodePng(png)).toEqual({ width: 64, height: 64, data: img.data });
    }
    const rgba = new Uint8Array([1, 2, 3, 255, 4, 5, 6, 0]);
    expect([...decodePng(encode({ width: 2, height: 1, data: rgba, channels: 4, depth: 8 })).data]).toEqual([1, 2, 3, 4, 5, 6]);
    const grey = encode({ width: 2, height: 1, data: new Uint8Array([1, 2]), channels: 1, depth: 8 });
    expect(() => decodePng(grey, 'x/grey.png')).toThrow(/x\/grey\.png: unsupported PNG.*1 channel/);
    const deep = encode({ width: 1, height: 1, data: new Uint16Array([1, 2, 3]), channels: 3, depth: 16 });
    expect(() => decodePng(deep, 'deep.png')).toThrow(/deep\.png: unsupported PNG \(bit depth 16/);
    expect(() => decodePng(new Uint8Array([1, 2, 3]), 'junk.png')).toThrow(/junk\.png: not a readable PNG/);
  });
});
