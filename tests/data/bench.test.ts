import { describe, expect, it } from 'vitest';
import { BENCH_CATEGORIES, benchSeed, benchmarkSet } from '../../src/data/bench.js';
import { validateScene } from '../../src/data/world.js';
import { oracle } from './truth.js';

describe('ShapesWorld benchmark', () => {
  const items = benchmarkSet();

  it('has 200 items per category, half yes, with unique ids, deterministically', () => {
    expect(items.length).toBe(1000);
    expect(new Set(items.map((x) => x.id)).size).toBe(1000);
    for (const c of BENCH_CATEGORIES) {
      const xs = items.filter((x) => x.category === c);
      expect(xs.length).toBe(200);
      expect(xs.filter((x) => x.answer === 'yes').length).toBe(100);
    }
    expect(benchmarkSet({ perCategory: 10 })).toEqual(benchmarkSet({ perCategory: 10 }));
    expect(benchmarkSet({ perCategory: 10, seed: 5 })).not.toEqual(benchmarkSet({ perCategory: 10 }));
  });

  it('answers truthfully in the stated question forms', () => {
    const forms = {
      existence: /^Is there a \w+ \w+ in the image\?$/,
      attribute: /^Is the \w+ \w+\?$/,
      relation: /^Is the \w+ \w+ (left of|right of|above|below) the \w+ \w+\?$/,
      trap: /^(Is the star \w+\?|Is there a \w+ star in the image\?)$/,
      'two-image':
        /^(Is there a \w+ \w+ in the image\?|Is the \w+ \w+\?|Is the \w+ \w+ (left of|right of|above|below) the \w+ \w+\?)$/,
    };
    for (const it of items) {
      validateScene(it.scene);
      expect(it.question).toMatch(forms[it.category]);
      expect(oracle(it.scene, it.question)).toBe(it.answer === 'yes' ? 'Yes.' : 'No.');
    }
  });

  it('trap scenes hold exactly one star and it is not yellow; all four forms, balanced', () => {
    const traps = items.filter((x) => x.category === 'trap'),
      forms = new Map<string, number>();
    for (const t of traps) {
      const stars = t.scene.objects.filter((o) => o.shape === 'star');
      expect(stars.length).toBe(1);
      expect(stars[0].color).not.toBe('yellow');
      if (t.question.includes('yellow')) expect(t.answer).toBe('no');
      else expect(t.question).toContain(stars[0].color);
      const form = `${t.question.startsWith('Is there') ? 'existence' : 'attribute'} ${t.question.includes('yellow') ? 'yellow' : 'own'} ${t.answer}`;
      forms.set(form, (forms.get(form) ?? 0) + 1);
    }
    expect(forms.size).toBe(4);
    for (const n of forms.values()) expect(n).toBe(50);
  });

  it('two-image items: an edit pair, the anchor names the scene asked about, and the other image answers the opposite', () => {
    const pairs = items.filter((x) => x.category === 'two-image');
    const count = (f: (x: (typeof pairs)[number]) => boolean) => pairs.filter(f).length;
    for (const t of pairs) {
      const [a, b] = t.pair!.scenes;
      validateScene(a);
      validateScene(b);
      expect(t.pair!.anchor === 'first' ? a : b).toBe(t.scene);
      const other = t.pair!.anchor === 'first' ? b : a;
      const want = t.answer === 'yes' ? 'Yes.' : 'No.';
      expect(oracle(t.scene, t.question)).toBe(want);
      expect(oracle(other, t.question)).toBe(want === 'Yes.' ? 'No.' : 'Yes.');
      // an exact edit: the same background and style, at most two objects differ
      expect([a.background, a.style]).toEqual([b.background, b.style]);
    }
    // balanced: anchors, answers, and the three question forms (existence, attribute, relation)
    expect(count((x) => x.pair!.anchor === 'first')).toBe(100);
    expect(count((x) => x.pair!.anchor === 'first' && x.answer === 'yes')).toBe(50);
    expect(count((x) => / (left of|right of|above|below) /.test(x.question))).toBeGreaterThan(50);
    expect(count((x) => x.question.startsWith('Is there'))).toBeGreaterThan(50);
  });

  it('draws its scenes from a seed space disjoint from the training generators', () => {
    for (let c = 0; c < 5; c++) for (let i = 0; i < 100; i++) expect(benchSeed(1000003, c, i)).toBeGreaterThanOrEqual(2 ** 31);
  });

  it('keeps the planted prior in non-trap scenes', () => {
    const stars = items
      .filter((x) => x.category !== 'trap' && x.category !== 'two-image')
      .flatMap((x) => x.scene.objects.filter((o) => o.shape === 'star'));
    expect(stars.filter((o) => o.color === 'yellow').length / stars.length).toBeGreaterThan(0.85);
  });
});
