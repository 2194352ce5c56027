/**
 * config.json -> VlmSpec for the graph builders: the family registry's validated config (config.ts), which
 * is a superset of VlmSpec (HF defaults filled in, errors naming the file and the field).
 */
import { checkConfig } from './config.js';
import type { VlmSpec } from './vlm.js';

export function specFromConfig(config: Record<string, unknown>, file = 'config.json'): VlmSpec {
  return checkConfig(config, file) as unknown as VlmSpec;
}
