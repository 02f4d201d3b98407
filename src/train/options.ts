/**
 * Training options beyond retrain.py's plain SGD head: optimizer choice, label
 * smoothing, class weighting and early stopping. Their defaults reproduce
 * retrain.py exactly, so trainHead only consults this file.
 */
import * as tf from '@tensorflow/tfjs';
import type { ClassWeighting, OptimizerName } from './limits.js';

export { CLASS_WEIGHTINGS, MAX_BOTTLENECK_BATCH, MAX_HIDDEN_UNITS, MAX_IMAGE_BATCH, OPTIMIZERS, type ClassWeighting, type OptimizerName } from './limits.js';

/** Options of the head and its loss; all optional, absent = retrain.py. */
export interface HeadTrainingOptions {
  optimizer?: OptimizerName;
  /** 0: no hidden layer (retrain.py). */
  hiddenUnits?: number;
  /** Dropout rate on the head's inputs while training. */
  dropout?: number;
  labelSmoothing?: number;
  classWeighting?: ClassWeighting;
  /** 0: off. Evaluations without a validation improvement before training stops. */
  earlyStoppingPatience?: number;
}

/** Momentum 0.9 and Adam's defaults: the values the Keras tutorials use. */
export function makeOptimizer(name: OptimizerName, learningRate: number): tf.Optimizer {
  switch (name) {
    case 'sgd':
      return tf.train.sgd(learningRate);
    case 'momentum':
      return tf.train.momentum(learningRate, 0.9);
    case 'adam':
      return tf.train.adam(learningRate);
  }
}

/**
 * Per-class loss weights. "balanced" is scikit-learn's n / (classes * n_class), so
 * every class contributes equally however many images its folder has.
 */
export function classWeights(y: Int32Array, classCount: number, mode: ClassWeighting = 'none'): Float32Array {
  const w = new Float32Array(classCount).fill(1);
  if (mode === 'none') return w;
  const counts = new Float32Array(classCount);
  for (const k of y) counts[k]! += 1;
  for (let k = 0; k < classCount; k++) w[k] = counts[k]! > 0 ? y.length / (classCount * counts[k]!) : 0;
  return w;
}

/** Softmax cross entropy with optional label smoothing and per-class weights; mean over the batch. */
export function headLoss(logits: tf.Tensor2D, y: tf.Tensor1D, classCount: number, labelSmoothing = 0, weights?: Float32Array): tf.Scalar {
  return tf.tidy(() => {
    const labels = tf.oneHot(y, classCount);
    if (!weights || weights.every((v) => v === 1)) {
      return tf.losses.softmaxCrossEntropy(labels, logits, undefined, labelSmoothing) as tf.Scalar;
    }
    const perExample = tf.gather(tf.tensor1d(weights), y);
    // Divided by the batch size rather than the weight sum, as Keras' class_weight does.
    return tf.div(
      tf.sum(tf.losses.softmaxCrossEntropy(labels, logits, perExample, labelSmoothing, tf.Reduction.NONE)),
      y.shape[0],
    ) as tf.Scalar;
  });
}

/** Tracks validation accuracy; says when to stop and which evaluation was best. */
export class EarlyStopping {
  best = -Infinity;
  bestStep = -1;
  private since = 0;
  constructor(readonly patience: number) {}
  /** True when this evaluation is a new best (the caller keeps a copy of the head). */
  update(step: number, accuracy: number): boolean {
    if (accuracy > this.best) {
      this.best = accuracy;
      this.bestStep = step;
      this.since = 0;
      return true;
    }
    this.since++;
    return false;
  }
  get shouldStop(): boolean {
    return this.patience > 0 && this.since >= this.patience;
  }
}
