/**
 * A tiny TCP load balancer for tests and benches: listens on loopback and hands each new
 * connection to the next upstream in turn (round robin), piping bytes both ways. TLS passes
 * through untouched, as a layer-4 balancer in front of backend replicas does. An upstream that
 * refuses the connection (a dead replica) is skipped for the next one, as a balancer's health
 * check takes it out; the client sees a failure only when every upstream refuses.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { listenLoopback } from './listen.js';

export class TcpRoundRobin {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #next = 0;
  /** Connections handed to each upstream, by index. */
  readonly served: number[];
  /** Connections an upstream refused (and the balancer tried the next one), by index. */
  readonly refused: number[];
  port = 0;

  private constructor(readonly upstreams: readonly number[]) {
    this.served = upstreams.map(() => 0);
    this.refused = upstreams.map(() => 0);
    this.#server = createServer((client) => {
      this.#track(client);
      // Bytes wait in the client socket until an upstream is connected.
      client.pause();
      client.on('error', () => client.destroy());
      this.#connect(client, upstreams.length);
    });
  }

  static async start(upstreams: readonly number[]): Promise<TcpRoundRobin> {
    const p = new TcpRoundRobin(upstreams);
    p.port = await listenLoopback(p.#server);
    return p;
  }

  #track(s: Socket): void {
    this.#sockets.add(s);
    s.once('close', () => this.#sockets.delete(s));
  }

  /** Hands `client` to the next upstream; on a refused connect, to the one after (`tries` left). */
  #connect(client: Socket, tries: number): void {
    if (tries === 0 || client.destroyed) {
      client.destroy();
      return;
    }
    const i = this.#next;
    this.#next = (this.#next + 1) % this.upstreams.length;
    const up = createConnection({ host: '127.0.0.1', port: this.upstreams[i] as number });
    this.#track(up);
    const refused = (): void => {
      this.refused[i] = (this.refused[i] ?? 0) + 1;
      this.#connect(client, tries - 1);
    };
    up.once('error', refused);
    up.once('connect', () => {
      up.off('error', refused);
      this.served[i] = (this.served[i] ?? 0) + 1;
      up.on('error', () => {
        client.destroy();
        up.destroy();
      });
      client.on('error', () => up.destroy());
      client.pipe(up);
      up.pipe(client);
      client.resume();
    });
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
