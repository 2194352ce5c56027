/**
 * A small graph IR with static dtype and shape tracking. Every builder method infers its output's dtype and
 * shape, so the autodiff can un-broadcast gradients and every graph is checked before ORT ever sees it.
 * The IR knows nothing of models or runtimes; serialize.ts turns it into an ONNX ModelProto.
 */

export type DType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'uint8' | 'bool';

export type TypedArray = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

export interface Value {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export type AttrValue = number | string | number[] | { float: number } | { floats: number[] } | { int: number };

export interface Node {
  op: string;
  domain: string;
  inputs: Array<Value | null>;
  outputs: Value[];
  attrs: Record<string, AttrValue>;
}

export interface Initializer {
  value: Value;
  data: TypedArray;
}

export class GraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphError';
  }
}

export const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function broadcastShapes(...shapes: ReadonlyArray<readonly number[]>): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const x = s[s.length - rank + i] ?? 1;
      if (x !== 1) {
        if (d !== 1 && d !== x) throw new GraphError(`shapes [${shapes.map((s) => s.join(',')).join('] [')}] do not broadcast`);
        d = x;
      }
    }
    out.push(d);
  }
  return out;
}

export const isFloat = (d: DType) => d === 'float32' || d === 'float64' || d === 'float16';

export function typedArrayFor(dtype: DType, data: ArrayLike<number> | ArrayLike<bigint>): TypedArray {
  switch (dtype) {
    case 'float32':
      return Float32Array.from(data as ArrayLike<number>);
    case 'float64':
      return Float64Array.from(data as ArrayLike<number>);
    case 'int64':
      return BigInt64Array.from(Array.from(data as ArrayLike<number | bigint>, (x) => BigInt(x)));
    case 'int32':
      return Int32Array.from(data as ArrayLike<number>);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(data as ArrayLike<number>);
    case 'float16':
      throw new GraphError('float16 constants must be given as raw Uint16Array bits');
  }
}

/**
 * The graph under construction. Builder methods live in ops.ts (one per ONNX operator, each inferring its
 * output shape); this class holds the lists and the names.
 */
export class Graph {
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly nodes: Node[] = [];
  readonly initializers: Initializer[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(readonly name = 'graph') {}

  /** a fresh value name with a readable stem */
  fresh(stem: string): string {
    let n: string;
    do n = `${stem}_${this.counter++}`;
    while (this.names.has(n));
    this.names.add(n);
    return n;
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new GraphError(`value name "${name}" is already used in graph "${this.name}"`);
    this.names.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: readonly number[]): Value {
    const v: Value = { name: this.claim(name), dtype, shape: [...shape] };
    this.inputs.push(v);
    return v;
  }

  /** an initializer: a constant stored in the model (keep these small; weights are graph inputs) */
  constant(data: TypedArray | number[], shape: readonly number[], dtype: DType = 'float32', stem = 'const'): Value {
    const arr = Array.isArray(data) ? typedArrayFor(dtype, data) : data;
    if (arr.length !== numel(shape)) {
      throw new GraphError(`constant ${stem}: ${arr.length} values for shape [${shape.join(', ')}]`);
    }
    const v: Value = { name: this.fresh(stem), dtype, shape: [...shape] };
    this.initializers.push({ value: v, data: arr });
    return v;
  }

  scalar(x: number, dtype: DType = 'float32'): Value {
    return this.constant([x], [], dtype, 'scalar');
  }

  ints(xs: readonly number[]): Value {
    return this.constant(typedArrayFor('int64', xs), [xs.length], 'int64', 'ints');
  }

  node(
    op: string,
    inputs: Array<Value | null>,
    outputs: Array<{ dtype: DType; shape: readonly number[]; stem?: string }>,
    attrs: Record<string, AttrValue> = {},
    domain = '',
  ): Value[] {
    const outs = outputs.map((o) => ({ name: this.fresh(o.stem ?? op.toLowerCase()), dtype: o.dtype, shape: [...o.shape] }));
    this.nodes.push({ op, domain, inputs, outputs: outs, attrs });
    return outs;
  }

  /** mark a value as a graph output, optionally renamed (an Identity node carries the new name) */
  output(v: Value, name?: string): Value {
    if (name && name !== v.name) {
      const out: Value = { name: this.claim(name), dtype: v.dtype, shape: v.shape };
      this.nodes.push({ op: 'Identity', domain: '', inputs: [v], outputs: [out], attrs: {} });
      this.outputs.push(out);
      return out;
    }
    this.outputs.push(v);
    return v;
  }

  /** take over another graph's inputs, constants, nodes and names (not its outputs) */
  protected adopt(other: Graph): void {
    this.inputs.push(...other.inputs);
    this.initializers.push(...other.initializers);
    this.nodes.push(...other.nodes);
    for (const n of other.names) this.names.add(n);
    this.counter = other.counter;
  }

  producers(): Map<string, Node> {
    const m = new Map<string, Node>();
    for (const n of this.nodes) for (const o of n.outputs) m.set(o.name, n);
    return m;
  }
}
