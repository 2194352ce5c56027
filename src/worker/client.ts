/**
 * The page's handle on the engine worker (engine.worker.ts): a comlink proxy whose methods return promises.
 *
 *   const engine = createEngineWorker();
 *   const { ep } = await engine.init('webgpu');
 *   const out = await engine.runModel(modelBytes, { x: { type: 'float32', data, dims: [2, 3] } });
 */
import { type Remote, releaseProxy, wrap } from 'comlink';
import type { EngineWorkerApi } from './api.js';

export type {
  DemoBackwardResult,
  EngineInfo,
  EngineWorkerApi,
  ModelSummary,
  StoredWeight,
  YesNoAnswer,
  WireArray,
  WireTensor,
  WireTensorIn,
  WireType,
} from './api.js';

const workers = new WeakMap<object, Worker>();

export function createEngineWorker(): Remote<EngineWorkerApi> {
  const worker = new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module', name: 'vco-engine' });
  const remote = wrap<EngineWorkerApi>(worker);
  workers.set(remote, worker);
  return remote;
}

/** end a worker made by createEngineWorker (its GPU buffers and sessions go with it) */
export function terminateEngineWorker(remote: Remote<EngineWorkerApi>): void {
  remote[releaseProxy]();
  workers.get(remote)?.terminate();
  workers.delete(remote);
}
