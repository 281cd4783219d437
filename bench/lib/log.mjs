/**
 * Progress lines of a benchmark go to stderr (stdout carries only its markdown section).
 *
 * @param {string} [prefix] - Printed first, e.g. `[zero-proxy]`.
 * @returns {(...parts: unknown[]) => void} Writes the parts joined by spaces, and a newline.
 */
export function createLog(prefix) {
  return (...parts) => process.stderr.write(`${prefix === undefined ? '' : `${prefix} `}${parts.join(' ')}\n`);
}
