/**
 * GEMM throughput at the transformer's FFN shape (680x1024x4096 = M×N×K), through the tensor
 * API and as a raw backend sgemm, plus the TypeScript fallback at 256³ for reference.
 */
import { measureGemm, formatGemmTable } from './gemm-measure.js';
import { announceBackend, backend, setBackend, TsBackend, useNodeBackend } from '../src/backend/node.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

export function gemmBench(): void {
  announceBackend();
  console.log(formatGemmTable(measureGemm()));
  const active = backend();
  if (!(active instanceof TsBackend)) {
    setBackend(new TsBackend());
    try {
      console.log(formatGemmTable(measureGemm({ shape: [256, 256, 256] })));
    } finally {
      setBackend(active);
    }
  }
}
