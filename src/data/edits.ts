/**
 * Contrastive sample editing (the IC-VCO paper's Section 4 / Appendix B, at toy scale): from a seed scene m,
 * its faithful description y and a hallucinated y', build a counterfactual scene m' that differs from m in
 * exactly one fact, so the preference pair (y, describe(m')) differs only in the words stating that fact and
 * the two images only in the edited cells. Scenario A makes one hallucinated detail of y' true; scenario B
 * contradicts one detail of y.
 */
import {
  type Detail,
  DESCRIBE_PROMPT,
  describe,
  freeColors,
  hallucinate,
  relationOf,
  relationPair,
  starPrior,
} from './language.js';
import {
  BACKGROUNDS,
  GRID,
  MAX_OBJECTS,
  STYLES,
  cellIndex,
  cloneScene,
  deriveSeed,
  pairKey,
  pick,
  readingOrder,
  rng,
  randomScene,
  shuffle,
  type Scene,
} from './world.js';

export type Scenario = 'A' | 'B';
export type EditType = 'existence' | 'attribute' | 'relation';
export const EDIT_TYPES: readonly EditType[] = ['existence', 'attribute', 'relation'];

export interface Edit {
  scenario: Scenario;
  type: EditType;
  before: Scene;
  after: Scene;
  /** the objects whose presence, colour or cell changed (ids of `before`, or the added object's id) */
  changedIds: number[];
  /** scenario A: the hallucinated detail of y' that the edit made true */
  detail?: Detail;
}

export type Span = [number, number];

export interface PreferenceSample {
  id: string;
  prompt: typeof DESCRIBE_PROMPT;
  m: Scene;
  mPrime: Scene;
  /** y = describe(m) */
  chosen: string;
  /** y'_new = describe(m') */
  rejected: string;
  /** the seed hallucination y' */
  hallucinated: string;
  chosenSpans: Span[];
  rejectedSpans: Span[];
  edit: Edit;
}

/** scenario A: edit m so that one hallucinated detail holds; null when that would break the scene's invariants */
export function realize(m: Scene, d: Detail): Edit | null {
  const after = cloneScene(m);
  const edit = (changedIds: number[]): Edit => ({ scenario: 'A', type: d.type, before: m, after, changedIds, detail: d });
  if (d.type === 'existence') {
    const o = d.object;
    if (
      m.objects.length >= MAX_OBJECTS ||
      m.objects.some((x) => cellIndex(x) === cellIndex(o) || pairKey(x) === pairKey(o) || x.id === o.id)
    )
      return null;
    after.objects.push({ ...o });
    return edit([o.id]);
  }
  if (d.type === 'attribute') {
    const o = after.objects.find((x) => x.id === d.id);
    if (!o || !freeColors(m, o).includes(d.to)) return null;
    o.color = d.to;
    return edit([o.id]);
  }
  const a = after.objects.find((x) => x.id === d.a),
    b = after.objects.find((x) => x.id === d.b);
  if (!a || !b) return null;
  [a.row, a.col, b.row, b.col] = [b.row, b.col, a.row, a.col];
  return edit([a.id, b.id]);
}

/** scenario B: contradict one detail of y = describe(m) with the smallest change to m */
export function inject(m: Scene, type: EditType, rand: () => number): Edit | null {
  const after = cloneScene(m),
    pair = relationPair(m);
  const edit = (changedIds: number[]): Edit => ({ scenario: 'B', type, before: m, after, changedIds });
  if (type === 'existence') {
    // never one of the relation's two objects: removing it would rewrite the relation sentence too
    const cands = pair ? m.objects.filter((o) => o.id !== pair[0].id && o.id !== pair[1].id) : [];
    if (m.objects.length < 3 || !cands.length) return null;
    const gone = pick(rand, cands);
    after.objects = after.objects.filter((o) => o.id !== gone.id);
    return edit([gone.id]);
  }
  if (type === 'attribute') {
    const o = pick(rand, after.objects),
      colors = freeColors(m, o);
    if (!colors.length) return null;
    o.color = pick(rand, colors);
    return edit([o.id]);
  }
  if (!pair) return null;
  const [a, b] = pair.map((p) => after.objects.find((x) => x.id === p.id)!);
  [a.row, a.col, b.row, b.col] = [b.row, b.col, a.row, a.col];
  return edit([a.id, b.id]);
}

/** tokens under the `words` rule, with their character offsets in the original string */
function tokens(text: string): { w: string; s: number; e: number }[] {
  return [...text.matchAll(/\w+|[^\w\s]+/g)].map((m) => ({ w: m[0].toLowerCase(), s: m.index!, e: m.index! + m[0].length }));
}

