/**
 * The `actvar` program: every command with the shared error settings (main.ts parses and reports).
 * Commands live in src/cli/commands/, one module per command, each exporting `register(program)`;
 * to add one, import it and append it to `commands` below. Their flags use the parsers and flag
 * groups of options.ts, their outputs the policy of outputs.ts.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import * as bench from './commands/bench.js';
import * as trainClassifier from './commands/train-classifier.js';
import * as trainVae from './commands/train-vae.js';
import * as trainVar from './commands/train-var.js';
import * as generate from './commands/generate.js';
import * as flops from './commands/flops.js';
import * as demo from './commands/demo.js';
import * as features from './commands/features.js';
import * as evalCmd from './commands/eval.js';
import * as distillCmd from './commands/distill.js';
import * as reproduce from './commands/reproduce.js';

const commands: { register(program: Command): void }[] = [bench, trainClassifier, trainVae, trainVar, generate, flops, demo, features, evalCmd, distillCmd, reproduce];

/** package.json's version (dist/src/cli/program.js → ../../../package.json, also when installed). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * The whole program, unparsed (tests walk its commands and flags, and parse in process with
 * `output` capturing what commander would print).
 */
export function buildProgram(output: { writeOut?: (s: string) => void; writeErr?: (s: string) => void } = {}): Command {
  const program = new Command('actvar')
    .description('Visual Autoregressive (VAR) image generation and the ActVAR method')
    .version(version(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    // parse errors: "actvar: error: ...", exit 2 (set before adding commands: subcommands inherit it)
    .configureOutput({ ...output, outputError: (str, write) => write(`actvar: ${str}`) })
    .exitOverride()
    .allowExcessArguments(false);
  for (const c of commands) c.register(program);
  inheritSettings(program);
  return program;
}

/**
 * Every command, however attached (`command()` or `addCommand()`), at any depth, shares the program's
 * error settings: `actvar: error: …`, exit 2, no extra positional arguments.
 */
function inheritSettings(parent: Command): void {
  for (const c of parent.commands) {
    c.copyInheritedSettings(parent);
    inheritSettings(c);
  }
}
