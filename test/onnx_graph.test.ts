import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { encodeModel } from '../src/module/onnx/builder.js';
import { UnsupportedOpsError, convertGraphArtifacts } from '../src/module/onnx/convert.js';
import { maxAbsDiff } from '../src/module/onnx/probe.js';
import { createOnnxSession } from '../src/module/onnx/session.js';
import { useCpuBackend } from './helpers/fixtures.js';

/**
 * Small TF.js graph models written as the TF.js converter writes them (GraphDef JSON,
 * constants in the weights manifest), so tfjs' own graph executor is the reference
 * for how each attribute (strides, padding, explicit_paddings, fused_ops...) reads.
 */
const H = 10;
const W = 11;
const TOL = 1e-4;

before(useCpuBackend);

interface Node {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, unknown>;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const attr = {
  s: (v: string) => ({ s: b64(v) }),
  ints: (v: number[]) => ({ list: { i: v.map(String) } }),
  strs: (v: string[]) => ({ list: { s: v.map(b64) } }),
  f: (v: number) => ({ f: v }),
  b: (v: boolean) => ({ b: v }),
  T: { type: 'DT_FLOAT' },
};

class GraphFixture {
  readonly nodes: Node[] = [];
  private readonly weights: Array<{ name: string; shape: number[]; dtype: 'float32' | 'int32'; data: Float32Array | Int32Array }> = [];
  private seed = 1;
  private count = 0;

  constructor() {
    this.nodes.push({
      name: 'input',
      op: 'Placeholder',
      attr: { dtype: attr.T, shape: { shape: { dim: [-1, H, W, 3].map((d) => ({ size: String(d) })) } } },
    });
  }

  private name(op: string): string {
    return `${op.toLowerCase()}_${this.count++}`;
  }

  const(shape: number[], lo = -0.5, hi = 0.5): string {
    const t = tf.randomUniform(shape, lo, hi, 'float32', this.seed++);
    return this.constOf(Float32Array.from(t.dataSync()), shape);
  }

  constOf(data: Float32Array | Int32Array, shape: number[]): string {
    const name = this.name('Const');
    const dtype = data instanceof Int32Array ? 'int32' : 'float32';
    const type = dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT';
    this.nodes.push({ name, op: 'Const', attr: { dtype: { type }, value: { tensor: { dtype: type, tensorShape: { dim: shape.map((d) => ({ size: String(d) })) } } } } });
    this.weights.push({ name, shape, dtype, data });
    return name;
  }

  op(op: string, input: string[], a: Record<string, unknown> = {}): string {
    const name = this.name(op);
    this.nodes.push({ name, op, input, attr: { T: attr.T, ...a } });
    return name;
  }

