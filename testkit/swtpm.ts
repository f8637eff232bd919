/**
 * A real swtpm for tests: the launcher lives in tpm/swtpm-process.ts (the demo uses it too);
 * each suite starts its own on free loopback ports and disposes of it in `after`.
 */
export { Swtpm, SwtpmError, freePortPair, type SwtpmStartOptions } from '../tpm/swtpm-process.js';
