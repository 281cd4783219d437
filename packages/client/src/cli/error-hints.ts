import { Status } from 'nice-grpc-common';
import {
  AuthError,
  CapacityError,
  ClusterUnavailableError,
  ConnectionError,
  NoAgentsError,
  ProtocolVersionError,
  QuotaExceededError,
  RequestFailedError,
  StreamInterruptedError,
  TimeoutError,
} from '../errors.js';

/** "in 42 s" / "in a moment". */
const after = (ms: number | undefined) => (ms !== undefined && ms >= 1000 ? `in ${Math.ceil(ms / 1000)} s` : 'in a moment');

/**
 * What a person can do about `error`, as one sentence for the CLI to print after the error
 * (`hint: …` on stderr, `error.hint` with `--json`), or undefined when there is nothing
 * useful to add.
 */
export function hintFor(error: unknown): string | undefined {
  if (error instanceof ClusterUnavailableError) {
    return (
      `is the cluster running? None of its coordinators (${error.addresses.join(', ')}) answered; ` +
      'check that --coordinator (env TITAN_COORDINATOR) lists them, comma-separated.'
    );
  }
  if (error instanceof ConnectionError) {
    switch (error.context.target) {
      case 'coordinator':
        return (
          `is a cluster running at ${error.address}? Start a local one with \`pnpm start\` in the TitanCompute repository, ` +
          'or point titan at yours with --coordinator HOST:PORT (env TITAN_COORDINATOR).'
        );
      case 'instance-manager':
        return (
          `is an instance manager running at ${error.address}? Start a local cluster with \`pnpm start\`, ` +
          'or pass --instance-manager HOST:PORT (env TITAN_INSTANCE_MANAGER).'
        );
      case 'agent':
        return "the coordinator handed out an agent address this machine cannot reach: check the agent's --public-host, and `titan status` for its endpoint.";
      default:
        return undefined;
    }
  }
  if (error instanceof NoAgentsError) {
    return '`titan status` lists the agents and the models each one serves; check the model name (--model).';
  }
  if (error instanceof QuotaExceededError) {
    switch (error.quota) {
      case 'budget':
        return "this API key's token budget is spent and does not refill: ask the operator for a new key (`titan keys create`).";
      case 'concurrency':
        return `this API key already runs as many jobs as it may at once; try again ${after(error.retryAfterMs)}.`;
      default:
        return `this API key's ${error.quota === 'rpm' ? 'requests' : 'tokens'}-per-minute limit is reached; try again ${after(error.retryAfterMs)}.`;
    }
  }
  if (error instanceof CapacityError) return `every agent for this model is busy; try again ${after(error.retryAfterMs)}.`;
  if (error instanceof AuthError && error.context.target === 'coordinator') {
    if (error.context.call === 'admin') {
      return "pass the coordinator's admin token: --admin-token TOKEN (env TITAN_ADMIN_TOKEN) or --admin-token-file <coordinator data dir>/admin-token.";
    }
    if (error.code === Status.PERMISSION_DENIED)
      return 'this API key may not use this model: pick one it allows (`titan keys ls` shows them) or ask for a key that allows it.';
    return 'this coordinator requires an API key: pass --api-key tk-… (env TITAN_API_KEY); an operator creates one with `titan keys create --name NAME`.';
  }
  if (error instanceof RequestFailedError && error.code === Status.ALREADY_EXISTS)
    return 'revoke the old key first (`titan keys revoke NAME`) or pick another --name.';
  if (error instanceof TimeoutError) return 'give it longer with --timeout MS.';
  if (error instanceof StreamInterruptedError) return 'the text above is what arrived before the break; run the command again for a fresh answer.';
  if (error instanceof ProtocolVersionError) return 'the CLI and the cluster were built from incompatible contracts: upgrade the older side.';
  return undefined;
}
