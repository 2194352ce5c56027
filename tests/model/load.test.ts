import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type TensorSource, checkTensorShape, checkTensors, expectTensor } from '../../src/model/checkpoint.js';
import { checkConfig } from '../../src/model/families/index.js';
import { checkpointFromFiles } from '../../src/model/files.js';
import { loadCheckpointFromFiles, loadCheckpointFromUrl } from '../../src/model/load-web.js';
import {
  MANIFESTS,
  hubBaseUrl,
  hubFileUrl,
  manifestById,
  manifestSize,
  parseManifest,
  webLoadOptions,
} from '../../src/model/manifests.js';
import { CheckpointError, writeSafetensors } from '../../src/model/safetensors.js';
import { loadCheckpointDir, readCheckpointFiles } from '../../src/node/load-dir.js';
import { SMOLVLM_256M_CONFIG, serveFiles, type TestServer } from './helpers.js';

type T = { dtype: 'F32'; shape: number[]; data: Float32Array };
const t = (shape: number[], seed: number): T => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'F32', shape, data: Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7 + i)) };
};

/** a tiny SmolVLM-shaped checkpoint: a few tensors with the real names, small shapes */
const TENSORS: Record<string, T> = {
  'model.text_model.embed_tokens.weight': t([60, 48], 1),
  'model.text_model.norm.weight': t([48], 2),
  'model.vision_model.post_layernorm.weight': t([32], 3),
  'model.connector.modality_projection.proj.weight': t([48, 128], 4),
  'lm_head.weight': t([60, 48], 5),
};
const CONFIG = JSON.stringify({
  ...SMOLVLM_256M_CONFIG,
  text_config: {
    ...SMOLVLM_256M_CONFIG.text_config,
    vocab_size: 60,
    hidden_size: 48,
    head_dim: 12,
    num_attention_heads: 4,
    num_key_value_heads: 2,
  },
});
const SINGLE = writeSafetensors(TENSORS);
const names = Object.keys(TENSORS);
const SHARD1 = writeSafetensors(Object.fromEntries(names.slice(0, 2).map((n) => [n, TENSORS[n]])));
const SHARD2 = writeSafetensors(Object.fromEntries(names.slice(2).map((n) => [n, TENSORS[n]])));
const S1 = 'model-00001-of-00002.safetensors',
  S2 = 'model-00002-of-00002.safetensors';
const INDEX = JSON.stringify({
  metadata: { total_size: 0 },
  weight_map: Object.fromEntries(names.map((n, i) => [n, i < 2 ? S1 : S2])),
});
const TOKENIZER = JSON.stringify({ model: { type: 'WordLevel', vocab: { a: 0 } } });

function expectSameTensors(src: TensorSource) {
  for (const [n, v] of Object.entries(TENSORS)) {
    const got = src.get(n);
    expect(got.shape).toEqual(v.shape);
    expect(Array.from(got.data as Float32Array)).toEqual(Array.from(v.data));
  }
}

