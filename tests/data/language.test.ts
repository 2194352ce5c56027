import { describe as suite, expect, it } from 'vitest';
import {
  type QAKind,
  OPPOSITE,
  VOCABULARY,
  describe,
  hallucinate,
  priorView,
  randomQA,
  relationOf,
  sftExample,
  words,
} from '../../src/data/language.js';
import { type Scene, type SceneObject, randomScene, rng, validateScene } from '../../src/data/world.js';
import { ANCHOR_SUFFIX } from '../../src/model/prompts.js';
import { oracle } from './truth.js';

const obj = (
  id: number,
  size: SceneObject['size'],
  color: SceneObject['color'],
  shape: SceneObject['shape'],
  row: number,
  col: number,
): SceneObject => ({ id, size, color, shape, row, col });
const scene = (...objects: SceneObject[]): Scene => ({ objects, background: 0, style: 0 });
const KINDS: QAKind[] = ['describe', 'existence', 'attribute', 'color', 'count', 'relation', 'where'];

suite('descriptions', () => {
  it('writes the canonical template', () => {
    expect(
      describe(
        scene(
          obj(0, 'large', 'red', 'circle', 0, 0),
          obj(1, 'small', 'blue', 'star', 0, 2),
          obj(2, 'small', 'green', 'square', 1, 1),
        ),
      ),
    ).toBe(
      'The image shows a large red circle, a small blue star and a small green square. The red circle is left of the blue star.',
    );
    expect(describe(scene(obj(0, 'small', 'yellow', 'triangle', 2, 3)))).toBe('The image shows a small yellow triangle.');
    // reading order is row-major; the relation is about the two lowest ids, vertical when they share a column
    expect(describe(scene(obj(3, 'large', 'purple', 'star', 3, 1), obj(1, 'small', 'red', 'square', 1, 1)))).toBe(
      'The image shows a small red square and a large purple star. The red square is above the purple star.',
    );
    expect(
      describe(
        scene(
          obj(0, 'large', 'purple', 'star', 3, 1),
          obj(1, 'small', 'red', 'square', 1, 1),
          obj(2, 'small', 'red', 'circle', 0, 0),
          obj(3, 'large', 'green', 'circle', 0, 3),
        ),
      ),
    ).toBe(
      'The image shows a small red circle, a large green circle, a small red square and a large purple star. The purple star is below the red square.',
    );
    expect(describe(scene(obj(5, 'large', 'blue', 'circle', 2, 3), obj(2, 'small', 'blue', 'square', 0, 0)))).toBe(
      'The image shows a small blue square and a large blue circle. The blue square is left of the blue circle.',
    );
  });

  it('tokenizes by the stated rule', () => {
    expect(words('The red circle is left of the Blue star.')).toEqual([
      'the',
      'red',
      'circle',
      'is',
      'left',
      'of',
      'the',
      'blue',
      'star',
      '.',
    ]);
    expect(words('Is it?!  A, b')).toEqual(['is', 'it', '?!', 'a', ',', 'b']);
  });

  it('keeps every generated text inside a small VOCABULARY', () => {
    expect(VOCABULARY.length).toBeLessThan(100);
    expect(new Set(VOCABULARY).size).toBe(VOCABULARY.length);
    for (const w of VOCABULARY) expect(words(w)).toEqual([w]);
    const vocab = new Set(VOCABULARY),
      seen = new Set<string>(),
      outside: string[] = [];
    const check = (t: string) => {
      for (const w of words(t)) {
        if (!vocab.has(w)) outside.push(`"${w}" in "${t}"`);
        seen.add(w);
      }
    };
    const rand = rng(5);
    for (let i = 0; i < 1500; i++) {
      const s = randomScene(rand, { starYellow: null });
      check(describe(s));
      check(hallucinate(s, rand, 2).text);
      for (const k of KINDS) {
        const qa = randomQA(s, k, rand);
        if (qa) {
          check(qa.question);
          check(qa.answer);
        }
      }
    }
    // the two-image prompts' anchor instruction
    for (const a of Object.values(ANCHOR_SUFFIX)) check(a);
    expect(outside).toEqual([]);
    // nothing in the vocabulary is dead weight ("four" also counts four objects of one shape: below)
    expect(VOCABULARY.filter((w) => !seen.has(w))).toEqual([]);
    const circles = scene(...(['red', 'green', 'blue', 'yellow'] as const).map((c, i) => obj(i, 'small', c, 'circle', i, 0)));
    const qa = [1, 2, 3, 4, 5, 6, 7, 8]
      .map((k) => randomQA(circles, 'count', rng(k))!)
      .find((x) => x.question.includes('circles'))!;
    expect(qa.answer).toBe('There are four circles.');
  });
});

