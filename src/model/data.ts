/**
 * The data side of a VLM checkpoint in one import: config checking through the registered families
 * (families/index.ts), tokenizer and chat template, image processor, prompt construction, loaders and
 * manifests.
 */
import { checkConfig, familyForConfig } from './families/index.js';
import { parseJsonFile } from './files.js';
import type { ImageProcessor, ProcessorOptions } from './processor.js';
import { TokenizerError, type VlmTokenizer, loadTokenizer } from './tokenizer.js';
import type { VlmSpec } from './types.js';

export * from './config.js';
export * from './families/index.js';
export * from './files.js';
export * from './load-web.js';
export * from './manifests.js';
export * from './processor.js';
export * from './prompts.js';
export * from './tokenizer.js';
export type * from './types.js';
export { checkTensorShape, checkTensors, expectTensor } from './checkpoint.js';

export interface ModelData {
  config: VlmSpec;
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
/** a tokenizer file's error names the folder it is in */
function withLocation<T>(location: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof TokenizerError) throw new TokenizerError(`${location}/${e.message}`);
    throw e;
  }
}

export function modelDataFromFiles(
  files: ReadonlyMap<string, Uint8Array>,
  location: string,
  opts: ProcessorOptions = {},
): ModelData {
  const need = (name: string) => {
    const b = files.get(name);
    if (!b) throw new Error(`${location}/${name} is missing`);
    return parseJsonFile(b, `${location}/${name}`);
  };
  const raw = need('config.json');
  const config = checkConfig(raw, `${location}/config.json`);
  const family = familyForConfig(raw, `${location}/config.json`);
  const pre = need('preprocessor_config.json');
  const proc = files.has('processor_config.json') ? need('processor_config.json') : {};
  return {
    config,
    tokenizer: withLocation(location, () => loadTokenizer(files)),
    processor: family.createProcessor(config, pre, proc, opts),
    placeholder: family.imagePlaceholder,
  };
}
