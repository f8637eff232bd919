/**
 * Raw bindings to tpm2-tss (the ESAPI, the TCTI loader, the marshalling library and the
 * response-code decoder). This is the ONLY file that imports koffi (CONTRIBUTING.md §3): everything
 * above it sees plain numbers, `bigint` native pointers and byte buffers.
 *
 * Structures never cross this boundary as hand-laid-out C structs: a caller passes TPM wire
 * bytes, `unmarshal` turns them into the library's own in-memory layout (via
 * `Tss2_MU_<T>_Unmarshal`) inside an opaque buffer, and `marshal` turns an ESAPI output
 * pointer back into wire bytes. Return codes are returned, not checked: tpm/ffi/checked.ts
 * turns them into `TpmError`s.
 *
 * Nothing is loaded at import time: `loadTssBindings()` opens the libraries on first use.
 */
import koffi from 'koffi';

/** A native pointer, as koffi 3 represents it. Opaque to everything above this file. */
export type NativePtr = bigint;

/** ESAPI object handle (ESYS_TR). */
export type EsysTr = number;

/** Structures we move through Tss2_MU_* (wire format <-> library layout). */
export type MuType =
  | 'TPM2B_PUBLIC'
  | 'TPM2B_SENSITIVE_CREATE'
  | 'TPM2B_DATA'
  | 'TPML_PCR_SELECTION'
  | 'TPM2B_DIGEST'
  | 'TPMT_SIG_SCHEME'
  | 'TPMT_TK_HASHCHECK'
  | 'TPMT_SIGNATURE'
  | 'TPM2B_NAME'
  | 'TPM2B_PRIVATE'
  | 'TPM2B_AUTH';

/**
 * Size of each structure's in-memory layout in tpm2-tss 3.2 (sizeof() measured against the
 * libtss2-dev headers on x86_64). The types are fixed-width integers, byte arrays and unions of
 * them, so other ABIs differ at most in padding; the sizes are doubled as a safety margin so that
 * no library build can write past the end of our buffers. Only the library reads these bytes.
 */
const MU_SIZEOF: Record<MuType, number> = {
  TPM2B_PUBLIC: 616 * 2,
  TPM2B_SENSITIVE_CREATE: 326 * 2,
  TPM2B_DATA: 66 * 2,
  TPML_PCR_SELECTION: 132 * 2,
  TPM2B_DIGEST: 66 * 2,
  TPMT_SIG_SCHEME: 6 * 2,
  TPMT_TK_HASHCHECK: 76 * 2,
  TPMT_SIGNATURE: 518 * 2,
  TPM2B_NAME: 70 * 2,
  TPM2B_PRIVATE: 1552 * 2,
  TPM2B_AUTH: 66 * 2,
};

/** Largest wire encoding we read back (TPMT_SIGNATURE with RSA-4096 is ~520 bytes). */
const MARSHAL_MAX = 2048;

/** A structure in the library's own memory layout, ready to pass by pointer. */
export interface NativeStruct {
  readonly type: MuType;
  /** Opaque bytes; only the library reads them. */
  readonly buffer: Buffer;
}

/** The raw, unchecked tpm2-tss surface the checker uses. Every `rc` is a TSS2_RC. */
export interface TssBindings {
  rcDecode(rc: number): string;
  /** The same trivial call through koffi's async path (worker thread): bench/tpm.ts measures the hop. */
  rcDecodeAsync(rc: number): Promise<string>;
  tctiInitialize(conf: string): Promise<{ rc: number; tcti: NativePtr | null }>;
  tctiFinalize(tcti: NativePtr): void;
  esysInitialize(tcti: NativePtr): { rc: number; ctx: NativePtr | null };
  esysFinalize(ctx: NativePtr): void;
  esysFree(ptr: NativePtr): void;
  /** Wire bytes -> library layout. */
  unmarshal(type: MuType, wire: Uint8Array): { rc: number; value: NativeStruct };
  /** Library layout at an ESAPI output pointer -> wire bytes. */
  marshal(type: MuType, ptr: NativePtr): { rc: number; wire: Uint8Array };

