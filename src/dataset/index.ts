import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fg from 'fast-glob';
import { RetrainError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { readExcludeList } from './exclude.js';

export const IMAGE_EXTENSIONS = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif'] as const;
/** retrain.py's MAX_NUM_IMAGES_PER_CLASS: the hash is taken modulo this plus one. */
export const MAX_NUM_IMAGES_PER_CLASS = 2 ** 27 - 1;
const MIN_IMAGES_PER_CLASS = 20;

export const CATEGORIES = ['training', 'validation', 'testing'] as const;
export type Category = (typeof CATEGORIES)[number];

export interface ImageClass {
  /** Normalised label (retrain.py: lower case, runs of [^a-z0-9] become one space). */
  label: string;
  /** The folder under image_dir it came from. */
  dir: string;
  /** Base names of the images, sorted, per category. */
  training: string[];
  validation: string[];
  testing: string[];
}

export interface ImageLists {
  imageDir: string;
  /** Sorted by label; the index is the class index. */
  classes: ImageClass[];
}

export interface SplitOptions {
  testingPercentage: number;
  validationPercentage: number;
}

export interface ListOptions extends SplitOptions {
  /** --exclude_list: a file naming images to skip (dataset/exclude.ts). */
  excludeList?: string;
}

export function labelFromDir(dir: string): string {
  return dir.toLowerCase().replace(/[^a-z0-9]+/g, ' ');
}

/** retrain.py's `which_set` percentage for one file: a stable function of its base name. */
export function splitPercentage(fileName: string): number {
  const hashName = path.basename(fileName).replace(/_nohash_.*$/, '');
  const digest = createHash('sha1').update(hashName, 'utf8').digest();
  // int(sha1, 16) % 2**27 is the digest's low 27 bits.
  const h = digest.readUInt32BE(digest.length - 4) & MAX_NUM_IMAGES_PER_CLASS;
  return (h * 100) / MAX_NUM_IMAGES_PER_CLASS;
}

export function whichSet(fileName: string, opts: SplitOptions): Category {
  const p = splitPercentage(fileName);
  if (p < opts.validationPercentage) return 'validation';
  if (p < opts.testingPercentage + opts.validationPercentage) return 'testing';
  return 'training';
}

export function validateSplit(opts: SplitOptions): void {
  for (const [flag, v] of [
    ['--testing_percentage', opts.testingPercentage],
    ['--validation_percentage', opts.validationPercentage],
  ] as const) {
    if (!Number.isFinite(v) || v < 0 || v > 100) {
      throw new UsageError(`${flag} ${v} is out of range: give a percentage from 0 to 100`);
    }
  }
  if (opts.testingPercentage + opts.validationPercentage > 100) {
    throw new UsageError(
      `--testing_percentage ${opts.testingPercentage} plus --validation_percentage ${opts.validationPercentage} is over 100: lower one of them`,
    );
  }
}

/** Image files directly inside `dir`, by extension in any case, hidden files ignored. */
export async function listImages(dir: string): Promise<string[]> {
  const pattern = `*.{${IMAGE_EXTENSIONS.join(',')}}`;
  const names = await fg(pattern, {
    cwd: dir,
    caseSensitiveMatch: false,
    dot: false,
    onlyFiles: false,
    followSymbolicLinks: true,
  });
  const files: string[] = [];
  for (const name of names) {
    // A broken symlink is kept so that the bottleneck stage reports it; folders named x.jpg are not images.
    const st = fs.statSync(path.join(dir, name), { throwIfNoEntry: false });
    if (st && !st.isFile()) continue;
    files.push(name);
  }
  return files.sort();
}

/** retrain.py's `create_image_lists`: one class per subfolder, split by file-name hash. */
export async function createImageLists(imageDir: string, opts: ListOptions, log: Logger): Promise<ImageLists> {
  validateSplit(opts);
  const st = fs.statSync(imageDir, { throwIfNoEntry: false });
  if (!st) throw new UsageError(`--image_dir ${imageDir} does not exist: point it at a folder with one subfolder of images per class`);
  if (!st.isDirectory()) {
    throw new UsageError(`--image_dir ${imageDir} is a file, not a folder: point it at a folder with one subfolder of images per class`);
  }
  const dirs = fs
    .readdirSync(imageDir, { withFileTypes: true })
    .filter((d) => !d.name.startsWith('.') && (d.isDirectory() || (d.isSymbolicLink() && isDir(path.join(imageDir, d.name)))))
    .map((d) => d.name)
    .sort();

  const exclude = opts.excludeList ? readExcludeList(opts.excludeList, imageDir) : undefined;
  const excluded = new Set<string>();
  const byLabel = new Map<string, ImageClass>();
  for (const dir of dirs) {
    const files = (await listImages(path.join(imageDir, dir))).filter((f) => {
      const file = path.resolve(imageDir, dir, f);
      return !(exclude?.has(file) && excluded.add(file));
    });
    if (files.length === 0) {
      log.warn(`No files found in ${path.join(imageDir, dir)}: skipping it`);
      continue;
    }
    if (files.length < MIN_IMAGES_PER_CLASS) {
      log.warn(`Folder ${dir} has less than ${MIN_IMAGES_PER_CLASS} images, which may cause issues.`);
    } else if (files.length > MAX_NUM_IMAGES_PER_CLASS) {
      log.warn(`Folder ${dir} has more than ${MAX_NUM_IMAGES_PER_CLASS} images. Some images will never be selected.`);
    }
    const label = labelFromDir(dir);
    const other = byLabel.get(label);
    if (other) {
      throw new UsageError(
        `folders ${other.dir} and ${dir} in --image_dir ${imageDir} both give the label "${label}": rename one of them`,
      );
    }
    const cls: ImageClass = { label, dir, training: [], validation: [], testing: [] };
    for (const f of files) cls[whichSet(f, opts)].push(f);
    byLabel.set(label, cls);
  }
  if (exclude) logExcluded(opts.excludeList!, exclude, excluded, log);
  const classes = [...byLabel.values()].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  if (classes.length === 0) {
    throw new RetrainError(`No valid folders of images found at --image_dir ${imageDir}: add one subfolder of images per class`);
  }
  if (classes.length === 1) {
    throw new RetrainError(
      `Only one valid folder of images found at --image_dir ${imageDir} - multiple classes are needed for classification: add a second class folder`,
    );
  }
  return { imageDir, classes };
}

function logExcluded(file: string, listed: Set<string>, excluded: Set<string>, log: Logger): void {
  log.info(`Skipping ${excluded.size} images listed in --exclude_list ${file}`);
  const unknown = [...listed].filter((f) => !excluded.has(f));
  if (unknown.length > 0) log.warn(`${unknown.length} lines of --exclude_list ${file} name no image in --image_dir, e.g. ${unknown[0]}`);
}

function isDir(p: string): boolean {
  return fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

export interface ImageRef {
  classIndex: number;
  category: Category;
  /** Base name inside the class folder. */
  name: string;
  /** Absolute path of the image. */
  file: string;
}

/** Every image of the lists, class by class, category by category, in a stable order. */
export function allImages(lists: ImageLists): ImageRef[] {
  const out: ImageRef[] = [];
  lists.classes.forEach((cls, classIndex) => {
    for (const category of CATEGORIES) {
      for (const name of cls[category]) {
        out.push({ classIndex, category, name, file: path.resolve(lists.imageDir, cls.dir, name) });
      }
    }
  });
  return out;
}

/** Image files anywhere below `dir`, relative to it, sorted. */
export async function listImagesDeep(dir: string): Promise<string[]> {
  const names = await fg(`**/*.{${IMAGE_EXTENSIONS.join(',')}}`, { cwd: dir, caseSensitiveMatch: false, dot: false, onlyFiles: true });
  return names.sort();
}
