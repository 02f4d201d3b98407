/**
 * Damaged copies of a real photo set for the dataset check's tests: photos moved into
 * a wrong class folder, and exact copies under other names in chosen classes and splits.
 */
import fs from 'node:fs';
import path from 'node:path';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { decodeImage } from '../../src/image/index.js';
import { CATEGORIES, whichSet, type Category } from '../../src/dataset/index.js';

export interface Damage {
  /** Paths relative to the copy's root, after the move. */
  moved: string[];
  copies: Array<{ source: string; copy: string; leak: boolean; crossClass: boolean }>;
  /** A lossless PNG of a JPEG: other bytes, the same decoded pixels. */
  pixelCopy?: { source: string; copy: string };
}

const SPLIT = { testingPercentage: 10, validationPercentage: 10 };

/** A name beginning with `stem` that the split rule puts in `category`. */
function nameIn(stem: string, category: Category, ext = 'jpg'): string {
  for (let k = 0; ; k++) {
    const name = `${stem}_${k}.${ext}`;
    if (whichSet(name, SPLIT) === category) return name;
  }
}

export async function damagedCopy(src: string, dest: string, opts: { move: number; copies: number; pixelCopy?: boolean; seed?: number }): Promise<Damage> {
  fs.cpSync(src, dest, { recursive: true, preserveTimestamps: true });
  const rng = seedrandom(`damage:${opts.seed ?? 1}`);
  const classes = fs.readdirSync(dest, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const files = classes.flatMap((c) => fs.readdirSync(path.join(dest, c)).sort().map((f) => `${c}/${f}`));
  for (let i = files.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [files[i], files[j]] = [files[j]!, files[i]!];
  }
  const damage: Damage = { moved: [], copies: [] };
  for (const rel of files.slice(0, opts.move)) {
    const [cls, name] = rel.split('/') as [string, string];
    const others = classes.filter((c) => c !== cls);
    const to = `${others[Math.floor(rng() * others.length)]!}/${name}`;
    fs.renameSync(path.join(dest, rel), path.join(dest, to));
    damage.moved.push(to);
  }
  // Copies: most in their own class (two splits: a leak), some in another class (conflicting labels).
  for (const [i, rel] of files.slice(opts.move, opts.move + opts.copies).entries()) {
    const [cls, name] = rel.split('/') as [string, string];
    const from = whichSet(name, SPLIT);
    const crossClass = i % 4 === 3;
    const into = crossClass ? classes[(classes.indexOf(cls) + 1) % classes.length]! : cls;
    const to = i % 3 === 2 ? from : CATEGORIES[(CATEGORIES.indexOf(from) + 1 + (i % 2)) % 3]!;
    const copy = `${into}/${nameIn(`copy${i}_${path.parse(name).name}`, to)}`;
    fs.copyFileSync(path.join(dest, rel), path.join(dest, copy));
    damage.copies.push({ source: rel, copy, leak: from !== to, crossClass });
  }
  const rel = files[opts.move + opts.copies];
  if (opts.pixelCopy && rel) {
    const img = await decodeImage(path.join(dest, rel));
    const copy = `${path.dirname(rel)}/${nameIn(`pixels_${path.parse(rel).name}`, 'testing', 'png')}`;
    await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toFile(path.join(dest, copy));
    damage.pixelCopy = { source: rel, copy };
  }
  return damage;
}
