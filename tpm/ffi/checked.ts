/**
 * The checker layer (CONTRIBUTING.md §3): wraps the raw bindings so that every non-zero TSS2_RC
 * becomes a `TpmError { code, rc, text }` (text from `Tss2_RC_Decode`), and every ESAPI output
 * is marshalled to wire bytes and `Esys_Free`d in a `finally`. Knows nothing about keys,
 * queues or reconnection: that is the key store's job.
 */
import { codeForRc, TpmError } from '../errors.js';
import {
  ESYS_TR_RH_OWNER,
  loadTssBindings,
  type EsysTr,
  type MuType,
  type NativePtr,
  type NativeStruct,
  type TssBindings,
} from './bindings.js';

export type { EsysTr } from './bindings.js';

/** An open TCTI + ESAPI context pair. Not thread-safe: use it from one serial queue. */
export interface EsysContext {
  readonly tcti: NativePtr;
  readonly esys: NativePtr;
}

/** TPM_SU_CLEAR (Part 2 §6.5). */
export const TPM2_SU_CLEAR = 0x0000;

export class CheckedTss {
  readonly #b: TssBindings;

  private constructor(b: TssBindings) {
    this.#b = b;
  }

  /** Load libtss2 (GH_TPM_LIBRARY if a library is missing). */
  static load(bindings?: TssBindings): CheckedTss {
    if (bindings) return new CheckedTss(bindings);
    try {
      return new CheckedTss(loadTssBindings());
    } catch (cause) {
      throw new TpmError(
        'GH_TPM_LIBRARY',
        'cannot load the tpm2-tss libraries (libtss2-esys.so.0, libtss2-tctildr.so.0, libtss2-mu.so.0, libtss2-rc.so.0): install libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-mu0 libtss2-rc0',
        { cause },
      );
    }
  }

  /** `Tss2_RC_Decode`, for messages. */
  decode(rc: number): string {
    return this.#b.rcDecode(rc);
  }

  /** `Tss2_RC_Decode` through koffi's async path: only for measuring FFI overhead (bench/tpm.ts). */
  decodeAsync(rc: number): Promise<string> {
    return this.#b.rcDecodeAsync(rc);
  }

  /** Throw a TpmError for a non-zero rc. */
  check(rc: number, what: string): void {
    if (rc === 0) return;
    const text = this.#b.rcDecode(rc);
    throw new TpmError(codeForRc(rc), `${what} failed: ${text} (rc 0x${(rc >>> 0).toString(16)})`, { rc, text });
  }

