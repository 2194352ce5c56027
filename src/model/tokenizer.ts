/**
 * A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) and chat template, as the VLM data path
 * needs them: ids from @huggingface/tokenizers (pure JS; BPE, WordPiece, Unigram, word-level), character
 * offsets per token (that library gives none, so they are recovered here by aligning each token's surface
 * text with the input, with the Rust library's conventions), and the chat template rendered by
 * @huggingface/jinja with the same settings transformers uses (trim_blocks, lstrip_blocks).
 *
 * Offsets are [start, end) in Unicode code points of the input string (Python `str` indices, which is what
 * HF's offset_mapping and a dataset's character spans count); for text inside the Basic Multilingual Plane
 * they equal JavaScript string indices. A ByteLevel post-processor's `trim_offsets` is applied as the Rust
 * library does. Alignment is exact for byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM2) and word-level
 * tokenizers; normalizers are replayed per code point (NFC/NFKC/lowercase/strip accents/BERT cleaning), so a
 * normalizer that rewrites across code points (NFC on decomposed input, Precompiled charmaps) can make
 * alignment fail, which is an error rather than a silent wrong mask.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

type Json = Record<string, unknown>;

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

export type ChatContent = { type: 'image' } | { type: 'text'; text: string };
export interface ChatMessage {
  role: string;
  content: ChatContent[] | string;
}

export interface Encoded {
  ids: number[];
  /** [start, end) per token in code points of the input; [0, 0] for special tokens the post-processor adds */
  offsets: [number, number][];
}

export interface VlmTokenizer {
  /** addSpecialTokens defaults to false (the IC-VCO data path never adds BOS/EOS through the tokenizer) */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): Encoded;
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  tokenToId(token: string): number | undefined;
  readonly eosToken: string;
  readonly eosId: number;
  /** the template in use (chat_template.jinja, chat_template.json, or tokenizer_config.json's), if any */
  readonly chatTemplate: string | undefined;
  applyChatTemplate(messages: ChatMessage[], opts?: { addGenerationPrompt?: boolean }): string;
}

/** files by name: bytes, text, or already parsed JSON */
export type TokenizerFiles =
  ReadonlyMap<string, Uint8Array | string | Json> | Readonly<Record<string, Uint8Array | string | Json | undefined>>;

function getFile(files: TokenizerFiles, name: string): Uint8Array | string | Json | undefined {
  return files instanceof Map ? files.get(name) : (files as Record<string, Uint8Array | string | Json | undefined>)[name];
}

function asText(v: Uint8Array | string | Json): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  return JSON.stringify(v);
}

function asJson(v: Uint8Array | string | Json, name: string): Json {
  if (!(v instanceof Uint8Array) && typeof v === 'object') return v;
  try {
    const j = JSON.parse(asText(v));
    if (j && typeof j === 'object' && !Array.isArray(j)) return j as Json;
  } catch (e) {
    throw new TokenizerError(`${name} is not valid JSON (${(e as Error).message})`);
  }
  throw new TokenizerError(`${name}: expected a JSON object`);
}

/** a special token as tokenizer_config.json writes it: a string or an AddedToken dict */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

/** the chat template HF would use, and its file: chat_template.jinja, chat_template.json, then tokenizer_config.json */
export function findChatTemplate(files: TokenizerFiles, tokenizerConfig?: Json): { template: string; file: string } | undefined {
  const jinja = getFile(files, 'chat_template.jinja');
  if (jinja !== undefined) return { template: asText(jinja), file: 'chat_template.jinja' };
  const json = getFile(files, 'chat_template.json');
  if (json !== undefined) {
    const t = asJson(json, 'chat_template.json').chat_template;
    if (typeof t === 'string') return { template: t, file: 'chat_template.json' };
  }
  const t = tokenizerConfig?.chat_template;
  if (typeof t === 'string') return { template: t, file: 'tokenizer_config.json' };
  if (Array.isArray(t)) {
    const d = t.find((x) => (x as Json)?.name === 'default') ?? t[0];
    if (d && typeof (d as Json).template === 'string')
      return { template: (d as Json).template as string, file: 'tokenizer_config.json' };
  }
  return undefined;
}

// ------------------------------------------------------------------------------------------ offsets

/** GPT-2's bytes_to_unicode: the byte-level alphabet, byte -> char */
export function byteLevelChars(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => {
    out[b] = String.fromCodePoint(cs[i]);
  });
  return out;
}

/** the byte-level alphabet inverted: char -> byte */
const BYTE_OF: Map<string, number> = new Map(byteLevelChars().map((c, b) => [c, b]));
const SPACE_CHAR = 'Ġ';

type Piece = (cp: string) => string;

