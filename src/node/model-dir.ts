/**
 * A model folder (and optionally a PEFT adapter folder) loaded for batched scoring in Node: config, tokenizer,
 * processor, weights uploaded once into a weight store, LoRA (if any) beside them under PEFT's names.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDataFromFiles } from '../model/data.js';
import { readAdapter } from '../model/peft.js';
import { specFromConfig } from '../model/spec.js';
import type { LoraInput } from '../model/vlm.js';
import { toFloat32, uploadWeights } from '../model/weights.js';
import type { Runtime, WeightStore } from '../runtime/runtime.js';
import type { ChatModel } from '../train/batch.js';
import { SafetensorsFiles, loadCheckpointDir, readCheckpointFiles, readJson } from './load-dir.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** the embedded default model's folder */
export const DEFAULT_MODEL_DIR = join(REPO_ROOT, 'models', 'shapesworld-tiny');

export interface LoadedModel extends ChatModel {
  name: string;
  store: WeightStore;
  /** LoRA plan for graph builders (null: no adapter) */
  lora: Map<string, LoraInput> | null;
}

export interface LoraTensors { module: string; r: number; scale: number; A: Float32Array; B: Float32Array }

/** upload LoRA A/B under the names the graphs read, and return the plan the graph builders need */
export async function uploadLora(rt: Runtime, store: WeightStore, mods: Iterable<LoraTensors>): Promise<Map<string, LoraInput>> {
  const plan = new Map<string, LoraInput>();
  for (const m of mods) {
    await store.set(`${m.module}.lora_A.weight`, rt.tensor('float32', m.A, [m.r, m.A.length / m.r]));
    await store.set(`${m.module}.lora_B.weight`, rt.tensor('float32', m.B, [m.B.length / m.r, m.r]));
    plan.set(m.module, { r: m.r, scale: m.scale });
  }
  return plan;
}

/** config, weights and (optionally) a PEFT adapter, uploaded: enough to score token ids */
export async function loadWeightsDir(rt: Runtime, dir: string, adapterDir?: string): Promise<Pick<LoadedModel, 'spec' | 'store' | 'lora'>> {
  if (!existsSync(join(dir, 'config.json'))) {
    throw new Error(`${dir}/config.json not found: --model takes a Hugging Face checkpoint folder` +
      (dir === DEFAULT_MODEL_DIR ? ' (run `npx vco-lab train-default` to rebuild the default model)' : ''));
  }
  const spec = specFromConfig(readJson(join(dir, 'config.json'), ''), join(dir, 'config.json'));
  const store = rt.weightStore();
  await uploadWeights(rt, store, spec, loadCheckpointDir(dir));
  let lora: Map<string, LoraInput> | null = null;
  if (adapterDir) {
    const cfgFile = join(adapterDir, 'adapter_config.json');
    const a = readAdapter(readJson(cfgFile, '--adapter takes a PEFT adapter folder'), cfgFile,
      new SafetensorsFiles(adapterDir, [join(adapterDir, 'adapter_model.safetensors')]));
    lora = await uploadLora(rt, store, [...a.modules.values()].map((m) => ({ module: m.module, r: m.r, scale: m.scale, A: toFloat32(m.A), B: toFloat32(m.B) })));
  }
  return { spec, store, lora };
}

/** a model folder with its tokenizer and image processor, for questions on images */
export async function loadModelDir(rt: Runtime, dir: string, adapterDir?: string): Promise<LoadedModel> {
  const w = await loadWeightsDir(rt, dir, adapterDir);
  const data = modelDataFromFiles(readCheckpointFiles(dir), dir);
  return { name: adapterDir ? `${dir} + ${adapterDir}` : dir, tokenizer: data.tokenizer, processor: data.processor, ...w };
}
