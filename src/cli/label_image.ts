/** `label-image`: parses label_image.py's flags (src/flags/label_image.ts), calls the library and prints. */
import { Command } from 'commander';
import { LABEL_IMAGE_FLAGS } from '../flags/label_image.js';
import { escapeControls } from '../log.js';
import { addFlags, optionsFromCommand } from './flags.js';
import { CLOSED_PIPE_EXIT, cliArgv, configureCommand, packageVersion, runMain, stderrLogger, stdoutClosedByReader } from './common.js';

export function labelImageCommand(): Command {
  const cmd = configureCommand(new Command(), 'label-image').description(
    "Classify images with a model that retrain exported (TensorFlow's label_image.py).",
  );
  return addFlags(cmd, LABEL_IMAGE_FLAGS);
}

function formatScore(s: number): string {
  return String(Number(s.toPrecision(6)));
}

export async function main(argv: string[] = cliArgv()): Promise<void> {
  const cmd = labelImageCommand();
  const log = stderrLogger('label-image');
  await runMain('label-image', () => argv.includes('--verbose'), async () => {
    cmd.parse(argv);
    const o = optionsFromCommand(cmd, LABEL_IMAGE_FLAGS);
    if (o.version) return (process.stdout.write(`${packageVersion()}\n`), 0);
    // Nobody reads any more (`| head -3`): stop quietly at the next image, as cat does.
    // The library loads once the flags are good: a usage error answers at once.
    const { labelImages } = await import('../label_image.js');
    const out = await labelImages(o, log, { stop: stdoutClosedByReader, onResult: (r, _i, total) => {
      if (o.json) return;
      if (total > 1) process.stdout.write(`${escapeControls(r.image)}\n`);
      for (const p of r.predictions) process.stdout.write(`${p.label} ${formatScore(p.score)}\n`);
      if (total > 1) process.stdout.write('\n');
    } });
    if (o.json) {
      const doc = out.results.map((r) => ({ image: r.image, predictions: r.predictions }));
      process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
    }
    return stdoutClosedByReader() ? CLOSED_PIPE_EXIT : out.exitCode;
  });
}
