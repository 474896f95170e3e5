/**
 * The Node edge's `JsWorkerPool`: worker_threads that run self-contained JavaScript kernels (see
 * backend.ts). A kernel's source is sent to a worker once and kept there by name; each job posts the
 * arguments and a shared control word, and the caller blocks on Atomics.wait until every helper has
 * stored its outcome (1 done, 2 failed). Workers are unref'd: an idle pool never keeps the process alive.
 */
import { Worker } from 'node:worker_threads';
import type { JsWorkerPool } from './backend.js';

/** A helper that has not answered after this long is given up (and the pool rebuilt on the next use). */
const TIMEOUT_MS = 120_000;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const kernels = new Map();
parentPort.on('message', (m) => {
  try {
    if (m.source !== undefined) kernels.set(m.name, (0, eval)('(' + m.source + ')'));
    kernels.get(m.name)(...m.args);
    Atomics.store(m.ctrl, 0, 1);
  } catch (e) { Atomics.store(m.ctrl, 0, 2); }
  Atomics.notify(m.ctrl, 0);
});`;

interface Helper { worker: Worker; ctrl: Int32Array; known: Set<string> }

export class NodeWorkerPool implements JsWorkerPool {
  private helpers: Helper[] = [];

  get size(): number { return this.helpers.length; }

  resize(n: number): void {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`worker pool size must be a non-negative integer, got ${n}`);
    while (this.helpers.length > n) void this.helpers.pop()!.worker.terminate();
    while (this.helpers.length < n) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.unref();
      this.helpers.push({ worker, ctrl: new Int32Array(new SharedArrayBuffer(4)), known: new Set() });
    }
  }

  start(kernel: (...args: never[]) => void, jobs: unknown[][]): () => void {
    if (jobs.length > this.helpers.length) throw new RangeError(`${jobs.length} jobs for ${this.helpers.length} helper threads`);
    const name = kernel.name, source = kernel.toString();
    const used = this.helpers.slice(0, jobs.length);
    used.forEach((h, i) => {
      Atomics.store(h.ctrl, 0, 0);
      const first = !h.known.has(name);
      h.known.add(name);
      h.worker.postMessage({ name, source: first ? source : undefined, args: jobs[i], ctrl: h.ctrl });
    });
    return () => {
      let failed = false;
      const deadline = Date.now() + TIMEOUT_MS;
      for (const h of used) {
        while (Atomics.load(h.ctrl, 0) === 0) {
          if (Date.now() > deadline) {
            const n = this.helpers.length;
            this.resize(0); // do not reuse a pool with a lost worker
            this.resize(n);
            throw new Error(`${name}: a worker thread did not finish within ${TIMEOUT_MS / 1000} s`);
          }
          Atomics.wait(h.ctrl, 0, 0, 1000);
        }
        if (Atomics.load(h.ctrl, 0) === 2) failed = true;
      }
      if (failed) throw new Error(`${name}: a worker thread failed`);
    };
  }
}
