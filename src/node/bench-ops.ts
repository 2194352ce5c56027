/**
 * `vco-lab bench ops`: MatMul throughput of onnxruntime-node used directly, next to the same graphs run
 * through the project's runtime layer (weights from a WeightStore, feeds by name), in one run. The ratio
 * layer/raw is what the layer costs; it should stay near 1.
 */
import { performance } from 'node:perf_hooks';
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { GraphBuilder } from '../onnx/ops.js';
import { serialize } from '../onnx/serialize.js';
import { createNodeRuntime } from '../runtime/node.js';
import type { EP } from '../runtime/runtime.js';

export interface OpsBenchRow {
  graph: string;
  n: number;
  flops: number;
  raw_ms: number;
  layer_ms: number;
  raw_gflops: number;
  layer_gflops: number;
  /** layer time / raw time, medians of interleaved runs */
  layer_over_raw: number;
}

export interface OpsBench {
  suite: 'ops';
  ep: EP;
  detail: string;
  machine: { cpus: number; model: string; node: string };
  rows: OpsBenchRow[];
  /** geometric mean of layer_over_raw over the rows */
  layer_over_raw_geomean: number;
}

function matmulChain(n: number, depth: number): GraphBuilder {
  const g = new GraphBuilder(`matmul_chain_${n}_${depth}`);
  let x = g.input('x', 'float32', [n, n]);
  for (let i = 0; i < depth; i++) x = g.matmul(x, g.input(`w${i}`, 'float32', [n, n]));
  g.output(x, 'y');
  return g;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchOps(
  o: { ep?: EP; sizes?: number[]; depth?: number; repeat?: number; log?: (s: string) => void } = {},
): Promise<OpsBench> {
  const ep = o.ep ?? 'cpu';
  const rt = await createNodeRuntime(ep);
  const ort = rt.ort;
  const os = await import('node:os');
  const rows: OpsBenchRow[] = [];
  for (const n of o.sizes ?? [256, 512, 1024]) {
    for (const depth of [1, o.depth ?? 4]) {
      const g = matmulChain(n, depth);
      const bytes = serialize(g);
      const data = () => {
        const a = new Float32Array(n * n);
        for (let i = 0; i < a.length; i++) a[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
        return a;
      };
      const x = rt.tensor('float32', data(), [n, n]);
      const ws = Array.from({ length: depth }, () =>
        rt.tensor(
          'float32',
          data().map((v) => v / Math.sqrt(n)),
          [n, n],
        ),
      );
      // raw onnxruntime-node
      const raw: InferenceSession = await ort.InferenceSession.create(bytes, {
        executionProviders: [ep],
        graphOptimizationLevel: 'all',
      });
      const rawFeeds: Record<string, Tensor> = { x };
      ws.forEach((w, i) => {
        rawFeeds[`w${i}`] = w;
      });
      // the runtime layer: weights uploaded once into a store, the run feeds only x
      const store = rt.weightStore();
      for (let i = 0; i < depth; i++) await store.set(`w${i}`, ws[i]);
      const layer = await rt.session(g, { weights: store });
      const flops = 2 * n * n * n * depth;
      const reps = o.repeat ?? Math.max(3, Math.min(30, Math.round(2e10 / flops)));
      for (let i = 0; i < 2; i++) {
        await raw.run(rawFeeds);
        await layer.run({ x });
      }
      const tr: number[] = [],
        tl: number[] = [];
      for (let i = 0; i < reps; i++) {
        let t = performance.now();
        await raw.run(rawFeeds);
        tr.push(performance.now() - t);
        t = performance.now();
        await layer.run({ x });
        tl.push(performance.now() - t);
      }
      const rawMs = median(tr),
        layerMs = median(tl);
      const row: OpsBenchRow = {
        graph: depth === 1 ? 'matmul' : `matmul x${depth}`,
        n,
        flops,
        raw_ms: rawMs,
        layer_ms: layerMs,
        raw_gflops: flops / rawMs / 1e6,
        layer_gflops: flops / layerMs / 1e6,
        layer_over_raw: layerMs / rawMs,
      };
      rows.push(row);
      o.log?.(formatRow(row));
      await raw.release();
      await layer.release();
    }
  }
  const cpus = os.cpus();
  const geomean = Math.exp(rows.reduce((a, r) => a + Math.log(r.layer_over_raw), 0) / rows.length);
  return {
    suite: 'ops',
    ep,
    detail: rt.detail,
    machine: { cpus: cpus.length, model: cpus[0]?.model ?? '', node: process.version },
    rows,
    layer_over_raw_geomean: geomean,
  };
}

export const OPS_HEADER = 'graph         n      raw ms   layer ms   raw GFLOP/s  layer GFLOP/s  layer/raw';

export function formatRow(r: OpsBenchRow): string {
  return (
    `${r.graph.padEnd(12)} ${String(r.n).padStart(5)} ${r.raw_ms.toFixed(2).padStart(9)} ${r.layer_ms.toFixed(2).padStart(10)}` +
    ` ${r.raw_gflops.toFixed(1).padStart(12)} ${r.layer_gflops.toFixed(1).padStart(14)} ${r.layer_over_raw.toFixed(3).padStart(10)}`
  );
}
