/**
 * label-image's flags: label_image.py's names and defaults, then ours. The one place
 * each is defined; `LabelImageOptions` and the commander options come from here.
 */
import { BACKENDS } from '../backend.js';
import { above0, bool, channels, inputSide, choice, custom, filePath, int, string, validateOptions, defaultsOf, type OptionsOf } from './table.js';
import { expandHome } from '../util/fsutil.js';
import { defaultModuleCacheDir } from '../module/download.js';

export const LABEL_IMAGE_GROUPS = {
  model: 'Model:',
  input: 'Images and input:',
  output: 'Output:',
  runtime: 'Runtime:',
} as const;
const G = LABEL_IMAGE_GROUPS;

export const LABEL_IMAGE_FLAGS = {
  graph: filePath({ group: G.model, arg: '<path>', required: 'give the model folder retrain wrote to --output_graph', help: "the model folder (or its model.json) retrain wrote to --output_graph, or a frozen TensorFlow graph (.pb, .pb.gz) such as retrain.py's output_graph.pb" }),
  labels: filePath({ group: G.model, arg: '<file>', help: 'labels file, one per line (default: the labels stored in the model)' }),
  inputLayer: string({ group: G.model, arg: '<name>', help: 'input node (graph models; default: from the model)' }),
  outputLayer: string({ group: G.model, arg: '<name>', help: 'output node or layer (default: from the model)' }),
  image: custom({
    group: G.input,
    type: 'list',
    arg: '<files...>',
    required: 'give one or more image files or folders',
    parse: (t: string): string[] => [expandHome(t)],
    format: (v: string[]) => v.join(' '),
    help: 'one or more image files (read as cat reads them: a pipe works), or folders of images; - reads one image from standard input',
  }),
  inputHeight: int({ group: G.input, check: inputSide, help: "input height (default: the model's, else 299)" }),
  inputWidth: int({ group: G.input, check: inputSide, help: "input width (default: the model's, else 299)" }),
  inputMean: channels({ group: G.input, help: 'input = (pixel - mean) / std, one value or three per channel R,G,B (default: from the model, else 0)' }),
  inputStd: channels({ group: G.input, nonZero: true, help: 'input = (pixel - mean) / std, one value or three per channel R,G,B (default: from the model, else 255)' }),
  topK: int({ group: G.output, default: 5, check: above0, help: 'how many classes to print per image' }),
  json: bool({ group: G.output, help: 'print one JSON document instead of lines' }),
  backend: choice(BACKENDS, { group: G.runtime, default: 'auto', help: 'compute backend' }),
  moduleCacheDir: filePath({ group: G.runtime, arg: '<dir>', default: defaultModuleCacheDir, help: 'the model converted for onnxruntime is cached in <dir>/onnx' }),
  verbose: bool({ group: G.runtime, help: 'show stack traces on errors' }),
  version: bool({ group: G.runtime, help: "print retrain-ts's version and exit" }),
};

export type LabelImageOptions = OptionsOf<typeof LABEL_IMAGE_FLAGS>;

export function defaultLabelImageOptions(): LabelImageOptions {
  return defaultsOf(LABEL_IMAGE_FLAGS);
}

/** Checks every value once; a problem is a UsageError naming the flag. */
export function validateLabelImageOptions(o: LabelImageOptions): LabelImageOptions {
  return validateOptions(LABEL_IMAGE_FLAGS, o);
}
