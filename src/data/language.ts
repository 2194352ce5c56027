/**
 * ShapesWorld's language: one canonical description per scene graph, questions with faithful answers, and
 * plausible hallucinations. The description is a fixed template, so changing one fact of the scene changes
 * only the words that state it: that is what makes describe(m') the minimal rewrite of describe(m). All text
 * stays inside a small closed VOCABULARY that the default model's tokenizer is built from.
 */
import {
  COLORS,
  GRID,
  MAX_OBJECTS,
  PLURAL,
  SHAPES,
  SIZES,
  byId,
  cloneScene,
  freeCells,
  nextId,
  pairKey,
  pick,
  randInt,
  randomScene,
  readingOrder,
  type Color,
  type Scene,
  type SceneObject,
  type Shape,
} from './world.js';

export const VOCABULARY: string[] = [
  '.',
  ',',
  '?',
  'the',
  'image',
  'shows',
  'a',
  'and',
  'is',
  'are',
  'there',
  'in',
  'of',
  'left',
  'right',
  'above',
  'below',
  'describe',
  'what',
  'color',
  'how',
  'many',
  'yes',
  'no',
  'one',
  'two',
  'three',
  'four',
  ...SIZES,
  ...COLORS,
  ...SHAPES,
  ...SHAPES.map((s) => PLURAL[s]),
  // where an object is ("Where is the red circle?" "Row two, column three.")
  'where',
  'row',
  'column',
  // the IC-VCO anchor instruction of two-image prompts (" Answer based on the first image." / "... second image.")
  'answer',
  'based',
  'on',
  'first',
  'second',
];

/** the tokenization rule every text here is checked under */
export function words(text: string): string[] {
  return text.toLowerCase().match(/\w+|[^\w\s]+/g) ?? [];
}

export type Relation = 'left of' | 'right of' | 'above' | 'below';
export const RELATIONS: readonly Relation[] = ['left of', 'right of', 'above', 'below'];
export const OPPOSITE: Record<Relation, Relation> = {
  'left of': 'right of',
  'right of': 'left of',
  above: 'below',
  below: 'above',
};

type Placed = Pick<SceneObject, 'row' | 'col'>;
/** does `a rel b` hold strictly */
export function holds(a: Placed, rel: Relation, b: Placed): boolean {
  switch (rel) {
    case 'left of':
      return a.col < b.col;
    case 'right of':
      return a.col > b.col;
    case 'above':
      return a.row < b.row;
    case 'below':
      return a.row > b.row;
  }
}
/** the relation the description states: horizontal when the columns differ, else vertical */
export function relationOf(a: Placed, b: Placed): Relation {
  if (a.col !== b.col) return a.col < b.col ? 'left of' : 'right of';
  return a.row < b.row ? 'above' : 'below';
}

