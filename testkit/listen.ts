/**
 * Test servers on loopback: listen on a port the kernel picks (port 0) and close without
 * waiting for idle keep-alive sockets. Servers the tests start themselves (fake backends).
 */
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server } from 'node:net';

/** Listen on 127.0.0.1 port 0 and resolve with the port chosen; a listen error rejects. */
export function listenLoopback(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Drop every connection (idle keep-alive ones included) and resolve once the server closed. */
export function closeServer(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
