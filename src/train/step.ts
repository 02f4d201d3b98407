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

/**
 * The same SGD in its dual form, for training sets with no more rows than the
 * bottleneck has values (flowers-dev: 480 rows of 1280). The weights are always
 * W0 - Xᵀ·A, with X the training rows and A [rows, classes] the scaled gradients each
 * row has received, so a step needs only K[batch]·A with the Gram matrix K = X·Xᵀ,
 * computed once: a product over the rows instead of two over the bottleneck, no
 * bottleneck-sized operand to pack per step, and the update is a scatter into A. It
 * is the same arithmetic as `sgdStep` up to float32 rounding (a test compares them).
 */
/** The values of the tensor `f` returns, which is then disposed. */
function read(f: () => tf.Tensor): Float32Array {
  const t = tf.tidy(f);
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
}

export class DualSgdSteps {
  /**
   * Whether the dual form is the cheaper one for `rows` training rows of `size` values:
   * its steps cost less whenever rows <= size, and K (rows² · size multiply-adds, once)
   * must not outweigh what they save, about 20 · size · batch per step as measured on
   * wasm (bench/head.ts), the packing of the primal step's operand included.
   */
  static pays(rows: number, size: number, steps: number, batchSize: number): boolean {
    return rows <= size && rows * rows <= 20 * steps * batchSize;
  }

  private readonly x: tf.Tensor2D;
  private readonly k: Float32Array;
  private readonly logits0: Float32Array;
  private readonly w0: Float32Array;
  private readonly a: Float32Array;
  private readonly b: Float32Array;
  private readonly kRows: Float32Array;
  private readonly n: number;
  private readonly size: number;

  constructor(
    private readonly head: HeadVariables,
    rows: Float32Array,
    private readonly labels: Int32Array,
    private readonly learningRate: number,
    batchSize: number,
  ) {
    const c = head.classCount;
    this.size = head.weights.shape[0]!;
    this.n = labels.length;
    const { n, size } = this;
    this.x = tf.tensor2d(rows, [n, size]);
    // Xᵀ written out in JS: the wasm transpose kernel is slow, and this runs once.
    const xT = new Float32Array(size * n);
    for (let r = 0; r < n; r++) for (let j = 0; j < size; j++) xT[j * n + r] = rows[r * size + j]!;
    this.k = read(() => tf.matMul(this.x, tf.tensor2d(xT, [size, n])));
    this.logits0 = read(() => tf.matMul(this.x, head.weights));
    this.w0 = Float32Array.from(head.weights.dataSync());
    this.a = new Float32Array(n * c);
    this.b = Float32Array.from(head.biases.dataSync());
    this.kRows = new Float32Array(Math.max(batchSize, 0) * n);
  }

  /** One step on the training rows `idx`. */
  step(idx: Int32Array): void {
    const { n, a, b } = this;
    const c = this.head.classCount;
    const m = idx.length;
    for (let i = 0; i < m; i++) this.kRows.set(this.k.subarray(idx[i]! * n, (idx[i]! + 1) * n), i * n);
    // The tensors are gone before `a` changes (the cpu backend keeps the arrays it is given).
    const ka = read(() => tf.matMul(tf.tensor2d(this.kRows.subarray(0, m * n), [m, n]), tf.tensor2d(a, [n, c])));
    const scale = this.learningRate / m;
    const logits = new Float64Array(c);
    const g = new Float64Array(m * c);
    for (let i = 0; i < m; i++) {
      const row = idx[i]!;
      let max = -Infinity;
      for (let k = 0; k < c; k++) {
        logits[k] = this.logits0[row * c + k]! - ka[i * c + k]! + b[k]!;
        max = Math.max(max, logits[k]!);
      }
      let sum = 0;
      for (let k = 0; k < c; k++) sum += (logits[k] = Math.exp(logits[k]! - max));
      for (let k = 0; k < c; k++) g[i * c + k] = (logits[k]! / sum - (this.labels[row] === k ? 1 : 0)) * scale;
    }
    for (let i = 0; i < m; i++) {
      const row = idx[i]!;
      for (let k = 0; k < c; k++) {
        a[row * c + k] = a[row * c + k]! + g[i * c + k]!;
        b[k] = b[k]! - g[i * c + k]!;
      }
    }
  }

  /** Writes W0 - Xᵀ·A and the biases into the head's variables (for evaluation, export and the end). */
  syncHead(): void {
    const { n, size } = this;
    const c = this.head.classCount;
    const aT = new Float32Array(c * n);
    for (let r = 0; r < n; r++) for (let k = 0; k < c; k++) aT[k * n + r] = this.a[r * c + k]!;
    // (Aᵀ·X)ᵀ: X is the constant operand, packed once by the wasm backend.
    const d = read(() => tf.matMul(tf.tensor2d(aT, [c, n]), this.x));
    const w = new Float32Array(size * c);
    for (let j = 0; j < size; j++) for (let k = 0; k < c; k++) w[j * c + k] = this.w0[j * c + k]! - d[k * size + j]!;
    tf.tidy(() => {
      this.head.weights.assign(tf.tensor2d(w, [size, c]));
      this.head.biases.assign(tf.tensor1d(this.b.slice()));
    });
  }

  dispose(): void {
    this.x.dispose();
  }
}
