import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ALL_CHECKS } from '../../../daemon/check/runner.js';
import { COMMANDS } from '../../../cli/main.js';
import { HELP as CHECK_HELP } from '../../../daemon/cli/check.js';
import { HELP as CONFIG_HELP } from '../../../daemon/cli/config.js';
import { HELP as EVENTS_HELP } from '../../../daemon/cli/events.js';
import { HELP as PERIPHERALS_HELP } from '../../../daemon/cli/peripherals.js';
import { HELP as RUN_HELP } from '../../../daemon/cli/run.js';
import { HELP as SCAN_HELP } from '../../../daemon/cli/scan.js';
import { HELP as STATUS_HELP } from '../../../daemon/cli/status.js';
import { HELP as DEMO_HELP } from '../../../demo/demo.js';

const DOC = join(import.meta.dirname, '../../../docs/operations.md');

describe('docs/operations.md and --help agree', () => {
  it('documents every command, every option of our commands, and every check id', async () => {
    const doc = await readFile(DOC, 'utf8');
    for (const name of Object.keys(COMMANDS)) assert.ok(doc.includes(`gatehouse ${name}`), `command ${name}`);
    const helps: Record<string, string> = { check: CHECK_HELP, config: CONFIG_HELP, demo: DEMO_HELP, events: EVENTS_HELP, peripherals: PERIPHERALS_HELP, run: RUN_HELP, scan: SCAN_HELP, status: STATUS_HELP };
    for (const [name, help] of Object.entries(helps)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`gatehouse ${name}`)) ?? '';
      const options = [...help.matchAll(/^ {2}(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1] ?? '').filter((o) => o !== '--help' && o !== '--socket');
      for (const o of options) assert.ok(row.includes(o), `${name} ${o} missing from the commands table`);
    }
    for (const c of ALL_CHECKS) {
      assert.ok(doc.includes(`| \`${c.id}\` |`), `check ${c.id}`);
      assert.ok(CHECK_HELP.includes(c.id), `check --help lists ${c.id}`);
    }
  });
});
