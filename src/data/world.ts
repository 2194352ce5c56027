/**
 * ShapesWorld's scene graphs: a 4x4 grid of cells, at most one object per cell, every (colour, shape) pair at
 * most once so that "the red circle" always names one object. Scene graphs are the ground truth that images,
 * descriptions, questions and contrastive edits are all derived from, so everything here is seeded and
 * engine-independent (no Math.random, no trig).
 */

export const IMAGE_SIZE = 64 as const;
export const GRID = 4 as const;
export const CELL = 16 as const;

export const SHAPES = ['circle', 'square', 'triangle', 'star'] as const;
export const COLORS = ['red', 'green', 'blue', 'yellow', 'purple'] as const;
export const SIZES = ['small', 'large'] as const;
export type Shape = (typeof SHAPES)[number];
export type Color = (typeof COLORS)[number];
export type Size = (typeof SIZES)[number];
export const PLURAL: Record<Shape, string> = { circle: 'circles', square: 'squares', triangle: 'triangles', star: 'stars' };

export interface SceneObject {
  id: number;
  shape: Shape;
  color: Color;
  size: Size;
  row: number;
  col: number;
}
export interface Scene {
  objects: SceneObject[];
  background: number;
  style: number;
}

export const MAX_OBJECTS = 4;
export const BACKGROUNDS = 3;
export const STYLES = 3;

export { deriveSeed, rng } from '../util/prng.js';

export const randInt = (rand: () => number, n: number): number => Math.floor(rand() * n);
export function pick<T>(rand: () => number, xs: readonly T[]): T {
  if (xs.length === 0) throw new Error('pick from an empty list');
  return xs[randInt(rand, xs.length)];
}
/** Fisher-Yates on a copy */
export function shuffle<T>(rand: () => number, xs: readonly T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = randInt(rand, i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

export const pairKey = (o: { color: Color; shape: Shape }): string => `${o.color} ${o.shape}`;
export const cellIndex = (o: { row: number; col: number }): number => o.row * GRID + o.col;
export const cloneScene = (s: Scene): Scene => ({ ...s, objects: s.objects.map((o) => ({ ...o })) });
export const freeCells = (s: Scene): number[] => {
  const used = new Set(s.objects.map(cellIndex));
  return [...Array(GRID * GRID).keys()].filter((c) => !used.has(c));
};
export const nextId = (s: Scene): number => s.objects.reduce((m, o) => Math.max(m, o.id), -1) + 1;
/** objects by id: the relation sentence is about the two lowest ids */
export const byId = (s: Scene): SceneObject[] => [...s.objects].sort((a, b) => a.id - b.id);
/** row-major reading order, the order of the description's list */
export const readingOrder = (s: Scene): SceneObject[] => [...s.objects].sort((a, b) => cellIndex(a) - cellIndex(b));

export interface RandomSceneOptions {
  minObjects?: number;
  maxObjects?: number;
  /** P(a star is yellow); the rest of the time a uniform non-yellow colour. null: stars are uniform too */
  starYellow?: number | null;
}

export function randomColor(rand: () => number, shape: Shape, starYellow: number | null | undefined): Color {
  if (shape !== 'star' || starYellow == null) return pick(rand, COLORS);
  return rand() < starYellow
    ? 'yellow'
    : pick(
        rand,
        COLORS.filter((c) => c !== 'yellow'),
      );
}

export function randomScene(rand: () => number, opts: RandomSceneOptions = {}): Scene {
  const lo = opts.minObjects ?? 1,
    hi = opts.maxObjects ?? MAX_OBJECTS;
  if (!(lo >= 1 && hi <= MAX_OBJECTS && lo <= hi))
    throw new Error(`randomScene: need 1 <= minObjects <= maxObjects <= ${MAX_OBJECTS}, got ${lo}..${hi}`);
  const n = lo + randInt(rand, hi - lo + 1);
  const cells = shuffle(rand, [...Array(GRID * GRID).keys()]);
  const seen = new Set<string>();
  const objects: SceneObject[] = [];
  for (let id = 0; id < n; id++) {
    // redraw on a repeated (colour, shape) pair; 20 pairs for at most 4 objects, so this ends fast
    for (;;) {
      const shape = pick(rand, SHAPES);
      const color = randomColor(rand, shape, opts.starYellow);
      const size = pick(rand, SIZES);
      if (seen.has(`${color} ${shape}`)) continue;
      seen.add(`${color} ${shape}`);
      objects.push({ id, shape, color, size, row: Math.floor(cells[id] / GRID), col: cells[id] % GRID });
      break;
    }
  }
  return { objects, background: randInt(rand, BACKGROUNDS), style: randInt(rand, STYLES) };
}

export function validateScene(scene: Scene): void {
  const bad = (why: string) => {
    throw new Error(`invalid scene: ${why} (${JSON.stringify(scene)})`);
  };
  if (!scene || !Array.isArray(scene.objects)) bad('objects must be an array');
  const n = scene.objects.length;
  if (n < 1 || n > MAX_OBJECTS) bad(`has ${n} objects, need 1..${MAX_OBJECTS}`);
  if (!Number.isInteger(scene.background) || scene.background < 0 || scene.background >= BACKGROUNDS)
    bad(`background ${scene.background} is not 0..${BACKGROUNDS - 1}`);
  if (!Number.isInteger(scene.style) || scene.style < 0 || scene.style >= STYLES)
    bad(`style ${scene.style} is not 0..${STYLES - 1}`);
  const ids = new Set<number>(),
    cells = new Set<number>(),
    pairs = new Set<string>();
  for (const o of scene.objects) {
    if (!Number.isInteger(o.id) || o.id < 0) bad(`object id ${o.id} is not a non-negative integer`);
    if (ids.has(o.id)) bad(`object id ${o.id} occurs twice`);
    if (!SHAPES.includes(o.shape)) bad(`unknown shape "${o.shape}"`);
    if (!COLORS.includes(o.color)) bad(`unknown color "${o.color}"`);
    if (!SIZES.includes(o.size)) bad(`unknown size "${o.size}"`);
    for (const k of ['row', 'col'] as const)
      if (!Number.isInteger(o[k]) || o[k] < 0 || o[k] >= GRID) bad(`object ${o.id}: ${k} ${o[k]} is not 0..${GRID - 1}`);
    if (cells.has(cellIndex(o))) bad(`two objects in cell (${o.row}, ${o.col})`);
    if (pairs.has(pairKey(o))) bad(`"${pairKey(o)}" occurs twice, so "the ${pairKey(o)}" would be ambiguous`);
    ids.add(o.id);
    cells.add(cellIndex(o));
    pairs.add(pairKey(o));
  }
}
