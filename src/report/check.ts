/** report.html's "Dataset check" section: each finding's images side by side, with file, label and split. */
import path from 'node:path';
import escapeHtml from 'escape-html';
import type { DatasetCheckSummary, Finding, FindingKind } from '../check/index.js';
import { thumbnail } from './thumbnail.js';

/** Findings shown per kind; all are in the CSV and the summary. */
export const MAX_FINDINGS_SHOWN = 40;
/** Images shown per finding (a large near-duplicate group is cut). */
const MAX_IMAGES_SHOWN = 8;

export const CHECK_CSS = `
.finding { display: inline-block; vertical-align: top; border: 1px solid #ddd; border-radius: 4px; padding: 6px 8px; margin: 0 8px 8px 0; }
.finding .what { margin-bottom: 4px; } .finding figure img { border-color: #888; }
.finding.flagged { border-color: #d23; } .tag { padding: 0 5px; border-radius: 3px; font-size: 12px; margin-left: 4px; }
.tag.leak { background: #d23; color: #fff; } .tag.cross { background: #f6b26b; } .tag.split { background: #e8eaed; }
figcaption .split-training { color: #1a73e8; } figcaption .split-validation { color: #7b1fa2; } figcaption .split-testing { color: #b06000; }
`;

const TITLES: Record<FindingKind, [string, string]> = {
  exact_duplicate: ['Exact duplicates', 'the same bytes or the same decoded pixels'],
  near_duplicate: ['Near duplicates', 'bottleneck cosine at or above the threshold'],
  mislabel: ['Likely mislabels', 'out-of-fold heads confidently pick another class; surest first'],
  outlier: ['Outliers', 'far from every class'],
};

function scoreText(f: Finding): string {
  switch (f.kind) {
    case 'exact_duplicate':
      return f.match === 'pixels' ? 'same pixels, different bytes' : 'same bytes';
    case 'near_duplicate':
      return `cosine ≥ ${f.score.toFixed(3)}`;
    case 'mislabel':
      return `looks like <b>${escapeHtml(f.suggested_label ?? '')}</b> (p(own label) ${f.score.toFixed(3)})`;
    case 'outlier':
      return `best class similarity ${f.score.toFixed(3)}`;
  }
}

async function findingHtml(f: Finding, imageDir: string): Promise<string> {
  const figures = await Promise.all(
    f.images.slice(0, MAX_IMAGES_SHOWN).map(async (img) => {
      const src = await thumbnail(path.resolve(imageDir, img.file));
      const name = escapeHtml(img.file);
      const pic = src ? `<img src="${src}" alt="${name}">` : '<div class="missing">(unreadable)</div>';
      return `<figure class="checked">${pic}<figcaption><b class="name">${name}</b><br>label: ${escapeHtml(img.label)}<br><span class="split-${img.split}">${img.split}</span></figcaption></figure>`;
    }),
  );
  const more = f.images.length > MAX_IMAGES_SHOWN ? ` (showing ${MAX_IMAGES_SHOWN} of ${f.images.length})` : '';
  const tags = `${f.leak ? '<span class="tag leak">leak between splits</span>' : ''}${f.cross_class ? '<span class="tag cross">conflicting labels</span>' : ''}`;
  return `<div class="finding${f.leak || f.cross_class ? ' flagged' : ''}" data-kind="${f.kind}" data-id="${f.id}"><div class="what">#${f.id}: ${scoreText(f)}${tags}${more}</div><div class="thumbs">${figures.join('')}</div></div>`;
}

export async function datasetCheckSection(check: DatasetCheckSummary): Promise<string> {
  const parts: string[] = [];
  for (const kind of Object.keys(TITLES) as FindingKind[]) {
    const of = check.findings.filter((f) => f.kind === kind);
    const [title, what] = TITLES[kind];
    const shown = await Promise.all(of.slice(0, MAX_FINDINGS_SHOWN).map((f) => findingHtml(f, check.image_dir)));
    const cut = of.length > shown.length ? `<p>Showing the first ${shown.length}; all are in ${check.csv ? escapeHtml(path.basename(check.csv)) : 'the run summary'}.</p>` : '';
    parts.push(`<h3 id="check-${kind}">${title} (${of.length})</h3><p class="note">${what}.</p>${cut}${shown.join('\n') || '<p>None found.</p>'}`);
  }
  const c = check.counts;
  return `<section id="dataset-check"><h2>Dataset check</h2>
<p>${check.images} images checked: ${c.exact_duplicate} exact duplicate groups, ${c.near_duplicate} near duplicate groups (cosine ≥ ${check.near_duplicate_threshold}), ${c.mislabel} likely mislabels (${check.folds} folds), ${c.outlier} outliers; ${c.leaks} leak between training, validation and testing. Nothing was moved or deleted: list files to skip in --exclude_list.</p>
${parts.join('\n')}</section>`;
}
