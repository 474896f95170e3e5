/**
 * The identity of a VAR's weights: SHA-256 over its learnable parameters, in name order, each as
 * `name:d0,d1,…;` followed by its float32 bytes (little-endian, as they lie in memory). ActVAR gates and
 * ActVAR model files record the hash of the VAR they belong to (src/actvar/file.ts), so that gates
 * fitted to one VAR are never silently run on another. Plain TypeScript (io/sha256.ts): no Node module.
 */
import { Sha256 } from '../io/sha256.js';
import type { VAR } from '../var/var.js';

export function varParamsHash(model: Pick<VAR, 'params'>): string {
  const h = new Sha256();
  for (const k of [...model.params.keys()].sort()) {
    const t = model.params.get(k)!;
    h.update(`${k}:${t.shape.join(',')};`);
    h.update(t.data);
  }
  return h.hex();
}
