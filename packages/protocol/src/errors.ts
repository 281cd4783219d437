/** Base class of every error the protocol package throws. */
export class ProtocolError extends Error {
  override readonly name: string = 'ProtocolError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

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
