/** What an exported model carries besides weights: retrain's metadata and the labels file. */
import fs from 'node:fs';
import { RetrainError } from '../errors.js';
import { rangeToMeanStd } from '../image/index.js';
import type { FeatureExtractor, ModuleInfo } from '../module/index.js';
import type { Layout } from '../module/onnx/signature.js';
import { writeAtomic } from '../util/fsutil.js';

/** What a consumer (label-image, a browser app) needs to feed the model; stored in model.json. */
export interface RetrainMetadata {
  version: 1;
  inputName: string;
  outputName: string;
  inputHeight: number;
  inputWidth: number;
  inputRange: [number, number];
  /** `(pixel - inputMean) / inputStd` gives inputRange; three values (R,G,B) when per channel. */
  inputMean: number | number[];
  inputStd: number | number[];
  /** The image input's layout (.onnx exports); absent means NHWC. */
  inputLayout?: Layout;
  labels: string[];
  module: Pick<ModuleInfo, 'spec' | 'name' | 'id' | 'format' | 'bottleneckTensor' | 'bottleneckSize'>;
}

/** retrain.py's labels file: one label a line. */
export const labelsText = (labels: string[]): string => labels.join('\n') + '\n';

export async function writeLabels(file: string, labels: string[]): Promise<void> {
  await writeAtomic(file, labelsText(labels));
}

export function readLabels(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new RetrainError(`cannot read --labels ${file}: ${(err as Error).message}`);
  }
  return text.split(/\r?\n/).filter((l, i, all) => l !== '' || i < all.length - 1);
}

export function metadataFor(ex: FeatureExtractor, labels: string[], inputName: string, outputName: string): RetrainMetadata {
  const { info } = ex;
  const { mean, std } = rangeToMeanStd(info.inputRange);
  return {
    version: 1,
    inputName,
    outputName,
    inputHeight: info.inputHeight,
    inputWidth: info.inputWidth,
    inputRange: info.inputRange,
    inputMean: info.inputMean ? [...info.inputMean] : mean,
    inputStd: info.inputStd ? [...info.inputStd] : std,
    ...(info.inputLayout && { inputLayout: info.inputLayout }),
    labels,
    module: {
      spec: info.spec,
      name: info.name,
      id: info.id,
      format: info.format,
      bottleneckTensor: info.bottleneckTensor,
      bottleneckSize: info.bottleneckSize,
    },
  };
}

