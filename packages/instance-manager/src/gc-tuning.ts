/**
 * Imported first by the bin (never by the library): the instance manager's V8 heap grows by 30 %
 * per major garbage collection instead of V8's default (up to 4× for a small, quickly collected
 * heap). Bursts of calls (thousands of registrations at once, a thousand unary health checks in
 * flight) otherwise leave the heap, and the process's resident memory, about 70 MB larger than
 * what is live; with this it stays near the live heap (docs/benchmarks.md measures both), for
 * some more major collections (each of a live heap of a few tens of MB).
 */
import { setFlagsFromString } from 'node:v8';

/** The heap-growing factor the bin sets, as V8's `--heap-growing-percent` (1 + percent / 100). */
export const HEAP_GROWING_PERCENT = 30;

setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
