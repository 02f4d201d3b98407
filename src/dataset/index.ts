import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RetrainError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { fsPath, nameBytes, nameFromBytes, readFailure } from '../util/fsname.js';
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
  // The name's own bytes, also when they are not UTF-8 (util/fsname.ts).
  const digest = createHash('sha1').update(nameBytes(hashName)).digest();
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

const IMAGE_NAME = new RegExp(`\\.(${IMAGE_EXTENSIONS.join('|')})$`, 'i');

/**
 * Entries of a folder, names read as bytes: fast-glob and a plain readdir decode
 * names that are not UTF-8 into names that open no file (util/fsname.ts).
 */
function readNames(dir: string): fs.Dirent<Buffer>[] {
  return fs.readdirSync(fsPath(dir), { withFileTypes: true, encoding: 'buffer' });
}

/** stat, following links; undefined with the reason when that fails (a broken link, a link loop). */
function statOrReason(p: string): { stat?: fs.Stats; reason?: string } {
  try {
    return { stat: fs.statSync(fsPath(p)) };
  } catch (err) {
    return { reason: readFailure(err) };
  }
}

/** Image files directly inside `dir`, by extension in any case, hidden files ignored. */
export async function listImages(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const d of readNames(dir)) {
    const name = nameFromBytes(d.name);
    if (name.startsWith('.') || !IMAGE_NAME.test(name)) continue;
    // Broken links and link loops are kept so that the bottleneck stage reports them; folders named x.jpg are not images.
    const { stat } = statOrReason(path.join(dir, name));
    if (stat && !stat.isFile()) continue;
    files.push(name);
  }
  return files.sort();
}

/** retrain.py's `create_image_lists`: one class per subfolder, split by file-name hash. */
export async function createImageLists(imageDir: string, opts: ListOptions, log: Logger): Promise<ImageLists> {
  const st = fs.statSync(fsPath(imageDir), { throwIfNoEntry: false });
  if (!st) throw new UsageError(`--image_dir ${imageDir} does not exist: point it at a folder with one subfolder of images per class`);
  if (!st.isDirectory()) {
    throw new UsageError(`--image_dir ${imageDir} is a file, not a folder: point it at a folder with one subfolder of images per class`);
  }
  const dirs: string[] = [];
  for (const d of readNames(imageDir)) {
    const name = nameFromBytes(d.name);
    if (name.startsWith('.')) continue;
    if (d.isDirectory()) dirs.push(name);
    else if (d.isSymbolicLink()) {
      const { stat, reason } = statOrReason(path.join(imageDir, name));
      if (stat?.isDirectory()) dirs.push(name);
      else if (reason) log.warn(`Skipping ${path.join(imageDir, name)}: ${reason}`);
    }
  }
  dirs.sort();

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

/**
 * Image files anywhere below `dir`, relative to it, sorted; hidden entries ignored.
 * Linked folders are followed once (a link loop ends there); broken links and link
 * loops named like images are listed, so that reading them reports why.
 */
export async function listImagesDeep(dir: string): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const real = fs.realpathSync(fsPath(abs), { encoding: 'buffer' }).toString('latin1');
    if (seen.has(real)) return;
    seen.add(real);
    for (const d of readNames(abs)) {
      const name = nameFromBytes(d.name);
      if (name.startsWith('.')) continue;
      const child = rel ? path.join(rel, name) : name;
      const { stat } = d.isSymbolicLink() ? statOrReason(path.join(dir, child)) : { stat: undefined };
      if (d.isDirectory() || stat?.isDirectory()) walk(child);
      else if (IMAGE_NAME.test(name) && (d.isFile() || d.isSymbolicLink())) out.push(child);
    }
  };
  walk('');
  return out.sort();
}

/** The run's view of the images: the split as the summary records it. */
export interface SplitSection {
  /** Label → class folder. */
  classes: Record<string, string>;
  /** Category → label → image names. */
  split: Record<string, Record<string, string[]>>;
}

export function splitSection(lists: ImageLists): SplitSection {
  const classes: Record<string, string> = {};
  const split: SplitSection['split'] = { training: {}, validation: {}, testing: {} };
  for (const c of lists.classes) {
    classes[c.label] = c.dir;
    for (const cat of CATEGORIES) split[cat]![c.label] = [...c[cat]];
  }
  return { classes, split };
}

/** What the dataset step reads of the run's options. */
export interface FindImagesOptions extends ListOptions {
  /** --image_dir: one subfolder of images per class. */
  imageDir: string;
}

/**
 * Step "find the images": lists the class folders under --image_dir and splits
 * each class into training, validation and testing by file-name hash, logging the
 * counts (retrain.py's create_image_lists).
 */
export async function findImages(o: FindImagesOptions, log: Logger): Promise<ImageLists> {
  const lists = await createImageLists(o.imageDir, o, log);
  for (const c of lists.classes) {
    log.info(`Class "${c.label}": ${c.training.length} training, ${c.validation.length} validation, ${c.testing.length} testing images`);
  }
  return lists;
}
