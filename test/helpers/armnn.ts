/**
 * Arm NN (Debian's python3-pyarmnn, TFLite parser, CpuRef backend) as an independent TFLite
 * runtime for tests: runs test/tools/armnn_run.py. Tests skip with `SKIP_ARMNN` where it is
 * not installed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT, SYSTEM_PYTHON } from './flatc.js';

export const ARMNN_SCRIPT = path.join(REPO_ROOT, 'test/tools/armnn_run.py');

function haveArmnn(): boolean {
  const r = spawnSync(SYSTEM_PYTHON, ['-c', 'import numpy, pyarmnn; pyarmnn.ITfLiteParser()'], { encoding: 'utf8' });
  return r.status === 0;
}
export const SKIP_ARMNN = haveArmnn()
  ? false
  : 'Arm NN is not installed (apt-get install python3-pyarmnn libarmnn-cpuref-backend22 libarmnntfliteparser22)';

export interface ArmnnTensorInfo {
  shape: number[];
  dtype: 'float32' | 'uint8' | 'int8';
  scale: number;
  zero_point: number;
}

export interface ArmnnResult {
  input: ArmnnTensorInfo;
  output: ArmnnTensorInfo;
  /** One flat output per input, in the output's type (quantized outputs as integers). */
  outputs: number[][];
}

/**
 * Runs `model` on each input (back to back in `inputs`, in the model input's type) on Arm NN
 * CpuRef. `model` is a path or the model's bytes.
 */
export function runArmnn(model: string | Uint8Array, inputs: Float32Array | Uint8Array | Int8Array): ArmnnResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-armnn-'));
  try {
    let file = model as string;
    if (typeof model !== 'string') {
      file = path.join(dir, 'model.tflite');
      fs.writeFileSync(file, model);
    }
    const raw = path.join(dir, 'input.raw');
    fs.writeFileSync(raw, new Uint8Array(inputs.buffer, inputs.byteOffset, inputs.byteLength));
    const r = spawnSync(SYSTEM_PYTHON, [ARMNN_SCRIPT, file, raw], { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(`armnn_run.py failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout) as ArmnnResult;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
