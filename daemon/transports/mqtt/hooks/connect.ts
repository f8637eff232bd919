/**
 * The aedes hooks of CONNECT: `preConnect` records what the packet says and refuses protocol
 * violations; `authenticate` answers the CONNACK from the ACL's client id rule, the keepalive
 * bound and the will checked at CONNECT.
 */
import type { AedesOptions, AuthenticateError } from 'aedes';
import type { Logger } from 'winston';
import { checkClientId, checkWillAtConnect, type AclOptions } from '../acl.js';
import type { MqttConnection } from '../connection.js';
import type { MqttConnectionTable } from '../connection-table.js';
import { shortForLog } from '../topics.js';

// aedes AuthErrorCode is a const enum in its typings; MQTT 3.1.1 §3.2.2.3 return codes.
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const NOT_AUTHORIZED = 5;

function connackError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export interface ConnectHookOptions {
  table: MqttConnectionTable;
  log: Logger;
  acl: AclOptions;
  /** Largest keepalive (seconds) a client may ask for. */
  keepaliveMaxSec: number;
  /** Why `conn` cannot have a slot now (capacity, unwelcomed slots), or undefined when it can. */
  noSlot(conn: MqttConnection): string | undefined;
}

export function connectHooks(o: ConnectHookOptions): Required<Pick<AedesOptions, 'preConnect' | 'authenticate'>> {
  return {
    preConnect(client, packet, cb) {
      const conn = o.table.byClient(client);
      if (conn === undefined) {
        cb(new Error('unknown connection'), false);
        return;
      }
      // [MQTT-3.1.2-14] will QoS 3 and [MQTT-3.1.2-22] a password without a user name are protocol
      // violations: close the connection without a CONNACK [MQTT-4.8.0-1].
      const violation = (packet.will?.qos ?? 0) > 2 ? 'will QoS 3' : packet.password !== undefined && packet.username === undefined ? 'password without user name' : undefined;
      if (violation !== undefined) {
        o.log.info('CONNECT refused: protocol violation', { conn: conn.id, why: violation });
        cb(new Error(violation), false);
        return;
      }
      const will = packet.will !== undefined && packet.will !== null ? checkWillAtConnect(packet.will.topic, packet.will.retain === true, o.acl) : undefined;
      conn.connected({
        clientId: typeof packet.clientId === 'string' ? packet.clientId : '',
        keepalive: packet.keepalive ?? 0,
        willProblem: will === undefined || will.ok ? undefined : will.why,
      });
      // The broker-side id is ours and unique: a peer naming another device's client id can
      // neither take over ([MQTT-3.1.4-2]) nor read that device's session. Sessions are clean:
      // persistent sessions would keep state for every connection ever made.
      packet.clientId = conn.id;
      packet.clean = true;
      cb(null, true);
    },

    authenticate(client, _user, _pass, cb) {
      const conn = o.table.byClient(client);
      if (conn === undefined) {
        cb(connackError('unknown connection', NOT_AUTHORIZED), false);
        return;
      }
      // protocol-v2 "MQTT transport": a client id in use by a live connection is refused with
      // CONNACK 2 and never replaces that connection (MQTT 3.1.1 §3.1.3 lets a server reject ids).
      const id = checkClientId(conn.clientId, o.table.clientIdInUse(conn.clientId, conn));
      if (!id.ok) {
        o.log.info('CONNECT refused: client id', { conn: conn.id, clientId: shortForLog(conn.clientId), why: id.why });
        cb(connackError(id.why, IDENTIFIER_REJECTED), false);
        return;
      }
      // MQTT 3.1.1 cannot tell a client which keepalive to use; like mosquitto's max_keepalive,
      // a keepalive of 0 (never) or above the limit is refused as "identifier rejected".
      if (conn.keepalive === 0 || conn.keepalive > o.keepaliveMaxSec) {
        o.log.info('CONNECT refused: keepalive', { conn: conn.id, keepalive: conn.keepalive, max: o.keepaliveMaxSec });
        cb(connackError('keepalive out of range', IDENTIFIER_REJECTED), false);
        return;
      }
      if (conn.willProblem !== undefined) {
        o.log.info('CONNECT refused: will', { conn: conn.id, why: conn.willProblem });
        cb(connackError(conn.willProblem, NOT_AUTHORIZED), false);
        return;
      }
      // Over capacity the peer hears why (MQTT 3.1.1 §3.2.2.3: 3, server unavailable) instead of
      // a TCP reset, and retries later.
      const noSlot = o.noSlot(conn);
      if (noSlot !== undefined) {
        cb(connackError(noSlot, SERVER_UNAVAILABLE), false);
        return;
      }
      o.table.holdClientId(conn);
      o.table.admit(conn);
      cb(null, true);
    },
  };
}
