/**
 * Loading a checkpoint in the browser (or anywhere with fetch / File): from a base URL laid out as a Hugging
 * Face repo (`${base}/config.json`, `model.safetensors` or `model.safetensors.index.json` and its shards), or
 * from dropped `File` objects. Bodies are streamed (ReadableStream) into one buffer per file, with a progress
 * callback over all files and an AbortSignal. Parsing and validation are the shared core (files.ts), so the
 * result is the same `Checkpoint` the Node folder loader gives.
 */
import type { Checkpoint } from './checkpoint.js';
import {
  AUX_FILES,
  CONFIG_FILE,
  SINGLE_WEIGHTS,
  WEIGHTS_INDEX,
  checkpointFromFiles,
  parseJsonFile,
  shardsFromIndex,
} from './files.js';
import { CheckpointError } from './safetensors.js';

/** loaded: bytes received so far over all files; total: their sizes as far as known; file: the one that moved */
export type ProgressFn = (loaded: number, total: number, file: string) => void;

export interface WebLoadOptions {
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  /** files to read too when they exist (default: tokenizer, chat template, processor and generation configs) */
  extraFiles?: readonly string[];
  /**
   * the files that exist, when the caller knows them (a bundled model, a manifest): exactly these are read,
   * nothing is probed (a dev server that answers unknown paths with a page would make probing read garbage)
   */
  files?: readonly string[];
  /** file sizes known beforehand (a manifest's), used for `total` until a response says otherwise */
  sizes?: Readonly<Record<string, number>>;
  /** the URL of a file (default `${base}/${name}`); manifests pass Hub resolve URLs */
  urlOf?: (name: string) => string;
  /** request headers (e.g. Authorization for a gated repo) */
  headers?: Record<string, string>;
  /** the fetch to use (default globalThis.fetch) */
  fetch?: typeof fetch;
}

export interface LoadedCheckpoint {
  checkpoint: Checkpoint;
  /** every file read, by name (config, weights, and the extra files that exist) */
  files: Map<string, Uint8Array>;
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The load was aborted', 'AbortError');
}

/** progress over several files read at once */
class Progress {
  private readonly loaded = new Map<string, number>();
  private readonly size = new Map<string, number>();
  constructor(private readonly fn: ProgressFn | undefined) {}
  expect(file: string, bytes: number | undefined) {
    if (bytes !== undefined && Number.isFinite(bytes)) this.size.set(file, bytes);
  }
  /** a file that will not be read after all (404, or the other weights layout) */
  drop(file: string) {
    this.size.delete(file);
  }
  add(file: string, n: number) {
    this.loaded.set(file, (this.loaded.get(file) ?? 0) + n);
    if (!this.fn) return;
    let loaded = 0,
      total = 0;
    for (const [f, l] of this.loaded) {
      loaded += l;
      total += Math.max(l, this.size.get(f) ?? 0);
    }
    for (const [f, s] of this.size) if (!this.loaded.has(f)) total += s;
    this.fn(loaded, total, file);
  }
}

/**
 * Read a stream whole. `expected` (a Content-Length or File.size) preallocates; fewer bytes than expected is
 * a truncated download; more is accepted (a compressed transfer's Content-Length counts encoded bytes).
 */
async function readAll(
  body: ReadableStream<Uint8Array>,
  file: string,
  expected: number | undefined,
  progress: Progress,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const reader = body.getReader();
  let buf = new Uint8Array(expected ?? 1 << 16),
    n = 0;
  const onAbort = () => {
    reader.cancel(abortError(signal)).catch(() => undefined);
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        if (signal.aborted) throw abortError(signal);
        throw new CheckpointError(
          `${file}: download failed after ${n}${expected !== undefined ? ` of ${expected}` : ''} bytes ` +
            `(${(e as Error).message ?? e})`,
        );
      }
      if (signal.aborted) throw abortError(signal);
      if (r.done) break;
      const chunk = r.value;
      if (n + chunk.byteLength > buf.byteLength) {
        const grown = new Uint8Array(Math.max(buf.byteLength * 2, n + chunk.byteLength));
        grown.set(buf.subarray(0, n));
        buf = grown;
      }
      buf.set(chunk, n);
      n += chunk.byteLength;
      progress.add(file, chunk.byteLength);
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  if (expected !== undefined && n < expected) {
    throw new CheckpointError(`${file}: truncated download: received ${n} of ${expected} bytes`);
  }
  return n === buf.byteLength ? buf : buf.slice(0, n);
}

