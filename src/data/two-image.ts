/**
 * Two-image ShapesWorld: the samples the official SFT stage adds to single-image ones (official-code-spec
 * §1.2, `make_sft_data`): two images [m, m'] and the question with an anchor instruction appended
 * ("<question> Answer based on the first image." / "... second image."), answered about the named image.
 * A model trained on them reads the anchor, which is what IC-VCO's shared two-image context relies on.
 *
 * The pair is mostly an exact contrastive edit (m' differs from m in one fact, as in the preference data),
 * and half of its questions ask about that very fact, so the right answer depends on which image the anchor
 * names: a model that ignores the anchor is at chance on them. Questions are data (`YesNoQuestion`), so their
 * answer can be read off either scene.
 */
import { type EditType, EDIT_TYPES, type Edit, makePreferenceSample } from './edits.js';
import {
  type QA,
  type QAKind,
  type Relation,
  OPPOSITE,
  SFT_MIXTURE,
  attributeQuestion,
  existenceQuestion,
  holds,
  priorView,
  randomQA,
  relationOf,
} from './language.js';
import { type Color, type Scene, type Shape, deriveSeed, pick, randomScene, rng } from './world.js';

/** which image of the pair the anchor instruction names */
export type Anchor = 'first' | 'second';

type Named = { color: Color; shape: Shape };
/** a yes/no question as data */
export type YesNoQuestion =
  | { kind: 'existence'; object: Named }
  | { kind: 'attribute'; shape: Shape; color: Color }
  | { kind: 'relation'; a: Named; rel: Relation; b: Named };

export function questionText(q: YesNoQuestion): string {
  if (q.kind === 'existence') return existenceQuestion(q.object.color, q.object.shape);
  if (q.kind === 'attribute') return attributeQuestion(q.shape, q.color);
  return `Is the ${q.a.color} ${q.a.shape} ${q.rel} the ${q.b.color} ${q.b.shape}?`;
}

/** the question's answer on a scene, or null where it has none (an absent or ambiguous object, no strict relation) */
export function answerOn(scene: Scene, q: YesNoQuestion): boolean | null {
  const find = (n: Named) => scene.objects.find((o) => o.color === n.color && o.shape === n.shape);
  if (q.kind === 'existence') return !!find(q.object);
  if (q.kind === 'attribute') {
    const hits = scene.objects.filter((o) => o.shape === q.shape);
    return hits.length === 1 ? hits[0].color === q.color : null;
  }
  const a = find(q.a),
    b = find(q.b);
  if (!a || !b) return null;
  if (holds(a, q.rel, b)) return true;
  return holds(a, OPPOSITE[q.rel], b) ? false : null;
}

/** a question about the fact an edit changed: defined on both scenes, with different answers */
export function contrastQuestion(edit: Edit, rand: () => number): YesNoQuestion {
  const { before, after } = edit;
  const byId = (s: Scene, id: number) => s.objects.find((o) => o.id === id);
  const candidates: YesNoQuestion[] = [];
  if (edit.type === 'existence') {
    const o = byId(before, edit.changedIds[0]) ?? byId(after, edit.changedIds[0])!;
    candidates.push({ kind: 'existence', object: { color: o.color, shape: o.shape } });
  } else if (edit.type === 'attribute') {
    const was = byId(before, edit.changedIds[0])!,
      now = byId(after, edit.changedIds[0])!;
    for (const color of [was.color, now.color]) {
      candidates.push({ kind: 'existence', object: { color, shape: was.shape } });
      candidates.push({ kind: 'attribute', shape: was.shape, color });
    }
  } else {
    const [a, b] = edit.changedIds.map((id) => byId(before, id)!);
    const rel = relationOf(a, b);
    for (const r of [rel, OPPOSITE[rel]])
      candidates.push({ kind: 'relation', a: { color: a.color, shape: a.shape }, rel: r, b: { color: b.color, shape: b.shape } });
  }
  const ok = candidates.filter((q) => {
    const x = answerOn(before, q),
      y = answerOn(after, q);
    return x !== null && y !== null && x !== y;
  });
  if (!ok.length) throw new Error(`contrastQuestion: no question separates the two scenes of this ${edit.type} edit`);
  return pick(rand, ok);
}