describe('the shared core and the Node folder loader', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vco-load-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('single file and shards give the same tensors; aux files are read when present', () => {
    const single = join(dir, 'single'),
      sharded = join(dir, 'sharded');
    for (const [d, files] of [
      [single, { 'config.json': CONFIG, 'model.safetensors': SINGLE, 'tokenizer.json': TOKENIZER }],
      [sharded, { 'config.json': CONFIG, 'model.safetensors.index.json': INDEX, [S1]: SHARD1, [S2]: SHARD2 }],
    ] as const) {
      rmSync(d, { recursive: true, force: true });
      mkdirSync(d);
      for (const [n, b] of Object.entries(files)) writeFileSync(join(d, n), b);
    }
    const a = loadCheckpointDir(single),
      b = loadCheckpointDir(sharded);
    expectSameTensors(a.tensors);
    expectSameTensors(b.tensors);
    expect(b.tensors.fileOf('lm_head.weight')).toBe(join(sharded, S2));
    expect(checkConfig(a.config).text.hidden).toBe(48);
    expect([...readCheckpointFiles(single).keys()].sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
  });

  it('expectTensor / checkTensors: errors name the file, the tensor and the expected shape', () => {
    const ck = checkpointFromFiles(
      'ckpt',
      new Map([
        ['config.json', new TextEncoder().encode(CONFIG)],
        ['model.safetensors', SINGLE],
      ]),
    );
    expect(expectTensor(ck.tensors, 'model.text_model.norm.weight', [48]).shape).toEqual([48]);
    expect(() => expectTensor(ck.tensors, 'model.text_model.norm.weight', [64])).toThrow(
      'ckpt/model.safetensors: tensor "model.text_model.norm.weight" has shape [48], expected [64]',
    );
    expect(() => expectTensor(ck.tensors, 'lm_head.weight', [48, 60])).toThrow(
      'tensor "lm_head.weight" has shape [60, 48], expected [48, 60]',
    );
    expect(() => checkTensorShape(ck.tensors, 'model.text_model.layers.0.self_attn.q_proj.weight', [48, 48])).toThrow(
      'ckpt: tensor "model.text_model.layers.0.self_attn.q_proj.weight" (expected shape [48, 48]) is missing from the checkpoint',
    );
    expect(() =>
      checkTensors(ck.tensors, [
        { name: 'lm_head.weight', shape: [60, 48] },
        { name: 'x', shape: [1] },
        { name: 'model.text_model.norm.weight', shape: [2] },
      ]),
    ).toThrow(
      /2 tensors do not match:\n.*"x" \(expected shape \[1\]\) is missing.*\n.*"model.text_model.norm.weight" has shape \[48\], expected \[2\]/,
    );
    expect(() => ck.tensors.get('nope')).toThrow(CheckpointError);
  });

  it('malformed checkpoints: truncated file, unknown model_type, missing weights, shard that lacks an indexed tensor', () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    const files = (o: Record<string, Uint8Array>) => new Map(Object.entries(o));
    expect(() =>
      checkpointFromFiles(
        'c',
        files({ 'config.json': enc(CONFIG), 'model.safetensors': SINGLE.subarray(0, SINGLE.length - 10) }),
      ),
    ).toThrow(/c\/model.safetensors: truncated: its header describes \d+ bytes, the file has \d+/);
    expect(() =>
      checkpointFromFiles('c', files({ 'config.json': enc(CONFIG), 'model.safetensors': SINGLE.subarray(0, 20) })),
    ).toThrow(/c\/model.safetensors: truncated inside its header/);
    expect(() => checkpointFromFiles('c', files({ 'config.json': enc(CONFIG) }))).toThrow(
      'c: neither model.safetensors nor model.safetensors.index.json is there',
    );
    expect(() => checkpointFromFiles('c', files({ 'model.safetensors': SINGLE }))).toThrow('c/config.json not found');
    expect(() => checkpointFromFiles('c', files({ 'config.json': enc('{oops'), 'model.safetensors': SINGLE }))).toThrow(
      /c\/config.json is not valid JSON/,
    );
    const ck = checkpointFromFiles(
      'c',
      files({ 'config.json': enc(JSON.stringify({ ...JSON.parse(CONFIG), model_type: 'mllama' })), 'model.safetensors': SINGLE }),
    );
    expect(() => checkConfig(ck.config, 'c/config.json')).toThrow('c/config.json: model_type "mllama" is not supported');
    const badIndex = JSON.stringify({ weight_map: { ...JSON.parse(INDEX).weight_map, 'model.extra.weight': S1 } });
    expect(() =>
      checkpointFromFiles(
        'c',
        files({ 'config.json': enc(CONFIG), 'model.safetensors.index.json': enc(badIndex), [S1]: SHARD1, [S2]: SHARD2 }),
      ),
    ).toThrow(
      `c/${S1}: tensor "model.extra.weight" is listed for this file by c/model.safetensors.index.json but the file does not hold it`,
    );
    expect(() =>
      checkpointFromFiles('c', files({ 'config.json': enc(CONFIG), 'model.safetensors.index.json': enc(INDEX), [S1]: SHARD1 })),
    ).toThrow(`c/${S2} not found (listed by c/model.safetensors.index.json)`);
    expect(() =>
      checkpointFromFiles(
        'c',
        files({ 'config.json': enc(CONFIG), 'model.safetensors.index.json': enc('{"weight_map": {"a": "../x"}}') }),
      ),
    ).toThrow(/shard name "..\/x" is not a plain file name/);
  });
});

