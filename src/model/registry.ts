/**
 * Model families by config.json `model_type`. A family's spec gathers what the rest of the project needs to
 * know about it: how to read its config (config.ts registers the built-in parsers), how to turn images into
 * pixel tiles and image-token text (processor.ts), and how to build its graphs (the optional `build` slot,
 * filled by the graph builders). Registrations merge, so each part can register from its own module; a new
 * family is one new file that calls `registerFamily` with its parts (and is imported once, e.g. from
 * src/model/index.ts).
 */
import type { Checkpoint } from './checkpoint.js';
import type { ImageProcessor, ProcessorOptions } from './processor.js';
import { CheckpointError } from './safetensors.js';

type Json = Record<string, unknown>;

export interface FamilySpec<C = unknown> {
  /** config.json `model_type` */
  modelType: string;
  /** the family name the engine knows it by ('idefics3', 'llava') */
  family: string;
  /** config.json -> the family's normalised config; errors name the file and the field */
  parseConfig?: (raw: Json, file: string) => C;
  /**
   * the image processor: preprocessor_config.json (and processor_config.json where the family has one) with
   * the normalised config; it also writes the text each image placeholder expands to
   */
  createProcessor?: (config: C, preprocessor: Json, processorConfig?: Json, options?: ProcessorOptions) => ImageProcessor;
  /** the placeholder the chat template writes for an image */
  imagePlaceholder?: string;
  /** graph builder slot (filled by src/model/families/*) */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  build?: (checkpoint: Checkpoint, config: C, ...options: any[]) => unknown;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const families = new Map<string, FamilySpec<any>>();

/** register (or extend) the family for a `model_type`; later parts merge into earlier ones */
export function registerFamily<C>(modelType: string, spec: Partial<FamilySpec<C>>): FamilySpec<C> {
  const prev = families.get(modelType) ?? {};
  const merged = { ...prev, ...spec, modelType } as FamilySpec<C>;
  if (!merged.family) merged.family = modelType;
  families.set(modelType, merged);
  return merged;
}

/** the model_types registered */
export function registeredModelTypes(): string[] {
  return [...families.keys()].sort();
}

/** the spec for a `model_type`, or undefined */
export function familySpec(modelType: string): FamilySpec | undefined {
  return families.get(modelType);
}

/** the family a config.json belongs to; unknown or missing model_type is an error naming the file */
export function familyFor(config: Json, file = 'config.json'): FamilySpec {
  const mt = config.model_type;
  if (mt === undefined || mt === null) throw new CheckpointError(`${file}: field "model_type" is missing`);
  const spec = families.get(String(mt));
  if (!spec) {
    throw new CheckpointError(`${file}: model_type "${String(mt)}" is not supported; supported: ${registeredModelTypes().join(', ') || 'none'}`);
  }
  return spec;
}
