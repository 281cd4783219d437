/**
 * Whether `value` is an instance of `cls` made by any copy of the package that brands its errors
 * with `brand` (e.g. its ESM and its CommonJS build, both loaded by one program): `value` carries
 * the brand and a class of its prototype chain has `cls`'s name. Used by the published error
 * classes' `Symbol.hasInstance`, so `err instanceof TitanError` holds whichever copy threw it.
 *
 * @example
 * ```ts
 * class MyError extends Error {
 *   static [Symbol.hasInstance](value: unknown) { return isBrandedInstance(this, value, MY_BRAND); }
 * }
 * ```
 */
export function isBrandedInstance(cls: abstract new (...args: never[]) => unknown, value: unknown, brand: symbol): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (Function.prototype[Symbol.hasInstance].call(cls, value)) return true;
  if ((value as Record<symbol, unknown>)[brand] !== true) return false;
  for (let proto: unknown = Object.getPrototypeOf(value); proto !== null; proto = Object.getPrototypeOf(proto)) {
    if (Object.hasOwn(proto as object, 'constructor') && (proto as { constructor: { name?: unknown } }).constructor.name === cls.name) return true;
  }
  return false;
}

/** Brand of the protocol package's errors (`Symbol.for`, so every copy of the package shares it). */
const PROTOCOL_ERROR_BRAND = Symbol.for('titancompute.protocol.ProtocolError');

/**
 * Base class of every error the protocol package throws. `instanceof` recognises errors of any
 * copy of the package (its ESM and CommonJS builds alike).
 */
export class ProtocolError extends Error {
  override readonly name: string = 'ProtocolError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }

  /** True for errors of this class (or a subclass) from any copy of `@titancompute/protocol`. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class instanceof asks about (a subclass too)
    return isBrandedInstance(this, value, PROTOCOL_ERROR_BRAND);
  }
}
Object.defineProperty(ProtocolError.prototype, PROTOCOL_ERROR_BRAND, { value: true });

/** A TLS file (certificate, key or CA) could not be read. */
export class TlsConfigError extends ProtocolError {
  override readonly name = 'TlsConfigError';
  constructor(
    message: string,
    readonly context: { readonly file: string; readonly role: 'cert' | 'key' | 'ca' },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A request OpenAI would accept that this cluster refuses or cannot read: answered 400 in OpenAI's error shape. */
export class OpenAiRequestError extends ProtocolError {
  override readonly name = 'OpenAiRequestError';
  constructor(
    message: string,
    /** The offending field (OpenAI's `param`), e.g. `messages[1].content`; null when the body as a whole is wrong. */
    readonly param: string | null,
    /** OpenAI's `code`, e.g. `unsupported_parameter`; null when there is none. */
    readonly code: string | null = null,
  ) {
    super(message);
  }
}
