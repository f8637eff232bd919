/**
 * Typed views of the protocol-v2 messages and frame plaintexts (see docs/protocol.md,
 * "Protocol v2"). Byte strings are plain `Uint8Array`s.
 */
import type { ByeReason, ReasonCode } from '../reasons.js';

export const PROTOCOL_VERSION_2 = 2;

export type MessageTypeV2 = 'challenge-request' | 'challenge' | 'hello' | 'welcome' | 'reject' | 'grant' | 'command';

export interface ChallengeRequestV2 {
  type: 'challenge-request';
  version: 2;
  dev: string;
}

export interface ChallengeV2 {
  type: 'challenge';
  version: 2;
  dev: string;
  gn: Uint8Array;
  gw: string;
  /** The gateway's ephemeral X25519 public key, fresh for this challenge. */
  ge: Uint8Array;
}

export interface HelloV2 {
  type: 'hello';
  version: 2;
  dev: string;
  pn: Uint8Array;
  gn: Uint8Array;
  gw: string;
  ge: Uint8Array;
  /** The peripheral's ephemeral X25519 public key, fresh for this hello. */
  pe: Uint8Array;
}

/** `COSE_Sign1[sk_S, kid=kid_S]`: the backend allows `gw` to serve `dev` for the hello `hh`. */
export interface Grant {
  type: 'grant';
  version: 2;
  dev: string;
  gw: string;
  hh: Uint8Array;
  spk: Uint8Array;
  iat: number;
  life: number;
}

/** Online welcome: carries the grant. Offline welcome: the gateway credential and a lease. */
export type WelcomeV2 = WelcomeV2Online | WelcomeV2Offline;

export interface WelcomeV2Online {
  type: 'welcome';
  version: 2;
  dev: string;
  gw: string;
  hh: Uint8Array;
  grant: Uint8Array;
  life: number;
}

export interface WelcomeV2Offline {
  type: 'welcome';
  version: 2;
  dev: string;
  gw: string;
  hh: Uint8Array;
  cred: Uint8Array;
  lease: Uint8Array;
  life: number;
}

export interface RejectV2 {
  type: 'reject';
  version: 2;
  dev: string;
  hh?: Uint8Array;
  reason: ReasonCode;
  retry?: number;
}

/** `COSE_Sign1[sk_S, kid=kid_S]`: a command for `dev`, bound to the session `hh`. */
export interface Command {
  type: 'command';
  version: 2;
  dev: string;
  hh: Uint8Array;
  cid: number;
  topic: string;
  body: Uint8Array;
  iat: number;
  exp: number;
}

export type CommandStatus = 'done' | 'failed' | 'refused';

// --- frame plaintexts ---------------------------------------------------------------------

export interface PubFrame {
  type: 'pub';
  topic: string;
  body: Uint8Array;
  mid?: number;
}

export interface AckFrame {
  type: 'ack';
  cid: number;
  status: CommandStatus;
}

export interface PingFrame {
  type: 'ping';
}

export interface ReceiptFrame {
  type: 'receipt';
  upto: number;
  denied?: number[];
  busy?: number[];
  /** Present exactly when `busy` is. */
  retry?: number;
  lost?: number[];
}

export interface MsgFrame {
  type: 'msg';
  topic: string;
  body: Uint8Array;
}

export interface CmdFrame {
  type: 'cmd';
  /** The COSE_Sign1 bytes of a command, relayed unchanged. */
  cmd: Uint8Array;
}

export interface ByeFrame {
  type: 'bye';
  reason?: ByeReason;
}

export type FramePayload = PubFrame | AckFrame | PingFrame | ReceiptFrame | MsgFrame | CmdFrame | ByeFrame;
export type FrameType = FramePayload['type'];
/** Frames a peripheral sends (P→G). */
export type UpFramePayload = PubFrame | AckFrame | PingFrame | ByeFrame;
/** Frames a gateway sends (G→P). */
export type DownFramePayload = ReceiptFrame | MsgFrame | CmdFrame | PingFrame | ByeFrame;
/** `p2g`: peripheral to gateway (k_up, iv_up); `g2p`: gateway to peripheral (k_dn, iv_dn). */
export type FrameDirection = 'p2g' | 'g2p';
