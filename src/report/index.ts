/**
 * The `report` stage: report.html, one self-contained page (inline SVG, CSS and
 * thumbnails as data URIs, no script) that shows how good the new head is and where
 * it fails, plus the confusion matrix and per-class metrics as CSV for scripts.
 */
import path from 'node:path';
import escapeHtml from 'escape-html';
import { stringify } from 'csv-stringify/sync';
import { checkCsv, type DatasetCheckSummary } from '../check/index.js';
import type { ModuleEngine } from '../bottleneck/index.js';
import type { RunSummary } from '../summary/index.js';
import { writeAtomic } from '../util/fsutil.js';
import { lineChart } from './chart.js';
import { evaluate, type Evaluation } from './metrics.js';
import { CHECK_CSS, datasetCheckSection } from './check.js';
import { THUMB, thumbnail } from './thumbnail.js';

export { evaluate, type Evaluation, type ClassMetrics } from './metrics.js';

/** Enough to see the pattern of errors without making the page heavy. */
export const MAX_THUMBNAILS = 200;

export interface ReportInput {
  summary: RunSummary;
  labels: string[];
  /** The run's flags as a user types them; `given` marks the ones that differ from the default. */
  flags: Array<{ flag: string; value: string; given: boolean }>;
}

export interface ReportFiles {
  html: string;
  matrixCsv: string;
  metricsCsv: string;
}

