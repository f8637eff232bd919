/**
 * protocol-v2 "Commands", the peripheral's side: act on a command only if it verifies under a
 * pinned pk_S, names this device, this session's hh, a cid above the last one acted on and,
 * with a clock, is unexpired. A command with the last cid whose signature and dev check is
 * answered with the stored status and not acted on again; anything else is `refused`.
 */
import { decodeCbor } from '../cbor.js';
import { decodeSign1, verifySign1, type DecodedSign1 } from '../cose.js';
import { bytesEqual } from '../crypto.js';
import { ProtocolError } from '../errors.js';
import { parseCommand } from './messages.js';
import type { Command, CommandStatus } from './types.js';

/** What the peripheral persisted about the last command it acted on. */
export interface LastCommand {
  cid: number;
  status: 'done' | 'failed';
}

export interface CheckCommandOptions {
  backendKeys: ReadonlyMap<string, Uint8Array>;
  dev: string;
  /** hh of the current session. */
  hh: Uint8Array;
  /** The last command acted on (persisted across restarts), if any. */
  last?: LastCommand;
  /** Unix seconds, only if the peripheral has a clock. */
  now?: number;
}

export type CommandRefusal =
  | 'GH_COMMAND_MALFORMED'
  | 'GH_COMMAND_UNKNOWN_KID'
  | 'GH_COMMAND_SIGNATURE'
  | 'GH_COMMAND_DEV'
  | 'GH_COMMAND_HH'
  | 'GH_COMMAND_CID_OLD'
  | 'GH_COMMAND_EXPIRED';

export type CheckCommandResult =
  /** Act on it, then answer `ack` with done or failed (and persist cid + status). */
  | { action: 'execute'; command: Command }
  /** The same cid as the last one acted on: answer the stored status, do not act. */
  | { action: 'repeat'; cid: number; status: 'done' | 'failed' }
  /** Answer `ack` `refused` with `cid` (0 when the command's cid does not decode to a uint). */
  | { action: 'refuse'; cid: number; code: CommandRefusal; detail: string };

function describe(e: unknown): string {
  if (e instanceof ProtocolError) return `${e.code}: ${e.message}`;
  throw e;
}

/** The command's cid if its payload decodes to a map whose key 23 is a uint, else 0. */
export function salvageCid(bytes: Uint8Array): number {
  try {
    const p = decodeCbor(decodeSign1(bytes, { maxBytes: 1200 }).payload, { allowTopLevelTag: false, maxBytes: 1200 });
    const cid = p instanceof Map ? p.get(23) : undefined;
    return typeof cid === 'number' && Number.isSafeInteger(cid) && cid >= 0 ? cid : 0;
  } catch {
    return 0;
  }
}

/** Check a command (the bytes of a `cmd` frame's key 26). Never throws for bad input. */
export function checkCommand(bytes: Uint8Array, opts: CheckCommandOptions): CheckCommandResult {
  const refuse = (code: CommandRefusal, detail: string, cid?: number): CheckCommandResult => ({ action: 'refuse', cid: cid ?? salvageCid(bytes), code, detail });
  let env: DecodedSign1;
  try {
    env = decodeSign1(bytes, { maxBytes: 1200 });
  } catch (e) {
    return refuse('GH_COMMAND_MALFORMED', `command: ${describe(e)}`);
  }
  const pk = opts.backendKeys.get(env.kid);
  if (pk === undefined) return refuse('GH_COMMAND_UNKNOWN_KID', `command is signed by kid ${JSON.stringify(env.kid)}, which is not a pinned backend key`);
  if (!verifySign1(env, pk)) return refuse('GH_COMMAND_SIGNATURE', `command signature does not verify under pinned backend key ${JSON.stringify(env.kid)}`);
  let command: Command;
  try {
    command = parseCommand(bytes).payload;
  } catch (e) {
    return refuse('GH_COMMAND_MALFORMED', `command: ${describe(e)}`);
  }
  if (command.dev !== opts.dev) return refuse('GH_COMMAND_DEV', `command is for device ${JSON.stringify(command.dev)}`, command.cid);
  // Equal-cid rule: signature and dev checked; hh and exp are not.
  if (opts.last !== undefined && command.cid === opts.last.cid) return { action: 'repeat', cid: command.cid, status: opts.last.status };
  if (!bytesEqual(command.hh, opts.hh)) return refuse('GH_COMMAND_HH', "command is bound to another session's hh", command.cid);
  if (opts.last !== undefined && !(command.cid > opts.last.cid)) return refuse('GH_COMMAND_CID_OLD', `cid ${command.cid} is not above the last cid acted on (${opts.last.cid})`, command.cid);
  if (opts.now !== undefined && !(opts.now < command.exp)) return refuse('GH_COMMAND_EXPIRED', `command expired at ${command.exp} (now ${opts.now})`, command.cid);
  return { action: 'execute', command };
}

export type { CommandStatus };
