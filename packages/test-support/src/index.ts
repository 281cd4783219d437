/**
 * `@titancompute/test-support`: private helpers shared by the packages' tests, `e2e/` and
 * `bench/` — one copy of each. Never published; nothing in a service imports it.
 */
export { freePort } from './free-port.js';
export { waitFor, type WaitForOptions, type WaitForResult } from './wait-for.js';
export { decodeOtlpTraces, startOtlpReceiver, type OtlpReceiver, type OtlpValue, type ReceivedSpan } from './otlp-receiver.js';
export { createScriptedEngine, startRealCluster, SCRIPTED_MODEL, type RealAgentSpec, type RealCluster } from './real-cluster.js';
export * from './servers.js';
