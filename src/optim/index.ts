/** Optimisation: AdamW, gradient clipping, VAR's lr / wd schedules and param groups. */
export * from './adamw.js';
export * from './clip.js';
export * from './schedule.js';