/** a seed below 2^31 from a stream (the training generators' seed space) */
const seedFrom = (rand: () => number): number => Math.floor(rand() * 0x7fffffff);

export interface TwoImageExample {
  /** the images in prompt order */
  scenes: [Scene, Scene];
  anchor: Anchor;
  qa: QA;
}

/**
 * One two-image SFT example: an exact edit pair with probability `editedShare` (default 1/2; else two
 * unrelated scenes, where every answer depends on the anchor), in random order; the anchor names either
 * image; half of an edit pair's questions ask about the edited fact, the rest are the single-image
 * mixture's kinds asked of the named image.
 */
export function twoImageExample(
  rand: () => number,
  o: { starYellow?: number | null; mixture?: readonly [QAKind, number][]; editedShare?: number; priorNoise?: number } = {},
): TwoImageExample {
  // the planted prior stays planted: no pair whose edit recolours a star (its contrast questions would teach
  // star colours from the image, which is what preference training is meant to do later)
  let sample = makePreferenceSample(seedFrom(rand), { starYellow: o.starYellow });
  while (
    sample.edit.type === 'attribute' &&
    sample.edit.before.objects.some((x) => x.id === sample.edit.changedIds[0] && x.shape === 'star')
  )
    sample = makePreferenceSample(seedFrom(rand), { starYellow: o.starYellow });
  const edited = rand() < (o.editedShare ?? 0.5);
  const pair: [Scene, Scene] = edited ? [sample.m, sample.mPrime] : [sample.m, randomScene(rand, { starYellow: o.starYellow })];
  const scenes: [Scene, Scene] = rand() < 0.5 ? pair : [pair[1], pair[0]];
  const anchor: Anchor = rand() < 0.5 ? 'first' : 'second';
  const target = scenes[anchor === 'first' ? 0 : 1];
  if (edited && rand() < 0.5) {
    const q = contrastQuestion(sample.edit, rand);
    const yes = answerOn(target, q)!;
    return { scenes, anchor, qa: { kind: q.kind, question: questionText(q), answer: yes ? 'Yes.' : 'No.' } };
  }
  for (;;) {
    let u = rand(),
      kind: QAKind = 'describe';
    for (const [k, w] of o.mixture ?? SFT_MIXTURE) {
      if (u < w) {
        kind = k;
        break;
      }
      u -= w;
    }
    const qa = randomQA(priorView(target, rand, o.priorNoise ?? 0), kind, rand);
    if (qa) return { scenes, anchor, qa };
  }
}

/** a benchmark item about one image of an edit pair: the anchor decides the answer */
export function twoImageItem(
  seed: number,
  i: number,
  starYellow = 0.95,
): { scenes: [Scene, Scene]; anchor: Anchor; target: Scene; question: string; answer: 'yes' | 'no' } {
  const type: EditType = EDIT_TYPES[i % EDIT_TYPES.length];
  const sample = makePreferenceSample(seed, { type, starYellow });
  // a stream of the item's own picks the question form (`seed` fixed the scenes)
  const q = contrastQuestion(sample.edit, rng(deriveSeed(seed, 1)));
  const yes = i % 2 === 0,
    firstIsTarget = Math.floor(i / 2) % 2 === 0;
  // the image where the answer is the wanted one is the target; the anchor points at it
  const target = answerOn(sample.m, q) === yes ? sample.m : sample.mPrime;
  const other = target === sample.m ? sample.mPrime : sample.m;
  return {
    scenes: firstIsTarget ? [target, other] : [other, target],
    anchor: firstIsTarget ? 'first' : 'second',
    target,
    question: questionText(q),
    answer: yes ? 'yes' : 'no',
  };
}
