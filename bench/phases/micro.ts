/** Micro benches of the parts, by their owners: the TPM (bench/tpm.ts) and the backend client (bench/backend.ts). */
import { benchBackend } from '../backend.js';
import type { Phase } from '../phase.js';
import { benchTpm } from '../tpm.js';

export const microPhase: Phase = {
  key: 'micro',
  title: 'Micro benches: TPM and backend client',
  async run(ctx) {
    const quiet = (l: string): void => ctx.log(`      ${l}`);
    const tpm = await benchTpm({ signs: ctx.quick ? 20 : 100, ffiCalls: 5000, log: quiet });
    const backend = await benchBackend({ hellos: ctx.quick ? 300 : 1000, log: quiet });
    return {
      summary: { tpm, backend },
      rows: [
        ['swtpm ES256 sign, median / p99 (ms)', `${tpm.sign.medianMs} / ${tpm.sign.p99Ms}`],
        ['FFI ns per trivial call: JS / koffi sync / koffi async', `${tpm.ffiNsPerCall.jsBaseline} / ${tpm.ffiNsPerCall.koffiSync} / ${tpm.ffiNsPerCall.koffiAsync}`],
        ['backend client + reference backend in one process, hellos/s: batch 1 / batch 64', `${backend.unbatched.hellosPerSecond} / ${backend.batched.hellosPerSecond} (${backend.ratio}x)`],
      ],
      targets: [],
    };
  },
};
