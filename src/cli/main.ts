#!/usr/bin/env node
/**
 * The `actvar` command: parse, dispatch, report errors (policy in errors.ts). Commands live in
 * src/cli/commands/, one module per command, each exporting `register(program)`; to add one,
 * import it and append it to `commands` below.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { runCli } from './errors.js';
import * as bench from './commands/bench.js';
import * as trainClassifier from './commands/train-classifier.js';
import * as trainVae from './commands/train-vae.js';
import * as trainVar from './commands/train-var.js';
import * as generate from './commands/generate.js';
import * as flops from './commands/flops.js';
import * as demo from './commands/demo.js';
import * as features from './commands/features.js';
import * as evalCmd from './commands/eval.js';

const commands: { register(program: Command): void }[] = [bench, trainClassifier, trainVae, trainVar, generate, flops, demo, features, evalCmd];

/** package.json's version (dist/src/cli/main.js → ../../../package.json, also when installed). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function buildProgram(): Command {
  const program = new Command('actvar')
    .description('Visual Autoregressive (VAR) image generation and the ActVAR method')
    .version(version(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    // parse errors: "actvar: error: ...", exit 2 (set before adding commands: subcommands inherit it)
    .configureOutput({ outputError: (str, write) => write(`actvar: ${str}`) })
    .exitOverride();
  for (const c of commands) c.register(program);
  return program;
}

await runCli(async () => {
  await buildProgram().parseAsync(process.argv);
});
