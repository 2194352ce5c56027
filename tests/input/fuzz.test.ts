/**
 * Property-based fuzzing of every reader of user files (fast-check, fixed seed, bounded runs): safetensors
 * headers, PEFT adapter configs, JSONL rows and PNG bytes, corrupted at random. Properties:
 *  - never a raw TypeError or RangeError (or any error that is not one of the loaders' own, naming the file);
 *  - an input corrupted in a way that breaks it is always refused (PNG: any changed byte; JSONL: a broken
 *    row; adapters: a config that contradicts its tensors), so no command exits 0 on it;
 *  - the command line never changes the file it reads.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makePreferenceSample } from '../../src/data/edits.js';
import { DataFormatError, parsePreferenceJsonl } from '../../src/data/formats.js';
import { decodePng, encodePng } from '../../src/data/png.js';
import { render } from '../../src/data/raster.js';
import { randomScene, rng } from '../../src/data/world.js';
import { matchAdapter } from '../../src/model/adapter-check.js';
import { checkConfig } from '../../src/model/families/index.js';
import { SafetensorsSource } from '../../src/model/files.js';
import { readAdapter } from '../../src/model/peft.js';
import { CheckpointError, decodeTensor, parseSafetensorsHeader, writeSafetensors } from '../../src/model/safetensors.js';
import { main } from '../../src/node/cli.js';
import { DEFAULT_MODEL_DIR } from '../../src/node/model-dir.js';

const SEED = 20261207;
const opts = (numRuns: number) => ({ seed: SEED, numRuns });

/** what a loader may throw: its own error types, never a raw TypeError / RangeError / SyntaxError */
function expectOwnError(f: () => unknown, types: Array<new (...a: never[]) => Error>, file: string): 'ok' | 'refused' {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (!types.some((t) => e instanceof t) || e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError)
      throw new Error(`a raw ${(e as Error).name} escaped: ${(e as Error).message}`, { cause: e });
    expect((e as Error).message).toContain(file);
    return 'refused';
  }
}

const spec = checkConfig(JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8')), 'config.json');

describe('fuzz: safetensors headers', () => {
  const tensors = {
    'model.a': { dtype: 'F32' as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
    'model.b': { dtype: 'F32' as const, shape: [4], data: Float32Array.from([1, 2, 3, 4]) },
  };
  const good = writeSafetensors(tensors);
  const hlen = Number(new DataView(good.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(good.subarray(8, 8 + hlen))) as Record<string, Record<string, unknown>>;
  const body = good.subarray(8 + hlen);
  const file = (h: unknown) => {
    const json = new TextEncoder().encode(JSON.stringify(h));
    const out = new Uint8Array(8 + json.length + body.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    out.set(body, 8 + json.length);
    return out;
  };
  const read = (bytes: Uint8Array) => {
    const h = parseSafetensorsHeader(bytes, 'fuzz.safetensors', bytes.byteLength);
    for (const e of Object.values(h.entries))
      decodeTensor(e, bytes.subarray(h.dataStart + e.data_offsets[0], h.dataStart + e.data_offsets[1]));
    return h;
  };

  it("random values in any field of any entry: the reader's own error or a consistent header", () => {
    fc.assert(
      fc.property(
        fc.constantFrom('model.a', 'model.b', '__metadata__'),
        fc.constantFrom('dtype', 'shape', 'data_offsets', null),
        fc.oneof(
          fc.anything(),
          fc.array(fc.integer({ min: -10, max: 100 }), { maxLength: 3 }),
          fc.constantFrom('F16', 'I64', 'F8'),
        ),
        (name, field, value) => {
          const h = structuredClone(header);
          if (field === null) h[name] = value as Record<string, unknown>;
          else h[name] = { ...(h[name] as object), [field]: value };
          if (expectOwnError(() => read(file(h)), [CheckpointError], 'fuzz.safetensors') === 'ok') {
            // accepted only if every tensor still covers exactly its bytes
            const parsed = read(file(h));
            for (const e of Object.values(parsed.entries)) expect(e.data_offsets[1]).toBeLessThanOrEqual(body.length);
          }
        },
      ),
      opts(300),
    );
  });

  it("truncated or byte-flipped headers: the reader's own error", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 + hlen - 1 }), fc.integer({ min: 1, max: 255 }), fc.boolean(), (at, x, cut) => {
        const b = good.slice(0, cut ? at : good.length);
        if (!cut) b[at] ^= x;
        expectOwnError(() => read(b), [CheckpointError], 'fuzz.safetensors');
      }),
      opts(300),
    );
  });
});

