/** IR -> ONNX ModelProto bytes, through onnx-proto (protobufjs code generated from onnx.proto). */
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import type { AttrValue, DType, Graph, TypedArray, Value } from './ir.js';
import { MS_DOMAIN, ONNX_DTYPE, OPSET } from './ops.js';

// onnx-proto is CommonJS: take the namespace off its default export (works in Node ESM and in Vite)
const { onnx } = onnxProto as unknown as { onnx: typeof OnnxTypes };

const IR_VERSION = 8;

function valueInfo(v: Value): OnnxTypes.IValueInfoProto {
  return {
    name: v.name,
    type: { tensorType: { elemType: ONNX_DTYPE[v.dtype], shape: { dim: v.shape.map((d) => ({ dimValue: d })) } } },
  };
}

function rawBytes(data: TypedArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function tensor(name: string, dtype: DType, shape: readonly number[], data: TypedArray): OnnxTypes.ITensorProto {
  // raw_data is little-endian bytes, which is what typed arrays hold on every platform ORT runs on
  return { name, dims: [...shape], dataType: ONNX_DTYPE[dtype], rawData: rawBytes(data) };
}

function attribute(name: string, v: AttrValue): OnnxTypes.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { name, type: T.INT, i: v } : { name, type: T.FLOAT, f: v };
  }
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  if ('int' in v) return { name, type: T.INT, i: v.int };
  return { name, type: T.FLOATS, floats: v.floats };
}

export function toModelProto(g: Graph, docString = ''): OnnxTypes.IModelProto {
  const usesMs = g.nodes.some((n) => n.domain === MS_DOMAIN);
  return {
    irVersion: IR_VERSION,
    producerName: 'vco-lab',
    docString,
    opsetImport: [{ domain: '', version: OPSET }, ...(usesMs ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
    graph: {
      name: g.name,
      input: g.inputs.map(valueInfo),
      output: g.outputs.map(valueInfo),
      initializer: g.initializers.map((i) => tensor(i.value.name, i.value.dtype, i.value.shape, i.data)),
      node: g.nodes.map((n, k) => ({
        name: `${n.op}_${k}`,
        opType: n.op,
        domain: n.domain,
        input: n.inputs.map((x) => (x ? x.name : '')),
        output: n.outputs.map((o) => o.name),
        attribute: Object.entries(n.attrs).map(([k2, v]) => attribute(k2, v)),
      })),
    },
  };
}

export function serialize(g: Graph, docString = ''): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.create(toModelProto(g, docString))).finish();
}
