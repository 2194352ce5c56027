/**
 * The embedded default model's files as URLs the bundler serves (models/shapesworld-tiny/*), so the
 * playground has a model with no download from the Hub.
 */
// training.json is the model's training record, not a file a loader reads
const urls = import.meta.glob(['../../models/shapesworld-tiny/*.{json,jinja,safetensors}', '!**/training.json'], {
  query: '?url',
  import: 'default',
  eager: true,
}) as Record<string, string>;

export const DEFAULT_MODEL_NAME = 'shapesworld-tiny';

/** file name -> URL */
export function defaultModelUrls(): Record<string, string> {
  return Object.fromEntries(Object.entries(urls).map(([path, url]) => [path.slice(path.lastIndexOf('/') + 1), url]));
}
