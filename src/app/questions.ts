/**
 * Yes/no questions about a ShapesWorld scene for the playground, in the benchmark's forms, each with the
 * scene graph's answer: every object's existence, one absent object, each unique shape's colour (true and
 * false), one relation, and, when the scene has a non-yellow star, the prior trap "Is the star yellow?".
 */
import { COLORS, type Scene, randomScene, rng } from '../data/world.js';

export interface PanelQuestion {
  category: 'existence' | 'attribute' | 'relation' | 'trap';
  question: string;
  truth: 'yes' | 'no';
}

export function sceneQuestions(scene: Scene): PanelQuestion[] {
  const out: PanelQuestion[] = [];
  const objs = scene.objects;
  for (const o of objs)
    out.push({ category: 'existence', question: `Is there a ${o.color} ${o.shape} in the image?`, truth: 'yes' });
  const present = new Set(objs.map((o) => `${o.color} ${o.shape}`));
  const absent = objs.flatMap((o) => COLORS.map((c) => `${c} ${o.shape}`)).find((x) => !present.has(x));
  if (absent) out.push({ category: 'existence', question: `Is there a ${absent} in the image?`, truth: 'no' });
  for (const o of objs) {
    if (objs.filter((x) => x.shape === o.shape).length !== 1) continue;
    const trap = o.shape === 'star' && o.color !== 'yellow';
    out.push({ category: trap ? 'trap' : 'attribute', question: `Is the ${o.shape} ${o.color}?`, truth: 'yes' });
    const other = trap ? 'yellow' : COLORS.find((c) => c !== o.color)!;
    out.push({ category: trap ? 'trap' : 'attribute', question: `Is the ${o.shape} ${other}?`, truth: 'no' });
  }
  const [a, b] = [...objs].sort((x, y) => x.id - y.id);
  if (a && b) {
    const rel = a.col !== b.col ? (a.col < b.col ? 'left of' : 'right of') : a.row < b.row ? 'above' : 'below';
    const flip: Record<string, string> = { 'left of': 'right of', 'right of': 'left of', above: 'below', below: 'above' };
    out.push({ category: 'relation', question: `Is the ${a.color} ${a.shape} ${rel} the ${b.color} ${b.shape}?`, truth: 'yes' });
    out.push({
      category: 'relation',
      question: `Is the ${a.color} ${a.shape} ${flip[rel]} the ${b.color} ${b.shape}?`,
      truth: 'no',
    });
  }
  return out;
}

/** the playground's scene for a seed: the training distribution, or (trap) one with a star that is not yellow */
export function sceneFor(seed: number, trap: boolean): Scene {
  const rand = rng(seed);
  for (;;) {
    const sc = randomScene(rand, { starYellow: trap ? 0 : 0.95 });
    if (!trap || sc.objects.some((o) => o.shape === 'star')) return sc;
  }
}
