/**
 * The architecture as rules (docs/architecture.md, "Layers"). `npm test` runs
 * `npm run boundaries`, which fails on any import that goes up a layer.
 *
 * Layers, bottom to top (a module may import its own layer and any layer below it):
 *   common     logger, atomic state files, CLI output, clock, token bucket, the error base
 *   protocol   pure: CBOR, COSE, messages, checks, HTTP signatures, BLE framing
 *   tpm        key stores
 *   daemon | peripherals | backend   the gateway | what plays a peripheral | the reference backend
 *   demo       composes the three on one machine
 *   cli        the `gatehouse` entry point: dispatches to daemon, peripherals and demo commands
 *   testkit    helpers shared by test/ and bench/
 *   test, bench
 */
const IO_BUILTINS = '^(node:)?(fs|fs/promises|net|tls|http|https|http2|dgram|dns|dns/promises|child_process|cluster|worker_threads|readline|os|module|inspector|v8|vm)$';
const IO_PACKAGES = '^(undici|winston|aedes|better-sqlite3|koffi|@abandonware/noble|@stoprocent/noble|mqtt|yaml|prom-client|pg)($|/)';

/** A forbidden edge: imports from modules matching `from` to modules matching `to`. */
function forbid(name, comment, from, to) {
  return { name, comment, severity: 'error', from, to };
}

/** `from` may import nothing of the project outside `allowed` (regexes of paths). */
function only(name, from, allowed, comment) {
  return forbid(name, comment, { path: from }, { path: '^(common|protocol|tpm|daemon|peripherals|backend|demo|cli|testkit|test|bench)/', pathNot: allowed });
}

module.exports = {
  forbidden: [
    only('common-is-the-bottom', '^common/', '^common/', 'common/ imports nothing of the project above it'),
    only('protocol-is-pure', '^protocol/', '^(protocol/|common/errors\\.ts$)', 'protocol/ may use only itself and the error base'),
    forbid(
      'protocol-does-no-io',
      'protocol/ encodes, decodes, signs and verifies; it does no I/O (recursively: it can reach only protocol/ and common/errors.ts, checked above)',
      { path: '^(protocol/|common/errors\\.ts$)' },
      { path: [IO_BUILTINS, IO_PACKAGES], dependencyTypesNot: ['type-only'] },
    ),
    only('tpm-below-the-rooms', '^tpm/', '^(tpm|protocol|common)/', 'tpm/ knows no daemon, backend or peripheral'),
    only('daemon-is-the-gateway', '^daemon/', '^(daemon|tpm|protocol|common)/', 'the gateway does not import the reference backend, peripherals, demo or tests'),
    only('peripherals-stand-alone', '^peripherals/', '^(peripherals|protocol|common)/', "a peripheral knows the protocol, not the gateway's internals"),
    only('backend-stands-alone', '^backend/', '^(backend|protocol|common)/', 'the reference backend shares only protocol/ and common/ with the gateway'),
    only('demo-composes', '^demo/', '^(demo|daemon|peripherals|backend|tpm|protocol|common)/', 'the demo composes the rooms; no test code'),
    only('cli-is-the-entry', '^cli/', '^(cli|demo|daemon|peripherals|backend|tpm|protocol|common)/', 'the CLI entry dispatches to the rooms; no test code'),
    only('testkit-below-tests', '^testkit/', '^(testkit|cli|demo|daemon|peripherals|backend|tpm|protocol|common)/', 'testkit/ is shared by test/ and bench/ and imports neither'),
    only('test-not-bench', '^test/', '^(test|testkit|cli|demo|daemon|peripherals|backend|tpm|protocol|common)/', 'tests share helpers with bench/ only through testkit/'),
    only('bench-not-test', '^bench/', '^(bench|testkit|cli|demo|daemon|peripherals|backend|tpm|protocol|common)/', 'bench/ shares helpers with test/ only through testkit/'),
    forbid('one-noble-importer', 'exactly one file imports noble (lazily, at start())', { pathNot: '^daemon/transports/ble/noble-adapter\\.ts$' }, { path: '^(@abandonware|@stoprocent)/noble' }),
    forbid(
      'one-ffi-importer-per-area',
      'koffi is imported by one file in tpm/ (the raw bindings) and one in daemon/ (libc for sd_notify)',
      { pathNot: '^(tpm/ffi/bindings\\.ts|daemon/systemd/libc\\.ts)$' },
      { path: '^koffi($|/)' },
    ),
    forbid(
      'protocol-through-its-index',
      "protocol/index.ts is the library's public API and the only way into protocol/ from the other rooms (tests may reach inner files)",
      { path: '^(common|tpm|daemon|peripherals|backend|demo|cli|testkit)/' },
      { path: '^protocol/', pathNot: '^protocol/index\\.ts$' },
    ),
    forbid(
      'tpm-bindings-through-the-checker',
      'only the checker (tpm/ffi/checked.ts) calls the raw bindings, so every TSS2_RC becomes a TpmError',
      { pathNot: '^tpm/ffi/(checked|bindings)\\.ts$' },
      { path: '^tpm/ffi/bindings\\.ts$' },
    ),
    forbid('no-circular', 'no import cycles in the product code', { path: '^(common|protocol|tpm|daemon|peripherals|backend|demo|cli)/' }, { circular: true }),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|coverage|node_modules|bench/results)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // Lazy loads (createRequire(…)(id), an injected `load(id)`) count as imports too.
    exoticRequireStrings: ['load', 'requireLazy'],
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.cjs', '.mjs', '.json'] },
  },
};
