/**
 * Short names for --tfhub_module: a few well-known TF.js image feature-vector modules
 * on TF Hub, and the one shipped inside the package (models/), which needs no network.
 * A name becomes a URL (downloaded and cached as any URL) or the built-in folder;
 * paths and URLs pass through unchanged.
 */
import fs from 'node:fs';
import path from 'node:path';
import { distance } from 'fastest-levenshtein';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { BUILTIN_MODELS_DIR, verifyBuiltin, type BuiltinFiles } from './builtin.js';
import { cacheEntryDir, isModuleUrl } from './download.js';
import { checkModelFiles } from './io.js';

interface EntryBase {
  name: string;
  description: string;
  /** [height, width] the module takes. */
  inputSize: [number, number];
  /** Values it expects: pixel 0 maps to range[0], 255 to range[1]. */
  inputRange: [number, number];
}

export type CatalogEntry =
  | (EntryBase & { kind: 'builtin'; builtin: BuiltinFiles })
  | (EntryBase & { kind: 'download'; url: string });

export const BUILTIN_MODULE = 'mobilenet_v2_100_224_builtin';

export const CATALOG: readonly CatalogEntry[] = [
  {
    kind: 'builtin',
    name: BUILTIN_MODULE,
    description: 'MobileNet V2 1.0 224 feature vector, shipped with retrain-ts (see models/*/PROVENANCE.md)',
    inputSize: [224, 224],
    // models/mobilenet_v2_100_224_feature_vector/PROVENANCE.md: input `images` in [0,1].
    inputRange: [0, 1],
    builtin: {
      folder: 'mobilenet_v2_100_224_feature_vector',
      // Checked on every load: a damaged install must fail, never give other features.
      sha256: {
        'model.json': '70e892f1f121e365c1222ade7e08fb49fc0ac99c97e8605256412af0ecc5a406',
        'group1-shard1of3.bin': 'b3dfe53a737ce619685dc2957cee3fc9a260713837bcb86e9b98caf4103b0afa',
        'group1-shard2of3.bin': 'abc44a6d8cfc098fe8dcf5ec34f5412e41c61486f72f60aa0fe3bb41f7bc2ef2',
        'group1-shard3of3.bin': '20e19756025fa366936e7f9603b2e783abc94dc3dd446b0ada969f764c02313c',
      },
    },
  },
  {
    kind: 'download',
    name: 'mobilenet_v2_100_224',
    description: 'MobileNet V2 1.0 224 feature vector (TF Hub, the real float weights)',
    inputSize: [224, 224],
    inputRange: [0, 1],
    // URL: tensorflow/tfhub.dev assets/docs/google/models/imagenet/mobilenet_v2_100_224/feature_vector/3/default/tfjs/1.md;
    // range and size: .../mobilenet_v2_100_224/feature_vector/3.md ("[0,1]", "224 x 224").
    url: 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1',
  },
  {
    kind: 'download',
    name: 'mobilenet_v1_100_224',
    description: 'MobileNet V1 1.0 224 feature vector (TF Hub)',
    inputSize: [224, 224],
    inputRange: [0, 1],
    // URL: tensorflow/tfhub.dev assets/docs/google/models/imagenet/mobilenet_v1_100_224/feature_vector/3/default/tfjs/1.md;
    // parent module .../mobilenet_v1_100_224/feature_vector/3.md follows TF Hub's common image input ([0,1]).
    url: 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v1_100_224/feature_vector/3/default/1',
  },
  {
    kind: 'download',
    name: 'mobilenet_v3_small_100_224',
    description: 'MobileNet V3 small 1.0 224 feature vector (TF Hub): fastest',
    inputSize: [224, 224],
    inputRange: [0, 1],
    // URL, range and size: tensorflow/tfhub.dev
    // assets/docs/google/models/imagenet/mobilenet_v3_small_100_224/feature_vector/5/default/tfjs/1.md.
    url: 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v3_small_100_224/feature_vector/5/default/1',
  },
  {
    kind: 'download',
    name: 'mobilenet_v3_large_100_224',
    description: 'MobileNet V3 large 1.0 224 feature vector (TF Hub)',
    inputSize: [224, 224],
    inputRange: [0, 1],
    // URL, range and size: tensorflow/tfhub.dev
    // assets/docs/google/models/imagenet/mobilenet_v3_large_100_224/feature_vector/5/default/tfjs/1.md.
    url: 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v3_large_100_224/feature_vector/5/default/1',
  },
];

export function catalogEntry(name: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.name === name);
}