function normalizerPieces(cfg: unknown): Piece {
  if (!cfg || typeof cfg !== 'object') return (c) => c;
  const n = cfg as Json;
  switch (n.type) {
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD': {
      const form = n.type as string;
      return (c) => c.normalize(form);
    }
    case 'Lowercase':
      return (c) => c.toLowerCase();
    case 'StripAccents':
      return (c) => c.normalize('NFD').replace(/\p{Mn}/gu, '');
    case 'Sequence': {
      const parts = ((n.normalizers as unknown[]) ?? []).map(normalizerPieces);
      return (c) => parts.reduce((s, p) => [...s].map(p).join(''), c);
    }
    case 'Replace': {
      const pat = (n.pattern as Json | undefined)?.String;
      if (typeof pat === 'string' && [...pat].length === 1) return (c) => (c === pat ? String(n.content ?? '') : c);
      return (c) => c;
    }
    case 'BertNormalizer': {
      const lower = n.lowercase !== false;
      const strip = n.strip_accents ?? lower;
      return (c) => {
        const cp = c.codePointAt(0)!;
        if (n.clean_text !== false) {
          if (cp === 0 || cp === 0xfffd || (/\p{C}/u.test(c) && !/\s/.test(c))) return '';
          if (/\s/.test(c)) return ' ';
        }
        if (n.handle_chinese_chars !== false && isCjk(cp)) return ` ${c} `;
        let s = c;
        if (strip) s = s.normalize('NFD').replace(/\p{Mn}/gu, '');
        return lower ? s.toLowerCase() : s;
      };
    }
    default:
      return (c) => c; // Strip, Prepend, Precompiled, ...: alignment copes or reports
  }
}

