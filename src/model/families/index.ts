/**
 * The entry point of the model families: it registers the built-in ones (the only import-time side effect in
 * src/model) and reads configs through them. A new family is one file beside these (its spec type, config
 * parser, image processor, placeholder and connector graph in one `VlmFamily` object) and one line here.
 */
import { familyForConfig, registerFamily } from '../registry.js';
import type { VlmSpec } from '../types.js';
import { idefics3 } from './idefics3.js';
import { llava } from './llava.js';

registerFamily(idefics3);
registerFamily(llava);

export { familyForConfig, familyOf, registerFamily, registeredModelTypes } from '../registry.js';

/**
 * config.json -> the spec the graph builders take, by its model_type: every field the graphs use converted
 * and checked, errors naming the file and the field; an unknown model_type lists the supported ones.
 */
export function checkConfig(config: Record<string, unknown>, file = 'config.json'): VlmSpec {
  return familyForConfig(config, file).parseConfig(config, file);
}
