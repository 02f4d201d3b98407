/**
 * The training flags' choices and bounds, apart from the code that uses them: the flag
 * tables read these, and must not load tfjs to do it (a usage error or --help then
 * answers at once).
 */
export const OPTIMIZERS = ['sgd', 'momentum', 'adam'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];
/** --head: retrain.py's SGD loop, or the L2-regularised softmax solved to convergence (train/l2.ts), on raw or standardised bottlenecks. */
export const HEADS = ['sgd', 'l2', 'l2_standardized'] as const;
export type HeadKind = (typeof HEADS)[number];
export const CLASS_WEIGHTINGS = ['none', 'balanced'] as const;
export type ClassWeighting = (typeof CLASS_WEIGHTINGS)[number];

/**
 * Sane upper bounds for batch flags: a typo such as --train_batch_size 100000000 is a
 * usage error, not an allocation of gigabytes. Rows of bottlenecks are small (a few KB);
 * images at the module's input size are not.
 */
export const MAX_BOTTLENECK_BATCH = 65_536;
export const MAX_IMAGE_BATCH = 256;
export const MAX_HIDDEN_UNITS = 16_384;