/** Something the user meant as a name: no URL, no path separator, not a .json file, and no such file here. */
function looksLikeName(spec: string): boolean {
  return !isModuleUrl(spec) && /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(spec) && !/\.json$/i.test(spec) && !fs.existsSync(spec);
}

/**
 * Up to `n` catalog names nearest to `spec`, nearest first: edit distance to the whole
 * name or to its start (so `mobilenet_v3` finds both V3s), less one per shared word
 * (so `v2_builtin` finds the built-in one).
 */
export function closestModuleNames(spec: string, n = 3): string[] {
  const s = spec.toLowerCase();
  const words = new Set(s.split(/[^a-z0-9]+/).filter((w) => w.length >= 3));
  const score = (name: string) =>
    Math.min(distance(s, name), distance(s, name.slice(0, s.length)) + 0.5) - name.split('_').filter((w) => words.has(w)).length;
  return CATALOG.map((e) => ({ name: e.name, d: score(e.name) }))
    .sort((a, b) => a.d - b.d || a.name.localeCompare(b.name))
    .slice(0, n)
    .map((x) => x.name);
}

/**
 * The catalog entry `spec` names, or undefined for a path or URL. An existing file or
 * folder of that name keeps meaning the local module, as before names existed. Cheap:
 * the run checks it before any work.
 */
export function checkModuleSpec(spec: string): CatalogEntry | undefined {
  const why = moduleNameProblem(spec);
  if (why) throw new UsageError(`--tfhub_module ${spec} ${why}`);
  return fs.existsSync(spec) ? undefined : catalogEntry(spec);
}

/** Why `spec` is no module: a name that is not in the catalog (the --tfhub_module flag's check). */
export function moduleNameProblem(spec: string): string | undefined {
  if (fs.existsSync(spec) || catalogEntry(spec) || !looksLikeName(spec)) return undefined;
  return (
    `is not a known module name; closest: ${closestModuleNames(spec).join(', ')} ` +
    `(retrain --list_modules shows all); a local model folder or a TF Hub/Kaggle URL also works`
  );
}

export interface NamedModuleOptions {
  spec: string;
  inputRange?: [number, number];
  inputHeight?: number;
  inputWidth?: number;
  log: Logger;
}

/**
 * Turns a catalog name into what the loader takes: the URL, or the built-in folder
 * after checking its files. The entry's input size and range fill in flags not given,
 * so a name and its URL give the same module id. Paths and URLs come back unchanged.
 */
export function resolveNamedModule<T extends NamedModuleOptions>(opts: T, modelsDir = BUILTIN_MODELS_DIR): T {
  const entry = checkModuleSpec(opts.spec);
  if (!entry) return opts;
  const filled = {
    ...opts,
    inputRange: opts.inputRange ?? entry.inputRange,
    inputHeight: opts.inputHeight ?? entry.inputSize[0],
    inputWidth: opts.inputWidth ?? entry.inputSize[1],
  };
  if (entry.kind === 'download') {
    opts.log.info(`Module ${entry.name} is ${entry.url}`);
    return { ...filled, spec: entry.url };
  }
  const dir = verifyBuiltin(entry.name, entry.builtin, modelsDir);
  opts.log.info(`Using the built-in module ${entry.name} from ${dir}: no download needed`);
  return { ...filled, spec: dir };
}

export interface ModuleListing {
  name: string;
  description: string;
  /** The URL, or the built-in module's folder. */
  source: string;
  builtin: boolean;
  /** Whether --tfhub_module uses it when not given. */
  isDefault: boolean;
  /** Download entries: a complete copy is in the module cache. Built-in: its files are present. */
  available: boolean;
  inputSize: [number, number];
  inputRange: [number, number];
}

/** The catalog with what is already on this machine; for `retrain --list_modules`. */
export function listModules(cacheDir: string, defaultModule = BUILTIN_MODULE, modelsDir = BUILTIN_MODELS_DIR): ModuleListing[] {
  return CATALOG.map((e) => {
    const source = e.kind === 'builtin' ? path.join(modelsDir, e.builtin.folder) : e.url;
    const modelJson = e.kind === 'builtin' ? path.join(source, 'model.json') : path.join(cacheEntryDir(cacheDir, e.url), 'model.json');
    let available = true;
    try {
      checkModelFiles(modelJson);
    } catch {
      available = false;
    }
    return {
      name: e.name,
      description: e.description,
      source,
      builtin: e.kind === 'builtin',
      isDefault: e.name === defaultModule,
      available,
      inputSize: e.inputSize,
      inputRange: e.inputRange,
    };
  });
}
