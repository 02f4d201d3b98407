/** `label-image`: TensorFlow's label_image.py flags over the library's classifier. */
import { Command } from 'commander';
import { initBackend, BACKENDS, type BackendChoice } from '../backend.js';
import { ImageError } from '../errors.js';
import { classifyImage, expandImageArgs, loadClassifier, type LabelResult } from '../label_image.js';
import { CLOSED_PIPE_EXIT, cliArgv, configureCommand, floatArg, intArg, runMain, stderrLogger, stdoutClosedByReader } from './common.js';
import { escapeControls } from '../log.js';
import { UsageError } from '../errors.js';

export function labelImageCommand(): Command {
  return configureCommand(new Command(), 'label-image')
    .description('Classify images with a model that retrain exported (TensorFlow\'s label_image.py).')
    .option('--graph <path>', "the model folder (or its model.json) retrain wrote to --output_graph, or a frozen TensorFlow graph (.pb, .pb.gz) such as retrain.py's output_graph.pb")
    .option('--labels <file>', 'labels file, one per line (default: the labels stored in the model)')
    .option('--image <files...>', 'one or more image files, or folders of images')
    .option('--input_layer <name>', 'input node (graph models; default: from the model)')
    .option('--output_layer <name>', 'output node or layer (default: from the model)')
    .option('--input_height <n>', "input height (default: the model's, else 299)", intArg('--input_height'))
    .option('--input_width <n>', "input width (default: the model's, else 299)", intArg('--input_width'))
    .option('--input_mean <x>', 'input = (pixel - mean) / std (default: from the model, else 0)', floatArg('--input_mean'))
    .option('--input_std <x>', 'input = (pixel - mean) / std (default: from the model, else 255)', floatArg('--input_std'))
    .option('--top_k <n>', 'how many classes to print per image', intArg('--top_k'), 5)
    .option('--json', 'print one JSON document instead of lines', false)
    .option('--backend <name>', `compute backend (${BACKENDS.join(', ')})`, 'auto')
    .option('--verbose', 'show stack traces on errors', false);
}

function formatScore(s: number): string {
  return String(Number(s.toPrecision(6)));
}

export async function main(argv: string[] = cliArgv()): Promise<void> {
  const cmd = labelImageCommand();
  const log = stderrLogger('label-image');
  await runMain('label-image', () => argv.includes('--verbose'), async () => {
    cmd.parse(argv);
    const f = cmd.opts();
    if (!f['graph']) throw new UsageError('--graph is required: give the model folder retrain wrote to --output_graph');
    if (!f['image']) throw new UsageError('--image is required: give one or more image files or folders');
    if (f['top_k'] <= 0) throw new UsageError(`--top_k ${f['top_k']} must be above 0`);
    await initBackend(f['backend'] as BackendChoice);
    const classifier = await loadClassifier({
      graph: f['graph'],
      labels: f['labels'],
      inputLayer: f['input_layer'],
      outputLayer: f['output_layer'],
      inputHeight: f['input_height'],
      inputWidth: f['input_width'],
      inputMean: f['input_mean'],
      inputStd: f['input_std'],
    });
    const images = await expandImageArgs(f['image'] as string[]);
    const results: LabelResult[] = [];
    let failed = 0;
    for (const file of images) {
      // Nobody reads any more (`| head -3`): stop quietly, as cat does.
      if (stdoutClosedByReader()) break;
      try {
        const r = await classifyImage(classifier, file, f['top_k']);
        results.push(r);
        if (!f['json']) {
          if (images.length > 1) process.stdout.write(`${escapeControls(file)}\n`);
          for (const p of r.predictions) process.stdout.write(`${p.label} ${formatScore(p.score)}\n`);
          if (images.length > 1) process.stdout.write('\n');
        }
      } catch (err) {
        if (!(err instanceof ImageError)) throw err;
        failed++;
        log.warn(`Skipping ${err.message}`);
      }
    }
    if (f['json']) {
      const out = results.map((r) => ({ image: r.image, predictions: r.predictions }));
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    }
    classifier.dispose();
    if (stdoutClosedByReader()) return CLOSED_PIPE_EXIT;
    return failed > 0 ? 1 : 0;
  });
}
