/**
 * A tiny TCP load balancer for tests and benches: listens on loopback and hands each new
 * connection to the next upstream in turn (round robin), piping bytes both ways. TLS passes
 * through untouched, as a layer-4 balancer in front of backend replicas does.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { listenLoopback } from './listen.js';

export class TcpRoundRobin {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #next = 0;
  /** Connections handed to each upstream, by index. */
  readonly served: number[];
  port = 0;

  private constructor(readonly upstreams: readonly number[]) {
    this.served = upstreams.map(() => 0);
    this.#server = createServer((client) => {
      const i = this.#next;
      this.#next = (this.#next + 1) % upstreams.length;
      this.served[i] = (this.served[i] ?? 0) + 1;
      const up = createConnection({ host: '127.0.0.1', port: upstreams[i] as number });
      for (const s of [client, up]) {
        this.#sockets.add(s);
        s.once('close', () => this.#sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          up.destroy();
        });
      }
      client.pipe(up);
      up.pipe(client);
    });
  }

  static async start(upstreams: readonly number[]): Promise<TcpRoundRobin> {
    const p = new TcpRoundRobin(upstreams);
    p.port = await listenLoopback(p.#server);
    return p;
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
