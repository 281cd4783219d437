import type { AgentStatusResponse, GpuInfo, SystemStatus } from '@titancompute/protocol';
import type { AgentSelfStatus, ClusterStatus, GpuStatus } from '../types.js';

/** Friendly view of a proto GpuInfo. */
export function toGpuStatus(gpu: GpuInfo): GpuStatus {
  return {
    index: gpu.index,
    uuid: gpu.uuid,
    name: gpu.name,
    memoryTotalMb: gpu.memoryTotalMb,
    memoryUsedMb: gpu.memoryUsedMb,
    memoryFreeMb: gpu.memoryFreeMb,
    utilizationPercent: gpu.utilizationPercent,
    temperatureC: gpu.temperatureC,
    powerDrawW: gpu.powerDrawW,
  };
}

/** Friendly view of the coordinator's SystemStatus. */
export function toClusterStatus(status: SystemStatus): ClusterStatus {
  const m = status.metrics;
  return {
    totalAgents: status.totalAgents,
    healthyAgents: status.healthyAgents,
    totalJobs: status.totalJobs,
    uptime: status.uptime,
    uptimeSeconds: status.uptimeSeconds,
    agents: status.agents.map((a) => ({
      id: a.agentId,
      state: a.status,
      endpoint: a.endpoint,
      totalVramMb: a.totalVramMb,
      freeVramMb: a.freeVramMb,
      totalRamMb: a.totalRamMb,
      freeRamMb: a.freeRamMb,
      runningJobs: a.runningJobs,
      queuedJobs: a.queuedJobs,
      reservedJobs: a.reservedJobs,
      maxJobs: a.maxJobs,
      rttMs: a.rttMs,
      tokensPerSecond: a.tokensPerSecond,
      cpuPercent: a.cpuPercent,
      models: [...a.supportedModels],
      breakerState: a.breakerState,
      lastHeartbeat: a.lastHeartbeat,
      gpus: a.gpus.map(toGpuStatus),
    })),
    metrics: m
      ? {
          requestsTotal: m.requestsTotal,
          scheduledTotal: m.scheduledTotal,
          rejectedNoAgentTotal: m.rejectedNoAgentTotal,
          rejectedBusyTotal: m.rejectedBusyTotal,
          rejectedInvalidTotal: m.rejectedInvalidTotal,
          jobsCompletedTotal: m.jobsCompletedTotal,
          jobsFailedTotal: m.jobsFailedTotal,
          reservedJobs: m.reservedJobs,
          schedulingLatencyP50Ms: m.schedulingLatencyP50Ms,
          schedulingLatencyP99Ms: m.schedulingLatencyP99Ms,
        }
      : undefined,
  };
}

/** Friendly view of an agent's GetStatus answer. */
export function toAgentSelfStatus(s: AgentStatusResponse): AgentSelfStatus {
  return {
    agentId: s.agentId,
    state: s.status,
    engine: s.engine,
    modelLoaded: s.modelLoaded,
    runningJobs: s.runningJobs,
    queuedJobs: s.queuedJobs,
    maxJobs: s.maxJobs,
    activeSessions: s.activeSessions,
    activeJobIds: [...s.activeJobIds],
    totalRequestsProcessed: s.totalRequestsProcessed,
    totalTokensGenerated: s.totalTokensGenerated,
    tokensPerSecond: s.tokensPerSecond,
    freeVramMb: s.freeVramMb,
    freeRamMb: s.freeRamMb,
    gpus: s.gpus.map(toGpuStatus),
  };
}
