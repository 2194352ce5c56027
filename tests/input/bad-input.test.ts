/**
 * Bad input never passes silently: each kind of broken file or wrong option the issue lists gives a clear
 * error (the file, the field or tensor, the fix) and a non-zero exit, and nothing is reported as a result.
 * The inputs are real files in temporary folders, run through the real loaders and the real `vco-lab` command.
 */
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodePng, decodePng } from '../../src/data/png.js';
import { render } from '../../src/data/raster.js';
import { randomScene, rng } from '../../src/data/world.js';
import { Engine } from '../../src/engine/engine.js';
import { evaluate } from '../../src/loss/objective.js';
import { resolveObjective } from '../../src/loss/registry.js';
import { modelDataFromFiles } from '../../src/model/data.js';
import { parseSafetensorsHeader, writeSafetensors } from '../../src/model/safetensors.js';
import { loadCheckpointDir, readCheckpointFiles } from '../../src/node/load-dir.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from '../../src/node/model-dir.js';
import { createNodeRuntime } from '../../src/runtime/node.js';
import { checkConfig } from '../../src/model/families/index.js';
import { cli } from '../helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'vco-bad-'));
const config = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
const spec = checkConfig(config, 'config.json');
const H = spec.text.hidden;

/** a copy of the default model folder, with `edit` applied to model.safetensors' bytes */
function modelCopy(edit?: (bytes: Uint8Array) => void): string {
  const dir = tmp();
  for (const f of readdirSync(DEFAULT_MODEL_DIR)) copyFileSync(join(DEFAULT_MODEL_DIR, f), join(dir, f));
  if (edit) {
    const b = new Uint8Array(readFileSync(join(dir, 'model.safetensors')));
    edit(b);
    writeFileSync(join(dir, 'model.safetensors'), b);
  }
  return dir;
}

/** set float32 element `i` of tensor `name` in safetensors bytes */
function setFloat(bytes: Uint8Array, name: string, i: number, v: number): void {
  const h = parseSafetensorsHeader(bytes, 'm', bytes.byteLength);
  const e = h.entries[name];
  new DataView(bytes.buffer, bytes.byteOffset).setFloat32(h.dataStart + e.data_offsets[0] + 4 * i, v, true);
}

/** a PEFT folder: adapter_config.json + adapter_model.safetensors with A [r, in] and B [out, r] per module */
function adapterDir(cfg: Record<string, unknown>, modules: Record<string, { A: number[]; B: number[] }>): string {
  const dir = tmp();
  const tensors: Parameters<typeof writeSafetensors>[0] = {};
  for (const [m, { A, B }] of Object.entries(modules)) {
    const r = rng(m.length);
    for (const [ab, shape] of [
      ['A', A],
      ['B', B],
    ] as const)
      tensors[`base_model.model.${m}.lora_${ab}.weight`] = {
        dtype: 'F32',
        shape,
        data: Float32Array.from({ length: shape[0] * shape[1] }, () => (r() - 0.5) * 0.1),
      };
  }
  writeFileSync(join(dir, 'adapter_model.safetensors'), writeSafetensors(tensors));
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, ...cfg }));
  return dir;
}

const q = (l: number) => `model.text_model.layers.${l}.self_attn.q_proj`;
const qShape = (r: number) => ({ A: [r, H], B: [spec.text.heads * spec.text.headDim, r] });

