/**
 * Imported first by every test file: the tests run on the backend the environment asks for
 * (ACTVAR_BACKEND, ACTVAR_NATIVE, …; by default OpenBLAS with the native kernels), as the CLI does.
 */
import { useNodeBackend } from '../../src/backend/node.js';

useNodeBackend();
