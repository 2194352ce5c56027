/**
 * Test material made in the tests: tokenizer.json files (word-level, byte-level BPE trained on a tiny corpus
 * in the styles of Qwen2 and SmolLM2), chat templates as the checkpoints store them, and a bounded local HTTP
 * server for load-web.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { byteLevelChars } from '../../src/model/tokenizer.js';

type Json = Record<string, unknown>;

/** the chat template of llava-hf's llava-interleave (and llava-onevision) checkpoints, chat_template.json */
export const LLAVA_INTERLEAVE_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/** SmolVLM's (Idefics3Processor) chat template */
export const SMOLVLM_TEMPLATE =
  "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

// ------------------------------------------------------------------------------------------ configs

/** SmolVLM-256M-Instruct's config.json as the Hub has it (transformers 4.47 era; vision defaults omitted) */
export const SMOLVLM_256M_CONFIG = {
  architectures: ['Idefics3ForConditionalGeneration'],
  image_token_id: 49190,
  model_type: 'idefics3',
  scale_factor: 4,
  text_config: {
    _flash_attn_2_enabled: true,
    architectures: ['VLlama3ForCausalLM'],
    head_dim: 64,
    hidden_size: 576,
    intermediate_size: 1536,
    is_llama_config: true,
    max_position_embeddings: 8192,
    model_type: 'llama',
    neftune_noise_alpha: 0.0,
    num_attention_heads: 9,
    num_hidden_layers: 30,
    num_key_value_heads: 3,
    pad_token_id: 2,
    pixel_shuffle_factor: 4,
    qk_layer_norms: false,
    rms_norm_eps: 1e-5,
    rope_interleaved: false,
    rope_theta: 100000,
    torch_dtype: 'bfloat16',
    use_resampler: false,
    vocab_size: 49280,
  },
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.46.0',
  use_cache: true,
  vision_config: {
    hidden_size: 768,
    image_size: 512,
    max_image_size: { longest_edge: 512 },
    model_type: 'idefics3',
    num_attention_heads: 12,
    patch_size: 16,
    size: { longest_edge: 2048 },
    tie_word_embeddings: false,
    use_base_siglip: false,
  },
  vocab_size: 49280,
};

/** llava-interleave-qwen-0.5b-hf's shapes (Qwen1.5-0.5B LM, SigLIP so400m-384 tower minus its last layer) */
export const LLAVA_INTERLEAVE_05B_CONFIG = {
  architectures: ['LlavaForConditionalGeneration'],
  ignore_index: -100,
  image_token_index: 151646,
  model_type: 'llava',
  projector_hidden_act: 'gelu',
  text_config: {
    architectures: ['Qwen2ForCausalLM'],
    bos_token_id: 151643,
    eos_token_id: 151645,
    hidden_size: 1024,
    intermediate_size: 2816,
    max_position_embeddings: 32768,
    max_window_layers: 21,
    model_type: 'qwen2',
    num_attention_heads: 16,
    num_hidden_layers: 24,
    num_key_value_heads: 16,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    sliding_window: 32768,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    use_sliding_window: false,
    vocab_size: 152000,
  },
  tie_word_embeddings: true,
  torch_dtype: 'float16',
  vision_config: {
    hidden_size: 1152,
    image_size: 384,
    intermediate_size: 4304,
    model_type: 'siglip_vision_model',
    num_attention_heads: 16,
    num_hidden_layers: 26,
    patch_size: 14,
    vision_use_head: false,
  },
  vision_feature_layer: -1,
  vision_feature_select_strategy: 'full',
};

// ------------------------------------------------------------------------------------------ tokenizers

