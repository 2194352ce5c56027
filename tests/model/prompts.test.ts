import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { modelDataFromFiles } from '../../src/model/data.js';
import { checkConfig } from '../../src/model/families/index.js';
import { type Idefics3Spec as Idefics3Config, idefics3ImageText, idefics3Processor } from '../../src/model/families/idefics3.js';
import {
  ANCHOR_SUFFIX,
  IMAGE_SEQ_KEYS,
  diffMasks,
  encodeResponse,
  expandImagePlaceholders,
  multiImageMessages,
  preferenceSequences,
  promptIds,
  responseSpanMask,
  singleImageMessages,
  spanMask,
  type ImageSeqKey,
} from '../../src/model/prompts.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { LLAVA_INTERLEAVE_TEMPLATE, SMOLVLM_TEMPLATE, bpeTokenizer, wordLevelTokenizer } from './helpers.js';

const REF = '../shared/reference';
const caseJson = (name: string) => JSON.parse(readFileSync(`${REF}/${name}/case.json`, 'utf8'));
const refVocab = (): Record<string, number> =>
  JSON.parse(readFileSync(`${REF}/idefics3-public/model/tokenizer.json`, 'utf8')).model.vocab;

/**
 * The reference cases' word-level vocabulary, with its special words as added tokens and a chat template that
 * writes refgen.py's prompt layout: [User:] images question [<end_of_utterance>, \n, Assistant:].
 */
function refTokenizer() {
  const tj = wordLevelTokenizer(refVocab(), [
    '<image>',
    '<fake_token_around_image>',
    '<global-img>',
    '<end_of_utterance>',
    'User:',
    'Assistant:',
    '\n',
  ]);
  const template =
    "User:{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}{% endfor %}<end_of_utterance>\n{% if add_generation_prompt %}Assistant:{% endif %}";
  return loadTokenizer({
    'tokenizer.json': tj,
    'tokenizer_config.json': { eos_token: '<end_of_utterance>', chat_template: template },
  });
}

