/**
 * One gradient-descent step of the head with the gradient written out: for mean
 * softmax cross entropy, d(loss)/d(logits) = (softmax - onehot) / batch. This is the
 * same update `tf.train.sgd(lr).minimize(softmaxCrossEntropy)` makes, in about a third
 * of the kernels, with no gradient tape. The head is tiny, so at batch 100 kernel
 * overhead is most of a step's cost.
 */
import * as tf from '@tensorflow/tfjs';

export interface HeadVariables {
  weights: tf.Variable;
  biases: tf.Variable;
  classCount: number;
}

export function sgdStep(head: HeadVariables, x: tf.Tensor2D, y: tf.Tensor1D, learningRate: number): void {
  tf.tidy(() => {
    const logits = tf.add(tf.matMul(x, head.weights), head.biases);
    const scale = learningRate / x.shape[0];
    // lr * dL/dlogits, folded into one tensor so the two updates reuse it.
    const g = tf.mul(tf.sub(tf.softmax(logits), tf.oneHot(y, head.classCount)), scale);
    // xᵀ·g as (gᵀ·x)ᵀ: on the wasm backend, a product whose first operand is transposed
    // costs several times more than transposing the two small matrices around a plain
    // one (bench/head.ts).
    head.weights.assign(tf.sub(head.weights, tf.transpose(tf.matMul(tf.transpose(g), x))));
    head.biases.assign(tf.sub(head.biases, tf.sum(g, 0)));
  });
}
