/**
 * flatc (Debian's flatbuffers-compiler) as an independent reader of .tflite files and their
 * metadata: it parses with the repo's .fbs files only, none of our TypeScript. Tests that
 * need it skip with `SKIP_FLATC` where it is missing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SCHEMA_DIR = path.join(REPO_ROOT, 'src/export/tflite/schema');
export const TFLITE_SCHEMA = path.join(SCHEMA_DIR, 'schema.fbs');
export const METADATA_SCHEMA = path.join(SCHEMA_DIR, 'metadata_schema.fbs');

/** The reference classifier that the TFLite tools made (see its PROVENANCE.md). */
export const REFERENCE_TFLITE = path.resolve(
  REPO_ROOT,
  '..',
  'shared/reference/tflite_image_classifier_with_metadata/mobilenet_v1_0.25_224_1_metadata_1.tflite',
);
export const SKIP_REFERENCE = fs.existsSync(REFERENCE_TFLITE)
  ? false
  : `../shared is absent (expected ${REFERENCE_TFLITE}): the reference .tflite is needed`;

function flatcVersion(): string | null {
  const r = spawnSync('flatc', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}
export const FLATC_VERSION = flatcVersion();
export const SKIP_FLATC = FLATC_VERSION ? false : 'flatc is not installed (apt-get install flatbuffers-compiler)';

/**
 * Debian's Python, where apt installs python3-flatbuffers and python3-pyarmnn (a python3
 * earlier on PATH, e.g. pyenv's, does not see them).
 */
export const SYSTEM_PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

function havePythonFlatbuffers(): boolean {
  return spawnSync(SYSTEM_PYTHON, ['-c', 'import flatbuffers'], { encoding: 'utf8' }).status === 0;
}
export const SKIP_PY_FLATBUFFERS =
  SKIP_FLATC || (havePythonFlatbuffers() ? false : 'Python flatbuffers is not installed (apt-get install python3-flatbuffers)');

/**
 * Decodes a flatbuffer to JSON with flatc and the given schema. flatc stops at the root
 * table's end, so a .tflite with an appended zip dumps as well.
 */
export function flatcJson(schema: string, bytes: Uint8Array): any {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-flatc-'));
  try {
    const bin = path.join(dir, 'in.bin');
    fs.writeFileSync(bin, bytes);
    const r = spawnSync(
      'flatc',
      ['--json', '--strict-json', '--defaults-json', '--raw-binary', '-o', dir, schema, '--', bin],
      { encoding: 'utf8', maxBuffer: 1 << 26 },
    );
    if (r.status !== 0) throw new Error(`flatc --json failed: ${r.stderr || r.stdout}`);
    return JSON.parse(fs.readFileSync(path.join(dir, 'in.json'), 'utf8'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A .tflite file's model (without buffer contents) and its TFLITE_METADATA decoded by flatc:
 * the independent view of what a file holds.
 */
export function dumpTflite(bytes: Uint8Array): { model: any; metadata: any | null } {
  const model = flatcJson(TFLITE_SCHEMA, bytes);
  const entry = (model.metadata ?? []).find((m: any) => m.name === 'TFLITE_METADATA');
  let metadata = null;
  if (entry) {
    const data = Uint8Array.from(model.buffers[entry.buffer].data as number[]);
    metadata = flatcJson(METADATA_SCHEMA, data);
  }
  for (const b of model.buffers) if (b.data) b.data = `<${b.data.length} bytes>`;
  return { model, metadata };
}

let pythonDir: string | null = null;

/** flatc's Python code for the repo's schemas, generated once per process into a temp folder. */
function pythonGenerated(): string {
  if (pythonDir) return pythonDir;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-fbs-py-'));
  const r = spawnSync('flatc', ['--python', '--gen-object-api', '-o', dir, TFLITE_SCHEMA, METADATA_SCHEMA], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`flatc --python failed: ${r.stderr}`);
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  pythonDir = dir;
  return dir;
}

/** What test/tools/tflite_metadata.py reads (Python flatbuffers + zipfile). */
export interface PythonView {
  inputs: Array<{ name: string; shape: number[]; type: string }>;
  outputs: Array<{ name: string; shape: number[]; type: string }>;
  metadata_entries: Array<[string, number]>;
  /** ModelMetadataT as a dict, camelCase fields, enums as numbers. */
  metadata: any;
  zip: Array<{ name: string; compress_type: number; header_offset: number; flag_bits: number; text: string }>;
}

/** Reads a .tflite's tensors, metadata and appended zip with Python alone. */
export function readWithPython(bytes: Uint8Array): PythonView {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-pyread-'));
  try {
    const file = path.join(dir, 'model.tflite');
    fs.writeFileSync(file, bytes);
    const script = path.join(REPO_ROOT, 'test/tools/tflite_metadata.py');
    const r = spawnSync(SYSTEM_PYTHON, [script, pythonGenerated(), file], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`tflite_metadata.py failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as PythonView;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
