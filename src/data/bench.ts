/**
 * The ShapesWorld hallucination benchmark: yes/no questions (POPE/AMBER style) on existence, attribute and
 * relation, a "trap" subset where the planted language prior (stars are yellow) and the image disagree, and
 * a "two-image" subset: an exact edit pair shown together, the question with the anchor instruction, about
 * the fact the edit changed, so only a model that reads the anchor answers it right.
 * Scenes come from a seed space of their own (top bit set) so they are not the training streams' scenes.
 */
import { attributeQuestion, existenceQuestion, randomQA } from './language.js';
import { type Anchor, twoImageItem } from './two-image.js';
import { type Scene, deriveSeed, randomScene, rng } from './world.js';

export type BenchCategory = 'existence' | 'attribute' | 'relation' | 'trap' | 'two-image';
export const BENCH_CATEGORIES: readonly BenchCategory[] = ['existence', 'attribute', 'relation', 'trap', 'two-image'];

export interface BenchItem {
  id: string;
  category: BenchCategory;
  /** the image the question is about (for two-image items, the one the anchor names) */
  scene: Scene;
  /** two-image items: both images in prompt order, and the anchor */
  pair?: { scenes: [Scene, Scene]; anchor: Anchor };
  question: string;
  answer: 'yes' | 'no';
}

/** benchmark item seeds have the top bit set; the training generators use seeds below 2^31 */
export const benchSeed = (seed: number, category: number, i: number): number =>
  (deriveSeed(deriveSeed(seed, category), i) | 0x80000000) >>> 0;

function trapItem(rand: () => number, i: number): Pick<BenchItem, 'scene' | 'question' | 'answer'> {
  for (;;) {
    const scene = randomScene(rand, { starYellow: 0 });
    const stars = scene.objects.filter((o) => o.shape === 'star');
    if (stars.length !== 1) continue;
    const c = stars[0].color;
    const forms: [string, 'yes' | 'no'][] = [
      [attributeQuestion('star', c), 'yes'],
      [attributeQuestion('star', 'yellow'), 'no'],
      [existenceQuestion(c, 'star'), 'yes'],
      [existenceQuestion('yellow', 'star'), 'no'],
    ];
    const [question, answer] = forms[i % 4];
    return { scene, question, answer };
  }
}

export function benchmarkSet(opts: { perCategory?: number; seed?: number } = {}): BenchItem[] {
  const per = opts.perCategory ?? 200,
    seed = opts.seed ?? 1000003;
  const items: BenchItem[] = [];
  BENCH_CATEGORIES.forEach((category, ci) => {
    for (let i = 0; i < per; i++) {
      const rand = rng(benchSeed(seed, ci, i)),
        yes = i % 2 === 0;
      if (category === 'trap') {
        items.push({ id: `${category}-${i}`, category, ...trapItem(rand, i) });
        continue;
      }
      if (category === 'two-image') {
        const t = twoImageItem(benchSeed(seed, ci, i), i);
        items.push({
          id: `${category}-${i}`,
          category,
          scene: t.target,
          pair: { scenes: t.scenes, anchor: t.anchor },
          question: t.question,
          answer: t.answer,
        });
        continue;
      }
      for (;;) {
        const scene = randomScene(rand, { starYellow: 0.95 });
        const qa = randomQA(scene, category, rand, yes);
        if (!qa) continue;
        items.push({
          id: `${category}-${i}`,
          category,
          scene,
          question: qa.question,
          answer: qa.answer === 'Yes.' ? 'yes' : 'no',
        });
        break;
      }
    }
  });
  return items;
}
