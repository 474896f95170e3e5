/**
 * The active backend and settings (the core side: no Node module, no FFI). `backend()` returns the
 * installed backend, made on first use by the provider that the edge installed (`installBackend`;
 * the Node edge, backend/node.ts, installs the OpenBLAS / native-kernel chooser), else the
 * TypeScript backend. The model and tensor code call only `backend()` and `settings()`.
 */
import type { Backend } from './backend.js';
import { TsBackend } from './ts.js';
import { DEFAULT_SETTINGS, type Settings } from './settings.js';
import { Workspace } from './workspace.js';

export { Workspace } from './workspace.js';

export type { Backend, JsWorkerPool } from './backend.js';
export type { NativeKernels, Bf16Path } from './native.js';
export { TsBackend, checkSgemmArgs } from './ts.js';
export { parseSettings, configError, DEFAULT_SETTINGS } from './settings.js';
export type { Settings, BackendChoice, SettingsSource } from './settings.js';

/** What an edge installs: a backend made from the settings it read, and those settings. */
export interface BackendProvider { (): { backend: Backend; settings: Settings } }

let current: Backend | null = null;
let provider: BackendProvider | null = null;
let active: Settings = { ...DEFAULT_SETTINGS };

/** The active backend: the installed provider's (made on first use), else the TypeScript backend. */
export function backend(): Backend {
  if (current) return current;
  if (provider) {
    const made = provider();
    active = made.settings;
    current = made.backend;
  } else {
    current = new TsBackend();
  }
  return current;
}

/** The active settings (those the installed provider read, once it has run). */
export function settings(): Readonly<Settings> {
  backend();
  return active;
}

/** Change settings that apply at run time (today `attentionThreads`); the backend is not remade. */
export function configure(change: Partial<Pick<Settings, 'attentionThreads'>>): void {
  backend();
  active = { ...active, ...change };
}

/** Install how the backend is made on first use (the Node edge's chooser); the next `backend()` runs it. */
export function installBackend(p: BackendProvider | null): void {
  provider = p;
  current = null;
}

/** True when a provider is installed. */
export function backendInstalled(): boolean { return provider !== null; }

/** Replace the active backend (tests compare backends); null makes the next `backend()` choose again. */
export function setBackend(b: Backend | null): void {
  current = b;
}

/** The active backend's scratch memory (one allocator for all ops; see workspace.ts). */
export function workspace(): Workspace {
  const b = backend();
  return (b.workspace ??= new Workspace());
}
