import type { CliIo } from './context.js';

/** A spinner that can be stopped once; later calls do nothing. */
export interface WaitSpinner {
  /** Clears the spinner line (only the first call writes anything). */
  stop(): void;
}

const NO_SPINNER: WaitSpinner = { stop() {} };

/**
 * Whether `stream` is a terminal a spinner can draw on: a TTY that reports a width of at
 * least one column. Some pseudo-terminals (e.g. `script -qc`, a pty never given a size)
 * report 0 columns; ora divides by the width to count lines to clear, and with 0 it loops
 * forever (100 % CPU, signals never handled), so no spinner is drawn there.
 */
export function canDrawSpinner(stream: CliIo['stderr']): boolean {
  return stream.isTTY === true && typeof stream.columns === 'number' && Number.isFinite(stream.columns) && stream.columns >= 1;
}

/**
 * Starts an ora spinner with `text` on `io.stderr` when {@link canDrawSpinner} says it can
 * (ora itself also stays off for `TERM=dumb` and under CI), else a no-op. The returned
 * `stop()` clears the line the first time only: clearing moves the cursor to column 1,
 * so clearing again after text was printed would overwrite that text.
 *
 * Stdin is left alone (ora's `discardStdin` is off), so Ctrl-C reaches the process as SIGINT.
 */
export async function startWaitSpinner(io: CliIo, text: string): Promise<WaitSpinner> {
  if (!canDrawSpinner(io.stderr)) return NO_SPINNER;
  const ora = (await import('ora')).default;
  let spinner: ReturnType<typeof ora> | undefined = ora({ text, stream: io.stderr as NodeJS.WritableStream, discardStdin: false }).start();
  return {
    stop() {
      spinner?.stop();
      spinner = undefined;
    },
  };
}
