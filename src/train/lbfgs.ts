/**
 * Limited-memory BFGS (Nocedal & Wright, Numerical Optimization, algorithm 7.4: the
 * two-loop recursion) with a backtracking Armijo line search, for smooth convex
 * objectives such as the L2-regularised softmax head. No npm package offers a kept
 * L-BFGS (docs/design.md, "A head whose regularisation is chosen"), so this is the
 * small textbook version, tested against scikit-learn's solution of the same problem.
 */

/** Writes the gradient at `x` into `grad` and returns the objective. */
export type Objective = (x: Float64Array, grad: Float64Array) => number;

export interface LbfgsOptions {
  /** Pairs (s, y) kept: scikit-learn and SciPy use 10. */
  memory?: number;
  maxIterations?: number;
  /** Stop when every gradient entry is at most this in magnitude. */
  gradientTolerance?: number;
  /** Stop when an iteration lowers the objective by less than this, relative to it. */
  relativeDecrease?: number;
}

export interface LbfgsResult {
  x: Float64Array;
  value: number;
  iterations: number;
  /** False when maxIterations ran out first. */
  converged: boolean;
}

const dot = (a: Float64Array, b: Float64Array): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};
const maxAbs = (a: Float64Array): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
};

export function minimizeLbfgs(f: Objective, x0: Float64Array, o: LbfgsOptions = {}): LbfgsResult {
  const m = o.memory ?? 10;
  const maxIterations = o.maxIterations ?? 1000;
  const gtol = o.gradientTolerance ?? 1e-6;
  const ftol = o.relativeDecrease ?? 1e-12;
  const n = x0.length;
  const x = Float64Array.from(x0);
  const g = new Float64Array(n);
  let value = f(x, g);
  const s: Float64Array[] = [];
  const y: Float64Array[] = [];
  const rho: number[] = [];
  const alpha = new Float64Array(m);
  const d = new Float64Array(n);
  const xNew = new Float64Array(n);
  const gNew = new Float64Array(n);
  let iterations = 0;
  if (maxAbs(g) <= gtol) return { x, value, iterations, converged: true };
  while (iterations < maxIterations) {
    // d = -H·g by the two-loop recursion; H0 = (s·y / y·y) I.
    d.set(g);
    for (let j = s.length - 1; j >= 0; j--) {
      const a = rho[j]! * dot(s[j]!, d);
      alpha[j] = a;
      const yj = y[j]!;
      for (let i = 0; i < n; i++) d[i]! -= a * yj[i]!;
    }
    const k = s.length - 1;
    const gamma = k >= 0 ? dot(s[k]!, y[k]!) / dot(y[k]!, y[k]!) : 1 / Math.max(1, maxAbs(g));
    for (let i = 0; i < n; i++) d[i]! *= gamma;
    for (let j = 0; j < s.length; j++) {
      const b = rho[j]! * dot(y[j]!, d);
      const sj = s[j]!;
      for (let i = 0; i < n; i++) d[i]! += sj[i]! * (alpha[j]! - b);
    }
    for (let i = 0; i < n; i++) d[i] = -d[i]!;
    let slope = dot(g, d);
    if (!(slope < 0)) {
      // Not a descent direction (rounding): restart from steepest descent.
      s.length = y.length = rho.length = 0;
      for (let i = 0; i < n; i++) d[i] = -g[i]! / Math.max(1, maxAbs(g));
      slope = dot(g, d);
    }
    // Backtracking Armijo search from the quasi-Newton step.
    let step = 1;
    let next = NaN;
    for (let tries = 0; tries < 40; tries++) {
      for (let i = 0; i < n; i++) xNew[i] = x[i]! + step * d[i]!;
      next = f(xNew, gNew);
      if (next <= value + 1e-4 * step * slope) break;
      step /= 2;
      next = NaN;
    }
    iterations++;
    if (Number.isNaN(next)) return { x, value, iterations, converged: true }; // no decrease left at float precision
    const sk = new Float64Array(n);
    const yk = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      sk[i] = xNew[i]! - x[i]!;
      yk[i] = gNew[i]! - g[i]!;
    }
    const sy = dot(sk, yk);
    // Curvature condition; a convex objective meets it except at rounding level.
    if (sy > 1e-12 * dot(yk, yk)) {
      if (s.length === m) {
        s.shift();
        y.shift();
        rho.shift();
      }
      s.push(sk);
      y.push(yk);
      rho.push(1 / sy);
    }
    const decrease = value - next;
    x.set(xNew);
    g.set(gNew);
    value = next;
    if (maxAbs(g) <= gtol || decrease <= ftol * Math.max(1, Math.abs(value))) return { x, value, iterations, converged: true };
  }
  return { x, value, iterations, converged: false };
}