  startup(ctx: NativePtr, startupType: number): Promise<number>;
  getRandom(ctx: NativePtr, count: number): Promise<{ rc: number; out: NativePtr | null }>;
  createPrimary(
    ctx: NativePtr,
    hierarchy: EsysTr,
    inSensitive: NativeStruct,
    inPublic: NativeStruct,
    outsideInfo: NativeStruct,
    creationPcr: NativeStruct,
  ): Promise<{ rc: number; handle: EsysTr; outPublic: NativePtr | null }>;
  evictControl(
    ctx: NativePtr,
    auth: EsysTr,
    object: EsysTr,
    persistentHandle: number,
  ): Promise<{ rc: number; newHandle: EsysTr }>;
  flushContext(ctx: NativePtr, handle: EsysTr): Promise<number>;
  trFromTpmPublic(ctx: NativePtr, tpmHandle: number): Promise<{ rc: number; handle: EsysTr }>;
  trClose(ctx: NativePtr, handle: EsysTr): number;
  readPublic(
    ctx: NativePtr,
    handle: EsysTr,
  ): Promise<{ rc: number; outPublic: NativePtr | null; name: NativePtr | null; qualifiedName: NativePtr | null }>;
  /** Esys_TR_SetAuth: the authValue the ESAPI presents for `handle` in password sessions (no TPM command). */
  trSetAuth(ctx: NativePtr, handle: EsysTr, auth: NativeStruct): number;
  create(
    ctx: NativePtr,
    parent: EsysTr,
    inSensitive: NativeStruct,
    inPublic: NativeStruct,
    outsideInfo: NativeStruct,
    creationPcr: NativeStruct,
  ): Promise<{ rc: number; outPrivate: NativePtr | null; outPublic: NativePtr | null }>;
  load(ctx: NativePtr, parent: EsysTr, inPrivate: NativeStruct, inPublic: NativeStruct): Promise<{ rc: number; handle: EsysTr }>;
  objectChangeAuth(ctx: NativePtr, object: EsysTr, parent: EsysTr, newAuth: NativeStruct): Promise<{ rc: number; outPrivate: NativePtr | null }>;
  sign(
    ctx: NativePtr,
    key: EsysTr,
    digest: NativeStruct,
    scheme: NativeStruct,
    validation: NativeStruct,
  ): Promise<{ rc: number; signature: NativePtr | null }>;
}

/** ESYS_TR constants (tss2_esys.h). */
export const ESYS_TR_NONE = 0xfff;
export const ESYS_TR_PASSWORD = 0x0ff;
export const ESYS_TR_RH_OWNER = 0x101;

/** Sonames, loaded by full name so a missing -dev package never matters. */
export const TSS_LIBRARIES = {
  esys: 'libtss2-esys.so.0',
  tctildr: 'libtss2-tctildr.so.0',
  mu: 'libtss2-mu.so.0',
  rc: 'libtss2-rc.so.0',
} as const;

type KoffiFn = ReturnType<ReturnType<typeof koffi.load>['func']>;

/** Call a koffi function on a worker thread (koffi async call) and await its return value. */
function callAsync<T>(fn: KoffiFn, ...args: unknown[]): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn.async(...args, (err: unknown, res: T) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(res);
    });
  });
}

function asPtr(v: unknown): NativePtr | null {
  if (typeof v === 'bigint') return v === 0n ? null : v;
  if (typeof v === 'number') return v === 0 ? null : BigInt(v);
  return null;
}

/**
 * Esys_CreatePrimary and Esys_Create take the same arguments after the parent (a password
 * session, then the sensitive and public templates, outside info, creation PCRs) and give the
 * same outputs but the first (the new handle, or outPrivate, into `first`); creation data, hash
 * and ticket are not asked for.
 */
async function callCreate(fn: KoffiFn, ctx: NativePtr, parent: EsysTr, templates: readonly NativeStruct[], first: unknown[]): Promise<{ rc: number; outPublic: NativePtr | null }> {
  const outPublic: unknown[] = [null];
  const rc = await callAsync<number>(fn, ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, ...templates.map((t) => t.buffer), first, outPublic, null, null, null);
  return { rc, outPublic: asPtr(outPublic[0]) };
}

let cached: TssBindings | undefined;

/**
 * Load the four tpm2-tss libraries and bind the functions Gatehouse uses. Throws the loader's
 * error (a library missing) unchanged; the checker wraps it.
 */
