import { createServer } from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago: the OS picks one for a throwaway listener,
 * which is closed before the port is returned. For a process started later on a known port (a
 * bin, a restart on the same port); an in-process server should listen on port 0 instead.
 *
 * @param host - Interface to probe. Default `127.0.0.1`.
 * @returns The port number.
 * @throws Error when the listener fails (e.g. no loopback interface) or reports no port.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error(`freePort: no port from a listener on ${host}`))));
    });
  });
}
