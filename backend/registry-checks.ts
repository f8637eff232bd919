/** What the registry accepts: gateway list entries, MQTT policies, gateway TPM keys. */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { ed25519PublicKeyProblem, isValidId, topicFilterProblem, type Policy } from '../protocol/index.js';
import { RegistryError } from './errors.js';

/** Why a device's gateway list entry is unacceptable, or undefined. */
export function gatewayEntryProblem(entry: string): string | undefined {
  if (entry === '*') return undefined;
  const id = entry.startsWith('group:') ? entry.slice(6) : entry;
  return isValidId(id) ? undefined : `"${entry}" is not a gateway id, group:<name> or *`;
}

/** Why a policy is unacceptable, or undefined. Exactly `{pub: [...], sub: [...]}`. */
export function policyProblem(policy: unknown): string | undefined {
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) return 'policy must be an object {"pub": [...], "sub": [...]}';
  const keys = Object.keys(policy);
  if (keys.some((k) => k !== 'pub' && k !== 'sub') || keys.length !== 2) return 'policy must have exactly "pub" and "sub"';
  for (const name of ['pub', 'sub'] as const) {
    const list = (policy as Record<string, unknown>)[name];
    if (!Array.isArray(list) || list.length > 64) return `policy "${name}" must be an array of at most 64 topic filters`;
    for (const f of list) {
      const p = topicFilterProblem(f);
      if (p !== undefined) return `policy "${name}" filter ${JSON.stringify(f)} ${p}`;
    }
  }
  return undefined;
}

/** The TPM key of a gateway: a P-256 SPKI PEM, and its thumbprint. */
export function parseTpmPublicKey(pem: string): { key: KeyObject; pem: string; tpk: Uint8Array } {
  const m = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(pem);
  if (!m) throw new RegistryError('GH_REGISTRY_BAD_KEY', 'no "BEGIN PUBLIC KEY" PEM block found');
  let key: KeyObject;
  try {
    key = createPublicKey(m[0]);
  } catch (cause) {
    throw new RegistryError('GH_REGISTRY_BAD_KEY', 'the PEM block is not a public key', { cause });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new RegistryError('GH_REGISTRY_BAD_KEY', 'a gateway TPM key must be ECDSA P-256');
  }
  const der = key.export({ format: 'der', type: 'spki' });
  // protocol-v1 key 10: tpk = SHA-256 of the DER SubjectPublicKeyInfo.
  const tpk = new Uint8Array(createHash('sha256').update(der).digest());
  return { key, pem: key.export({ format: 'pem', type: 'spki' }).toString(), tpk };
}


/** protocol-v1: may `device` authenticate at gateway `gw`? By id, `group:<name>` or `*`; default deny. */
export function deviceAllowedAt(device: { gateways: readonly string[] }, gw: { id: string; groups: readonly string[] }): boolean {
  return device.gateways.some((e) => e === '*' || e === gw.id || (e.startsWith('group:') && gw.groups.includes(e.slice(6))));
}

/** Why a new device record is unacceptable (its syntax; not whether the id is free), or undefined. */
export function newDeviceProblem(d: { id: string; publicKey: Uint8Array; gateways: readonly string[]; policy?: Policy }): string | undefined {
  if (!isValidId(d.id)) return `"${d.id}" is not a valid device id`;
  const keyProblem = ed25519PublicKeyProblem(d.publicKey);
  if (keyProblem !== undefined) return `public key: ${keyProblem}`;
  if (d.gateways.length === 0) return 'at least one gateway (id, group:<name> or *) is required';
  if (d.gateways.length > 256) return 'at most 256 gateway entries';
  for (const e of d.gateways) {
    const p = gatewayEntryProblem(e);
    if (p !== undefined) return p;
  }
  if (d.policy !== undefined) {
    const p = policyProblem(d.policy);
    if (p !== undefined) return p;
  }
  return undefined;
}

/** A new gateway's id, groups and TPM key, checked; throws {@link RegistryError}. */
export function checkNewGateway(g: { id: string; tpmPublicKeyPem: string; groups?: readonly string[] }): { groups: string[]; pem: string; tpk: Uint8Array } {
  if (!isValidId(g.id)) throw new RegistryError('GH_REGISTRY_BAD_ID', `"${g.id}" is not a valid gateway id`);
  const groups = [...(g.groups ?? [])];
  for (const name of groups) if (!isValidId(name)) throw new RegistryError('GH_REGISTRY_BAD_ID', `"${name}" is not a valid group name`);
  const { pem, tpk } = parseTpmPublicKey(g.tpmPublicKeyPem);
  return { groups, pem, tpk };
}