export function loadTssBindings(): TssBindings {
  if (cached) return cached;
  // The TSS logs every failed command to stderr; our TpmError already carries rc and text.
  // An operator debugging the stack can still set TSS2_LOG (e.g. all+debug) themselves.
  process.env.TSS2_LOG ??= 'all+none';
  const esys = koffi.load(TSS_LIBRARIES.esys);
  const tctildr = koffi.load(TSS_LIBRARIES.tctildr);
  const mu = koffi.load(TSS_LIBRARIES.mu);
  const rclib = koffi.load(TSS_LIBRARIES.rc);

  const Tss2_RC_Decode = rclib.func('const char *Tss2_RC_Decode(uint32_t rc)');
  const Tss2_TctiLdr_Initialize = tctildr.func('uint32_t Tss2_TctiLdr_Initialize(const char *nameConf, _Out_ void **ctx)');
  const Tss2_TctiLdr_Finalize = tctildr.func('void Tss2_TctiLdr_Finalize(_Inout_ void **ctx)');
  const Esys_Initialize = esys.func('uint32_t Esys_Initialize(_Out_ void **ctx, void *tcti, void *abiVersion)');
  const Esys_Finalize = esys.func('void Esys_Finalize(_Inout_ void **ctx)');
  const Esys_Free = esys.func('void Esys_Free(void *ptr)');
  const Esys_Startup = esys.func('uint32_t Esys_Startup(void *ctx, uint16_t startupType)');
  const Esys_GetRandom = esys.func(
    'uint32_t Esys_GetRandom(void *ctx, uint32_t s1, uint32_t s2, uint32_t s3, uint16_t bytesRequested, _Out_ void **randomBytes)',
  );
  const Esys_CreatePrimary = esys.func(
    'uint32_t Esys_CreatePrimary(void *ctx, uint32_t primaryHandle, uint32_t s1, uint32_t s2, uint32_t s3, ' +
      'const void *inSensitive, const void *inPublic, const void *outsideInfo, const void *creationPCR, ' +
      '_Out_ uint32_t *objectHandle, _Out_ void **outPublic, void **creationData, void **creationHash, void **creationTicket)',
  );
  const Esys_EvictControl = esys.func(
    'uint32_t Esys_EvictControl(void *ctx, uint32_t auth, uint32_t objectHandle, uint32_t s1, uint32_t s2, uint32_t s3, ' +
      'uint32_t persistentHandle, _Out_ uint32_t *newObjectHandle)',
  );
  const Esys_FlushContext = esys.func('uint32_t Esys_FlushContext(void *ctx, uint32_t flushHandle)');
  const Esys_TR_FromTPMPublic = esys.func(
    'uint32_t Esys_TR_FromTPMPublic(void *ctx, uint32_t tpmHandle, uint32_t s1, uint32_t s2, uint32_t s3, _Out_ uint32_t *object)',
  );
  const Esys_TR_Close = esys.func('uint32_t Esys_TR_Close(void *ctx, _Inout_ uint32_t *handle)');
  const Esys_ReadPublic = esys.func(
    'uint32_t Esys_ReadPublic(void *ctx, uint32_t objectHandle, uint32_t s1, uint32_t s2, uint32_t s3, ' +
      '_Out_ void **outPublic, _Out_ void **name, _Out_ void **qualifiedName)',
  );
  const Esys_Sign = esys.func(
    'uint32_t Esys_Sign(void *ctx, uint32_t keyHandle, uint32_t s1, uint32_t s2, uint32_t s3, ' +
      'const void *digest, const void *inScheme, const void *validation, _Out_ void **signature)',
  );

  const Esys_TR_SetAuth = esys.func('uint32_t Esys_TR_SetAuth(void *ctx, uint32_t handle, const void *authValue)');
  const Esys_Create = esys.func(
    'uint32_t Esys_Create(void *ctx, uint32_t parentHandle, uint32_t s1, uint32_t s2, uint32_t s3, ' +
      'const void *inSensitive, const void *inPublic, const void *outsideInfo, const void *creationPCR, ' +
      '_Out_ void **outPrivate, _Out_ void **outPublic, void **creationData, void **creationHash, void **creationTicket)',
  );
  const Esys_Load = esys.func(
    'uint32_t Esys_Load(void *ctx, uint32_t parentHandle, uint32_t s1, uint32_t s2, uint32_t s3, ' +
      'const void *inPrivate, const void *inPublic, _Out_ uint32_t *objectHandle)',
  );
  const Esys_ObjectChangeAuth = esys.func(
    'uint32_t Esys_ObjectChangeAuth(void *ctx, uint32_t objectHandle, uint32_t parentHandle, uint32_t s1, uint32_t s2, uint32_t s3, ' +
      'const void *newAuth, _Out_ void **outPrivate)',
  );

  const muFns = new Map<MuType, { marshal: KoffiFn; unmarshal: KoffiFn }>();
  for (const type of Object.keys(MU_SIZEOF) as MuType[]) {
    muFns.set(type, {
      marshal: mu.func(`uint32_t Tss2_MU_${type}_Marshal(const void *src, void *buffer, size_t bufferSize, _Inout_ size_t *offset)`),
      unmarshal: mu.func(`uint32_t Tss2_MU_${type}_Unmarshal(const void *buffer, size_t bufferSize, _Inout_ size_t *offset, void *dest)`),
    });
  }
  const muOf = (type: MuType): { marshal: KoffiFn; unmarshal: KoffiFn } => {
    const f = muFns.get(type);
    if (!f) throw new TypeError(`no marshalling functions for ${type}`);
    return f;
  };

  cached = {
    rcDecode: (rc) => String(Tss2_RC_Decode(rc >>> 0)),
    rcDecodeAsync: async (rc) => String(await callAsync<string>(Tss2_RC_Decode, rc >>> 0)),
    async tctiInitialize(conf) {
      const out: unknown[] = [null];
      const rc = await callAsync<number>(Tss2_TctiLdr_Initialize, conf, out);
      return { rc, tcti: asPtr(out[0]) };
    },
    tctiFinalize(tcti) {
      Tss2_TctiLdr_Finalize([tcti]);
    },
    esysInitialize(tcti) {
      const out: unknown[] = [null];
      const rc = Esys_Initialize(out, tcti, null) as number;
      return { rc, ctx: asPtr(out[0]) };
    },
    esysFinalize(ctx) {
      Esys_Finalize([ctx]);
    },
    esysFree(ptr) {
      Esys_Free(ptr);
    },
    unmarshal(type, wire) {
      const buffer = Buffer.alloc(MU_SIZEOF[type]);
      const offset = [0];
      const rc = muOf(type).unmarshal(Buffer.from(wire), wire.length, offset, buffer) as number;
      return { rc, value: { type, buffer } };
    },
    marshal(type, ptr) {
      const buffer = Buffer.alloc(MARSHAL_MAX);
      const offset = [0];
      const rc = muOf(type).marshal(ptr, buffer, buffer.length, offset) as number;
      const used = Number(offset[0]);
      return { rc, wire: new Uint8Array(buffer.subarray(0, rc === 0 ? used : 0)) };
    },
    startup: (ctx, startupType) => callAsync<number>(Esys_Startup, ctx, startupType),
    async getRandom(ctx, count) {
      const out: unknown[] = [null];
      const rc = await callAsync<number>(Esys_GetRandom, ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, count, out);
      return { rc, out: asPtr(out[0]) };
    },
    async createPrimary(ctx, hierarchy, inSensitive, inPublic, outsideInfo, creationPcr) {
      const handle = [0];
      const { rc, outPublic } = await callCreate(Esys_CreatePrimary, ctx, hierarchy, [inSensitive, inPublic, outsideInfo, creationPcr], handle);
      return { rc, handle: Number(handle[0]), outPublic };
    },
    async evictControl(ctx, auth, object, persistentHandle) {
      const out = [ESYS_TR_NONE];
      const rc = await callAsync<number>(
        Esys_EvictControl, ctx, auth, object, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, persistentHandle >>> 0, out,
      );
      return { rc, newHandle: Number(out[0]) };
    },
    flushContext: (ctx, handle) => callAsync<number>(Esys_FlushContext, ctx, handle),
    async trFromTpmPublic(ctx, tpmHandle) {
      const out = [ESYS_TR_NONE];
      const rc = await callAsync<number>(Esys_TR_FromTPMPublic, ctx, tpmHandle >>> 0, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, out);
      return { rc, handle: Number(out[0]) };
    },
    trClose(ctx, handle) {
      return Esys_TR_Close(ctx, [handle]) as number;
    },
    async readPublic(ctx, handle) {
      const outPublic: unknown[] = [null];
      const name: unknown[] = [null];
      const qualifiedName: unknown[] = [null];
      const rc = await callAsync<number>(
        Esys_ReadPublic, ctx, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, outPublic, name, qualifiedName,
      );
      return { rc, outPublic: asPtr(outPublic[0]), name: asPtr(name[0]), qualifiedName: asPtr(qualifiedName[0]) };
    },
    trSetAuth(ctx, handle, auth) {
      return Esys_TR_SetAuth(ctx, handle, auth.buffer) as number;
    },
    async create(ctx, parent, inSensitive, inPublic, outsideInfo, creationPcr) {
      const outPrivate: unknown[] = [null];
      const { rc, outPublic } = await callCreate(Esys_Create, ctx, parent, [inSensitive, inPublic, outsideInfo, creationPcr], outPrivate);
      return { rc, outPrivate: asPtr(outPrivate[0]), outPublic };
    },
    async load(ctx, parent, inPrivate, inPublic) {
      const handle = [ESYS_TR_NONE];
      const rc = await callAsync<number>(Esys_Load, ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, inPrivate.buffer, inPublic.buffer, handle);
      return { rc, handle: Number(handle[0]) };
    },
    async objectChangeAuth(ctx, object, parent, newAuth) {
      const outPrivate: unknown[] = [null];
      const rc = await callAsync<number>(
        Esys_ObjectChangeAuth, ctx, object, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, newAuth.buffer, outPrivate,
      );
      return { rc, outPrivate: asPtr(outPrivate[0]) };
    },
    async sign(ctx, key, digest, scheme, validation) {
      const signature: unknown[] = [null];
      const rc = await callAsync<number>(
        Esys_Sign, ctx, key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, digest.buffer, scheme.buffer, validation.buffer, signature,
      );
      return { rc, signature: asPtr(signature[0]) };
    },
  };
  return cached;
}