function isCjk(cp: number) {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

function findType(cfg: unknown, type: string, listKey: string): Json | undefined {
  if (!cfg || typeof cfg !== 'object') return undefined;
  const c = cfg as Json;
  if (c.type === type) return c;
  if (c.type === 'Sequence' && Array.isArray(c[listKey])) {
    for (const x of c[listKey] as unknown[]) {
      const f = findType(x, type, listKey);
      if (f) return f;
    }
  }
  return undefined;
}

interface OffsetRules {
  byteLevel: boolean;
  metaspace: boolean;
  wordpiecePrefix?: string;
  byteFallback: boolean;
  unkToken?: string;
  trim?: { addPrefixSpace: boolean };
  piece: Piece;
}

function offsetRules(tj: Json): OffsetRules {
  const model = (tj.model ?? {}) as Json;
  const byteLevel =
    !!findType(tj.pre_tokenizer, 'ByteLevel', 'pretokenizers') ||
    (tj.decoder as Json | undefined)?.type === 'ByteLevel' ||
    !!findType(tj.decoder, 'ByteLevel', 'decoders');
  const metaspace =
    !!findType(tj.pre_tokenizer, 'Metaspace', 'pretokenizers') ||
    !!findType(tj.decoder, 'Metaspace', 'decoders') ||
    JSON.stringify(tj.normalizer ?? null).includes('▁');
  const bl = findType(tj.post_processor, 'ByteLevel', 'processors');
  return {
    byteLevel,
    metaspace,
    wordpiecePrefix: model.type === 'WordPiece' ? String(model.continuing_subword_prefix ?? '##') : undefined,
    byteFallback: model.byte_fallback === true,
    unkToken: typeof model.unk_token === 'string' ? model.unk_token : undefined,
    trim: bl && bl.trim_offsets !== false ? { addPrefixSpace: bl.add_prefix_space === true } : undefined,
    piece: normalizerPieces(tj.normalizer),
  };
}

const utf8 = new TextEncoder();

function isWsByte(b: number) {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;
}

/**
 * Offsets for tokens of `text`: each token's surface bytes are matched against the normalised text (built code
 * point by code point, so every normalised byte maps back to the code point it came from).
 */
function alignOffsets(
  text: string,
  tokens: string[],
  ids: number[],
  added: Set<number>,
  rules: OffsetRules,
  unkId: number | undefined,
): [number, number][] {
  const cps = Array.from(text);
  const bytes: number[] = [],
    owner: number[] = [];
  cps.forEach((c, k) => {
    let p = rules.piece(c);
    if (rules.metaspace) p = p.replace(/▁/g, ' ');
    for (const b of utf8.encode(p)) {
      bytes.push(b);
      owner.push(k);
    }
  });
  const N = bytes.length;
  const surface = (i: number): number[] | null => {
    const t = tokens[i];
    if (added.has(ids[i])) return [...utf8.encode(t)];
    if (unkId !== undefined && ids[i] === unkId && t === rules.unkToken) return null;
    if (rules.byteLevel) {
      const out: number[] = [];
      for (const ch of t) {
        const b = BYTE_OF.get(ch);
        if (b === undefined) out.push(...utf8.encode(ch));
        else out.push(b);
      }
      return out;
    }
    if (rules.byteFallback) {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
      if (m) return [parseInt(m[1], 16)];
    }
    let s = t;
    if (rules.wordpiecePrefix && s.startsWith(rules.wordpiecePrefix) && s.length > rules.wordpiecePrefix.length)
      s = s.slice(rules.wordpiecePrefix.length);
    if (rules.metaspace) s = s.replace(/▁/g, ' ');
    return [...utf8.encode(s)];
  };
  const matchAt = (pos: number, s: number[]) => {
    if (pos + s.length > N) return false;
    for (let j = 0; j < s.length; j++) if (bytes[pos + j] !== s[j]) return false;
    return true;
  };
  const skipWs = (pos: number) => {
    while (pos < N && isWsByte(bytes[pos])) pos++;
    return pos;
  };
  const search = (from: number, s: number[]) => {
    for (let p = from; p + s.length <= N; p++) if (matchAt(p, s)) return p;
    return -1;
  };
  const byteRanges: [number, number][] = [];
  let cursor = 0;
  let pendingUnk: number[] = [];
  const closeUnk = (end: number) => {
    // unknown tokens share the gap before the next matched token (word-level: one unknown word each)
    if (!pendingUnk.length) return;
    let s = skipWs(cursor);
    let e = end;
    while (e > s && isWsByte(bytes[e - 1])) e--;
    for (const k of pendingUnk) {
      byteRanges[k] = [s, e];
      s = e;
    }
    pendingUnk = [];
  };
  for (let i = 0; i < tokens.length; i++) {
    let s = surface(i);
    if (s === null) {
      pendingUnk.push(i);
      byteRanges.push([cursor, cursor]);
      continue;
    }
    let at = -1;
    const tries: number[][] = [s];
    // a prefix space the tokenizer added (add_prefix_space, Metaspace/Prepend) is not in the text
    if (s.length && s[0] === 0x20) tries.push(s.slice(1));
    for (const t of tries) {
      if (matchAt(cursor, t)) at = cursor;
      else if (matchAt(skipWs(cursor), t)) at = skipWs(cursor);
      if (at >= 0) {
        s = t;
        break;
      }
    }
    if (at < 0 && pendingUnk.length) {
      for (const t of tries) {
        at = search(cursor, t);
        if (at >= 0) {
          s = t;
          break;
        }
      }
    }
    if (at < 0) {
      throw new TokenizerError(
        `cannot align token ${i} (${JSON.stringify(tokens[i])}) with the text at code point ` +
          `${owner[cursor] ?? cps.length}: the tokenizer's normalizer changes the text in a way offsets cannot follow`,
      );
    }
    closeUnk(at);
    byteRanges.push([at, at + s.length]);
    cursor = at + s.length;
  }
  if (pendingUnk.length) closeUnk(N);
  const cpOf = (b: number) => (b < N ? owner[b] : cps.length);
  const offsets = byteRanges.map(([b0, b1]): [number, number] =>
    b1 > b0 ? [cpOf(b0), owner[b1 - 1] + 1] : [cpOf(b0), cpOf(b0)],
  );
  if (rules.trim) {
    // tokenizers' ByteLevel post-processor with trim_offsets: drop leading/trailing spaces from the ranges
    const ws = (c: string) => c === SPACE_CHAR || /\s/u.test(c);
    tokens.forEach((t, i) => {
      if (added.has(ids[i])) return;
      const chars = Array.from(t);
      let lead = 0;
      while (lead < chars.length && ws(chars[lead])) lead++;
      let trail = 0;
      while (trail < chars.length && ws(chars[chars.length - 1 - trail])) trail++;
      const o = offsets[i];
      if (lead > 0) {
        const first = i === 0 || o[0] === 0;
        if (!(first && rules.trim!.addPrefixSpace && lead === 1)) o[0] = Math.min(o[0] + lead, o[1]);
      }
      if (trail > 0 && o[1] >= trail) o[1] = Math.max(o[1] - trail, o[0]);
    });
  }
  return offsets;
}

// ------------------------------------------------------------------------------------------ loading

class HfTokenizer implements VlmTokenizer {
  readonly eosToken: string;
  readonly eosId: number;
  readonly chatTemplate: string | undefined;
  private template?: Template;
  private readonly added: Set<number>;
  private readonly rules: OffsetRules;
  private readonly unkId: number | undefined;
  private readonly specials: Record<string, string>;

  constructor(
    private readonly tk: Tokenizer,
    tj: Json,
    cfg: Json,
    chatTemplate: string | undefined,
    eos: string | undefined,
  ) {
    this.added = new Set(((tj.added_tokens as Json[] | undefined) ?? []).map((t) => Number(t.id)));
    this.rules = offsetRules(tj);
    this.unkId = this.rules.unkToken !== undefined ? tk.token_to_id(this.rules.unkToken) : undefined;
    this.chatTemplate = chatTemplate;
    this.specials = {};
    for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
      const s = tokenString(cfg[k]);
      if (s !== undefined) this.specials[k] = s;
    }
    const e = eos ?? this.specials.eos_token;
    if (e === undefined) throw new TokenizerError('tokenizer_config.json names no eos_token (pass one explicitly)');
    const id = tk.token_to_id(e);
    if (id === undefined)
      throw new TokenizerError(`tokenizer_config.json: eos_token "${e}" is not in the tokenizer's vocabulary (tokenizer.json)`);
    this.eosToken = e;
    this.eosId = id;
  }

  tokenToId(token: string): number | undefined {
    return this.tk.token_to_id(token);
  }

  private raw(text: string, special: boolean) {
    const e = this.tk.encode(text, { add_special_tokens: special });
    const bad = e.ids.findIndex((x) => x === undefined || x === null);
    if (bad >= 0)
      throw new TokenizerError(
        `token ${JSON.stringify(e.tokens[bad])} has no id (the vocabulary lacks it and there is no unk_token)`,
      );
    return e;
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): Encoded {
    const plain = this.raw(text, false);
    const offsets = alignOffsets(text, plain.tokens, plain.ids, this.added, this.rules, this.unkId);
    if (!opts.addSpecialTokens) return { ids: plain.ids, offsets };
    const full = this.raw(text, true);
    // the post-processor wraps the plain ids (BOS/EOS/...): find them inside, give the rest empty offsets
    const n = plain.ids.length;
    let k = 0;
    for (; k + n <= full.ids.length; k++) if (plain.ids.every((x, j) => full.ids[k + j] === x)) break;
    if (k + n > full.ids.length)
      throw new TokenizerError('the post-processor changed the tokens themselves; cannot give offsets');
    return { ids: full.ids, offsets: full.ids.map((_, j): [number, number] => (j >= k && j < k + n ? offsets[j - k] : [0, 0])) };
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (!ids.length) return '';
    return this.tk.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /** the parsed template (parsed once) */
  compileTemplate(): Template {
    this.template ??= new Template(this.chatTemplate!);
    return this.template;
  }

  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    if (!this.chatTemplate)
      throw new TokenizerError(
        'no chat template (none of chat_template.jinja, chat_template.json, tokenizer_config.json has one)',
      );
    return this.compileTemplate().render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      ...this.specials,
    });
  }
}