const pct = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(1)}%`);
const num = (v: number | null) => (v === null ? '' : v.toFixed(4));

/** A value as a POSIX shell would need it typed. */
function shellQuote(v: string): string {
  return /^[A-Za-z0-9_./,:=+-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

/** e.g. `onnxruntime, 2 threads` or `wasm, 2 worker threads`; a fully cached run did not run the module. */
function engineText(e: ModuleEngine | undefined): string {
  if (!e) return '– (every bottleneck was cached)';
  const n = (k: number, what: string) => `${k} ${what}${k === 1 ? '' : 's'}`;
  if (e.threads !== undefined) return `${e.name}, ${n(e.threads, 'thread')}`;
  return e.workers ? `${e.name}, ${n(e.workers, 'worker thread')}` : `${e.name}, main thread`;
}

function matrixTable(ev: Evaluation): string {
  const rows = ev.matrix.map((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    const cells = row.map((n, p) => {
      const f = total > 0 ? n / total : 0;
      const rgb = t === p ? '40,150,70' : '210,50,50';
      return `<td class="cell" style="background: rgba(${rgb},${(0.08 + 0.8 * f).toFixed(2)})" title="true ${escapeHtml(ev.labels[t]!)}, predicted ${escapeHtml(ev.labels[p]!)}">${n}</td>`;
    });
    return `<tr><th scope="row">${escapeHtml(ev.labels[t]!)}</th>${cells.join('')}<td class="support">${total}</td></tr>`;
  });
  const head = ev.labels.map((l) => `<th scope="col">${escapeHtml(l)}</th>`).join('');
  return `<table id="confusion-matrix" class="matrix"><thead><tr><th>true \\ predicted</th>${head}<th>total</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function metricsTable(ev: Evaluation): string {
  const rows = ev.perClass.map(
    (c) => `<tr><th scope="row">${escapeHtml(c.label)}</th><td>${pct(c.precision)}</td><td>${pct(c.recall)}</td><td>${pct(c.f1)}</td><td>${c.support}</td></tr>`,
  );
  return `<table id="per-class-metrics"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function kv(rows: Array<[string, string]>, id: string): string {
  return `<table id="${id}" class="kv"><tbody>${rows.map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</tbody></table>`;
}

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 8px; border: 1px solid #ddd; text-align: right; }
th[scope=row], .kv td { text-align: left; } .kv th { font-weight: 600; }
.matrix .cell { min-width: 44px; text-align: center; } .matrix .support { color: #666; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart .title { font-size: 14px; font-weight: 600; } .chart .tick, .chart .legend { font-size: 11px; fill: #444; }
.chart .label { font-size: 12px; fill: #333; } .chart .grid { stroke: #eee; } .chart .axis { stroke: #888; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; } figure { margin: 0; width: ${THUMB + 8}px; font-size: 11px; }
figure img { display: block; max-width: ${THUMB}px; max-height: ${THUMB}px; border: 2px solid #d23; }
figure .missing { width: ${THUMB}px; height: ${THUMB / 2}px; background: #eee; }
figcaption .name { overflow-wrap: anywhere; } #failed-files th, #failed-files td { text-align: left; } .bad { color: #b22; } .headline { font-size: 16px; }
${CHECK_CSS}`;

export async function buildReportHtml(input: ReportInput): Promise<{ html: string; evaluation: Evaluation }> {
  const { summary: s, labels } = input;
  const ev = evaluate(labels, s.test?.predictions ?? []);
  const history = s.training?.history ?? [];
  const x = (f: (p: (typeof history)[number]) => number) => history.map((p) => [p.step, f(p)] as [number, number]);
  const charts = [
    lineChart({
      id: 'accuracy-chart',
      title: 'Accuracy',
      xLabel: 'step',
      yLabel: 'accuracy',
      yMin: 0,
      yMax: 1,
      series: [
        { name: 'train', color: '#e8710a', points: x((p) => p.trainAccuracy) },
        { name: 'validation', color: '#1a73e8', points: x((p) => (p.validationN > 0 ? p.validationAccuracy : NaN)) },
      ],
    }),
    lineChart({
      id: 'cross-entropy-chart',
      title: 'Cross entropy',
      xLabel: 'step',
      yLabel: 'cross entropy',
      yMin: 0,
      series: [
        { name: 'train', color: '#e8710a', points: x((p) => p.crossEntropy) },
        { name: 'validation', color: '#1a73e8', points: x((p) => (p.validationN > 0 ? p.validationCrossEntropy : NaN)) },
      ],
    }),
  ];

  const wrong = (s.test?.predictions ?? []).filter((p) => p.true_label !== p.predicted_label);
  // A sampled test set (--test_batch_size) can hold an image twice: show it once.
  const seen = new Set<string>();
  const unique = wrong.filter((p) => !seen.has(p.file) && seen.add(p.file));
  const shown = unique.slice(0, MAX_THUMBNAILS);
  const figures = await Promise.all(
    shown.map(async (p) => {
      const src = await thumbnail(p.file);
      const img = src ? `<img src="${src}" alt="${escapeHtml(path.basename(p.file))}">` : '<div class="missing">(unreadable)</div>';
      return `<figure class="misclassified">${img}<figcaption><b class="name">${escapeHtml(path.basename(p.file))}</b><br>true: ${escapeHtml(p.true_label)}<br><span class="bad">predicted: ${escapeHtml(p.predicted_label)}</span> (${p.score.toFixed(3)})</figcaption></figure>`;
    }),
  );

  const splitRows = labels.map((l) => {
    const n = (cat: string) => s.split[cat]?.[l]?.length ?? 0;
    const t = n('training') + n('validation') + n('testing');
    return `<tr><th scope="row">${escapeHtml(l)}</th><td>${escapeHtml(s.classes[l] ?? '')}</td><td>${n('training')}</td><td>${n('validation')}</td><td>${n('testing')}</td><td>${t}</td></tr>`;
  });
  const failed = s.bottlenecks.failed;
  const failedHtml =
    failed.length === 0
      ? '<p id="failed-files">No image failed.</p>'
      : `<table id="failed-files"><thead><tr><th>file</th><th>why</th></tr></thead><tbody>${failed
          .map((f) => `<tr><td>${escapeHtml(f.file)}</td><td>${escapeHtml(f.reason)}</td></tr>`)
          .join('')}</tbody></table>`;

  const mod = s.module;
  const runRows: Array<[string, string]> = [
    ['module', mod ? `${mod.spec} (${mod.format})` : '–'],
    ['bottleneck', mod ? `${mod.bottleneck_tensor}, ${mod.bottleneck_size} values` : '–'],
    ['module input', mod ? `${mod.input_size.join('x')} in [${mod.input_range.join(', ')}]` : '–'],
    ['backend', s.backend],
    ['bottlenecks', `${s.bottlenecks.computed} computed, ${s.bottlenecks.cached} cached, ${failed.length} failed`],
    ['module engine', engineText(s.bottlenecks.engine)],
  ];
  const timings = Object.entries(s.timings_s).map(([k, v]) => [k, `${v.toFixed(2)} s`] as [string, string]);
  const given = input.flags.filter((f) => f.given);
  const commandLine = ['retrain', ...given.map((f) => (f.value === '' ? f.flag : `${f.flag} ${shellQuote(f.value)}`))].join(' ');
  const flags = input.flags.map((f) => [f.flag, f.value === '' ? 'on' : f.value] as [string, string]);

  const t = s.test;
  const headline = `Test accuracy <b>${pct(t?.accuracy)}</b> on ${t?.n ?? 0} images; final train accuracy ${pct(s.training?.final_train_accuracy)}, validation accuracy ${pct(s.training?.final_validation_accuracy)} after ${s.training?.steps ?? 0} steps.`;
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>retrain report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${CSS}</style></head><body>
<h1>retrain report</h1>
<p class="headline">${headline}</p>
<h2>Learning curves</h2>
<div class="charts">${charts.join('\n')}</div>
<h2>Test set: confusion matrix</h2>
${t && t.n > 0 ? matrixTable(ev) : '<p>No test images.</p>'}
<h2>Test set: per class</h2>
${metricsTable(ev)}
<h2>Misclassified test images (${unique.length})</h2>
${unique.length > shown.length ? `<p>Showing the first ${shown.length}; all are in the run summary (--summary_json).</p>` : ''}
<div class="thumbs" id="misclassified">${figures.join('\n') || '<p>None.</p>'}</div>
${s.dataset_check ? await datasetCheckSection(s.dataset_check) : ''}
<h2>Data</h2>
<table id="split"><thead><tr><th>class</th><th>folder</th><th>training</th><th>validation</th><th>testing</th><th>total</th></tr></thead><tbody>${splitRows.join('')}</tbody></table>
<h3>Files that failed</h3>
${failedHtml}
<h2>Run</h2>
${kv(runRows, 'run')}
<h3>Timings</h3>
${kv(timings, 'timings')}
<h3>Flags</h3>
<p>As given: <code id="command-line">${escapeHtml(commandLine)}</code></p>
${kv(flags, 'flags')}
</body></html>
`;
  return { html, evaluation: ev };
}

export function matrixCsv(ev: Evaluation): string {
  return stringify([['true\\predicted', ...ev.labels], ...ev.matrix.map((row, k) => [ev.labels[k]!, ...row.map(String)])]);
}

export function metricsCsv(ev: Evaluation): string {
  return stringify([['label', 'precision', 'recall', 'f1', 'support'], ...ev.perClass.map((c) => [c.label, num(c.precision), num(c.recall), num(c.f1), String(c.support)])]);
}

async function writeCheckCsv(check: DatasetCheckSummary | undefined): Promise<void> {
  if (check?.csv) await writeAtomic(check.csv, checkCsv(check.findings));
}

/** --check_dataset stops before training: a page with the check's section alone, dataset_check.html, and its CSV. */
export async function writeCheckReport(dir: string, check: DatasetCheckSummary): Promise<string> {
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>retrain dataset check</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${CSS}</style></head><body>
<h1>retrain dataset check</h1>
${await datasetCheckSection(check)}
</body></html>
`;
  const file = path.join(dir, 'dataset_check.html');
  await writeCheckCsv(check);
  await writeAtomic(file, html);
  return file;
}

export async function writeReport(dir: string, input: ReportInput): Promise<ReportFiles> {
  const { html, evaluation } = await buildReportHtml(input);
  const files = {
    html: path.join(dir, 'report.html'),
    matrixCsv: path.join(dir, 'confusion_matrix.csv'),
    metricsCsv: path.join(dir, 'per_class_metrics.csv'),
  };
  await writeAtomic(files.matrixCsv, matrixCsv(evaluation));
  await writeAtomic(files.metricsCsv, metricsCsv(evaluation));
  await writeCheckCsv(input.summary.dataset_check);
  await writeAtomic(files.html, html);
  return files;
}
