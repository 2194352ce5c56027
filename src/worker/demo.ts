/**
 * A small graph for checking the whole engine path (IR -> autodiff -> ONNX -> ORT) wherever it runs:
 * y = softmax(x @ W + b), objective Σ seed ⊙ y, gradients for W and b. The engine worker builds and runs it
 * in the browser; tests build the same graph in Node and compare.
 */
import { type Backward, buildBackward } from '../onnx/autodiff.js';
import { GraphBuilder } from '../onnx/ops.js';

export interface DemoGraphs {
  forward: GraphBuilder;
  backward: Backward;
  /** the feeds for both graphs (the backward graph also takes `seed_y`) */
  feeds: Record<string, { type: 'float32'; data: Float32Array; dims: number[] }>;
}

export function buildDemoGraphs(): DemoGraphs {
  const g = new GraphBuilder('demo');
  const x = g.input('x', 'float32', [2, 3]);
  const W = g.input('W', 'float32', [3, 4]);
  const b = g.input('b', 'float32', [4]);
  const y = g.output(g.softmax(g.add(g.matmul(x, W), b)), 'y');
  const backward = buildBackward(g, { objective: { weighted: [y] }, wrt: [W, b], keep: [y] });
  const f = (dims: number[], xs: number[]) => ({ type: 'float32' as const, data: Float32Array.from(xs), dims });
  return {
    forward: g,
    backward,
    feeds: {
      x: f([2, 3], [0.5, -1.25, 2, 1.5, 0.25, -0.75]),
      W: f([3, 4], [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9, 1.0, -1.1, 0.05]),
      b: f([4], [0.01, -0.02, 0.03, 0.5]),
      [backward.seeds[y.name]]: f([2, 4], [1, -0.5, 2, 0.25, -1, 0.75, 0.5, 3]),
    },
  };
}