  artifacts(): tf.io.ModelArtifacts {
    const bytes = this.weights.map((w) => new Uint8Array(w.data.buffer.slice(0)));
    const all = new Uint8Array(bytes.reduce((s, b) => s + b.length, 0));
    let at = 0;
    for (const b of bytes) {
      all.set(b, at);
      at += b.length;
    }
    return {
      format: 'graph-model',
      modelTopology: { node: this.nodes, versions: { producer: 1 } },
      weightSpecs: this.weights.map(({ name, shape, dtype }) => ({ name, shape, dtype })),
      weightData: all.buffer,
    };
  }
}

const conv = (strides: number[], padding: string, more: Record<string, unknown> = {}) => ({
  strides: attr.ints(strides),
  padding: attr.s(padding),
  data_format: attr.s('NHWC'),
  dilations: attr.ints([1, 1, 1, 1]),
  ...more,
});

/** Compares ORT with tfjs' execute at `last`, flattened (NHWC order) to [N, D] by a Reshape node unless `flatten` is false. */
async function compare(g: GraphFixture, last: string, flatten = true): Promise<number> {
  const x = tf.randomUniform([3, H, W, 3], -1, 1, 'float32', 11);
  const model = await tf.loadGraphModel(tf.io.fromMemory(g.artifacts()));
  const y = model.execute(x, last) as tf.Tensor;
  const want = y.reshape([3, -1]).dataSync() as Float32Array;
  const out = flatten ? g.op('Reshape', [last, g.constOf(Int32Array.of(-1, y.size / 3), [2])], { Tshape: { type: 'DT_INT32' } }) : last;
  y.dispose();
  model.dispose();
  const session = await createOnnxSession(encodeModel(convertGraphArtifacts(g.artifacts(), { outputNode: out, height: H, width: W })), { threads: 1 });
  try {
    const got = await session.run(x.dataSync() as Float32Array, 3, H, W);
    assert.equal(got.length, want.length, 'output sizes differ');
    return maxAbsDiff(got, want);
  } finally {
    x.dispose();
    await session.dispose();
  }
}

const cases: Record<string, (g: GraphFixture) => string> = {
  'Conv2D SAME stride 2 + BiasAdd + Relu6': (g) => g.op('Relu6', [g.op('BiasAdd', [g.op('Conv2D', ['input', g.const([3, 3, 3, 4])], conv([1, 2, 2, 1], 'SAME')), g.const([4])])]),
  'Conv2D VALID strides [2,1], dilations 2': (g) => g.op('Conv2D', ['input', g.const([3, 2, 3, 4])], conv([1, 1, 1, 1], 'VALID', { dilations: attr.ints([1, 2, 2, 1]) })),
  'Conv2D EXPLICIT padding': (g) =>
    g.op('Conv2D', ['input', g.const([3, 3, 3, 4])], conv([1, 2, 2, 1], 'EXPLICIT', { explicit_paddings: attr.ints([0, 0, 1, 2, 0, 3, 0, 0]) })),
  '_FusedConv2D BiasAdd,Relu SAME stride 2': (g) =>
    g.op('_FusedConv2D', ['input', g.const([3, 3, 3, 5]), g.const([5])], conv([1, 2, 2, 1], 'SAME', { fused_ops: attr.strs(['BiasAdd', 'Relu']), num_args: { i: '1' }, epsilon: attr.f(0) })),
  '_FusedConv2D BiasAdd only, 1x1': (g) =>
    g.op('_FusedConv2D', ['input', g.const([1, 1, 3, 5]), g.const([5])], conv([1, 1, 1, 1], 'VALID', { fused_ops: attr.strs(['BiasAdd']), num_args: { i: '1' } })),
  'DepthwiseConv2dNative SAME stride 2, multiplier 2': (g) => g.op('DepthwiseConv2dNative', ['input', g.const([3, 3, 3, 2])], conv([1, 2, 2, 1], 'SAME')),
  'FusedDepthwiseConv2dNative BiasAdd,Relu6 VALID': (g) =>
    g.op('FusedDepthwiseConv2dNative', ['input', g.const([3, 3, 3, 1]), g.const([3])], conv([1, 1, 1, 1], 'VALID', { fused_ops: attr.strs(['BiasAdd', 'Relu6']), num_args: { i: '1' } })),
  'FusedBatchNormV3': (g) =>
    g.op('FusedBatchNormV3', ['input', g.const([3], 0.5, 1.5), g.const([3]), g.const([3]), g.const([3], 0.2, 2)], { epsilon: attr.f(0.001), data_format: attr.s('NHWC'), is_training: attr.b(false) }),
  'Sigmoid, Tanh, Elu, LeakyRelu': (g) => g.op('LeakyRelu', [g.op('Elu', [g.op('Tanh', [g.op('Sigmoid', ['input'])])])], { alpha: attr.f(0.2) }),
  'swish: Mul(x, Sigmoid(x))': (g) => {
    const x = g.op('Conv2D', ['input', g.const([1, 1, 3, 4], -3, 3)], conv([1, 1, 1, 1], 'VALID'));
    return g.op('Mul', [x, g.op('Sigmoid', [x])]);
  },
  'hard-swish: x * Relu6(x + 3) * (1/6)': (g) => {
    const x = g.op('Conv2D', ['input', g.const([1, 1, 3, 4], -6, 6)], conv([1, 1, 1, 1], 'VALID'));
    return g.op('Mul', [g.op('Mul', [x, g.op('Relu6', [g.op('AddV2', [x, g.constOf(Float32Array.of(3), [])])])]), g.constOf(Float32Array.of(1 / 6), [])]);
  },
  'Add, AddV2, Mul, Sub with per-channel, scalar, [W,C], [H,W,C] and leading constants': (g) => {
    const a = g.op('Mul', ['input', g.const([3])]);
    const b = g.op('Sub', [g.constOf(Float32Array.of(0.25), []), a]);
    const c = g.op('AddV2', [b, g.const([1, 1, 1, 3])]);
    return g.op('Mul', [g.op('Add', [g.op('Sub', [c, g.const([W, 3])]), a]), g.const([H, W, 3])]);
  },
  'RealDiv, Maximum, Minimum': (g) => g.op('Minimum', [g.op('Maximum', [g.op('RealDiv', ['input', g.const([3], 0.5, 2)]), g.const([3])]), g.constOf(Float32Array.of(0.3), [])]),
  'Pad asymmetric + VALID conv': (g) =>
    g.op('Conv2D', [g.op('Pad', ['input', g.constOf(Int32Array.of(0, 0, 1, 2, 0, 1, 0, 0), [4, 2])], { Tpaddings: { type: 'DT_INT32' } }), g.const([3, 3, 3, 2])], conv([1, 2, 2, 1], 'VALID')),
  'AvgPool SAME 3x3 stride 2, MaxPool VALID 2x2': (g) =>
    g.op('MaxPool', [g.op('AvgPool', ['input'], { ksize: attr.ints([1, 3, 3, 1]), strides: attr.ints([1, 2, 2, 1]), padding: attr.s('SAME'), data_format: attr.s('NHWC') })], {
      ksize: attr.ints([1, 2, 2, 1]),
      strides: attr.ints([1, 1, 1, 1]),
      padding: attr.s('VALID'),
      data_format: attr.s('NHWC'),
    }),
  'MaxPool SAME stride 2': (g) => g.op('MaxPool', ['input'], { ksize: attr.ints([1, 3, 2, 1]), strides: attr.ints([1, 2, 2, 1]), padding: attr.s('SAME'), data_format: attr.s('NHWC') }),
  'Mean over H,W keep_dims': (g) => g.op('Mean', ['input', g.constOf(Int32Array.of(1, 2), [2])], { keep_dims: attr.b(true), Tidx: { type: 'DT_INT32' } }),
  'Mean over W keep_dims': (g) => g.op('Mean', ['input', g.constOf(Int32Array.of(2), [1])], { keep_dims: attr.b(true), Tidx: { type: 'DT_INT32' } }),
  'Mean over H only': (g) => g.op('Mean', ['input', g.constOf(Int32Array.of(1), [1])], { keep_dims: attr.b(false), Tidx: { type: 'DT_INT32' } }),
  'ConcatV2 on channels': (g) =>
    g.op('ConcatV2', [g.op('Relu', ['input']), g.op('Conv2D', ['input', g.const([1, 1, 3, 2])], conv([1, 1, 1, 1], 'VALID')), g.constOf(Int32Array.of(3), [])], { N: { i: '2' }, Tidx: { type: 'DT_INT32' } }),
  'ConcatV2 on width': (g) => g.op('ConcatV2', ['input', g.op('Relu', ['input']), g.constOf(Int32Array.of(2), [])], { N: { i: '2' }, Tidx: { type: 'DT_INT32' } }),
  'Reshape [N,H,W,C] to [N,H,W*C,1] and back through a conv': (g) =>
    g.op('Conv2D', [g.op('Reshape', ['input', g.constOf(Int32Array.of(-1, H, W * 3, 1), [4])]), g.const([2, 2, 1, 2])], conv([1, 1, 1, 1], 'VALID')),
};

for (const [name, body] of Object.entries(cases)) {
  test(`graph ${name}: ONNX Runtime gives tfjs' output within ${TOL}`, async () => {
    const g = new GraphFixture();
    const d = await compare(g, body(g));
    assert.ok(d <= TOL, `max abs diff ${d}`);
  });
}

test('graph Mean + Squeeze to a vector, MatMul (transpose_b) and _FusedMatMul BiasAdd,Relu', async () => {
  const g = new GraphFixture();
  const conv1 = g.op('Conv2D', ['input', g.const([3, 3, 3, 6])], conv([1, 2, 2, 1], 'SAME'));
  const pooled = g.op('Squeeze', [g.op('Mean', [conv1, g.constOf(Int32Array.of(1, 2), [2])], { keep_dims: attr.b(true), Tidx: { type: 'DT_INT32' } })], { squeeze_dims: attr.ints([1, 2]) });
  const mm = g.op('MatMul', [pooled, g.const([5, 6])], { transpose_a: attr.b(false), transpose_b: attr.b(true) });
  const fused = g.op('_FusedMatMul', [mm, g.const([5, 4]), g.const([4])], { fused_ops: attr.strs(['BiasAdd', 'Relu']), num_args: { i: '1' }, transpose_a: attr.b(false), transpose_b: attr.b(false) });
  const d = await compare(g, fused, false);
  assert.ok(d <= TOL, `max abs diff ${d}`);
});

test('graph AvgPool to 1x1 and Squeeze (the TF Hub feature-vector ending) gives [N, D]', async () => {
  const g = new GraphFixture();
  const pooled = g.op('AvgPool', ['input'], { ksize: attr.ints([1, H, W, 1]), strides: attr.ints([1, 1, 1, 1]), padding: attr.s('VALID'), data_format: attr.s('NHWC') });
  const d = await compare(g, g.op('Squeeze', [pooled], { squeeze_dims: attr.ints([1, 2]) }), false);
  assert.ok(d <= TOL, `max abs diff ${d}`);
});

test('ops outside the covered set are named, only for nodes the bottleneck depends on', () => {
  const g = new GraphFixture();
  const cum = g.op('Cumsum', ['input', g.constOf(Int32Array.of(1), [])]);
  const erf = g.op('Erf', [cum]);
  const fused = g.op('_FusedConv2D', [erf, g.const([1, 1, 3, 2]), g.const([2]), g.const([2])], conv([1, 1, 1, 1], 'VALID', { fused_ops: attr.strs(['BiasAdd', 'Prelu']) }));
  const out = g.op('Reshape', [fused, g.constOf(Int32Array.of(-1, H * W * 2), [2])]);
  // A branch the bottleneck doesn't read: not reported.
  g.op('Softplus', ['input']);
  assert.throws(
    () => convertGraphArtifacts(g.artifacts(), { outputNode: out, height: H, width: W }),
    (err: unknown) => err instanceof UnsupportedOpsError && err.ops.join() === 'Cumsum,Erf,_FusedConv2D(BiasAdd,Prelu)',
  );
});

test('a Reshape that mixes images of the batch ([N*H*W, C]) is reported, not converted wrongly', () => {
  const g = new GraphFixture();
  const rows = g.op('Reshape', ['input', g.constOf(Int32Array.of(-1, 3), [2])]);
  const out = g.op('Mean', [rows, g.constOf(Int32Array.of(1), [1])], { keep_dims: attr.b(false), Tidx: { type: 'DT_INT32' } });
  assert.throws(
    () => convertGraphArtifacts(g.artifacts(), { outputNode: out, height: H, width: W }),
    (err: unknown) => err instanceof UnsupportedOpsError && /Reshape\(.*mixes the batch\)/.test(err.ops.join()),
  );
});
