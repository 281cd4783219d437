import { CapacityError, ConnectionError, NoAgentsError, ProtocolVersionError, StreamInterruptedError, TimeoutError } from '../errors.js';

/**
 * What a person can do about `error`, as one sentence for the CLI to print after the error
 * (`hint: …` on stderr, `error.hint` with `--json`), or undefined when there is nothing
 * useful to add.
 */
export function hintFor(error: unknown): string | undefined {
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
  if (error instanceof CapacityError) {
    const wait = error.retryAfterMs !== undefined && error.retryAfterMs >= 1000 ? `in ${Math.ceil(error.retryAfterMs / 1000)} s` : 'in a moment';
    return `every agent for this model is busy; try again ${wait}.`;
  }
  if (error instanceof TimeoutError) return 'give it longer with --timeout MS.';
  if (error instanceof StreamInterruptedError) return 'the text above is what arrived before the break; run the command again for a fresh answer.';
  if (error instanceof ProtocolVersionError) return 'the CLI and the cluster were built from incompatible contracts: upgrade the older side.';
  return undefined;
}