describe('model files', () => {
  it('a NaN in one weight: eval refuses the model, naming the tensor (exit 1, no accuracies)', async () => {
    const dir = modelCopy((b) => setFloat(b, 'model.text_model.norm.weight', 3, NaN));
    const r = await cli(['eval', '--model', dir, '--n', '2']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /model\.safetensors: tensor "model\.text_model\.norm\.weight" holds 1 non-finite value \(the first, NaN, at index 3\)/,
    );
    expect(r.out).toBe('');
  });

  it('an overflow in the forward pass: eval stops at the first non-finite margin instead of counting it as "no"', async () => {
    // finite weights, so the loader takes them; the final norm scales every hidden state past float32's range
    const dir = modelCopy((b) => {
      for (let i = 0; i < H; i++) setFloat(b, 'model.text_model.norm.weight', i, 3e38);
    });
    const r = await cli(['eval', '--model', dir, '--n', '2']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/question 0 \(existence: "[^"]+"\): log p\("Yes"\) - log p\("No"\) is NaN .* no accuracy is reported/);
    expect(r.out).toBe('');
  });

  it('safetensors headers: an entry without shape, negative or overlapping data_offsets, a bad dtype', () => {
    const good = writeSafetensors({
      a: { dtype: 'F32', shape: [2], data: new Float32Array(2) },
      b: { dtype: 'F32', shape: [3], data: new Float32Array(3) },
    });
    const n = Number(new DataView(good.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(good.subarray(8, 8 + n)));
    const withHeader = (h: unknown) => {
      const json = new TextEncoder().encode(JSON.stringify(h));
      const out = new Uint8Array(8 + json.length + 20);
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(json, 8);
      return out;
    };
    const cases: [unknown, RegExp][] = [
      [
        { ...header, a: { dtype: 'F32', data_offsets: [0, 8] } },
        /f\.safetensors: tensor "a" has shape undefined, not a list of sizes/,
      ],
      [{ ...header, a: { ...header.a, data_offsets: [-8, 0] } }, /tensor "a" has data_offsets \[-8,0\], not \[begin, end\]/],
      [
        { ...header, b: { ...header.b, data_offsets: [4, 16] } },
        /tensor "b" starts at byte 4 of the data, where the tensors before it end at 8/,
      ],
      [{ ...header, a: { ...header.a, dtype: 'F8' } }, /tensor "a" has dtype "F8", not one of F64, F32/],
      [{ ...header, a: 7 }, /tensor "a" is not an object/],
      [[1, 2], /header is not a JSON object of tensors/],
    ];
    for (const [h, msg] of cases) expect(() => parseSafetensorsHeader(withHeader(h), 'f.safetensors', 1e6)).toThrow(msg);
  });

  it('a chat template that does not parse names its file at load', () => {
    const files = readCheckpointFiles(DEFAULT_MODEL_DIR);
    files.set('chat_template.jinja', new TextEncoder().encode('{% for m in messages %}{{ m.content }'));
    expect(() => modelDataFromFiles(files, 'my-model')).toThrow(
      /^my-model\/chat_template\.jinja: the chat template does not parse \(.*\); fix its Jinja syntax$/,
    );
  });

  it('a token id outside the vocabulary is refused before any graph runs', async () => {
    const rt = await createNodeRuntime('cpu');
    const e = await Engine.create(rt, spec, loadCheckpointDir(DEFAULT_MODEL_DIR));
    await expect(e.scoreRows([{ prompt: [1, 2, spec.text.vocab + 5], images: [], responses: [[3]] }], 'policy')).rejects.toThrow(
      new RegExp(`row 0: token id ${spec.text.vocab + 5} at position 2 of its prompt is outside the model's vocabulary`),
    );
    await e.release();
  });
});

describe('PEFT adapters', () => {
  const evalWith = (dir: string) => cli(['eval', '--adapter', dir, '--n', '2']);

  it('tensors for modules the model does not have (another layer count): refused, naming the tensor', async () => {
    const dir = adapterDir({ target_modules: ['q_proj'] }, { [q(0)]: qShape(4), [q(spec.text.layers + 5)]: qShape(4) });
    const r = await evalWith(dir);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      `adapter_model.safetensors: tensor "base_model.model.${q(spec.text.layers + 5)}.lora_A.weight" adapts ` +
        `${q(spec.text.layers + 5)}, which this model does not have (${spec.text.layers} language-model layers; ` +
        `its modules are named like ${q(spec.text.layers - 1)})`,
    );
    expect(r.out).toBe('');
  });

  it('a module name the model does not have', async () => {
    const dir = adapterDir({ target_modules: ['qkv'] }, { 'model.text_model.layers.0.self_attn.qkv': qShape(4) });
    expect((await evalWith(dir)).err).toMatch(
      /adapts model\.text_model\.layers\.0\.self_attn\.qkv, which this model does not have/,
    );
  });

  it('a tensor that target_modules does not name: PEFT would not apply it', async () => {
    const dir = adapterDir({ target_modules: ['v_proj'] }, { [q(0)]: qShape(4) });
    const r = await evalWith(dir);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /adapts model\.text_model\.layers\.0\.self_attn\.q_proj, which .*adapter_config\.json does not target \(target_modules \["v_proj"\]\)/,
    );
  });

  it("r in adapter_config.json against the tensors' rank", async () => {
    const dir = adapterDir({ target_modules: ['q_proj'], r: 8 }, { [q(0)]: qShape(4) });
    expect((await evalWith(dir)).err).toMatch(/lora_A\.weight" has rank 4, but .*adapter_config\.json says r = 8/);
  });

  it('LoRA tensors of the wrong size: the loader names the tensor and the expected shape', async () => {
    const dir = adapterDir({ target_modules: ['q_proj'] }, { [q(0)]: { A: [4, H + 3], B: [H, 4] } });
    expect((await evalWith(dir)).err).toMatch(
      new RegExp(
        `tensor "base_model\\.model\\.${q(0).replace(/\./g, '\\.')}\\.lora_A\\.weight" has shape \\[4,${H + 3}\\], expected \\[4, ${H}\\]`,
      ),
    );
  });

  it('bad config values: r, lora_alpha, target_modules', async () => {
    for (const [cfg, msg] of [
      [{ r: 0 }, /field "r" is 0; the rank must be a positive integer/],
      [{ lora_alpha: 'eight' }, /field "lora_alpha" is "eight"; it must be a positive number/],
      [{ target_modules: 5 }, /field "target_modules" is 5; it must be a regex string or a list/],
      [{ target_modules: '(q_proj' }, /field "target_modules" holds "\(q_proj", not a valid regular expression/],
    ] as const) {
      const r = await evalWith(adapterDir({ target_modules: ['q_proj'], ...cfg }, { [q(0)]: qShape(4) }));
      expect(r.code).toBe(1);
      expect(r.err).toMatch(msg);
    }
  });

  it('targeted modules without tensors are reported; the adapter still loads', async () => {
    const rt = await createNodeRuntime('cpu');
    const dir = adapterDir({ target_modules: ['q_proj'] }, { [q(0)]: qShape(4) });
    const m = await loadModelDir(rt, DEFAULT_MODEL_DIR, dir);
    expect(m.engine.adapterNotes.join('\n')).toMatch(
      new RegExp(`\\d+ module\\(s\\) that .*adapter_config\\.json targets have no LoRA tensors \\(e\\.g\\. `),
    );
    await m.engine.release();
    const r = await evalWith(dir);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/note: .* have no LoRA tensors/);
  });
});

