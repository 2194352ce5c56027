/**
 * A Hugging Face checkpoint folder in Node: config.json plus model.safetensors, or the shards listed in
 * model.safetensors.index.json. Files are read once; tensors are decoded on demand. Parsing and validation
 * are the shared core in src/model/files.ts (the browser loader uses the same).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Checkpoint } from '../model/checkpoint.js';
import {
  AUX_FILES,
  CONFIG_FILE,
  SINGLE_WEIGHTS,
  SafetensorsSource,
  WEIGHTS_INDEX,
  checkpointFromFiles,
  parseJsonFile,
  shardsFromIndex,
} from '../model/files.js';
import { CheckpointError } from '../model/safetensors.js';

export function readJson(file: string, what: string): Record<string, unknown> {
  if (!existsSync(file)) throw new CheckpointError(`${file} not found${what ? `: ${what}` : ''}`);
  return parseJsonFile(new Uint8Array(readFileSync(file)), file);
}

/** safetensors files on disk, read whole */
export class SafetensorsFiles extends SafetensorsSource {
  constructor(location: string, paths: string[]) {
    super(
      location,
      paths.map((p) => {
        if (!existsSync(p)) throw new CheckpointError(`${p} not found (listed by the checkpoint in ${location})`);
        return { file: p, bytes: new Uint8Array(readFileSync(p)) };
      }),
    );
  }
}

/** the files of a checkpoint folder that exist, by name: config, index, the weight files and the aux files */
export function readCheckpointFiles(dir: string, extra: readonly string[] = AUX_FILES): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const read = (name: string) => {
    const p = join(dir, name);
    if (existsSync(p)) files.set(name, new Uint8Array(readFileSync(p)));
  };
  read(CONFIG_FILE);
  if (existsSync(join(dir, SINGLE_WEIGHTS))) read(SINGLE_WEIGHTS);
  else if (existsSync(join(dir, WEIGHTS_INDEX))) {
    read(WEIGHTS_INDEX);
    for (const s of shardsFromIndex(parseJsonFile(files.get(WEIGHTS_INDEX)!, join(dir, WEIGHTS_INDEX)), join(dir, WEIGHTS_INDEX)))
      read(s);
  }
  for (const name of extra) read(name);
  return files;
}

export function loadCheckpointDir(dir: string): Checkpoint {
  return checkpointFromFiles(dir, readCheckpointFiles(dir, []), (n) => join(dir, n));
}
