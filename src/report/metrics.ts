/** Confusion matrix and per-class precision/recall/F1 from the final test's predictions. */
export interface ClassMetrics {
  label: string;
  precision: number | null;
  recall: number | null;
  f1: number | null;
  support: number;
}

export interface Evaluation {
  labels: string[];
  /** matrix[true][predicted] = count. */
  matrix: number[][];
  perClass: ClassMetrics[];
}

export function evaluate(labels: string[], predictions: Array<{ true_label: string; predicted_label: string }>): Evaluation {
  const index = new Map(labels.map((l, i) => [l, i]));
  const matrix = labels.map(() => labels.map(() => 0));
  for (const p of predictions) matrix[index.get(p.true_label)!]![index.get(p.predicted_label)!]! += 1;
  const perClass = labels.map((label, k) => {
    const tp = matrix[k]![k]!;
    const support = matrix[k]!.reduce((a, b) => a + b, 0);
    const predicted = matrix.reduce((a, row) => a + row[k]!, 0);
    // Undefined ratios stay null rather than 0, so "never predicted" is not read as "always wrong".
    const precision = predicted > 0 ? tp / predicted : null;
    const recall = support > 0 ? tp / support : null;
    const f1 = precision === null || recall === null ? null : precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    return { label, precision, recall, f1, support };
  });
  return { labels, matrix, perClass };
}