describe('options and data files', () => {
  it('eval --seed abc, --n 0, --device tpu: exit 2 with the option and what it takes', async () => {
    for (const [args, msg] of [
      [['--seed', 'abc'], /--seed takes an integer ≥ 0 and ≤ 2147483647, got "abc"/],
      [['--n', '0'], /--n takes an integer ≥ 1, got "0"/],
      [['--device', 'tpu'], /--device takes one of cpu, webgpu, cuda, wasm, got "tpu"/],
      [['--bogus'], /Unknown option '--bogus'/],
    ] as const) {
      const r = await cli(['eval', ...args]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(msg);
    }
  });

  it('train-default --lr=-1 and --star-yellow 2 are refused before any training', async () => {
    expect((await cli(['train-default', '--lr=-1', '--out', tmp()])).err).toMatch(/--lr takes a number > 0 and ≤ 1, got "-1"/);
    expect((await cli(['train-default', '--star-yellow', '2', '--out', tmp()])).code).toBe(2);
  });

  it('an empty JSONL file is an error, not "0 rows OK"', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'empty.jsonl'), '');
    writeFileSync(join(dir, 'blank.jsonl'), '\n\n  \n');
    const a = await cli(['data', 'check', join(dir, 'empty.jsonl')]);
    expect(a.code).toBe(1);
    expect(a.err).toMatch(/empty\.jsonl holds no rows \(it is empty\)/);
    expect((await cli(['data', 'check', join(dir, 'blank.jsonl')])).err).toMatch(/holds no rows \(only blank lines\)/);
  });

  it('a PNG with a damaged chunk is rejected with the file named, not decoded into wrong pixels', () => {
    const png = encodePng(render(randomScene(rng(1))));
    const bad = png.slice();
    bad[bad.length - 20] ^= 0x10; // inside the image data
    expect(() => decodePng(bad, 'scene.png')).toThrow(/^scene\.png: not a readable PNG \(.*crc.*\)/i);
  });

  it('the loss module refuses non-finite scores, naming the sample and the sequence', () => {
    const { objective, config: c } = resolveObjective('dpo', {});
    const s = { 'm|y': -3, "m|y'": -4, "m'|y": -5, "m'|y'": -2 };
    expect(() => evaluate(objective, c, [{ policy: { ...s, 'm|y': NaN }, reference: s, swap: false }])).toThrow(
      /sample 0: policy score "m\|y" is NaN/,
    );
  });
});
