/**
 * The module shipped inside the package, under models/ at the package root. Found from
 * this file's own location, so it works from a checkout, dist/ or an installed package.
 * Its files are hashed on every load: a damaged copy fails with one error instead of
 * giving features (and so a model) that silently differ.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RetrainError, errorMessage } from '../errors.js';

export interface BuiltinFiles {
  /** Folder under models/. */
  folder: string;
  /** File name → sha256 (hex) of every file the module loads. */
  sha256: Record<string, string>;
}

/** <package>/models: this file is <package>/dist/src/module/builtin.js once compiled. */
export const BUILTIN_MODELS_DIR = fileURLToPath(new URL('../../../models', import.meta.url));

const REINSTALL = 'reinstall retrain-ts (npm ci), or pass --tfhub_module a TF Hub/Kaggle URL or a model folder';

/** Checks every file of a built-in module against its recorded sha256; returns its folder. */
export function verifyBuiltin(name: string, files: BuiltinFiles, modelsDir: string): string {
  const dir = path.join(modelsDir, files.folder);
  for (const [file, expected] of Object.entries(files.sha256)) {
    const p = path.join(dir, file);
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(p);
    } catch (err) {
      throw new RetrainError(`the built-in module ${name} is incomplete: cannot read ${p} (${errorMessage(err)}); ${REINSTALL}`, 1, { cause: err });
    }
    const got = createHash('sha256').update(bytes).digest('hex');
    if (got !== expected) {
      throw new RetrainError(`the built-in module ${name} is damaged: ${p} has sha256 ${got}, not ${expected}; ${REINSTALL}`);
    }
  }
  return dir;
}