describe('load-web: fetch from a local HTTP server (127.0.0.1)', () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('single file: tensors, extra files (404s skipped), progress events up to the total', async () => {
    server = await serveFiles(
      { 'config.json': CONFIG, 'model.safetensors': SINGLE, 'tokenizer.json': TOKENIZER },
      { chunk: 512, paced: true },
    );
    const events: [number, number, string][] = [];
    const r = await loadCheckpointFromUrl(`${server.url}/`, { onProgress: (l, tot, f) => events.push([l, tot, f]) });
    expectSameTensors(r.checkpoint.tensors);
    expect([...r.files.keys()].sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    expect(r.checkpoint.tensors.fileOf('lm_head.weight')).toBe(`${server.url}/model.safetensors`);
    const total = CONFIG.length + SINGLE.byteLength + TOKENIZER.length;
    const last = events.at(-1)!;
    expect([last[0], last[1]]).toEqual([total, total]);
    expect(events.filter(([, , f]) => f.endsWith('model.safetensors')).length).toBeGreaterThan(2);
    for (let i = 1; i < events.length; i++) expect(events[i][0]).toBeGreaterThan(events[i - 1][0]);
    for (const [l, tot] of events) expect(l).toBeLessThanOrEqual(tot);
    // once the weights' headers are in, the total is final
    const firstWeights = events.findIndex(([, , f]) => f.endsWith('model.safetensors'));
    expect(events[firstWeights][1]).toBe(total);
    expect(new Set(events.map(([, , f]) => f.slice(server!.url.length + 1)))).toEqual(
      new Set(['config.json', 'model.safetensors', 'tokenizer.json']),
    );
    expect(server.requests).toEqual(
      expect.arrayContaining(['/model.safetensors.index.json', '/preprocessor_config.json', '/chat_template.jinja']),
    );
  });

  it('sharded: index, then both shards', async () => {
    server = await serveFiles({ 'config.json': CONFIG, 'model.safetensors.index.json': INDEX, [S1]: SHARD1, [S2]: SHARD2 });
    let last = [0, 0];
    // a size hint for a file that turns out not to be read (the single-file layout, a 404) leaves the total
    const r = await loadCheckpointFromUrl(server.url, {
      extraFiles: ['tokenizer.json'],
      sizes: { 'model.safetensors': 1e9, 'tokenizer.json': 5e6 },
      onProgress: (l, tot) => {
        last = [l, tot];
      },
    });
    expectSameTensors(r.checkpoint.tensors);
    expect(r.checkpoint.tensors.fileOf('lm_head.weight')).toBe(`${server.url}/${S2}`);
    expect(last).toEqual(Array(2).fill(CONFIG.length + INDEX.length + SHARD1.byteLength + SHARD2.byteLength));
    expect(server.requests).not.toContain('/model.safetensors');
  });

  it('errors name the URL: missing config, missing shard, truncated file, unknown model_type', async () => {
    server = await serveFiles({ 'model.safetensors': SINGLE });
    await expect(loadCheckpointFromUrl(server.url)).rejects.toThrow(`${server.url}/config.json: HTTP 404`);
    await server.close();
    server = await serveFiles({ 'config.json': CONFIG, 'model.safetensors.index.json': INDEX, [S1]: SHARD1 });
    await expect(loadCheckpointFromUrl(server.url)).rejects.toThrow(`${server.url}/${S2}: HTTP 404`);
    await server.close();
    server = await serveFiles({ 'config.json': CONFIG, 'model.safetensors': SINGLE.subarray(0, SINGLE.byteLength - 50) });
    await expect(loadCheckpointFromUrl(server.url)).rejects.toThrow(
      new RegExp(`${server.url}/model.safetensors: truncated: its header describes`),
    );
    await server.close();
    server = await serveFiles({ 'config.json': JSON.stringify({ model_type: 'qwen2_vl' }), 'model.safetensors': SINGLE });
    const r = await loadCheckpointFromUrl(server.url);
    expect(() => checkConfig(r.checkpoint.config, `${server!.url}/config.json`)).toThrow(
      `${server.url}/config.json: model_type "qwen2_vl" is not supported`,
    );
  });

  it('a download cut short (fewer bytes than Content-Length) is an error naming the file', async () => {
    server = await serveFiles(
      { 'config.json': CONFIG },
      {
        routes: [
          (req, res) => {
            if (!req.url?.endsWith('/model.safetensors')) return false;
            res.writeHead(200, { 'content-length': String(SINGLE.byteLength) });
            res.write(SINGLE.subarray(0, 100), () => res.destroy());
            return true;
          },
        ],
      },
    );
    await expect(loadCheckpointFromUrl(server.url, { extraFiles: [] })).rejects.toThrow(
      /model.safetensors: (download failed after \d+|truncated download: received \d+) of \d+ bytes/,
    );
  });

  it('abort stops a download in flight', async () => {
    server = await serveFiles(
      { 'config.json': CONFIG },
      {
        routes: [
          (req, res) => {
            if (!req.url?.endsWith('/model.safetensors')) return false;
            res.writeHead(200, { 'content-length': String(SINGLE.byteLength) });
            res.write(SINGLE.subarray(0, 100)); // and never more
            return true;
          },
        ],
      },
    );
    const ctl = new AbortController();
    const p = loadCheckpointFromUrl(server.url, {
      signal: ctl.signal,
      extraFiles: [],
      onProgress: (_l, _t, f) => {
        if (f.endsWith('model.safetensors')) ctl.abort(new Error('user cancelled'));
      },
    });
    await expect(p).rejects.toThrow('user cancelled');
    const ctl2 = new AbortController();
    ctl2.abort();
    await expect(loadCheckpointFromUrl(server.url, { signal: ctl2.signal })).rejects.toThrow(/abort/i);
  });

  it('a manifest drives the load from a Hub-shaped server (resolve/<revision>/<file>)', async () => {
    const m = manifestById('HuggingFaceTB/SmolVLM-256M-Instruct');
    const files: Record<string, string | Uint8Array> = {};
    for (const [n, b] of Object.entries({ 'config.json': CONFIG, 'model.safetensors': SINGLE, 'tokenizer.json': TOKENIZER }))
      files[`${m.repo}/resolve/main/${n}`] = b;
    server = await serveFiles(files);
    const r = await loadCheckpointFromUrl(hubBaseUrl(m, server.url), webLoadOptions(m, { hub: server.url }));
    expectSameTensors(r.checkpoint.tensors);
    expect(r.files.has('tokenizer.json')).toBe(true);
    expect(server.requests).toContain(`/${m.repo}/resolve/main/processor_config.json`);
  });
});

