/**
 * A model folder (and optionally a PEFT adapter folder) loaded into an engine in Node: config, tokenizer,
 * image processor, the weights uploaded once, the adapter on top (policy = base + adapter, reference = base).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine, type EngineOptions } from '../engine/engine.js';
import type { ChatModel } from '../engine/rows.js';
import { modelDataFromFiles } from '../model/data.js';
import { checkConfig } from '../model/families/index.js';
import { type Adapter, readAdapter } from '../model/peft.js';
import type { Runtime } from '../runtime/runtime.js';
import { SafetensorsFiles, loadCheckpointDir, readCheckpointFiles, readJson } from './load-dir.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** the embedded default model's folder */
export const DEFAULT_MODEL_DIR = join(REPO_ROOT, 'models', 'shapesworld-tiny');

export interface LoadedModel extends ChatModel {
  name: string;
  engine: Engine;
}

/** a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) */
export function readAdapterDir(dir: string): Adapter {
  const cfgFile = join(dir, 'adapter_config.json');
  return readAdapter(
    readJson(cfgFile, 'an adapter folder holds adapter_config.json (PEFT)'),
    cfgFile,
    new SafetensorsFiles(dir, [join(dir, 'adapter_model.safetensors')]),
  );
}

/** a model folder's config and weights (and a PEFT adapter on top) in an engine: enough to score token ids */
export async function loadEngineDir(
  rt: Runtime,
  dir: string,
  adapterDir?: string,
  o: Omit<EngineOptions, 'lora'> = {},
): Promise<Engine> {
  if (!existsSync(join(dir, 'config.json'))) {
    throw new Error(
      `${dir}/config.json not found: --model takes a Hugging Face checkpoint folder` +
        (dir === DEFAULT_MODEL_DIR ? ' (run `npx vco-lab train-default` to rebuild the default model)' : ''),
    );
  }
  const spec = checkConfig(readJson(join(dir, 'config.json'), ''), join(dir, 'config.json'));
  return Engine.create(rt, spec, loadCheckpointDir(dir), { ...o, lora: adapterDir ? readAdapterDir(adapterDir) : null });
}

/** a model folder in an engine, with its tokenizer and image processor, for questions on images */
export async function loadModelDir(
  rt: Runtime,
  dir: string,
  adapterDir?: string,
  o: Omit<EngineOptions, 'lora'> = {},
): Promise<LoadedModel> {
  const engine = await loadEngineDir(rt, dir, adapterDir, o);
  const data = modelDataFromFiles(readCheckpointFiles(dir), dir);
  return {
    name: adapterDir ? `${dir} + ${adapterDir}` : dir,
    spec: engine.spec,
    tokenizer: data.tokenizer,
    processor: data.processor,
    placeholder: data.placeholder,
    engine,
  };
}
