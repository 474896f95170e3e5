/**
 * actvar's library API. Layers, bottom to top: backend → tensor → io/optim → vqvae → var → actvar
 * → data/train/eval. The CLI (src/cli) is a thin shell over these exports.
 */
export * from './backend/node.js';
export * from './tensor/index.js';
export * from './io/index.js';
export * from './optim/index.js';
export * from './vqvae/index.js';
export * from './var/index.js';
export * from './actvar/index.js';
export { loadClassifier, Classifier } from './eval/classifier.js';
export { loadDataset } from './data/datasets.js';
export { featureStats, frechetDistance, type GaussianStats } from './eval/fid.js';
export { inceptionScore } from './eval/inception-score.js';
export { precisionRecall } from './eval/precision-recall.js';
export { qualityMetrics } from './eval/evaluate.js';
export { ClassifierExtractor } from './eval/classifier-extractor.js';
export type { FeatureExtractor } from './eval/features.js';

// the Node library: the backend is chosen from the environment (ACTVAR_BACKEND, …) on first use
import { useNodeBackend } from './backend/node.js';
useNodeBackend();