describe('fuzz: PEFT adapters', () => {
  const H = spec.text.hidden,
    Q = spec.text.heads * spec.text.headDim;
  const q = (l: number) => `model.text_model.layers.${l}.self_attn.q_proj`;
  const weights = writeSafetensors(
    Object.fromEntries(
      [0, 1].flatMap((l) => [
        [
          `base_model.model.${q(l)}.lora_A.weight`,
          { dtype: 'F32' as const, shape: [4, H], data: new Float32Array(4 * H).fill(0.01) },
        ],
        [`base_model.model.${q(l)}.lora_B.weight`, { dtype: 'F32' as const, shape: [Q, 4], data: new Float32Array(Q * 4) }],
      ]),
    ),
  );
  const good = { peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'], layers_to_transform: [0, 1] };
  const load = (cfg: unknown) =>
    matchAdapter(
      spec,
      readAdapter(
        cfg as Record<string, unknown>,
        'a/adapter_config.json',
        new SafetensorsSource('a', [{ file: 'a/adapter_model.safetensors', bytes: weights }]),
      ),
    );

  it('the unchanged adapter loads', () => {
    expect([...load(good).modules.keys()]).toEqual([q(0), q(1)]);
  });

  it("random values in any config field: the loader's own error or a loaded adapter", () => {
    fc.assert(
      fc.property(
        fc.constantFrom('r', 'lora_alpha', 'target_modules', 'layers_to_transform', 'exclude_modules', 'rank_pattern', 'bias'),
        fc.anything(),
        (field, value) => {
          expectOwnError(() => load({ ...good, [field]: value }), [CheckpointError], 'a/adapter');
        },
      ),
      opts(300),
    );
  });

  it('configs that contradict the tensors are always refused', () => {
    const breaking = fc.oneof(
      fc.record({ r: fc.integer({ min: -3, max: 64 }).filter((r) => r !== 4) }),
      fc.record({ lora_alpha: fc.oneof(fc.constant(0), fc.integer({ min: -100, max: -1 }), fc.string()) }),
      fc.record({ target_modules: fc.constantFrom(['k_proj'], ['v_proj', 'o_proj'], '.*mlp.*', 'q_proj$x') }),
      fc.record({ layers_to_transform: fc.constantFrom([0], [1], [2, 3]) }),
      fc.record({ exclude_modules: fc.constantFrom(['q_proj'], '.*layers\\.1\\..*') }),
    );
    fc.assert(
      fc.property(breaking, (patch) => {
        expect(expectOwnError(() => load({ ...good, ...patch }), [CheckpointError], 'a/adapter')).toBe('refused');
      }),
      opts(200),
    );
  });
});

describe('fuzz: JSONL rows', () => {
  const s = makePreferenceSample(7);
  const row = {
    prompt: s.prompt,
    chosen: s.chosen,
    rejected: s.rejected,
    images: ['a.png', 'b.png'],
    chosen_response_spans: s.chosenSpans,
    rejected_response_spans: s.rejectedSpans,
  };
  const fields = Object.keys(row) as (keyof typeof row)[];

  it('a required field deleted or given a value of another type: refused with its line number', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...fields),
        fc.oneof(fc.constant(undefined), fc.integer(), fc.boolean(), fc.constant(null), fc.dictionary(fc.string(), fc.integer())),
        fc.integer({ min: 0, max: 3 }),
        (field, value, before) => {
          if (value === null && field.endsWith('_spans')) return; // null spans are [] in the official loader
          const bad = { ...row, [field]: value };
          const lines = [...Array(before).fill(JSON.stringify(row)), JSON.stringify(bad)];
          expect(() => parsePreferenceJsonl(lines.join('\n'), 'set.jsonl')).toThrow(
            new RegExp(`^set\\.jsonl line ${before + 1}: `),
          );
        },
      ),
      opts(300),
    );
  });

  it("cut lines, random text and spans past the answer: the reader's own error", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 1, max: 60 }).map((n) => JSON.stringify(row).slice(0, n)),
          fc.string(),
          fc
            .integer({ min: 1, max: 20 })
            .map((d) => JSON.stringify({ ...row, chosen_response_spans: [[0, s.chosen.length + d]] })),
        ),
        (line) => {
          expect(expectOwnError(() => parsePreferenceJsonl(line, 'set.jsonl'), [DataFormatError], 'set.jsonl')).toBe('refused');
        },
      ),
      opts(300),
    );
  });
});

