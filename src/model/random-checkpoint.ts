/**
 * A checkpoint of any VlmSpec with random weights, in memory: HF's initialisation (normal, std 0.02, for
 * linears and embeddings; ones for norm weights; zeros for biases), from a seed. For benchmarks and tests of
 * real model shapes where the weights cannot be downloaded.
 */
import type { Checkpoint, HostTensor, TensorSource } from './checkpoint.js';
import { CheckpointError } from './safetensors.js';
import { fillNormal, rng } from '../util/prng.js';
import { type VlmSpec, parameterList } from './vlm.js';

export function randomCheckpoint(spec: VlmSpec, seed = 0, std = 0.02): Checkpoint {
  const params = new Map(parameterList(spec).map((p) => [p.name, p]));
  const cache = new Map<string, HostTensor>();
  let k = 0;
  const seeds = new Map([...params.keys()].map((n) => [n, seed * 7919 + ++k]));
  const tensors: TensorSource = {
    location: `random ${spec.family} weights (seed ${seed})`,
    names: () => [...params.keys()],
    has: (n) => params.has(n),
    fileOf: () => 'memory',
    get: (n) => {
      const p = params.get(n);
      if (!p) throw new CheckpointError(`random checkpoint has no tensor "${n}"`);
      let t = cache.get(n);
      if (!t) {
        const data = new Float32Array(p.shape.reduce((a, b) => a * b, 1));
        if (/norm|layer_norm|layernorm/.test(n) && n.endsWith('.weight')) data.fill(1);
        else if (!n.endsWith('.bias')) fillNormal(data, rng(seeds.get(n)!), std);
        t = { dtype: 'float32', shape: [...p.shape], data };
        // large tensors are regenerated on demand rather than kept twice (the runtime holds a copy)
        if (data.length < 1 << 20) cache.set(n, t);
      }
      return t;
    },
  };
  return { config: { model_type: spec.family }, tensors };
}
