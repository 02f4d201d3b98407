import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { encodeModel } from '../src/module/onnx/builder.js';
import { UnsupportedOpsError, convertLayersModel } from '../src/module/onnx/convert.js';
import { maxAbsDiff } from '../src/module/onnx/probe.js';
import { createOnnxSession } from '../src/module/onnx/session.js';
import { useCpuBackend } from './helpers/fixtures.js';

// Unequal sizes, one even: with stride 2 and a 3-wide kernel TF's 'SAME' pads one more row after than before.
const H = 10;
const W = 11;
const TOL = 1e-4;

before(useCpuBackend);

let seed = 1;
const init = (lo = -0.5, hi = 0.5) => tf.initializers.randomUniform({ minval: lo, maxval: hi, seed: seed++ });
const conv = (cfg: Partial<Parameters<typeof tf.layers.conv2d>[0]> = {}) =>
  tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', kernelInitializer: init(), biasInitializer: init(), ...cfg });
const apply = (l: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]) => l.apply(x) as tf.SymbolicTensor;

/** Runs `model` on tfjs and on ORT (converted) with the same random batch; returns the max abs difference. */
async function compare(model: tf.LayersModel, outputLayer?: string): Promise<number> {
  const [, h, w] = model.inputs[0]!.shape as number[];
  const proto = convertLayersModel(model, { height: h!, width: w!, outputLayer });
  const session = await createOnnxSession(encodeModel(proto), { threads: 1 });
  try {
    const x = tf.randomUniform([3, h!, w!, 3], -1, 1, 'float32', 7);
    const cut = outputLayer ? tf.model({ inputs: model.inputs, outputs: model.getLayer(outputLayer).output as tf.SymbolicTensor }) : model;
    const want = tf.tidy(() => (cut.predict(x) as tf.Tensor).reshape([3, -1]).dataSync() as Float32Array);
    const got = await session.run(x.dataSync() as Float32Array, 3, h!, w!);
    x.dispose();
    assert.equal(got.length, want.length, 'output sizes differ');
    return maxAbsDiff(got, want);
  } finally {
    await session.dispose();
  }
}

/** A model from input [H, W, 3] through `body`, flattened (NHWC order) to a vector. */
function fixture(body: (x: tf.SymbolicTensor) => tf.SymbolicTensor): tf.LayersModel {
  const input = tf.input({ shape: [H, W, 3] });
  let y = body(input);
  if (y.shape.length !== 2) y = apply(tf.layers.flatten(), y);
  return tf.model({ inputs: input, outputs: y });
}

