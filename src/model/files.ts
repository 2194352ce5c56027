/**
 * The loader-independent core of reading a Hugging Face checkpoint: every loader (a folder in Node, URLs or
 * dropped files in the browser) gets the files' bytes by name and hands them here. This module parses
 * config.json and model.safetensors.index.json, decides which safetensors files make up the weights, and
 * serves tensors by name out of the in-memory files, with errors that name the file and the tensor.
 */
import type { Checkpoint, HostTensor, TensorSource } from './checkpoint.js';
import { CheckpointError, type SafeHeader, decodeTensor, parseSafetensorsHeader } from './safetensors.js';

export const CONFIG_FILE = 'config.json';
export const SINGLE_WEIGHTS = 'model.safetensors';
export const WEIGHTS_INDEX = 'model.safetensors.index.json';

/** files a VLM checkpoint folder usually holds besides the weights (read when present) */
export const AUX_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.json',
  'chat_template.jinja',
  'preprocessor_config.json',
  'processor_config.json',
  'generation_config.json',
] as const;

/** parse a JSON file's bytes (or text); errors name the file */
export function parseJsonFile(data: Uint8Array | string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
  } catch (e) {
    throw new CheckpointError(`${file} is not valid JSON (${(e as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new CheckpointError(`${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/** the shard file names listed by model.safetensors.index.json, in first-use order */
export function shardsFromIndex(index: Record<string, unknown>, file: string): string[] {
  const map = index.weight_map;
  if (!map || typeof map !== 'object') throw new CheckpointError(`${file}: field "weight_map" is missing`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>).map(String))];
  if (!shards.length) throw new CheckpointError(`${file}: "weight_map" lists no files`);
  for (const s of shards) {
    if (s.includes('/') || s.includes('\\') || s === '..')
      throw new CheckpointError(`${file}: shard name "${s}" is not a plain file name`);
  }
  return shards;
}

/** one safetensors file in memory */
export interface SafetensorsBytes {
  /** the file's name as errors should show it (a path, a URL or a bare name) */
  file: string;
  bytes: Uint8Array;
}

/**
 * Tensors out of safetensors files held in memory. Headers are parsed (and checked against the file size)
 * up front; tensors are decoded on demand. With an index, a tensor the index names but its shard lacks is
 * an error naming both files.
 */
export class SafetensorsSource implements TensorSource {
  private readonly files = new Map<string, { bytes: Uint8Array; header: SafeHeader }>();
  private readonly where = new Map<string, string>();

  constructor(
    readonly location: string,
    files: SafetensorsBytes[],
    index?: { file: string; weightMap: Record<string, string>; nameOf: (shard: string) => string },
  ) {
    for (const { file, bytes } of files) {
      const header = parseSafetensorsHeader(bytes, file, bytes.byteLength);
      this.files.set(file, { bytes, header });
      for (const name of Object.keys(header.entries)) {
        const prev = this.where.get(name);
        if (prev) throw new CheckpointError(`${file}: tensor "${name}" is also in ${prev}`);
        this.where.set(name, file);
      }
    }
    if (index) {
      for (const [name, shard] of Object.entries(index.weightMap)) {
        const f = index.nameOf(shard);
        if (this.where.get(name) !== f) {
          throw new CheckpointError(
            `${f}: tensor "${name}" is listed for this file by ${index.file} but the file does not hold it`,
          );
        }
      }
    }
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  fileOf(name: string): string {
    return this.where.get(name) ?? `${this.location} (no file holds it)`;
  }

  /** the tensor's dtype and shape as stored, without decoding it */
  info(name: string): { dtype: string; shape: number[] } | undefined {
    const f = this.where.get(name);
    if (!f) return undefined;
    const e = this.files.get(f)!.header.entries[name];
    return { dtype: e.dtype, shape: [...e.shape] };
  }

  get(name: string): HostTensor {
    const f = this.where.get(name);
    if (!f) throw new CheckpointError(`${this.location}: tensor "${name}" is missing from the checkpoint`);
    const { bytes, header } = this.files.get(f)!;
    const e = header.entries[name];
    const raw = bytes.subarray(header.dataStart + e.data_offsets[0], header.dataStart + e.data_offsets[1]);
    const data = decodeTensor(e, raw);
    const dtype =
      data instanceof Float64Array
        ? 'float64'
        : data instanceof BigInt64Array
          ? 'int64'
          : data instanceof Int32Array
            ? 'int32'
            : data instanceof Uint8Array
              ? 'uint8'
              : 'float32';
    return { dtype, shape: [...e.shape], data };
  }
}

/**
 * A Checkpoint from file contents by name: config.json, and either model.safetensors or
 * model.safetensors.index.json with its shards. `display(name)` turns a file name into what errors show
 * (a path or URL). Missing files are errors naming them.
 */
export function checkpointFromFiles(
  location: string,
  files: ReadonlyMap<string, Uint8Array>,
  display: (name: string) => string = (n) => `${location}/${n}`,
): Checkpoint {
  const cfg = files.get(CONFIG_FILE);
  if (!cfg) throw new CheckpointError(`${display(CONFIG_FILE)} not found: a Hugging Face checkpoint holds config.json`);
  const config = parseJsonFile(cfg, display(CONFIG_FILE));
  const idx = files.get(WEIGHTS_INDEX);
  let names: string[];
  let index: { file: string; weightMap: Record<string, string>; nameOf: (s: string) => string } | undefined;
  if (files.has(SINGLE_WEIGHTS)) {
    names = [SINGLE_WEIGHTS];
  } else if (idx) {
    const json = parseJsonFile(idx, display(WEIGHTS_INDEX));
    names = shardsFromIndex(json, display(WEIGHTS_INDEX));
    index = { file: display(WEIGHTS_INDEX), weightMap: json.weight_map as Record<string, string>, nameOf: display };
  } else {
    throw new CheckpointError(`${location}: neither ${SINGLE_WEIGHTS} nor ${WEIGHTS_INDEX} is there`);
  }
  const shards: SafetensorsBytes[] = names.map((n) => {
    const bytes = files.get(n);
    if (!bytes) throw new CheckpointError(`${display(n)} not found (listed by ${display(WEIGHTS_INDEX)})`);
    return { file: display(n), bytes };
  });
  return { config, tensors: new SafetensorsSource(location, shards, index) };
}
