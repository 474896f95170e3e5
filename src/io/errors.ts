/**
 * Typed errors of the weight-file readers and writers.
 *
 * Every failure caused by the *contents* of a file (truncation, corrupt fields, unsupported dtypes,
 * refused pickle globals, ...) is reported as one of these classes, never as a bare RangeError /
 * TypeError / SyntaxError, so that a caller can tell "bad file" from "bug". `code` is a short
 * stable identifier (e.g. 'header-too-large', 'forbidden-global'); `file` is the path when known.
 *
 *   WeightFileError
 *   ├── NonFiniteWeightsError   a tensor holds NaN or ±Infinity (refused at load, named)
 *   ├── SafetensorsError        .safetensors
 *   └── PthError                PyTorch .pth (torch.save zip format)
 *       ├── ZipError            the zip container
 *       └── PickleError         the data.pkl pickle stream
 */

export class WeightFileError extends Error {
  readonly code: string;
  file?: string;
  constructor(code: string, message: string, options?: { cause?: unknown; file?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    if (options?.file !== undefined) this.file = options.file;
  }
  override get name(): string { return this.constructor.name; }
}

export class SafetensorsError extends WeightFileError {}
/** A loaded weight tensor holds NaN or ±Infinity; `tensor` names it (code 'non-finite'). */
export class NonFiniteWeightsError extends WeightFileError {
  constructor(readonly tensor: string, index: number, value: number, file?: string) {
    super('non-finite', `tensor ${tensor} holds ${value} at element ${index}: weights must be finite (a diverged training run or a corrupt file?)`, file !== undefined ? { file } : undefined);
    if (file !== undefined) this.message = `${file}: ${this.message}`;
  }
}
export class PthError extends WeightFileError {}
export class ZipError extends PthError {}
export class PickleError extends PthError {}

/** Constructor shape shared by the error classes (used to make helpers format-neutral). */
export type ErrorClass = new (code: string, message: string, options?: { cause?: unknown; file?: string }) => WeightFileError;

/** Prefix a typed error's message with the file it came from (once), and record the file. */
export function withFile<E extends WeightFileError>(err: E, file: string | undefined): E {
  if (file !== undefined && err.file === undefined) {
    err.file = file;
    err.message = `${file}: ${err.message}`;
  }
  return err;
}