describe('token masks', () => {
  const tok = refTokenizer();

  it('span masks: a token counts iff its range is non-empty and overlaps a span strictly; EOS never', () => {
    const r = encodeResponse(tok, 'the circle is red .');
    expect(r.offsets).toEqual([
      [0, 3],
      [4, 10],
      [11, 13],
      [14, 17],
      [18, 19],
    ]);
    expect(r.ids.at(-1)).toBe(tok.eosId);
    expect(responseSpanMask(r, [[14, 17]])).toEqual([0, 0, 0, 1, 0, 0]); // "red"
    expect(responseSpanMask(r, [[13, 14]])).toEqual([0, 0, 0, 0, 0, 0]); // the space: "is" ends at 13, "red" starts at 14
    expect(responseSpanMask(r, [[12, 15]])).toEqual([0, 0, 1, 1, 0, 0]); // "s r": the tail of "is" and the head of "red"
    expect(responseSpanMask(r, [[0, 19]])).toEqual([1, 1, 1, 1, 1, 0]); // everything but EOS
    expect(
      responseSpanMask(r, [
        [4, 5],
        [18, 30],
      ]),
    ).toEqual([0, 1, 0, 0, 1, 0]);
    expect(responseSpanMask(r, [])).toEqual([0, 0, 0, 0, 0, 0]);
    expect(responseSpanMask(r, null)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(
      spanMask(
        [
          [5, 5],
          [5, 6],
        ],
        [[0, 10]],
      ),
    ).toEqual([0, 1]); // an empty range never counts
  });

  it('byte-level offsets own the leading space (Qwen2: no trim_offsets), SmolLM2-style trimming does not', () => {
    for (const [style, want] of [
      ['qwen2', 1],
      ['smollm', 0],
    ] as const) {
      const t = loadTokenizer({ 'tokenizer.json': bpeTokenizer(style), 'tokenizer_config.json': { eos_token: '<|im_end|>' } });
      const r = encodeResponse(t, 'The circle is red.');
      const red = r.offsets.findIndex(([a, b]) => 'The circle is red.'.slice(a, b).trim() === 'red');
      expect(red, style).toBeGreaterThan(0);
      // the span of the space before "red"
      expect(responseSpanMask(r, [[13, 14]])[red], style).toBe(want);
      expect(responseSpanMask(r, [[14, 17]])[red], style).toBe(1);
    }
  });

  it('token-diff masks follow refgen.py and equal case.json score_mask for every single-branch sequence', () => {
    expect(diffMasks([1, 2, 3, 9], [1, 2, 4, 9])).toEqual([
      [0, 0, 1, 0],
      [0, 0, 1, 0],
    ]);
    expect(diffMasks([1, 2, 9], [1, 2, 3, 9])).toEqual([
      [0, 0, 0],
      [0, 0, 1, 0],
    ]); // the longer one's extra tokens count
    expect(diffMasks([5, 9], [6, 7, 8, 9])).toEqual([
      [1, 0],
      [1, 1, 1, 0],
    ]);
    for (const name of ['idefics3-public', 'llava-public', 'idefics3-public-visionlora', 'llava-public-visionlora']) {
      const c = caseJson(name);
      c.samples.forEach((s: { chosen: string; rejected: string }, k: number) => {
        const y = encodeResponse(tok, s.chosen),
          y2 = encodeResponse(tok, s.rejected);
        const [my, my2] = diffMasks(y.ids, y2.ids);
        for (const seq of c.sequences.filter(
          (r: { sample: number; branch: string }) => r.sample === k && r.branch === 'single',
        )) {
          const resp = seq.input_ids.slice(seq.response_start);
          const mask = JSON.stringify(resp) === JSON.stringify(y.ids) ? my : my2;
          expect(mask, `${name} sample ${k}`).toEqual(seq.score_mask);
        }
      });
    }
  });
});

describe('prompt construction', () => {
  it('reproduces every sequence of the reference cases (ids, response_start, images, masks) from the sample text', () => {
    const tok = refTokenizer();
    // refgen's anchor wording for its word-level vocabulary (the official strings are the default)
    const anchors = { first: ' answer based on the first image .', second: ' answer based on the second image .' };
    for (const name of ['idefics3-public', 'llava-public', 'idefics3-public-visionlora', 'llava-public-visionlora']) {
      const c = caseJson(name);
      const cfg = checkConfig(JSON.parse(readFileSync(`${REF}/${name}/model/config.json`, 'utf8')));
      expect(cfg.tokensPerImage).toBe(c.tokens_per_image);
      const text = cfg.family === 'idefics3' ? idefics3ImageText(0, 0, cfg.tokensPerImage) : '<image>'.repeat(cfg.tokensPerImage);
      const seqs = c.samples.map((s: { question: string; chosen: string; rejected: string; swap: boolean }) =>
        preferenceSequences(
          { question: s.question, chosen: s.chosen, rejected: s.rejected, swap: s.swap },
          { tokenizer: tok, imageText: { m: text, "m'": text }, anchors },
        ),
      );
      for (const r of c.sequences) {
        const chosen = r.role === 'chosen';
        const key = ((r.branch === 'multi' ? 'M>' : '') +
          (r.direction === 1 ? (chosen ? 'm|y' : "m|y'") : chosen ? "m'|y'" : "m'|y")) as ImageSeqKey;
        const got = seqs[r.sample][key];
        const at = `${name} sample ${r.sample} ${key}`;
        expect(got.inputIds, at).toEqual(r.input_ids);
        expect(got.responseStart, at).toBe(r.response_start);
        expect(
          got.images.map((i: string) => (i === 'm' ? 'm' : 'm_contrast')),
          at,
        ).toEqual(r.images);
        expect(r.branch === 'single' ? got.spanMask : got.fullMask, at).toEqual(r.score_mask);
      }
    }
  });

  const tj = bpeTokenizer('qwen2');
  const llavaTok = loadTokenizer({
    'tokenizer.json': tj,
    'tokenizer_config.json': { eos_token: '<|im_end|>' },
    'chat_template.json': { chat_template: LLAVA_INTERLEAVE_TEMPLATE },
  });
  const q = 'What color is the circle?';

  it('LLaVA-interleave: the official strings, images before the text, placeholders expanded in order', () => {
    const N = 729;
    const single = promptIds(llavaTok, singleImageMessages(q), ['<image>'.repeat(N)]);
    expect(single.text).toBe(`<|im_start|>user ${'<image>'.repeat(N)}\n${q}<|im_end|><|im_start|>assistant\n`);
    expect(single.ids.filter((x) => x === llavaTok.tokenToId('<image>'))).toHaveLength(N);
    const multi = promptIds(llavaTok, multiImageMessages(q, 'second'), ['<image>'.repeat(3), '<image>'.repeat(3)]);
    expect(multi.text).toBe(
      `<|im_start|>user ${'<image>'.repeat(6)}\n${q} Answer based on the second image.<|im_end|><|im_start|>assistant\n`,
    );
    expect(ANCHOR_SUFFIX).toEqual({ first: ' Answer based on the first image.', second: ' Answer based on the second image.' });
    expect(() => expandImagePlaceholders('<image>x', '<image>', ['a', 'b'])).toThrow(/1 "<image>" placeholders for 2 images/);
    expect(expandImagePlaceholders('a<image>b<image>c', '<image>', ['1', '2'])).toBe('a1b2c');
  });

  it('the 8 sequences of a sample: swap puts m second and targets it with the "second" anchor; spans give the single masks', () => {
    const sample = {
      question: q,
      chosen: 'The circle is red.',
      rejected: 'The circle is blue.',
      chosenSpans: [[14, 17]] as [number, number][],
      rejectedSpans: [[14, 18]] as [number, number][],
      swap: true,
    };
    const s = preferenceSequences(sample, {
      tokenizer: llavaTok,
      imageText: { m: '<image>'.repeat(2), "m'": '<image>'.repeat(2) },
    });
    expect(Object.keys(s)).toEqual([...IMAGE_SEQ_KEYS]);
    const text = (ids: number[]) => llavaTok.decode(ids);
    expect(s['M>m|y'].images).toEqual(["m'", 'm']);
    expect(s['M>m|y'].anchor).toBe('second');
    expect(s["M>m'|y"].anchor).toBe('first');
    expect(text(s['M>m|y'].promptIds)).toContain('Answer based on the second image.');
    expect(text(s["M>m'|y'"].promptIds)).toContain('Answer based on the first image.');
    expect(s['m|y'].images).toEqual(['m']);
    expect(s["m'|y"].images).toEqual(["m'"]);
    expect(s['m|y'].promptIds).toEqual(s["m|y'"].promptIds);
    expect(s['M>m|y'].promptIds).toEqual(s["M>m|y'"].promptIds);
    expect(text(s['m|y'].responseIds)).toBe('The circle is red.<|im_end|>');
    expect(s['m|y'].responseIds.at(-1)).toBe(llavaTok.eosId);
    expect(s['m|y'].inputIds).toEqual([...s['m|y'].promptIds, ...s['m|y'].responseIds]);
    expect(s['m|y'].responseStart).toBe(s['m|y'].promptIds.length);
    expect(s['m|y'].maskSource).toBe('spans');
    const red = s['m|y'],
      blue = s["m|y'"];
    const counted = (x: typeof red) => llavaTok.decode(x.responseIds.filter((_, i) => x.spanMask[i])).trim();
    expect(counted(red)).toBe('red');
    expect(counted(blue)).toBe('blue');
    expect(red.spanMask.at(-1)).toBe(0);
    expect(red.fullMask.every((x) => x === 1)).toBe(true);
    // the same responses in the other contexts carry the same masks
    expect(s["M>m'|y"].spanMask).toEqual(red.spanMask);
    // no spans: the token diff; an empty list: nothing counts (official)
    const d = preferenceSequences(
      { ...sample, chosenSpans: undefined, rejectedSpans: undefined },
      { tokenizer: llavaTok, imageText: { m: '<image>', "m'": '<image>' } },
    );
    expect(d['m|y'].maskSource).toBe('diff');
    expect(d['m|y'].spanMask).toEqual(diffMasks(d['m|y'].responseIds, d["m|y'"].responseIds)[0]);
    expect(counted(d['m|y'])).toMatch(/^red/); // positional: " blue" is two tokens here, so "." shifts and counts too
    const z = preferenceSequences(
      { ...sample, chosenSpans: [], rejectedSpans: [] },
      { tokenizer: llavaTok, imageText: { m: '<image>', "m'": '<image>' } },
    );
    expect(z['m|y'].spanMask.every((x) => x === 0)).toBe(true);
  });

  it('SmolVLM: the Idefics3 image text (split grid, rows, global image) goes where each <image> was', () => {
    const cfg = checkConfig({
      model_type: 'idefics3',
      scale_factor: 2,
      image_token_id: 9,
      vision_config: {
        hidden_size: 8,
        num_attention_heads: 2,
        intermediate_size: 16,
        num_hidden_layers: 1,
        image_size: 16,
        patch_size: 4,
      },
      text_config: {
        model_type: 'llama',
        hidden_size: 8,
        num_attention_heads: 2,
        intermediate_size: 16,
        num_hidden_layers: 1,
        vocab_size: 20,
      },
    }) as Idefics3Config;
    const proc = idefics3Processor(
      cfg,
      { size: { longest_edge: 32 }, max_image_size: { longest_edge: 16 } },
      { image_seq_len: 4 },
    );
    const wide = proc.process({ width: 30, height: 10, data: new Uint8Array(900) });
    const small = proc.process({ width: 16, height: 16, data: new Uint8Array(768) });
    expect([wide.rows, wide.cols, small.rows, small.cols]).toEqual([1, 2, 2, 2]);
    const tok = loadTokenizer({
      'tokenizer.json': bpeTokenizer('smollm'),
      'tokenizer_config.json': { eos_token: '<end_of_utterance>' },
      'chat_template.jinja': SMOLVLM_TEMPLATE,
    });
    const s = preferenceSequences(
      { question: q, chosen: 'red', rejected: 'blue', swap: false },
      { tokenizer: tok, imageText: { m: wide.text, "m'": small.text } },
    );
    const p = tok.decode(s['M>m|y'].promptIds);
    expect(p).toBe(
      `<|im_start|>User:${wide.text}${small.text}${q} Answer based on the first image.<end_of_utterance>\nAssistant:`,
    );
    const img = tok.tokenToId('<image>')!;
    expect(s['M>m|y'].promptIds.filter((x) => x === img)).toHaveLength(wide.imageTokens + small.imageTokens);
    expect(s["m'|y"].promptIds.filter((x) => x === img)).toHaveLength(small.imageTokens);
    expect(s["m'|y"].promptIds.filter((x) => x === tok.tokenToId('<row_2_col_2>'))).toHaveLength(1);
  });

  it("from a checkpoint's files (config, tokenizer, chat template, preprocessor): config, tokenizer and processor to sequences", () => {
    const enc = (x: unknown) => new TextEncoder().encode(typeof x === 'string' ? x : JSON.stringify(x));
    const files = new Map<string, Uint8Array>([
      [
        'config.json',
        enc({
          model_type: 'llava',
          image_token_index: 3,
          vision_feature_layer: -1,
          vision_feature_select_strategy: 'full',
          vision_config: {
            model_type: 'siglip_vision_model',
            hidden_size: 8,
            num_attention_heads: 2,
            intermediate_size: 16,
            num_hidden_layers: 1,
            image_size: 6,
            patch_size: 2,
          },
          text_config: {
            model_type: 'qwen2',
            hidden_size: 8,
            num_attention_heads: 2,
            intermediate_size: 16,
            num_hidden_layers: 1,
            vocab_size: 400,
          },
        }),
      ],
      ['tokenizer.json', enc(tj)],
      ['tokenizer_config.json', enc({ eos_token: '<|im_end|>' })],
      ['chat_template.json', enc({ chat_template: LLAVA_INTERLEAVE_TEMPLATE })],
      [
        'preprocessor_config.json',
        enc({
          image_processor_type: 'SiglipImageProcessor',
          size: { height: 6, width: 6 },
          resample: 3,
          image_mean: [0.5, 0.5, 0.5],
          image_std: [0.5, 0.5, 0.5],
          rescale_factor: 1 / 255,
        }),
      ],
      [
        'processor_config.json',
        enc({ patch_size: 2, vision_feature_select_strategy: 'full', processor_class: 'LlavaProcessor' }),
      ],
    ]);
    const d = modelDataFromFiles(files, 'ckpt');
    expect([d.config.family, d.placeholder, d.processor.kind]).toEqual(['llava', '<image>', 'siglip']);
    const img = d.processor.process({ width: 9, height: 7, data: new Uint8Array(9 * 7 * 4).fill(255) });
    expect([img.imageTokens, img.tiles[0].length]).toEqual([9, 3 * 36]);
    const s = preferenceSequences(
      { question: q, chosen: 'red', rejected: 'blue', swap: false },
      { tokenizer: d.tokenizer, imageText: { m: img.text, "m'": img.text } },
    );
    expect(s['M>m|y'].promptIds.filter((x) => x === d.tokenizer.tokenToId('<image>'))).toHaveLength(18);
    files.delete('preprocessor_config.json');
    expect(() => modelDataFromFiles(files, 'ckpt')).toThrow('ckpt/preprocessor_config.json is missing');
  });
});
