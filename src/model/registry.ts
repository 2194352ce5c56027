/**
 * The VLM families the project knows, by config.json `model_type` and by family name. This module is the
 * registry only (a map and its lookups); the built-in families are registered by the entry point
 * src/model/families/index.ts, as transformers.js and onnxruntime's js/ register architectures and backends
 * where they are assembled, never as an import-time side effect of the parts.
 */
import { CheckpointError } from './safetensors.js';
import type { VlmFamily, VlmSpec } from './types.js';

type Json = Record<string, unknown>;

const byModelType = new Map<string, VlmFamily>();
const byName = new Map<string, VlmFamily>();

/** register a family under its name and every model_type it reads (a later registration replaces one) */
export function registerFamily<S extends VlmSpec>(family: VlmFamily<S>): void {
  const f = family as unknown as VlmFamily;
  byName.set(f.name, f);
  for (const t of f.modelTypes) byModelType.set(t, f);
}

/** the model_types registered */
export function registeredModelTypes(): string[] {
  return [...byModelType.keys()].sort();
}

/** the family a config.json belongs to; unknown or missing model_type is an error naming the file */
export function familyForConfig(config: Json, file = 'config.json'): VlmFamily {
  const mt = config.model_type;
  if (mt === undefined || mt === null) throw new CheckpointError(`${file}: field "model_type" is missing`);
  const f = byModelType.get(String(mt));
  if (!f) {
    throw new CheckpointError(
      `${file}: model_type "${String(mt)}" is not supported; supported: ${registeredModelTypes().join(', ') || 'none'}`,
    );
  }
  return f;
}

/** the family that built a spec */
export function familyOf<S extends VlmSpec>(spec: S): VlmFamily<S> {
  const f = byName.get(spec.family);
  if (!f)
    throw new Error(`no VLM family "${spec.family}" is registered (registered: ${[...byName.keys()].join(', ') || 'none'})`);
  return f as unknown as VlmFamily<S>;
}
