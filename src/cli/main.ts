#!/usr/bin/env node
/** The `actvar` command: parse, dispatch, report errors (policy in errors.ts; the program in program.ts). */
import { runCli } from './errors.js';
import { buildProgram } from './program.js';
import { useNodeBackend } from '../backend/node.js';

useNodeBackend(); // the backend is chosen from the environment on first use

await runCli(async () => {
  await buildProgram().parseAsync(process.argv);
});
