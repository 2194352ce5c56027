/** POPE-style metrics by hand, and the benchmark's answer tokens as the default tokenizer writes them. */
import { describe, expect, it } from 'vitest';
import { benchmarkMetrics, categoryMetrics, yesNoTokens } from '../../src/eval/yesno.js';
import { defaultModelData } from '../../src/train/pretrain.js';

describe('yes/no metrics', () => {
  it('accuracy, F1 of "yes" and yes-ratio match a hand count', () => {
    // truth:  y y y n n n n n ; said: y y n y n n n y  -> tp 2, fn 1, fp 2, tn 3
    const truth = ['yes', 'yes', 'yes', 'no', 'no', 'no', 'no', 'no'] as const;
    const said = [true, true, false, true, false, false, false, true];
    const m = categoryMetrics([...truth], said);
    expect(m.accuracy).toBeCloseTo(5 / 8, 12);
    expect(m.f1).toBeCloseTo((2 * 2) / (2 * 2 + 2 + 1), 12);
    expect(m.yes_ratio).toBeCloseTo(4 / 8, 12);
    expect(m.n).toBe(8);
    // an answerer that never says yes has F1 0 and yes-ratio 0
    expect(
      categoryMetrics(
        [...truth],
        truth.map(() => false),
      ),
    ).toMatchObject({ f1: 0, yes_ratio: 0, accuracy: 5 / 8 });
  });

  it('groups by category in first-seen order and reads a positive margin as "yes"', () => {
    const img = { width: 1, height: 1, data: new Uint8Array(3) };
    const items = [
      { category: 'trap', image: img, question: 'q', answer: 'no' as const },
      { category: 'existence', image: img, question: 'q', answer: 'yes' as const },
      { category: 'trap', image: img, question: 'q', answer: 'yes' as const },
    ];
    const r = benchmarkMetrics('m', items, [0.3, -2, 1e-3]);
    expect(Object.keys(r.categories)).toEqual(['trap', 'existence']);
    expect(r.categories.trap).toMatchObject({ accuracy: 0.5, yes_ratio: 1, n: 2 });
    expect(r.categories.existence).toMatchObject({ accuracy: 0, yes_ratio: 0, n: 1 });
  });

  it('scores the first token of "Yes." and "No." (the words yes/no in the default vocabulary)', () => {
    const d = defaultModelData();
    const t = yesNoTokens({ tokenizer: d.tokenizer });
    expect(d.tokenizer.decode([t.yes])).toBe('yes');
    expect(d.tokenizer.decode([t.no])).toBe('no');
  });
});
