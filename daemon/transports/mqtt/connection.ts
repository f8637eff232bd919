/**
 * One accepted MQTT connection as the transport tracks it: the ACL view, the pipeline's view,
 * its timers and its bounded queue of auth messages waiting for the pipeline.
 */
import type { Duplex } from 'node:stream';
import type { Client } from 'aedes';
import type { Policy } from '../../../protocol/index.js';
import type { IngressConnection } from '../../pipeline/types.js';
import type { AclConnection } from './acl.js';

export class MqttConnection implements AclConnection {
  readonly id: string;
  readonly ingress: IngressConnection;
  readonly stream: Duplex;
  /** Set by preConnect from CONNECT; '' until then. */
  clientId = '';
  keepalive = 0;
  willProblem: string | undefined;
  boundDev: string | undefined;
  policy: Policy | undefined;
  closing = false;
  /** Close once the current reply is published (a welcomed device refused on a new hello). */
  closeAfterReply = false;
  client: Client | undefined;
  authTimer: NodeJS.Timeout | undefined;
  /** Filters granted to this connection (bounded by the transport). */
  readonly subscriptions = new Set<string>();
  /** Auth messages (up payloads) waiting for the pipeline, oldest first; bounded by the transport. */
  readonly queue: Uint8Array[] = [];
  draining = false;
  /** Auth messages dropped because the queue was full. */
  dropped = 0;

  constructor(seq: number, remote: string, stream: Duplex) {
    this.id = `mqtt:${seq}`;
    this.ingress = { id: this.id, transport: 'mqtt', remote };
    this.stream = stream;
  }

  get welcomed(): boolean {
    return this.policy !== undefined;
  }
}