/** a signal that fires when the caller's does or when `abort()` is called (to stop sibling downloads) */
function linkedController(outer: AbortSignal | undefined): AbortController {
  const c = new AbortController();
  if (outer) {
    if (outer.aborted) c.abort(outer.reason);
    else outer.addEventListener('abort', () => c.abort(outer.reason), { once: true });
  }
  return c;
}

/**
 * Load a checkpoint from a base URL laid out like a Hugging Face repo. config.json is required; then
 * model.safetensors.index.json decides between one file and shards; the extra files are read where they exist
 * (404 is fine). All weight files download concurrently; progress counts every file.
 */
export async function loadCheckpointFromUrl(base: string, opts: WebLoadOptions = {}): Promise<LoadedCheckpoint> {
  const f = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const urlOf = opts.urlOf ?? ((name: string) => `${base.replace(/\/+$/, '')}/${name}`);
  const ctl = linkedController(opts.signal);
  const signal = ctl.signal;
  const progress = new Progress(opts.onProgress);
  for (const [name, size] of Object.entries(opts.sizes ?? {})) progress.expect(urlOf(name), size);

  /** open a file: the response, or undefined on 404 when optional */
  const open = async (name: string, optional: boolean): Promise<Response | undefined> => {
    const url = urlOf(name);
    let res: Response;
    try {
      res = await f(url, { signal, headers: opts.headers });
    } catch (e) {
      if (signal.aborted) throw abortError(signal);
      throw new CheckpointError(`${url}: request failed (${(e as Error).message ?? e})`);
    }
    if (res.status === 404 && optional) {
      res.body?.cancel().catch(() => undefined);
      progress.drop(url);
      return undefined;
    }
    if (!res.ok) {
      res.body?.cancel().catch(() => undefined);
      throw new CheckpointError(`${url}: HTTP ${res.status} ${res.statusText}`.trim());
    }
    return res;
  };
  const read = async (name: string, res: Response): Promise<Uint8Array> => {
    const url = urlOf(name);
    const len = res.headers.get('content-length');
    const expected = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
    progress.expect(url, expected);
    if (!res.body) return new Uint8Array(await res.arrayBuffer());
    return readAll(res.body, url, expected, progress, signal);
  };
  const get = async (name: string, optional: boolean) => {
    const res = await open(name, optional);
    return res ? read(name, res) : undefined;
  };

  const files = new Map<string, Uint8Array>();
  const known = opts.files ? new Set(opts.files) : undefined;
  if (known && !known.has(CONFIG_FILE)) throw new CheckpointError(`${base}: the file list lacks ${CONFIG_FILE}`);
  try {
    const [config, index] = await Promise.all([
      get(CONFIG_FILE, false),
      known && !known.has(WEIGHTS_INDEX) ? undefined : get(WEIGHTS_INDEX, true),
    ]);
    files.set(CONFIG_FILE, config!);
    parseJsonFile(config!, urlOf(CONFIG_FILE));
    let weights = [SINGLE_WEIGHTS];
    if (index) {
      files.set(WEIGHTS_INDEX, index);
      weights = shardsFromIndex(parseJsonFile(index, urlOf(WEIGHTS_INDEX)), urlOf(WEIGHTS_INDEX));
      progress.drop(urlOf(SINGLE_WEIGHTS));
    }
    const wanted = known ? [...known] : (opts.extraFiles ?? AUX_FILES);
    const extra = wanted.filter((n) => n !== CONFIG_FILE && n !== WEIGHTS_INDEX && !weights.includes(n));
    // open everything first (headers give the sizes, so `total` is right from the first chunk on), then stream
    const opened = await Promise.all([
      ...weights.map(async (n) => [n, await open(n, false)] as const),
      ...extra.map(async (n) => [n, await open(n, true)] as const),
    ]);
    for (const [n, res] of opened) {
      if (!res) continue;
      const len = res.headers.get('content-length');
      if (len !== null && /^\d+$/.test(len)) progress.expect(urlOf(n), Number(len));
    }
    const bodies = await Promise.all(opened.map(async ([n, res]) => [n, res ? await read(n, res) : undefined] as const));
    for (const [n, b] of bodies) if (b) files.set(n, b);
  } catch (e) {
    ctl.abort(e);
    throw e;
  }
  return { checkpoint: checkpointFromFiles(base, files, urlOf), files };
}

