/**
 * Imported first by the bin (never by the library): the instance manager's V8 heap grows by 100 %
 * (doubles) per major garbage collection instead of V8's default (up to 4× for a small, quickly
 * collected heap). Bursts of calls (thousands of registrations at once, a thousand unary health
 * checks in flight) otherwise leave the heap, and the process's resident memory, far larger than
 * what is live. 30 % kept it nearest the live heap but paid in major collections: with 10,000
 * instances beating once a second, its p99 was 1.25–1.27× etcd's in two of three runs on this
 * machine, against 0.76–0.97× with 100 % (three runs each, same bench, same day), for about
 * 20 MB more peak RSS (still under the 200 MB goal; docs/benchmarks.md measures both).
 */
import { setFlagsFromString } from 'node:v8';

/** The heap-growing factor the bin sets, as V8's `--heap-growing-percent` (1 + percent / 100). */
export const HEAP_GROWING_PERCENT = 100;

setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
