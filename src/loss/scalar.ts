/**
 * A tiny reverse-mode autodiff over float64 scalars (in the spirit of karpathy/micrograd).
 *
 * Why not hand-written gradients: every objective below (IC-VCO with its ablations, five baselines)
 * is written once as forward math, exactly like the PyTorch reference, and dL/ds for each policy score
 * falls out of one backward sweep. Stop-gradient is `detach()`. The tests check every objective against
 * central finite differences, so a wrong local derivative here cannot hide.
 *
 * Pure TypeScript, no dependencies: this module is shared by the browser worker and the Node trainers.
 */

export class Scalar {
  grad = 0;
  constructor(
    readonly value: number,
    /** parents and the local derivative d(this)/d(parent) */
    private readonly parents: ReadonlyArray<readonly [Scalar, number]> = [],
  ) {}

  static of(x: number | Scalar): Scalar {
    return x instanceof Scalar ? x : new Scalar(x);
  }

  add(o: number | Scalar): Scalar {
    const b = Scalar.of(o);
    return new Scalar(this.value + b.value, [
      [this, 1],
      [b, 1],
    ]);
  }

  sub(o: number | Scalar): Scalar {
    return Scalar.linear([
      [this, 1],
      [o, -1],
    ]);
  }

  /**
   * Σ c_i·x_i with |c_i| <= 1, computed as n·Σ(c_i·x_i / n): for finite x_i the inner sum cannot overflow,
   * so the result is finite or ±Inf, never Inf - Inf = NaN (a margin of four huge log-probs stays signed).
   */
  static linear(terms: ReadonlyArray<readonly [number | Scalar, number]>): Scalar {
    const xs = terms.map(([x, c]) => [Scalar.of(x), c] as const);
    let direct = 0;
    for (const [x, c] of xs) direct += c * x.value;
    let v = direct;
    if (!Number.isFinite(direct) && xs.every(([x]) => Number.isFinite(x.value))) {
      const n = xs.length;
      v = 0;
      for (const [x, c] of xs) v += (c * x.value) / n;
      v *= n;
    }
    return new Scalar(v, xs);
  }

  mul(o: number | Scalar): Scalar {
    const b = Scalar.of(o);
    return new Scalar(this.value * b.value, [
      [this, b.value],
      [b, this.value],
    ]);
  }

  scale(k: number): Scalar {
    // a zero weight switches a term off, even an infinite one (0 * Inf would be NaN)
    return new Scalar(k === 0 ? 0 : this.value * k, [[this, k]]);
  }

  neg(): Scalar {
    return this.scale(-1);
  }

  /** stop-gradient: same value, no path back */
  detach(): Scalar {
    return new Scalar(this.value);
  }

  sigmoid(): Scalar {
    const s = sigmoid(this.value);
    return new Scalar(s, [[this, s * (1 - s)]]);
  }

  /** log σ(x), stable for any x; d/dx = σ(-x) */
  logSigmoid(): Scalar {
    return new Scalar(logSigmoid(this.value), [[this, sigmoid(-this.value)]]);
  }

  /** softplus(x) = log(1 + e^x); d/dx = σ(x) */
  softplus(): Scalar {
    return new Scalar(softplus(this.value), [[this, sigmoid(this.value)]]);
  }

  /** Accumulate d(this)/d(node) into node.grad for every node reachable from this one. */
  backward(): void {
    const order: Scalar[] = [];
    const seen = new Set<Scalar>();
    // iterative DFS post-order (objectives over large batches would overflow a recursive one)
    const stack: Array<[Scalar, number]> = [[this, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [node, i] = top;
      if (i === 0) {
        if (seen.has(node)) {
          stack.pop();
          continue;
        }
        seen.add(node);
      }
      if (i < node.parents.length) {
        top[1] = i + 1;
        const p = node.parents[i][0];
        if (!seen.has(p)) stack.push([p, 0]);
      } else {
        stack.pop();
        order.push(node);
      }
    }
    this.grad = 1;
    for (let k = order.length - 1; k >= 0; k--) {
      const node = order[k];
      if (node.grad === 0) continue;
      // a zero local derivative passes nothing back, even from an infinite upstream gradient
      for (const [p, local] of node.parents) if (local !== 0) p.grad += node.grad * local;
    }
  }
}

export function sum(xs: ReadonlyArray<Scalar>): Scalar {
  let acc = new Scalar(0);
  for (const x of xs) acc = acc.add(x);
  return acc;
}

export function mean(xs: ReadonlyArray<Scalar>): Scalar {
  return xs.length === 0 ? new Scalar(0) : sum(xs).scale(1 / xs.length);
}

// ---------------------------------------------------------------- plain float64 helpers

export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** log σ(x) = -softplus(-x), without overflow or cancellation */
export function logSigmoid(x: number): number {
  return -softplus(-x);
}

export function softplus(x: number): number {
  if (x > 0) return x + Math.log1p(Math.exp(-x));
  return Math.log1p(Math.exp(x));
}

export function logSumExp(xs: ReadonlyArray<number>): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  if (m === -Infinity) return -Infinity;
  if (m === Infinity) return Infinity;
  let s = 0;
  for (const x of xs) s += Math.exp(x - m);
  return m + Math.log(s);
}