/** the bare file name of a dropped file (folder drops carry a relative path) */
function baseName(file: File): string {
  const rel = (file as File & { webkitRelativePath?: string }).webkitRelativePath;
  const n = rel || file.name;
  return n.slice(n.lastIndexOf('/') + 1);
}

/**
 * Load a checkpoint from dropped files (a folder's contents, or the files picked by hand): found by name,
 * read as streams with progress. The extra files are kept when present.
 */
export async function loadCheckpointFromFiles(
  dropped: Iterable<File> | ArrayLike<File>,
  opts: Omit<WebLoadOptions, 'urlOf' | 'headers' | 'fetch' | 'sizes'> = {},
): Promise<LoadedCheckpoint> {
  const byName = new Map<string, File>();
  for (const file of Array.from(dropped as ArrayLike<File>)) byName.set(baseName(file), file);
  const location = 'dropped files';
  const show = (n: string) => n;
  const ctl = linkedController(opts.signal);
  const progress = new Progress(opts.onProgress);
  const files = new Map<string, Uint8Array>();
  const readFile = async (name: string) => {
    const file = byName.get(name)!;
    if (typeof file.stream !== 'function') return new Uint8Array(await file.arrayBuffer());
    return readAll(file.stream() as ReadableStream<Uint8Array>, name, file.size, progress, ctl.signal);
  };
  if (!byName.has(CONFIG_FILE))
    throw new CheckpointError(`${CONFIG_FILE} not found among the dropped files (${[...byName.keys()].join(', ') || 'none'})`);
  let weights = [SINGLE_WEIGHTS];
  if (!byName.has(SINGLE_WEIGHTS) && byName.has(WEIGHTS_INDEX)) {
    const index = await readFile(WEIGHTS_INDEX);
    files.set(WEIGHTS_INDEX, index);
    weights = shardsFromIndex(parseJsonFile(index, WEIGHTS_INDEX), WEIGHTS_INDEX);
  } else if (!byName.has(SINGLE_WEIGHTS)) {
    throw new CheckpointError(`neither ${SINGLE_WEIGHTS} nor ${WEIGHTS_INDEX} is among the dropped files`);
  }
  for (const w of weights)
    if (!byName.has(w)) throw new CheckpointError(`${w} not found among the dropped files (listed by ${WEIGHTS_INDEX})`);
  const names = [
    CONFIG_FILE,
    ...weights,
    ...(opts.extraFiles ?? AUX_FILES).filter((n) => byName.has(n) && n !== CONFIG_FILE && !weights.includes(n)),
  ];
  for (const n of names) progress.expect(n, byName.get(n)!.size);
  try {
    const read = await Promise.all(names.map(async (n) => [n, await readFile(n)] as const));
    for (const [n, b] of read) files.set(n, b);
  } catch (e) {
    ctl.abort(e);
    throw e;
  }
  return { checkpoint: checkpointFromFiles(location, files, show), files };
}
