/**
 * The ShapesWorld rasteriser. Images must be byte-identical in Node and in every browser, and a cell's pixels
 * must depend only on that cell's object, the background and the style (so an edit changes pixels only inside
 * the edited objects' cells). Hence: fixed vertex tables instead of trig, 4x4 supersampling at sample points
 * that are exact binary fractions, and integer blending.
 */
import { CELL, IMAGE_SIZE, type Color, type Scene, type SceneObject, type Shape, type Size } from './world.js';

export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}
export interface SceneImage extends RgbImage {
  width: typeof IMAGE_SIZE;
  height: typeof IMAGE_SIZE;
}

type Rgb = readonly [number, number, number];

/** light backgrounds: near-white, light grey, beige */
export const BACKGROUND_RGB: readonly Rgb[] = [
  [248, 248, 246],
  [214, 216, 220],
  [238, 226, 198],
];

/** per style: base, a little darker, a little lighter; every shade stays plainly nameable */
export const PALETTE: readonly Record<Color, Rgb>[] = [
  { red: [220, 30, 30], green: [30, 160, 50], blue: [30, 70, 220], yellow: [245, 205, 20], purple: [140, 50, 180] },
  { red: [185, 20, 25], green: [20, 130, 40], blue: [20, 50, 175], yellow: [225, 180, 10], purple: [110, 35, 150] },
  { red: [240, 70, 65], green: [70, 190, 85], blue: [75, 115, 240], yellow: [255, 225, 70], purple: [170, 90, 210] },
];

export const RADIUS: Record<Size, number> = { small: 4.5, large: 7 };
/** a square of half-side r looks bigger than a circle of radius r */
const SQUARE_HALF = 0.85;

/** unit 5-pointed star, pointing up (y grows downwards), outer radius 1, inner 0.381966 */
const STAR: readonly (readonly [number, number])[] = [
  [0, -1],
  [0.224514, -0.309017],
  [0.951057, -0.309017],
  [0.363271, 0.118034],
  [0.587785, 0.809017],
  [0, 0.381966],
  [-0.587785, 0.809017],
  [-0.363271, 0.118034],
  [-0.951057, -0.309017],
  [-0.224514, -0.309017],
];
/** unit upward triangle around its centroid */
const TRIANGLE: readonly (readonly [number, number])[] = [
  [0, -1],
  [0.866025, 0.5],
  [-0.866025, 0.5],
];

/** even-odd crossing test; handles the star's concave corners */
function inPolygon(x: number, y: number, poly: readonly (readonly [number, number])[], r: number): boolean {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const xi = poly[i][0] * r,
      yi = poly[i][1] * r,
      xj = poly[j][0] * r,
      yj = poly[j][1] * r;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** is (dx, dy), relative to the cell centre, inside the shape of radius r */
export function insideShape(shape: Shape, r: number, dx: number, dy: number): boolean {
  switch (shape) {
    case 'circle':
      return dx * dx + dy * dy <= r * r;
    case 'square': {
      const h = r * SQUARE_HALF;
      return dx >= -h && dx <= h && dy >= -h && dy <= h;
    }
    case 'triangle':
      return inPolygon(dx, dy, TRIANGLE, r);
    case 'star':
      return inPolygon(dx, dy, STAR, r);
  }
}

/** the object's cell, [x0, x1) x [y0, y1): nothing of the object is drawn outside it */
export function footprint(obj: Pick<SceneObject, 'row' | 'col'>): { x0: number; y0: number; x1: number; y1: number } {
  return { x0: obj.col * CELL, y0: obj.row * CELL, x1: (obj.col + 1) * CELL, y1: (obj.row + 1) * CELL };
}

export function objectColor(scene: Pick<Scene, 'style'>, color: Color): Rgb {
  return PALETTE[scene.style][color];
}

export function render(scene: Scene): SceneImage {
  const W = IMAGE_SIZE,
    data = new Uint8Array(W * W * 3);
  const bg = BACKGROUND_RGB[scene.background];
  for (let i = 0; i < W * W; i++) data.set(bg, 3 * i);
  const half = CELL / 2;
  for (const o of scene.objects) {
    const fg = objectColor(scene, o.color),
      r = RADIUS[o.size],
      { x0, y0 } = footprint(o);
    for (let py = 0; py < CELL; py++) {
      for (let px = 0; px < CELL; px++) {
        let cover = 0;
        for (let sy = 0; sy < 4; sy++) {
          const dy = py + (sy + 0.5) / 4 - half;
          for (let sx = 0; sx < 4; sx++) if (insideShape(o.shape, r, px + (sx + 0.5) / 4 - half, dy)) cover++;
        }
        if (cover === 0) continue;
        const k = 3 * ((y0 + py) * W + x0 + px);
        for (let c = 0; c < 3; c++) data[k + c] = (bg[c] * (16 - cover) + fg[c] * cover + 8) >> 4;
      }
    }
  }
  return { width: IMAGE_SIZE, height: IMAGE_SIZE, data };
}