  #unmarshal(type: MuType, wire: Uint8Array): NativeStruct {
    const { rc, value } = this.#b.unmarshal(type, wire);
    this.check(rc, `Tss2_MU_${type}_Unmarshal`);
    return value;
  }

  /** Marshal an ESAPI output to wire bytes; always frees it. */
  #takeOutput(type: MuType, ptr: NativePtr | null, what: string): Uint8Array {
    if (ptr === null) throw new TpmError('GH_TPM_COMMAND', `${what} returned no ${type}`);
    try {
      const { rc, wire } = this.#b.marshal(type, ptr);
      this.check(rc, `Tss2_MU_${type}_Marshal`);
      return wire;
    } finally {
      this.#b.esysFree(ptr);
    }
  }

  #free(ptr: NativePtr | null): void {
    if (ptr !== null) this.#b.esysFree(ptr);
  }

  /** Tss2_TctiLdr_Initialize + Esys_Initialize. A TCTI failure is GH_TPM_NO_DEVICE. */
  async open(tctiConf: string): Promise<EsysContext> {
    const t = await this.#b.tctiInitialize(tctiConf);
    if (t.rc !== 0 || t.tcti === null) {
      const text = this.#b.rcDecode(t.rc);
      const code = codeForRc(t.rc) === 'GH_TPM_PERMISSION_DENIED' ? 'GH_TPM_PERMISSION_DENIED' : 'GH_TPM_NO_DEVICE';
      throw new TpmError(code, `cannot reach a TPM through TCTI "${tctiConf}": ${text} (rc 0x${(t.rc >>> 0).toString(16)})`, {
        rc: t.rc,
        text,
      });
    }
    const tcti = t.tcti;
    try {
      const e = this.#b.esysInitialize(tcti);
      if (e.rc !== 0 || e.ctx === null) {
        this.check(e.rc === 0 ? 0x70001 : e.rc, 'Esys_Initialize');
      }
      return { tcti, esys: e.ctx as NativePtr };
    } catch (err) {
      this.#b.tctiFinalize(tcti);
      throw err;
    }
  }

  /** Esys_Finalize then Tss2_TctiLdr_Finalize. Never throws. */
  close(ctx: EsysContext): void {
    this.#b.esysFinalize(ctx.esys);
    this.#b.tctiFinalize(ctx.tcti);
  }

  async startup(ctx: EsysContext, startupType = TPM2_SU_CLEAR): Promise<void> {
    this.check(await this.#b.startup(ctx.esys, startupType), 'TPM2_Startup');
  }

  async getRandom(ctx: EsysContext, count: number): Promise<Uint8Array> {
    const { rc, out } = await this.#b.getRandom(ctx.esys, count);
    try {
      this.check(rc, 'TPM2_GetRandom');
    } catch (err) {
      this.#free(out);
      throw err;
    }
    return this.#takeOutput('TPM2B_DIGEST', out, 'TPM2_GetRandom').subarray(2);
  }

  /** CreatePrimary under the owner hierarchy. Returns the transient handle and TPM2B_PUBLIC wire. */
  async createPrimaryOwner(ctx: EsysContext, templateTpm2bPublic: Uint8Array, sensitive: Uint8Array, outsideInfo: Uint8Array, pcrs: Uint8Array): Promise<{ handle: EsysTr; publicArea: Uint8Array }> {
    const inSensitive = this.#unmarshal('TPM2B_SENSITIVE_CREATE', sensitive);
    const inPublic = this.#unmarshal('TPM2B_PUBLIC', templateTpm2bPublic);
    const outside = this.#unmarshal('TPM2B_DATA', outsideInfo);
    const creationPcr = this.#unmarshal('TPML_PCR_SELECTION', pcrs);
    const res = await this.#b.createPrimary(ctx.esys, ESYS_TR_RH_OWNER, inSensitive, inPublic, outside, creationPcr);
    try {
      this.check(res.rc, 'TPM2_CreatePrimary');
    } catch (err) {
      this.#free(res.outPublic);
      throw err;
    }
    try {
      return { handle: res.handle, publicArea: this.#takeOutput('TPM2B_PUBLIC', res.outPublic, 'TPM2_CreatePrimary') };
    } catch (err) {
      await this.flush(ctx, res.handle).catch(() => undefined);
      throw err;
    }
  }

  /** EvictControl with owner authorization. Returns the new ESYS_TR (ESYS_TR_NONE when evicting). */
  async evictControl(ctx: EsysContext, object: EsysTr, persistentHandle: number): Promise<EsysTr> {
    const { rc, newHandle } = await this.#b.evictControl(ctx.esys, ESYS_TR_RH_OWNER, object, persistentHandle);
    this.check(rc, 'TPM2_EvictControl');
    return newHandle;
  }

  async flush(ctx: EsysContext, handle: EsysTr): Promise<void> {
    this.check(await this.#b.flushContext(ctx.esys, handle), 'TPM2_FlushContext');
  }

  /** ESYS_TR for a persistent handle (the ESAPI reads its public area to bind the name). */
  async trFromTpmPublic(ctx: EsysContext, tpmHandle: number): Promise<EsysTr> {
    const { rc, handle } = await this.#b.trFromTpmPublic(ctx.esys, tpmHandle);
    this.check(rc, `Esys_TR_FromTPMPublic(0x${(tpmHandle >>> 0).toString(16)})`);
    return handle;
  }

  /** Release the ESAPI's bookkeeping for a handle without touching the TPM object. */
  trClose(ctx: EsysContext, handle: EsysTr): void {
    this.check(this.#b.trClose(ctx.esys, handle), 'Esys_TR_Close');
  }

  async readPublic(ctx: EsysContext, handle: EsysTr): Promise<Uint8Array> {
    const res = await this.#b.readPublic(ctx.esys, handle);
    try {
      this.check(res.rc, 'TPM2_ReadPublic');
      return this.#takeOutput('TPM2B_PUBLIC', res.outPublic, 'TPM2_ReadPublic');
    } finally {
      if (res.rc !== 0) this.#free(res.outPublic);
      this.#free(res.name);
      this.#free(res.qualifiedName);
    }
  }

  /**
   * Esys_TR_SetAuth: the authValue (TPM2B_AUTH wire) the ESAPI presents for `handle` in its
   * password sessions. Only in the ESAPI context's memory; nothing goes to the TPM here.
   */
  trSetAuth(ctx: EsysContext, handle: EsysTr, authTpm2b: Uint8Array): void {
    const auth = this.#unmarshal('TPM2B_AUTH', authTpm2b);
    try {
      this.check(this.#b.trSetAuth(ctx.esys, handle, auth), 'Esys_TR_SetAuth');
    } finally {
      auth.buffer.fill(0);
    }
  }

  /** TPM2_Create under `parent` (empty parent auth). Returns TPM2B_PRIVATE and TPM2B_PUBLIC wire bytes. */
  async create(ctx: EsysContext, parent: EsysTr, templateTpm2bPublic: Uint8Array, sensitive: Uint8Array): Promise<{ privateWire: Uint8Array; publicWire: Uint8Array }> {
    const inSensitive = this.#unmarshal('TPM2B_SENSITIVE_CREATE', sensitive);
    const inPublic = this.#unmarshal('TPM2B_PUBLIC', templateTpm2bPublic);
    const outside = this.#unmarshal('TPM2B_DATA', new Uint8Array(2));
    const creationPcr = this.#unmarshal('TPML_PCR_SELECTION', new Uint8Array(4));
    try {
      const res = await this.#b.create(ctx.esys, parent, inSensitive, inPublic, outside, creationPcr);
      try {
        this.check(res.rc, 'TPM2_Create');
      } catch (err) {
        this.#free(res.outPrivate);
        this.#free(res.outPublic);
        throw err;
      }
      let privateWire: Uint8Array;
      try {
        privateWire = this.#takeOutput('TPM2B_PRIVATE', res.outPrivate, 'TPM2_Create');
      } catch (err) {
        this.#free(res.outPublic);
        throw err;
      }
      return { privateWire, publicWire: this.#takeOutput('TPM2B_PUBLIC', res.outPublic, 'TPM2_Create') };
    } finally {
      inSensitive.buffer.fill(0);
    }
  }

  /** TPM2_Load under `parent` (empty parent auth). Returns the transient ESYS_TR: flush it. */
  async load(ctx: EsysContext, parent: EsysTr, privateWire: Uint8Array, publicWire: Uint8Array): Promise<EsysTr> {
    const inPrivate = this.#unmarshal('TPM2B_PRIVATE', privateWire);
    const inPublic = this.#unmarshal('TPM2B_PUBLIC', publicWire);
    const { rc, handle } = await this.#b.load(ctx.esys, parent, inPrivate, inPublic);
    this.check(rc, 'TPM2_Load');
    return handle;
  }

  /**
   * TPM2_ObjectChangeAuth: authorised with the object's current authValue (set with trSetAuth),
   * returns the object's private area with `newAuthTpm2b` as TPM2B_PRIVATE wire bytes. The object
   * in the TPM keeps its old authValue (Part 3 §14.1): load the new private to use the new one.
   */
  async objectChangeAuth(ctx: EsysContext, object: EsysTr, parent: EsysTr, newAuthTpm2b: Uint8Array): Promise<Uint8Array> {
    const newAuth = this.#unmarshal('TPM2B_AUTH', newAuthTpm2b);
    try {
      const { rc, outPrivate } = await this.#b.objectChangeAuth(ctx.esys, object, parent, newAuth);
      try {
        this.check(rc, 'TPM2_ObjectChangeAuth');
      } catch (err) {
        this.#free(outPrivate);
        throw err;
      }
      return this.#takeOutput('TPM2B_PRIVATE', outPrivate, 'TPM2_ObjectChangeAuth');
    } finally {
      newAuth.buffer.fill(0);
    }
  }

  /** TPM2_Sign. Returns the TPMT_SIGNATURE wire bytes. */
  async sign(ctx: EsysContext, key: EsysTr, digest: Uint8Array, scheme: Uint8Array, ticket: Uint8Array): Promise<Uint8Array> {
    const d = this.#unmarshal('TPM2B_DIGEST', digest);
    const s = this.#unmarshal('TPMT_SIG_SCHEME', scheme);
    const t = this.#unmarshal('TPMT_TK_HASHCHECK', ticket);
    const res = await this.#b.sign(ctx.esys, key, d, s, t);
    try {
      this.check(res.rc, 'TPM2_Sign');
    } catch (err) {
      this.#free(res.signature);
      throw err;
    }
    return this.#takeOutput('TPMT_SIGNATURE', res.signature, 'TPM2_Sign');
  }
}