suite('questions', () => {
  it('answers faithfully, checked by an independent oracle', () => {
    const rand = rng(11);
    for (let i = 0; i < 3000; i++) {
      const { scene: s, qa } = sftExample(rand, { starYellow: null });
      validateScene(s);
      if (qa.kind === 'describe') {
        expect(qa.question).toBe('Describe the image.');
        expect(qa.answer).toBe(describe(s));
        continue;
      }
      expect(qa.answer).toBe(oracle(s, qa.question));
    }
  });

  it('follows the kind mixture and balances yes/no', () => {
    const rand = rng(12),
      kinds: Record<string, number> = {};
    let yes = 0,
      yn = 0,
      negExist = 0,
      hardNeg = 0;
    const N = 6000;
    for (let i = 0; i < N; i++) {
      const { scene: s, qa } = sftExample(rand);
      kinds[qa.kind] = (kinds[qa.kind] ?? 0) + 1;
      if (qa.answer === 'Yes.' || qa.answer === 'No.') {
        yn++;
        if (qa.answer === 'Yes.') yes++;
      }
      if (qa.kind === 'existence' && qa.answer === 'No.') {
        negExist++;
        const [, c, sh] = qa.question.match(/^Is there a (\w+) (\w+)/)!;
        if (s.objects.some((o) => o.color === c || o.shape === sh)) hardNeg++;
      }
    }
    const want: Record<string, number> = {
      describe: 0.25,
      existence: 0.25,
      attribute: 0.15,
      color: 0.1,
      count: 0.1,
      relation: 0.15,
    };
    for (const [k, p] of Object.entries(want)) expect(Math.abs(kinds[k] / N - p)).toBeLessThan(0.025);
    expect(Math.abs(yes / yn - 0.5)).toBeLessThan(0.04);
    expect(hardNeg / negExist).toBeGreaterThan(0.5);
  });

  it('plants the prior in the text: priorView calls a lone non-yellow star yellow with probability noise, and changes nothing else', () => {
    const rand = rng(11);
    const red = scene(obj(0, 'small', 'red', 'star', 0, 0), obj(1, 'large', 'blue', 'circle', 2, 1));
    const N = 4000;
    let called = 0;
    for (let i = 0; i < N; i++) {
      const v = priorView(red, rand, 0.5);
      if (v === red) continue;
      called++;
      expect(v.objects.map((o) => (o.shape === 'star' ? { ...o, color: 'red' } : o))).toEqual(red.objects);
      expect(v.objects[0].color).toBe('yellow');
    }
    expect(Math.abs(called / N - 0.5)).toBeLessThan(0.03);
    expect(red.objects[0].color).toBe('red');
    // no draw at noise 0 (the other streams stay as they were); scenes with a yellow star or none are kept
    const r0 = rng(3),
      r1 = rng(3);
    expect(priorView(red, r0, 0)).toBe(red);
    expect(r0()).toBe(r1());
    const yellow = scene(obj(0, 'small', 'yellow', 'star', 0, 0), obj(1, 'small', 'red', 'star', 1, 1));
    expect(priorView(yellow, rand, 1)).toBe(yellow);
    const none = scene(obj(0, 'small', 'red', 'circle', 0, 0));
    expect(priorView(none, rand, 1)).toBe(none);
  });

  it('refuses kinds a scene cannot support', () => {
    const rand = rng(1);
    const twoPairs = scene(obj(0, 'small', 'red', 'circle', 0, 0), obj(1, 'small', 'blue', 'circle', 0, 1));
    expect(randomQA(twoPairs, 'attribute', rand)).toBeNull();
    expect(randomQA(twoPairs, 'color', rand)).toBeNull();
    expect(randomQA(scene(obj(0, 'small', 'red', 'circle', 0, 0)), 'relation', rand)).toBeNull();
    expect(randomQA(scene(obj(0, 'small', 'red', 'circle', 0, 0)), 'count', rng(2))?.answer).toMatch(
      /^There (are no \w+s|is one circle)\.$/,
    );
  });
});

suite('hallucinations', () => {
  it('states only false details, each true in the perturbed graph', () => {
    const rand = rng(21);
    let starToYellow = 0,
      nonYellowStarRecolours = 0;
    for (let i = 0; i < 1500; i++) {
      const s = randomScene(rand, { starYellow: 0.5 });
      const h = hallucinate(s, rand, 1 + (i % 2));
      validateScene(h.scene);
      expect(h.text).toBe(describe(h.scene));
      expect(h.text).not.toBe(describe(s));
      expect(h.details.length).toBe(1 + (i % 2));
      for (const d of h.details) {
        if (d.type === 'existence') {
          expect(s.objects.some((o) => o.color === d.object.color && o.shape === d.object.shape)).toBe(false);
          expect(h.scene.objects).toContainEqual(d.object);
        } else if (d.type === 'attribute') {
          const o = s.objects.find((x) => x.id === d.id)!;
          expect(o.color).toBe(d.from);
          expect(d.to).not.toBe(d.from);
          expect(h.scene.objects.find((x) => x.id === d.id)!.color).toBe(d.to);
          const yellowFree = !s.objects.some((x) => x.shape === 'star' && x.color === 'yellow');
          if (h.details.length === 1 && o.shape === 'star' && yellowFree) {
            nonYellowStarRecolours++;
            if (d.to === 'yellow') starToYellow++;
          }
        } else {
          const a = s.objects.find((x) => x.id === d.a)!,
            b = s.objects.find((x) => x.id === d.b)!;
          expect(relationOf(a, b)).toBe(OPPOSITE[d.rel]);
        }
      }
    }
    expect(nonYellowStarRecolours).toBeGreaterThan(50);
    expect(starToYellow).toBe(nonYellowStarRecolours);
  });
});
