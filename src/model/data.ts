/**
 * The data side of a VLM checkpoint in one import: config checking, the family registry, tokenizer and chat
 * template, image processor, prompt construction, loaders and manifests. Importing this module registers the
 * built-in families' config parsers (config.ts) and image processors (processor.ts).
 */
import { checkConfig, type ModelConfig } from './config.js';
import { parseJsonFile } from './files.js';
import type { ImageProcessor, ProcessorOptions } from './processor.js';
import { createImageProcessor } from './processor.js';
import { familyFor } from './registry.js';
import { type VlmTokenizer, loadTokenizer } from './tokenizer.js';

export * from './config.js';
export * from './files.js';
export * from './load-web.js';
export * from './manifests.js';
export * from './processor.js';
export * from './prompts.js';
export * from './registry.js';
export * from './tokenizer.js';
export { checkTensorShape, checkTensors, expectTensor } from './checkpoint.js';

export interface ModelData {
  config: ModelConfig;
  tokenizer: VlmTokenizer;
  processor: ImageProcessor;
  /** the chat template's image placeholder */
  placeholder: string;
}

/**
 * Config, tokenizer and image processor from a checkpoint's files (as load-web.ts or readCheckpointFiles
 * return them): config.json, tokenizer.json (+ tokenizer_config.json, chat template), preprocessor_config.json
 * (+ processor_config.json). Errors name `location/<file>`.
 */
export function modelDataFromFiles(files: ReadonlyMap<string, Uint8Array>, location: string, opts: ProcessorOptions = {}): ModelData {
  const need = (name: string) => {
    const b = files.get(name);
    if (!b) throw new Error(`${location}/${name} is missing`);
    return parseJsonFile(b, `${location}/${name}`);
  };
  const raw = need('config.json');
  const config = checkConfig(raw, `${location}/config.json`);
  const spec = familyFor(raw, `${location}/config.json`);
  const pre = need('preprocessor_config.json');
  const proc = files.has('processor_config.json') ? need('processor_config.json') : {};
  return {
    config,
    tokenizer: loadTokenizer(files),
    processor: spec.createProcessor ? spec.createProcessor(config, pre, proc, opts) : createImageProcessor(config, pre, proc, opts),
    placeholder: spec.imagePlaceholder ?? '<image>',
  };
}
