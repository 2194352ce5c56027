import { describe, expect, it } from 'vitest';
import { makePreferenceSample } from '../../src/data/edits.js';
import { DataFormatError, parsePreferenceJsonl, parseSftJsonl, preferenceRow, toJsonl } from '../../src/data/formats.js';

const good = () =>
  preferenceRow(makePreferenceSample(1, { scenario: 'B', type: 'attribute' }), ['images/a_m.png', 'images/a_mprime.png']);

/** the error for a file whose line 2 is `row` (line 1 is a good row, so the line number is checked) */
function errorOf(
  row: unknown,
  parse: (text: string, file: string) => unknown = parsePreferenceJsonl,
  first: object = good(),
): DataFormatError {
  const text = `${JSON.stringify(first)}\n${typeof row === 'string' ? row : JSON.stringify(row)}\n`;
  try {
    parse(text, 'prefs.jsonl');
  } catch (e) {
    expect(e).toBeInstanceOf(DataFormatError);
    return e as DataFormatError;
  }
  throw new Error('no error');
}

describe('IC-VCO JSONL formats', () => {
  it('writes the official preference fields and round-trips', () => {
    const s = makePreferenceSample(7),
      row = preferenceRow(s, ['images/x_m.png', 'images/x_mprime.png']);
    expect(row).toMatchObject({
      prompt: 'Describe the image.',
      chosen: s.chosen,
      rejected: s.rejected,
      images: ['images/x_m.png', 'images/x_mprime.png'],
      chosen_response_spans: s.chosenSpans,
      rejected_response_spans: s.rejectedSpans,
      id: s.id,
      edit: { scenario: s.edit.scenario, type: s.edit.type },
    });
    const rows = [row, preferenceRow(makePreferenceSample(8))];
    expect(parsePreferenceJsonl(`\n${toJsonl(rows)}\n\n`, 'p.jsonl')).toEqual(rows);
    expect(parsePreferenceJsonl(toJsonl(rows).replace(/\n/g, '\r\n'), 'p.jsonl')).toEqual(rows);
    // rows from elsewhere: no id/edit, extra fields kept
    const bare = {
      prompt: 'p',
      chosen: 'ab',
      rejected: 'cd',
      images: ['1.png', '2.png'],
      chosen_response_spans: [[0, 2]],
      rejected_response_spans: [],
      score: 3,
    };
    expect(parsePreferenceJsonl(JSON.stringify(bare), 'p.jsonl')).toEqual([bare]);
    const sft = [{ prompt: 'Is the star yellow?', completion: 'No.', images: ['images/s.png'] }];
    expect(parseSftJsonl(toJsonl(sft), 's.jsonl')).toEqual(sft);
  });

  it('names the file, line, field and fix for every malformed case', () => {
    const g = good(),
      len = g.chosen.length;
    const cases: [unknown, RegExp][] = [
      ['{"prompt": ', /line 2: not valid JSON .*fix the line or drop it/],
      [[1, 2], /line 2: expected a JSON object, got an array/],
      [{ ...g, prompt: undefined }, /line 2: field "prompt" is missing; add it/],
      [{ ...g, chosen: 5 }, /line 2: field "chosen" must be a string, got number/],
      [{ ...g, images: ['a.png'] }, /line 2: field "images" has 1 entries; a preference row needs exactly 2/],
      [{ ...g, images: 'a.png' }, /line 2: field "images" must be an array of paths, got string/],
      [{ ...g, images: ['a.png', 3] }, /line 2: field "images"\[1\] = 3 is not a path/],
      [{ ...g, images: undefined }, /line 2: field "images" is missing/],
      [
        {
          ...g,
          chosen_response_spans: [
            [0, 3],
            [30, 12],
          ],
        },
        new RegExp(
          `line 2: field "chosen_response_spans"\\[1\\] = \\[30, 12\\] is not a span 0 <= start < end <= ${len} of "chosen"; fix the span or drop the row`,
        ),
      ],
      [{ ...g, chosen_response_spans: [[0, len + 1]] }, /field "chosen_response_spans"\[0\] = \[0, \d+\] is not a span/],
      [
        { ...g, rejected_response_spans: [[1.5, 3]] },
        /field "rejected_response_spans"\[0\] = \[1.5, 3\] is not a span .* of "rejected"/,
      ],
      [{ ...g, rejected_response_spans: [[-1, 3]] }, /field "rejected_response_spans"\[0\] = \[-1, 3\]/],
      [{ ...g, rejected_response_spans: [[1, 2, 3]] }, /field "rejected_response_spans"\[0\] = \[1, 2, 3\]/],
      [{ ...g, rejected_response_spans: ['0-3'] }, /field "rejected_response_spans"\[0\] = "0-3"/],
      [
        { ...g, chosen_response_spans: { 0: 1 } },
        /field "chosen_response_spans" must be an array of \[start, end\] pairs, got object/,
      ],
      [{ ...g, rejected_response_spans: undefined }, /field "rejected_response_spans" is missing/],
      [{ ...g, id: 7 }, /field "id" must be a string/],
      [{ ...g, edit: 'A' }, /field "edit" must be an object/],
    ];
    for (const [row, re] of cases) {
      const e = errorOf(row);
      expect(e.message).toMatch(/^prefs\.jsonl line 2: /);
      expect(e.message).toMatch(re);
    }
    const sft = { prompt: 'q', completion: 'a', images: ['x.png'] };
    expect(errorOf({ ...sft, images: [] }, parseSftJsonl, sft).message).toMatch(
      /line 2: field "images" is empty; an SFT row needs at least 1 image/,
    );
    expect(errorOf({ ...sft, completion: undefined }, parseSftJsonl, sft).message).toMatch(
      /line 2: field "completion" is missing/,
    );
  });

  it('counts skipped empty lines in line numbers', () => {
    expect(() => parsePreferenceJsonl(`\n\n${JSON.stringify(good())}\n\nnot json\n`, 'x.jsonl')).toThrow(
      /^x\.jsonl line 5: not valid JSON/,
    );
    // a file with no rows is an error (issue 15: an empty set is not "0 rows OK")
    expect(() => parsePreferenceJsonl('\n  \n', 'x.jsonl')).toThrow(/^x\.jsonl holds no rows \(only blank lines\)/);
  });
});
