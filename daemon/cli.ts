#!/usr/bin/env node
/**
 * The `gatehouse` binary (package.json bin → dist/daemon/cli.js). All logic lives in
 * daemon/cli/main.ts; this file only connects it to the process.
 */
import { main } from './cli/main.js';

process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