export const phrase = (o: SceneObject): string => `a ${o.size} ${o.color} ${o.shape}`;
export const ref = (o: { color: Color; shape: Shape }): string => `the ${o.color} ${o.shape}`;
const cap = (s: string): string => s[0].toUpperCase() + s.slice(1);
function joinList(xs: string[]): string {
  return xs.length === 1 ? xs[0] : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`;
}

/** the two objects the relation sentence is about (the two lowest ids), or null below two objects */
export function relationPair(scene: Scene): [SceneObject, SceneObject] | null {
  const [a, b] = byId(scene);
  return a && b ? [a, b] : null;
}

export function describe(scene: Scene): string {
  let text = `The image shows ${joinList(readingOrder(scene).map(phrase))}.`;
  const pair = relationPair(scene);
  if (pair) text += ` ${cap(ref(pair[0]))} is ${relationOf(pair[0], pair[1])} ${ref(pair[1])}.`;
  return text;
}

export const QA_KINDS = ['describe', 'existence', 'attribute', 'color', 'count', 'relation', 'where'] as const;
export type QAKind = (typeof QA_KINDS)[number];
export interface QA {
  kind: QAKind;
  question: string;
  answer: string;
}
export const DESCRIBE_PROMPT = 'Describe the image.' as const;

export const existenceQuestion = (color: Color, shape: Shape): string => `Is there a ${color} ${shape} in the image?`;
export const attributeQuestion = (shape: Shape, color: Color): string => `Is the ${shape} ${color}?`;
export const relationQuestion = (a: SceneObject, rel: Relation, b: SceneObject): string =>
  `Is the ${a.color} ${a.shape} ${rel} the ${b.color} ${b.shape}?`;
const yesNo = (b: boolean): string => (b ? 'Yes.' : 'No.');
const NUMBER = ['no', 'one', 'two', 'three', 'four'];

/** shapes that occur exactly once, so "the {shape}" names one object */
export function uniqueShapeObjects(scene: Scene): SceneObject[] {
  return scene.objects.filter((o) => scene.objects.filter((x) => x.shape === o.shape).length === 1);
}

/** (colour, shape) pairs absent from the scene; `hard` ones share the shape or the colour with a present object */
export function absentPairs(scene: Scene, hard: boolean): { color: Color; shape: Shape }[] {
  const present = new Set(scene.objects.map(pairKey));
  const out: { color: Color; shape: Shape }[] = [];
  for (const shape of SHAPES)
    for (const color of COLORS) {
      if (present.has(`${color} ${shape}`)) continue;
      if (hard && !scene.objects.some((o) => o.shape === shape || o.color === color)) continue;
      out.push({ color, shape });
    }
  return out;
}

/**
 * A question of `kind` with its answer from the scene graph, or null when the scene cannot support that kind
 * (no unique shape, fewer than two objects). For yes/no kinds, `yes` fixes the answer; otherwise a coin flip.
 */
export function randomQA(scene: Scene, kind: QAKind, rand: () => number, yes?: boolean): QA | null {
  const want = yes ?? rand() < 0.5;
  switch (kind) {
    case 'describe':
      return { kind, question: DESCRIBE_PROMPT, answer: describe(scene) };
    case 'existence': {
      if (want) {
        const o = pick(rand, scene.objects);
        return { kind, question: existenceQuestion(o.color, o.shape), answer: 'Yes.' };
      }
      const hard = absentPairs(scene, true);
      const p = pick(rand, hard.length && rand() < 0.5 ? hard : absentPairs(scene, false));
      return { kind, question: existenceQuestion(p.color, p.shape), answer: 'No.' };
    }
    case 'attribute': {
      const cands = uniqueShapeObjects(scene);
      if (!cands.length) return null;
      const o = pick(rand, cands);
      const color = want
        ? o.color
        : pick(
            rand,
            COLORS.filter((c) => c !== o.color),
          );
      return { kind, question: attributeQuestion(o.shape, color), answer: yesNo(want) };
    }
    case 'color': {
      const cands = uniqueShapeObjects(scene);
      if (!cands.length) return null;
      const o = pick(rand, cands);
      return { kind, question: `What color is the ${o.shape}?`, answer: `The ${o.shape} is ${o.color}.` };
    }
    case 'count': {
      const shape = pick(rand, SHAPES),
        n = scene.objects.filter((o) => o.shape === shape).length;
      const answer =
        n === 0
          ? `There are no ${PLURAL[shape]}.`
          : n === 1
            ? `There is one ${shape}.`
            : `There are ${NUMBER[n]} ${PLURAL[shape]}.`;
      return { kind, question: `How many ${PLURAL[shape]} are there?`, answer };
    }
    case 'where': {
      // an object's grid cell: the single-hop skill (object -> place) that a relation compares twice
      const o = pick(rand, scene.objects);
      return {
        kind,
        question: `Where is the ${o.color} ${o.shape}?`,
        answer: `Row ${NUMBER[o.row + 1]}, column ${NUMBER[o.col + 1]}.`,
      };
    }
    case 'relation': {
      if (scene.objects.length < 2) return null;
      const i = randInt(rand, scene.objects.length);
      const j = (i + 1 + randInt(rand, scene.objects.length - 1)) % scene.objects.length;
      const a = scene.objects[i],
        b = scene.objects[j];
      // only axes where the two differ: a relation is asked only when it is strictly true or strictly false
      const axes: Relation[] = [];
      if (a.col !== b.col) axes.push(a.col < b.col ? 'left of' : 'right of');
      if (a.row !== b.row) axes.push(a.row < b.row ? 'above' : 'below');
      const rel = pick(rand, axes);
      return { kind, question: relationQuestion(a, want ? rel : OPPOSITE[rel], b), answer: yesNo(want) };
    }
  }
}

export const SFT_MIXTURE: readonly [QAKind, number][] = [
  ['describe', 0.25],
  ['existence', 0.25],
  ['attribute', 0.15],
  ['color', 0.1],
  ['count', 0.1],
  ['relation', 0.15],
];

/** starYellow: undefined means the planted prior 0.95; null means uniform star colours */
export const starPrior = (p: number | null | undefined): number | null => (p === undefined ? 0.95 : p);

/**
 * The scene as prior-following text describes it: with probability `noise`, a non-yellow star is called
 * yellow. This is how the planted prior survives good grounding, as language priors do in real captions:
 * a model that reads every colour right still learns that text about a star says "yellow" more often than
 * the star's pixels do. Only `noise` > 0 draws from `rand`, so other streams stay as they were.
 */
export function priorView(scene: Scene, rand: () => number, noise: number): Scene {
  if (!(noise > 0)) return scene;
  const stars = scene.objects.filter((o) => o.shape === 'star');
  // a second, yellow star would make the recoloured scene name two yellow stars
  if (!stars.some((o) => o.color !== 'yellow') || stars.some((o) => o.color === 'yellow')) return scene;
  if (rand() >= noise) return scene;
  const view = cloneScene(scene);
  for (const o of view.objects) if (o.shape === 'star') o.color = 'yellow';
  return view;
}

export function sftExample(
  rand: () => number,
  opts: { starYellow?: number | null; mixture?: readonly [QAKind, number][]; maxObjects?: number; priorNoise?: number } = {},
): { scene: Scene; qa: QA } {
  let u = rand(),
    kind: QAKind = 'describe';
  for (const [k, w] of opts.mixture ?? SFT_MIXTURE) {
    if (u < w) {
      kind = k;
      break;
    }
    u -= w;
  }
  const yes = rand() < 0.5;
  for (;;) {
    const scene = randomScene(rand, { starYellow: starPrior(opts.starYellow), maxObjects: opts.maxObjects });
    const qa = randomQA(priorView(scene, rand, opts.priorNoise ?? 0), kind, rand, yes);
    if (qa) return { scene, qa };
  }
}

/** what a hallucinated description states falsely, precisely enough to make it true by editing the scene */
export type Detail =
  | { type: 'existence'; object: SceneObject }
  | { type: 'attribute'; id: number; shape: Shape; from: Color; to: Color }
  | { type: 'relation'; a: number; b: number; rel: Relation };

/** colours `o` can take without repeating a (colour, shape) pair of the scene */
export function freeColors(scene: Scene, o: SceneObject): Color[] {
  return COLORS.filter((c) => c !== o.color && !scene.objects.some((x) => x.shape === o.shape && x.color === c));
}

/**
 * A plausible hallucinated description: `n` perturbations of a copy of the scene graph, each on objects no
 * earlier perturbation touched. Recolouring prefers turning a non-yellow star yellow (the planted prior).
 */
export function hallucinate(scene: Scene, rand: () => number, n = 1): { text: string; details: Detail[]; scene: Scene } {
  const s = cloneScene(scene),
    details: Detail[] = [],
    touched = new Set<number>();
  for (let k = 0; k < n; k++) {
    // colours and pairs must be free in the original too, or a later detail could restate an earlier truth
    const both: Scene = { ...s, objects: [...s.objects, ...scene.objects] };
    const colors = (o: SceneObject) => freeColors(both, o).filter((c) => c !== scene.objects.find((x) => x.id === o.id)?.color);
    const free = s.objects.filter((o) => !touched.has(o.id) && colors(o).length);
    const pair = relationPair(s);
    const kinds: Detail['type'][] = [];
    if (free.length) kinds.push('attribute');
    if (s.objects.length < MAX_OBJECTS && absentPairs(both, false).length) kinds.push('existence');
    if (pair && !touched.has(pair[0].id) && !touched.has(pair[1].id)) kinds.push('relation');
    if (!kinds.length) break;
    const kind = pick(rand, kinds);
    if (kind === 'attribute') {
      const star = free.find((o) => o.shape === 'star' && o.color !== 'yellow' && colors(o).includes('yellow'));
      const o = star ?? pick(rand, free);
      const to: Color = star ? 'yellow' : pick(rand, colors(o));
      details.push({ type: 'attribute', id: o.id, shape: o.shape, from: o.color, to });
      o.color = to;
      touched.add(o.id);
    } else if (kind === 'existence') {
      const hard = absentPairs(both, true);
      const p = pick(rand, hard.length && rand() < 0.5 ? hard : absentPairs(both, false));
      const cell = pick(rand, freeCells(s));
      const object: SceneObject = {
        id: nextId(s),
        shape: p.shape,
        color: p.color,
        size: pick(rand, SIZES),
        row: Math.floor(cell / GRID),
        col: cell % GRID,
      };
      s.objects.push(object);
      details.push({ type: 'existence', object: { ...object } });
      touched.add(object.id);
    } else {
      const [a, b] = pair!;
      [a.row, a.col, b.row, b.col] = [b.row, b.col, a.row, a.col];
      details.push({ type: 'relation', a: a.id, b: b.id, rel: relationOf(a, b) });
      touched.add(a.id).add(b.id);
    }
  }
  return { text: describe(s), details, scene: s };
}
