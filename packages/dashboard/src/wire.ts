/**
 * The coordinator's dashboard wire format, imported as types from the coordinator itself so the
 * app and the server cannot drift apart (erased at build time: nothing of the coordinator ships).
 */
export type {
  DashboardSnapshot,
  FleetAgentState,
  FleetBreakerState,
  FleetGpu,
  FleetMessage,
  FleetRow,
  HelloMessage,
  InstanceEventWire,
  InstanceGapMessage,
  InstanceNode,
  InstanceServiceWire,
  InstancesMessage,
  KeysMessage,
  KeyUsage,
  SessionInfo,
  TrafficMessage,
  TrafficPoint,
} from '../../coordinator/src/dashboard/dashboard-wire.js';