describe('load-web: dropped files', () => {
  it('reads File objects by name with progress; shards too', async () => {
    const f = (name: string, b: Uint8Array | string) => new File([b as BlobPart], name);
    const events: number[] = [];
    const r = await loadCheckpointFromFiles(
      [f('config.json', CONFIG), f('model.safetensors', SINGLE), f('tokenizer.json', TOKENIZER), f('notes.txt', 'x')],
      {
        onProgress: (l, tot) => events.push(l / tot),
      },
    );
    expectSameTensors(r.checkpoint.tensors);
    expect([...r.files.keys()].sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    expect(events.at(-1)).toBe(1);
    const s = await loadCheckpointFromFiles([
      f('config.json', CONFIG),
      f('model.safetensors.index.json', INDEX),
      f(S1, SHARD1),
      f(S2, SHARD2),
    ]);
    expectSameTensors(s.checkpoint.tensors);
    await expect(
      loadCheckpointFromFiles([f('config.json', CONFIG), f('model.safetensors.index.json', INDEX), f(S1, SHARD1)]),
    ).rejects.toThrow(`${S2} not found among the dropped files`);
    await expect(loadCheckpointFromFiles([f('model.safetensors', SINGLE)])).rejects.toThrow(
      'config.json not found among the dropped files',
    );
    await expect(
      loadCheckpointFromFiles([f('config.json', CONFIG), f('model.safetensors', SINGLE.subarray(0, 300))]),
    ).rejects.toThrow(/model.safetensors: truncated/);
  });
});

describe('manifests', () => {
  it('all parse, name their repo and files, and give Hub URLs', () => {
    expect(MANIFESTS.map((m) => m.repo)).toEqual([
      'HuggingFaceTB/SmolVLM-256M-Instruct',
      'HuggingFaceTB/SmolVLM-500M-Instruct',
      'llava-hf/llava-interleave-qwen-0.5b-hf',
    ]);
    const m = manifestById('smolvlm-256m-instruct');
    expect(hubFileUrl(m, 'config.json')).toBe(
      'https://huggingface.co/HuggingFaceTB/SmolVLM-256M-Instruct/resolve/main/config.json',
    );
    expect(hubFileUrl({ repo: 'a/b', revision: 'refs/pr/1' }, 'x.json')).toBe(
      'https://huggingface.co/a/b/resolve/refs%2Fpr%2F1/x.json',
    );
    const o = webLoadOptions(m);
    expect(o.urlOf!('tokenizer.json')).toBe(
      'https://huggingface.co/HuggingFaceTB/SmolVLM-256M-Instruct/resolve/main/tokenizer.json',
    );
    expect(o.extraFiles).toEqual(
      expect.arrayContaining(['tokenizer.json', 'preprocessor_config.json', 'processor_config.json', 'chat_template.json']),
    );
    expect(manifestSize(m)).toMatchObject({ approximate: true });
    expect(manifestSize(m).bytes).toBeGreaterThan(5e8);
    for (const x of MANIFESTS) {
      expect(x.files.find((f) => f.name === 'model.safetensors')?.required).toBe(true);
      expect(x.config).toHaveProperty('text');
    }
    expect(manifestById('llava-interleave-qwen-0.5b').config).toMatchObject({ tokensPerImage: 729, imageTokenId: 151646 });
    expect(() => manifestById('nope')).toThrow(/no manifest "nope"/);
    expect(() => parseManifest({ ...m, repo: 'no-slash' }, 'm.json')).toThrow(
      'm.json: field "repo" (no-slash) is not owner/name',
    );
    expect(() =>
      parseManifest({ ...m, files: [{ name: 'config.json', required: true, bytes: null, size: 'approx' }] }, 'm.json'),
    ).toThrow(/bytes is null exactly when size is "unknown"/);
  });
});
