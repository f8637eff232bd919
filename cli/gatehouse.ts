#!/usr/bin/env node
/**
 * The `gatehouse` binary (package.json bin → dist/cli/gatehouse.js). All logic lives in
 * cli/main.ts; this file only connects it to the process.
 */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
