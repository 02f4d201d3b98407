/** Small array helpers the readers and writers share. */

/** Permutes a row-major array of `shape` by `perm` (output axis i is input axis perm[i]). */
export function transposeArray(data: Float32Array, shape: number[], perm: number[]): Float32Array {
  const r = shape.length;
  const outShape = perm.map((p) => shape[p]!);
  const inStrides = new Array<number>(r);
  for (let i = r - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i]!;
  }
  const stride = perm.map((p) => inStrides[p]!);
  const out = new Float32Array(data.length);
  const idx = new Array<number>(r).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let i = 0; i < r; i++) src += idx[i]! * stride[i]!;
    out[o] = data[src]!;
    for (let i = r - 1; i >= 0; i--) {
      if (++idx[i]! < outShape[i]!) break;
      idx[i] = 0;
    }
  }
  return out;
}
