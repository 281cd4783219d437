/**
 * The service entry points a client test starts in-process. The client package imports the
 * servers only through here, so it has no dependency on them (not even a dev one).
 */
export { startCoordinator, type CoordinatorOptions, type RunningCoordinator } from '@titancompute/coordinator';
export { startAgent, type Engine, type EngineChunk, type GenerateRequest, type RunningAgent } from '@titancompute/agent';
export { startInstanceManager, type RunningInstanceManager } from '@titancompute/instance-manager';