/**
 * Load a tokenizer from its files: tokenizer.json (required), tokenizer_config.json (special tokens, chat
 * template), chat_template.jinja or chat_template.json (as HF processors store the template),
 * special_tokens_map.json. `chatTemplate` and `eosToken` override the files.
 */
export function loadTokenizer(files: TokenizerFiles, opts: { chatTemplate?: string; eosToken?: string } = {}): VlmTokenizer {
  const tjRaw = getFile(files, 'tokenizer.json');
  if (tjRaw === undefined) throw new TokenizerError('tokenizer.json is missing');
  const tj = asJson(tjRaw, 'tokenizer.json');
  const cfgRaw = getFile(files, 'tokenizer_config.json');
  const cfg: Json = cfgRaw !== undefined ? { ...asJson(cfgRaw, 'tokenizer_config.json') } : {};
  const stm = getFile(files, 'special_tokens_map.json');
  if (stm !== undefined) {
    const m = asJson(stm, 'special_tokens_map.json');
    for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token'])
      if (cfg[k] === undefined && m[k] !== undefined) cfg[k] = m[k];
  }
  const model = (tj.model ?? {}) as Json;
  // the JS library reads unk_token from the config for vocabulary-only (word-level) models
  const libCfg: Json = { ...cfg };
  for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
    const s = tokenString(cfg[k]);
    if (s !== undefined) libCfg[k] = s;
    else delete libCfg[k];
  }
  if (typeof model.unk_token === 'string' && libCfg.unk_token === undefined) libCfg.unk_token = model.unk_token;
  delete libCfg.chat_template;
  if (!Array.isArray(tj.added_tokens)) tj.added_tokens = [];
  let tk: Tokenizer;
  try {
    tk = new Tokenizer(tj, libCfg);
  } catch (e) {
    throw new TokenizerError(`tokenizer.json: ${(e as Error).message}`);
  }
  const found =
    opts.chatTemplate !== undefined ? { template: opts.chatTemplate, file: 'the chat template' } : findChatTemplate(files, cfg);
  const out = new HfTokenizer(tk, tj, cfg, found?.template, opts.eosToken);
  // parse the template now, so a syntax error names its file at load, not at the first prompt
  if (found) {
    try {
      out.compileTemplate();
    } catch (e) {
      throw new TokenizerError(`${found.file}: the chat template does not parse (${(e as Error).message}); fix its Jinja syntax`);
    }
  }
  return out;
}