describe('fuzz: PNG bytes', () => {
  const png = encodePng(render(randomScene(rng(3))));
  it('any changed byte or a cut anywhere is refused (chunk CRCs), with the file named', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: png.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.boolean(), (at, x, cut) => {
        const b = cut ? png.slice(0, at) : png.slice();
        if (!cut) b[at] ^= x;
        expect(expectOwnError(() => decodePng(b, 'x.png'), [Error], 'x.png')).toBe('refused');
      }),
      opts(400),
    );
  });
});

describe('fuzz: the command line on corrupted files', () => {
  it('never exits 0 on a corrupted input and never changes it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vco-fuzz-'));
    const s = makePreferenceSample(3);
    const png = encodePng(render(s.m));
    const cases = fc.sample(
      fc.record({ kind: fc.constantFrom('jsonl', 'png', 'adapter'), at: fc.nat(), x: fc.integer({ min: 1, max: 255 }) }),
      { seed: SEED, numRuns: 9 },
    );
    for (const [i, c] of cases.entries()) {
      let args: string[], file: string;
      if (c.kind === 'png') {
        file = join(dir, `${i}.png`);
        const b = png.slice();
        b[c.at % b.length] ^= c.x;
        writeFileSync(file, b);
        args = ['margins', '--image-m', file, '--image-mprime', file, '--question', 'Q?', '--chosen', 'a', '--rejected', 'b'];
      } else if (c.kind === 'jsonl') {
        file = join(dir, `${i}.jsonl`);
        const line = JSON.stringify({ prompt: s.prompt, chosen: s.chosen, rejected: s.rejected, images: ['x.png', 'y.png'] });
        writeFileSync(file, line.slice(0, c.at % line.length));
        args = ['data', 'check', file];
      } else {
        const a = join(dir, `adapter${i}`);
        mkdirSync(a);
        file = join(a, 'adapter_config.json');
        writeFileSync(file, JSON.stringify({ peft_type: 'LORA', r: 1 + (c.at % 7), lora_alpha: 8, target_modules: ['q_proj'] }));
        // rank-4 tensors against a config whose r is anything but 4, or tensors of another model
        const H = spec.text.hidden + (c.at % 7 === 3 ? 1 : 0);
        writeFileSync(
          join(a, 'adapter_model.safetensors'),
          writeSafetensors({
            'base_model.model.model.text_model.layers.0.self_attn.q_proj.lora_A.weight': {
              dtype: 'F32',
              shape: [4, H],
              data: new Float32Array(4 * H),
            },
            'base_model.model.model.text_model.layers.0.self_attn.q_proj.lora_B.weight': {
              dtype: 'F32',
              shape: [spec.text.hidden, 4],
              data: new Float32Array(spec.text.hidden * 4),
            },
          }),
        );
        args = ['eval', '--adapter', a, '--n', '1'];
      }
      const before = readdirSync(dir, { recursive: true })
        .map(String)
        .filter((f) => statSync(join(dir, f)).isFile())
        .map((f) => [f, readFileSync(join(dir, f))] as const);
      let err = '';
      const code = await main(
        args,
        () => {},
        (x) => (err += x),
      );
      expect(code, `${c.kind}: ${err}`).not.toBe(0);
      expect(err).not.toMatch(/TypeError|RangeError|Cannot read properties/);
      for (const [f, bytes] of before) expect(readFileSync(join(dir, f))).toEqual(bytes);
    }
  }, 60_000);
});