const cases: Record<string, (x: tf.SymbolicTensor) => tf.SymbolicTensor> = {
  'Conv2D same, stride 2, relu': (x) => apply(conv({ strides: 2, activation: 'relu' }), x),
  'Conv2D valid, stride [2,1], no bias': (x) => apply(conv({ padding: 'valid', strides: [2, 1], useBias: false }), x),
  'Conv2D same, dilation 2, 5x3 kernel': (x) => apply(conv({ kernelSize: [5, 3], dilationRate: 2 }), x),
  'DepthwiseConv2D same, stride 2, multiplier 2, relu6': (x) =>
    apply(tf.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 2, activation: 'relu6', depthwiseInitializer: init(), biasInitializer: init() }), x),
  'DepthwiseConv2D valid': (x) => apply(tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'valid', depthwiseInitializer: init(), biasInitializer: init() }), x),
  'SeparableConv2D same, stride 2': (x) =>
    apply(
      tf.layers.separableConv2d({
        filters: 5,
        kernelSize: 3,
        strides: 2,
        padding: 'same',
        depthMultiplier: 2,
        depthwiseInitializer: init(),
        pointwiseInitializer: init(),
        biasInitializer: init(),
      }),
      x,
    ),
  BatchNormalization: (x) =>
    apply(
      tf.layers.batchNormalization({
        epsilon: 0.01,
        gammaInitializer: init(0.5, 1.5),
        betaInitializer: init(),
        movingMeanInitializer: init(),
        movingVarianceInitializer: init(0.2, 2),
      }),
      apply(conv(), x),
    ),
  'BatchNormalization without scale and center': (x) =>
    apply(tf.layers.batchNormalization({ scale: false, center: false, movingMeanInitializer: init(), movingVarianceInitializer: init(0.2, 2) }), x),
  'ReLU, ReLU(maxValue 6)': (x) => apply(tf.layers.reLU({ maxValue: 6 }), apply(tf.layers.reLU(), apply(conv({ kernelInitializer: init(-4, 4) }), x))),
  'Activation sigmoid, tanh, swish, hardSigmoid, elu': (x) => {
    let y = apply(conv(), x);
    for (const a of ['sigmoid', 'tanh', 'swish', 'hardSigmoid', 'elu'] as const) y = apply(tf.layers.conv2d({ filters: 4, kernelSize: 1, activation: a, kernelInitializer: init(-2, 2) }), y);
    return y;
  },
  'LeakyReLU, ELU': (x) => apply(tf.layers.elu({}), apply(tf.layers.leakyReLU({ alpha: 0.1 }), apply(conv(), x))),
  'Add, Multiply, Maximum, Minimum': (x) => {
    const a = apply(conv(), x);
    const b = apply(conv(), x);
    const c = apply(conv(), x);
    const extremes = apply(tf.layers.add(), [apply(tf.layers.maximum(), [a, b]), apply(tf.layers.minimum(), [b, c])]);
    return apply(tf.layers.multiply(), [apply(tf.layers.add(), [a, b, c]), extremes]);
  },
  'Rescaling (x / 127.5 - 1), Average': (x) => {
    const scaled = apply(tf.layers.rescaling({ scale: 1 / 127.5, offset: -1 }), x);
    return apply(tf.layers.average(), [apply(conv(), scaled), apply(conv(), scaled), apply(conv(), x)]);
  },
  'ZeroPadding2D asymmetric': (x) => apply(conv({ padding: 'valid' }), apply(tf.layers.zeroPadding2d({ padding: [[1, 2], [0, 3]] }), x)),
  'MaxPooling2D same stride 2, AveragePooling2D same 3x3 stride 2': (x) =>
    apply(tf.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }), apply(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: 'same' }), apply(conv(), x))),
  'MaxPooling2D valid, AveragePooling2D valid': (x) =>
    apply(tf.layers.averagePooling2d({ poolSize: [2, 3], padding: 'valid' }), apply(tf.layers.maxPooling2d({ poolSize: 2, strides: 1, padding: 'valid' }), x)),
  GlobalAveragePooling2D: (x) => apply(tf.layers.globalAveragePooling2d({}), apply(conv({ filters: 6 }), x)),
  GlobalMaxPooling2D: (x) => apply(tf.layers.globalMaxPooling2d({}), apply(conv({ filters: 6 }), x)),
  'Concatenate on channels': (x) => apply(tf.layers.concatenate({ axis: -1 }), [apply(conv({ filters: 2 }), x), apply(conv({ filters: 3 }), x)]),
  'Reshape of a 4x5 map to [20, 4] then Dense': (x) =>
    apply(tf.layers.dense({ units: 3, kernelInitializer: init(), biasInitializer: init() }), apply(tf.layers.reshape({ targetShape: [20, 4] }), apply(conv({ padding: 'valid', strides: 2 }), x))),
  'Reshape with an open size ([-1, 4]), then to [80]': (x) =>
    apply(tf.layers.reshape({ targetShape: [80] }), apply(tf.layers.reshape({ targetShape: [-1, 4] }), apply(conv({ padding: 'valid', strides: 2 }), x))),
  'Flatten, Dense relu, Dropout, Dense softmax': (x) =>
    apply(
      tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init() }),
      apply(tf.layers.dropout({ rate: 0.5 }), apply(tf.layers.dense({ units: 6, activation: 'relu', kernelInitializer: init(), biasInitializer: init() }), apply(tf.layers.flatten(), apply(conv(), x)))),
    ),
};