/** character spans of the words outside a longest common word subsequence, merged across whitespace */
export function diffSpans(a: string, b: string): { a: Span[]; b: Span[] } {
  const ta = tokens(a),
    tb = tokens(b),
    n = ta.length,
    k = tb.length;
  const L = Array.from({ length: n + 1 }, () => new Int32Array(k + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = k - 1; j >= 0; j--) {
      L[i][j] = ta[i].w === tb[j].w ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    }
  const keepA = new Array<boolean>(n).fill(false),
    keepB = new Array<boolean>(k).fill(false);
  for (let i = 0, j = 0; i < n && j < k;) {
    if (ta[i].w === tb[j].w) {
      keepA[i++] = true;
      keepB[j++] = true;
    } else if (L[i + 1][j] >= L[i][j + 1]) i++;
    else j++;
  }
  const spans = (text: string, t: typeof ta, keep: boolean[]): Span[] => {
    const out: Span[] = [];
    t.forEach((tok, i) => {
      if (keep[i]) return;
      const last = out[out.length - 1];
      if (last && /^\s*$/.test(text.slice(last[1], tok.s))) last[1] = tok.e;
      else out.push([tok.s, tok.e]);
    });
    return out;
  };
  return { a: spans(a, ta, keepA), b: spans(b, tb, keepB) };
}

export interface SampleOptions {
  scenario?: Scenario;
  type?: EditType;
  starYellow?: number | null;
}

/** one preference sample, a pure function of the seed (and the options); retries derived seeds until an edit fits */
export function makePreferenceSample(seed: number, opts: SampleOptions = {}): PreferenceSample {
  for (let k = 0; k < 10_000; k++) {
    const rand = rng(k === 0 ? seed : deriveSeed(seed, k));
    const m = randomScene(rand, { starYellow: starPrior(opts.starYellow) });
    const scenario = opts.scenario ?? (rand() < 0.5 ? 'A' : 'B');
    const h = hallucinate(m, rand, 1);
    let edit: Edit | null;
    if (scenario === 'A') {
      const ds = h.details.filter((d) => !opts.type || d.type === opts.type);
      edit = ds.length ? realize(m, pick(rand, ds)) : null;
    } else {
      edit = inject(m, opts.type ?? pick(rand, EDIT_TYPES), rand);
    }
    if (!edit) continue;
    const chosen = describe(m),
      rejected = describe(edit.after);
    if (chosen === rejected) continue;
    const spans = diffSpans(chosen, rejected);
    return {
      id: `sw${seed >>> 0}`,
      prompt: DESCRIBE_PROMPT,
      m,
      mPrime: edit.after,
      chosen,
      rejected,
      hallucinated: h.text,
      chosenSpans: spans.a,
      rejectedSpans: spans.b,
      edit,
    };
  }
  throw new Error(`makePreferenceSample(${seed}): no ${opts.scenario ?? ''}${opts.type ? ` ${opts.type}` : ''} edit found`);
}

/**
 * The coarse negative the paper compares against: a scene re-generated from y'_new alone, i.e. the same
 * objects and attributes in a new layout, on another background and style. Cells are drawn in reading order,
 * so the list keeps its order; layouts whose relation sentence differs are redrawn, so y'_new stays faithful.
 */
export function syntheticNegative(sample: PreferenceSample, rand: () => number): Scene {
  const base = sample.mPrime,
    order = readingOrder(base),
    n = order.length;
  const others = (k: number, v: number) => [...Array(k).keys()].filter((x) => x !== v);
  for (let t = 0; t < 100_000; t++) {
    const cells = shuffle(rand, [...Array(GRID * GRID).keys()])
      .slice(0, n)
      .sort((x, y) => x - y);
    const cellOf = new Map(order.map((o, i) => [o.id, cells[i]]));
    if (base.objects.every((o) => cellOf.get(o.id) === cellIndex(o))) continue;
    const scene: Scene = {
      objects: base.objects.map((o) => ({ ...o, row: Math.floor(cellOf.get(o.id)! / GRID), col: cellOf.get(o.id)! % GRID })),
      background: pick(rand, others(BACKGROUNDS, base.background)),
      style: pick(rand, others(STYLES, base.style)),
    };
    if (describe(scene) === sample.rejected) return scene;
  }
  throw new Error(`syntheticNegative(${sample.id}): no layout matches "${sample.rejected}"`);
}

/** for tests and reports: the relation stated between two objects of a scene, by id */
export function relationBetween(scene: Scene, a: number, b: number) {
  const oa = scene.objects.find((o) => o.id === a),
    ob = scene.objects.find((o) => o.id === b);
  return oa && ob ? relationOf(oa, ob) : null;
}

/**
 * A pair about the planted language prior ("stars are yellow"): m has a star of another colour, m′ is m with
 * that star yellow. The chosen answer is faithful to m; the rejected one is the prior's (faithful to m′). An
 * exact attribute edit, so the two answers differ in the colour word only.
 */
export function makePriorSample(seed: number): PreferenceSample {
  for (let k = 0; k < 10_000; k++) {
    const rand = rng(k === 0 ? seed : deriveSeed(seed, k));
    const m = randomScene(rand, { starYellow: 0 });
    const stars = m.objects.filter((o) => o.shape === 'star');
    if (stars.length !== 1 || stars[0].color === 'yellow') continue;
    const after = cloneScene(m);
    after.objects.find((o) => o.id === stars[0].id)!.color = 'yellow';
    const chosen = describe(m),
      rejected = describe(after);
    if (chosen === rejected) continue;
    const spans = diffSpans(chosen, rejected);
    return {
      id: `prior${seed >>> 0}`,
      prompt: DESCRIBE_PROMPT,
      m,
      mPrime: after,
      chosen,
      rejected,
      hallucinated: rejected,
      chosenSpans: spans.a,
      rejectedSpans: spans.b,
      edit: { scenario: 'B', type: 'attribute', before: m, after, changedIds: [stars[0].id] },
    };
  }
  throw new Error(`makePriorSample(${seed}): no scene with one non-yellow star found`);
}
