/**
 * The distilled rows of the reproduction: every setting (ActVAR and the baselines) gets the same
 * two-stage recipe (src/train/distill.ts, paper §3.3–3.4): stage 1 trains routers and selectors from the
 * training-free start, stage 2 fine-tunes the VAR (attention, expert FFNs, head) against the frozen
 * dense teacher with the gates fixed. A baseline replaces ActVAR's policy for stage 2 (the paper: "both
 * methods use the same weight activation rate and are trained under the same strategy"): the trainer's
 * science core is wrapped so that the student gets the baseline at its first stage-2 step, and it is
 * fine-tuned, validated and evaluated with the baseline's token / expert choice. Static pruning's expert
 * importance is measured once on the dense VAR (dense calibration generations of the run's seed).
 *
 * Checkpoints go to `<out>/distill/<run>/`; a killed run resumes its distillation from the latest one.
 */
import * as nodePath from 'node:path';
import { Rng } from '../../tensor/index.js';
import { ActVAR } from '../../actvar/actvar.js';
import { activationImportance, applyFixedTokens, applyStaticWeights, type BaselineInfo } from '../../actvar/baselines.js';
import { expertsToKeep, type ActVarConfig } from '../../actvar/config.js';
import { distill, type DistillCore } from '../../train/distill.js';
import { distillLoss, trainableParameters, validateDistill } from '../../actvar/distill.js';

const defaultCore: DistillCore = { distillLoss, trainableParameters, validateDistill };
import type { VQVAE } from '../../vqvae/vqvae.js';
import type { VAR } from '../../var/var.js';
import type { Distiller } from './run.js';
import type { ActVarSpec, DistillSizes } from './plan.js';

export interface DistillerOptions {
  /** The trainer's science core (default: src/actvar/distill.ts, the trainer's own default). */
  core?: DistillCore;
  /** Paths of the dense VAR and its tokenizer (the trainer hashes and records them). */
  varPath: string;
  tokenizerPath: string;
  /** The loaded dense VAR and tokenizer (static pruning's importance). */
  model: VAR;
  vqvae: VQVAE;
  sizes: DistillSizes;
  /** `<out>`: checkpoints under `<out>/distill/<run>/`, the token cache under `<out>/distill/tokens/`. */
  out: string;
}

/** The core with `baseline` applied to the student before its first stage-2 use (stage 1 trains ActVAR's own gates). */
export function coreWithBaseline(core: DistillCore, apply: ((student: ActVAR) => void) | null): DistillCore {
  if (!apply) return core;
  const done = new WeakSet<ActVAR>();
  const ensure = (s: ActVAR): void => { if (!done.has(s)) { apply(s); done.add(s); } };
  return {
    distillLoss(stage, student, teacher, vae, batch, opts) {
      if (stage === 2) ensure(student);
      return core.distillLoss(stage, student, teacher, vae, batch, opts);
    },
    trainableParameters(student, stage) {
      if (stage === 2) ensure(student);
      return core.trainableParameters(student, stage);
    },
    validateDistill(student, teacher, vae, batches) { return core.validateDistill(student, teacher, vae, batches); },
  };
}

export function makeDistiller(o: DistillerOptions): Distiller {
  return async (spec: ActVarSpec, config: Partial<ActVarConfig>, seed: number, runId: string, log: (s: string) => void) => {
    const sz = o.sizes;
    let baseline: BaselineInfo | null = null;
    let apply: ((s: ActVAR) => void) | null = null;
    if (spec.baseline === 'fixed-tokens') {
      baseline = { name: 'fixed-tokens' };
      apply = (s) => { applyFixedTokens(s); };
    } else if (spec.baseline === 'static-weights') {
      const probe = ActVAR.wrap(o.model, config, { allowUntrained: true });
      const rng = new Rng((seed ^ 0xba5e) >>> 0);
      const labels = Array.from({ length: sz.calib }, () => rng.int(o.model.config.numClasses));
      const imp = activationImportance(probe, { vqvae: o.vqvae, labels, cfg: 1.5, topK: 0, topP: 0, rng });
      const Kw = expertsToKeep(probe.config.expertRate, probe.config.experts);
      baseline = { name: 'static-weights', criterion: 'activation', keptExperts: imp.map((v) => [...v].map((x, e) => [x, e]).sort((p, q) => q[0] - p[0] || p[1] - q[1]).slice(0, Kw).map((p) => p[1])) };
      apply = (s) => applyStaticWeights(s, imp);
    }
    const t0 = performance.now();
    const dir = nodePath.join(o.out, 'distill', runId);
    const total = sz.stage1Steps + sz.stage2Steps;
    const r = await distill({
      var: o.varPath, tokenizer: o.tokenizerPath, stages: [1, 2], stageSteps: [sz.stage1Steps, sz.stage2Steps], actvar: config,
      calib: sz.calib, holdout: sz.holdout, evalSamples: sz.evalSamples, testSamples: sz.testSamples, trainLimit: sz.trainLimit,
      batchSize: sz.batchSize, lr: sz.lr, lr2: sz.lr2, schedule: sz.schedule, seed, ckptDir: dir, ckptEvery: Math.max(1, Math.ceil(total / 4)), resume: true,
      evalEvery: total, progress: 'none', log: (s) => log(`  ${s}`), tokenCacheDir: nodePath.join(o.out, 'distill', 'tokens'),
      core: coreWithBaseline(o.core ?? defaultCore, apply),
    });
    if (r.loop.interrupted) throw new Error(`${runId}: the distillation stopped early`);
    const act = r.actvar;
    act.onActivation = null;
    return {
      actvar: act, baseline,
      info: {
        stage1Steps: sz.stage1Steps, stage2Steps: sz.stage2Steps, batchSize: sz.batchSize, lr: r.lr, lr2: r.lr2, schedule: sz.schedule, trainImages: sz.trainLimit, holdout: sz.holdout,
        resumedAtStep: r.startStep, distillSeconds: (performance.now() - t0) / 1e3, samplesPerSec: r.loop.samplesPerSec,
        before: r.before, after: r.after,
      },
    };
  };
}
