/** `retrain`: parses retrain.py's flags (src/flags/retrain.ts) and calls the library. */
import { Command } from 'commander';
import { InterruptedError } from '../errors.js';
import { RETRAIN_FLAGS } from '../flags/retrain.js';
import { BUILTIN_MODULE } from '../module/catalog.js';
import { addFlags, optionsFromCommand } from './flags.js';
import { printModuleList } from './list_modules.js';
import { cliArgv, configureCommand, packageVersion, onInterrupt, runMain, stderrLogger } from './common.js';

export function retrainCommand(): Command {
  const cmd = configureCommand(new Command(), 'retrain').description(
    "Retrain an image feature-vector module's top layer on a folder of images (TensorFlow's retrain.py).",
  );
  return addFlags(cmd, RETRAIN_FLAGS);
}

export async function main(argv: string[] = cliArgv()): Promise<void> {
  const cmd = retrainCommand();
  const log = stderrLogger('retrain');
  const interrupt = onInterrupt();
  await runMain('retrain', () => argv.includes('--verbose'), async () => {
    cmd.parse(argv);
    const o = optionsFromCommand(cmd, RETRAIN_FLAGS);
    if (o.version) return (process.stdout.write(`${packageVersion()}\n`), 0);
    if (o.listModules) return printModuleList(o.moduleCacheDir, BUILTIN_MODULE);
    // The library (tfjs, sharp, onnxruntime) loads once the flags are good: a usage error answers at once.
    const { runRetrain } = await import('../retrain.js');
    await runRetrain({ ...o, signal: interrupt.signal }, log);
    // A signal after the export's last check: the run finished whole, but still report the stop.
    if (interrupt.signal.aborted) throw new InterruptedError('interrupted after the model was exported: the run had finished whole');
    return 0;
  }, interrupt);
  interrupt.dispose();
  log.stop();
}