for (const [name, body] of Object.entries(cases)) {
  test(`layers ${name}: ONNX Runtime gives tfjs' output within ${TOL}`, async () => {
    const d = await compare(fixture(body));
    assert.ok(d <= TOL, `max abs diff ${d}`);
  });
}

/** A functional block as its own model, for nesting. */
function block(shape: number[]): tf.LayersModel {
  const input = tf.input({ shape });
  const a = apply(conv({ strides: 2, activation: 'relu' }), input);
  const b = apply(tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthwiseInitializer: init(), biasInitializer: init() }), a);
  return tf.model({ inputs: input, outputs: apply(tf.layers.add(), [a, b]), name: `block${seed++}` });
}

test('a Sequential holding a functional model (as Keras MobileNet V2 feature extractors are) converts', async () => {
  const seq = tf.sequential();
  seq.add(block([H, W, 3]));
  seq.add(tf.layers.globalAveragePooling2d({}));
  const d = await compare(seq);
  assert.ok(d <= TOL, `max abs diff ${d}`);
});

test('a functional model holding a Sequential holding a functional model converts, cut at an inner layer', async () => {
  const inner = tf.sequential({ name: 'inner_seq' });
  inner.add(block([H, W, 3]));
  inner.add(tf.layers.conv2d({ filters: 3, kernelSize: 1, kernelInitializer: init() }));
  const input = tf.input({ shape: [H, W, 3] });
  const y = apply(inner, input);
  const pooled = apply(tf.layers.globalAveragePooling2d({ name: 'features' }), y);
  const logits = apply(tf.layers.dense({ units: 2, name: 'logits', kernelInitializer: init() }), pooled);
  const model = tf.model({ inputs: input, outputs: logits });
  const atFeatures = await compare(model, 'features');
  assert.ok(atFeatures <= TOL, `at features: max abs diff ${atFeatures}`);
  const atLogits = await compare(model);
  assert.ok(atLogits <= TOL, `at logits: max abs diff ${atLogits}`);
});

test('the same nested model applied twice converts each application with its own inputs', async () => {
  const shared = block([H, W, 3]);
  const input = tf.input({ shape: [H, W, 3] });
  const flipped = apply(tf.layers.conv2d({ filters: 3, kernelSize: 1, kernelInitializer: init() }), input);
  const a = apply(tf.layers.globalAveragePooling2d({}), apply(shared, input));
  const b = apply(tf.layers.globalAveragePooling2d({}), apply(shared, flipped));
  const d = await compare(tf.model({ inputs: input, outputs: apply(tf.layers.concatenate({}), [a, b]) }));
  assert.ok(d <= TOL, `max abs diff ${d}`);
});

test('layers outside the covered set are reported by class name, all at once', () => {
  const model = fixture((x) => apply(tf.layers.upSampling2d({ size: [2, 2] }), apply(tf.layers.conv2dTranspose({ filters: 2, kernelSize: 3 }), x)));
  assert.throws(
    () => convertLayersModel(model, { height: H, width: W }),
    (err: unknown) => err instanceof UnsupportedOpsError && err.ops.join() === 'Conv2DTranspose,UpSampling2D' && /Conv2DTranspose, UpSampling2D/.test(err.message),
  );
});

test('an unsupported activation or data format is named with the layer', () => {
  const model = fixture((x) => apply(conv({ activation: 'softplus' }), x));
  assert.throws(
    () => convertLayersModel(model, { height: H, width: W }),
    (err: unknown) => err instanceof UnsupportedOpsError && err.ops.join() === 'Conv2D(activation=softplus)',
  );
});