function addedTokens(contents: string[], firstId: number): Json[] {
  return contents.map((content, i) => ({
    id: firstId + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
}

/** a word-level tokenizer.json (Whitespace pre-tokenizer) with optional added tokens after the vocabulary */
export function wordLevelTokenizer(vocab: Record<string, number>, added: string[] = [], extra: Json = {}): Json {
  const next = Math.max(...Object.values(vocab)) + 1;
  const inVocab = added.filter((a) => a in vocab),
    fresh = added.filter((a) => !(a in vocab));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...inVocab.map((c) => ({ ...addedTokens([c], vocab[c])[0] })), ...addedTokens(fresh, next)],
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
    ...extra,
  };
}

// the byte-level alphabet is the library's own (the tests compare token ids with HF's Rust tokenizers)
export { byteLevelChars };

const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** a tiny BPE trainer (most frequent pair first, ties by string order): merges over byte-level words */
export function trainBpe(corpus: string[], merges: number): { vocab: Record<string, number>; merges: string[] } {
  const chars = byteLevelChars();
  const enc = new TextEncoder();
  const words = new Map<string, number>();
  for (const line of corpus) {
    for (const m of line.matchAll(GPT2_SPLIT)) {
      const w = [...enc.encode(m[0])].map((b) => chars[b]).join(' ');
      words.set(w, (words.get(w) ?? 0) + 1);
    }
  }
  const vocab: Record<string, number> = {};
  for (const c of chars) vocab[c] = Object.keys(vocab).length;
  const out: string[] = [];
  let split = [...words].map(([w, n]) => ({ syms: w.split(' '), n }));
  for (let k = 0; k < merges; k++) {
    const pairs = new Map<string, number>();
    for (const { syms, n } of split)
      for (let i = 0; i + 1 < syms.length; i++)
        pairs.set(`${syms[i]} ${syms[i + 1]}`, (pairs.get(`${syms[i]} ${syms[i + 1]}`) ?? 0) + n);
    let best = '',
      bn = 0;
    for (const [p, n] of pairs)
      if (n > bn || (n === bn && p < best)) {
        best = p;
        bn = n;
      }
    if (bn < 2) break;
    out.push(best);
    const [a, b] = best.split(' ');
    vocab[a + b] = Object.keys(vocab).length;
    split = split.map(({ syms, n }) => {
      const s: string[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          s.push(a + b);
          i++;
        } else s.push(syms[i]);
      }
      return { syms: s, n };
    });
  }
  return { vocab, merges: out };
}

export const CORPUS = [
  'The circle is red. The circle is blue. There are two stars and three squares.',
  'Answer based on the first image. Answer based on the second image.',
  'What color is the circle? How many stars are there? Is the square left of the triangle?',
  'yes, the square is left of the triangle. no, the square is right of the triangle.',
  'The picture shows a big red circle near a small green square, 12 apples and 345 pears.',
];

export const SPECIALS = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<image>',
  '<fake_token_around_image>',
  '<global-img>',
  '<row_1_col_1>',
  '<row_1_col_2>',
  '<row_2_col_1>',
  '<row_2_col_2>',
  '<end_of_utterance>',
];

/**
 * A byte-level BPE tokenizer.json. 'qwen2': NFC normalizer, Qwen2's Split regex then ByteLevel without regex,
 * ByteLevel post-processor without trim_offsets. 'smollm': GPT-2 style ByteLevel (with its regex) after
 * Digits, ByteLevel post-processor with trim_offsets.
 */
export function bpeTokenizer(style: 'qwen2' | 'smollm', merges = 120): Json {
  const { vocab, merges: m } = trainBpe(CORPUS, merges);
  const qwenSplit =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const byteLevel = (useRegex: boolean, trim: boolean) => ({
    type: 'ByteLevel',
    add_prefix_space: false,
    trim_offsets: trim,
    use_regex: useRegex,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(SPECIALS, Object.keys(vocab).length),
    normalizer: style === 'qwen2' ? { type: 'NFC' } : null,
    pre_tokenizer:
      style === 'qwen2'
        ? {
            type: 'Sequence',
            pretokenizers: [
              { type: 'Split', pattern: { Regex: qwenSplit }, behavior: 'Isolated', invert: false },
              byteLevel(false, false),
            ],
          }
        : { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true, true)] },
    post_processor: byteLevel(false, style === 'smollm'),
    decoder: byteLevel(false, false),
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: m,
    },
  };
}

// ------------------------------------------------------------------------------------------ HTTP

export interface TestServer {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

export type Route = (req: IncomingMessage, res: ServerResponse) => boolean | void;

/**
 * Serve `files` on 127.0.0.1 (404 for the rest), with Content-Length, in `chunk`-byte writes (`paced`: one
 * write per timer tick). `routes` may
 * take a request first. Connections are closed on close(); every response is bounded by the test's timeout.
 */
export async function serveFiles(
  files: Record<string, Uint8Array | string>,
  opts: { chunk?: number; paced?: boolean; routes?: Route[] } = {},
): Promise<TestServer> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requests.push(path);
    for (const r of opts.routes ?? []) if (r(req, res)) return;
    const name = path.replace(/^\/+/, '');
    const body = files[name];
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
    res.writeHead(200, { 'content-length': String(bytes.byteLength), 'content-type': 'application/octet-stream' });
    const chunk = opts.chunk ?? 1 << 16;
    let at = 0;
    const write = () => {
      while (at < bytes.byteLength) {
        const part = bytes.subarray(at, Math.min(at + chunk, bytes.byteLength));
        at += part.byteLength;
        if (!res.write(part)) {
          res.once('drain', write);
          return;
        }
        // paced: one chunk per timer tick, so the client sees several reads
        if (opts.paced && at < bytes.byteLength) {
          setTimeout(write, 2);
          return;
        }
      }
      res.end();
    };
    write();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
