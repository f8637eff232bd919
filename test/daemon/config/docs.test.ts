import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderOptionReference, spliceReference } from '../../../daemon/config/docs.js';
import { CONFIG_SCHEMA } from '../../../daemon/config/schema.js';
import type { Fields } from '../../../daemon/config/schema-dsl.js';

const DOC = join(import.meta.dirname, '../../../docs/configuration.md');

function leafPaths(fields: Fields, prefix: string): string[] {
  return Object.entries(fields).flatMap(([k, n]) => {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    return n.kind === 'section' ? leafPaths(n.fields, p) : [p];
  });
}

describe('docs/configuration.md', () => {
  it('documents exactly the schema (regenerate with GATEHOUSE_UPDATE_DOCS=1)', async () => {
    const text = await readFile(DOC, 'utf8');
    if (process.env.GATEHOUSE_UPDATE_DOCS === '1') await writeFile(DOC, spliceReference(text));
    const current = await readFile(DOC, 'utf8');
    assert.equal(spliceReference(current), current, 'docs/configuration.md is out of date with daemon/config/schema.ts');
    const documented = [...current.matchAll(/^\| `([a-zA-Z0-9.]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual(documented.sort(), leafPaths(CONFIG_SCHEMA.fields, '').sort());
    assert.ok(renderOptionReference().includes('`backend.batch.maxSize`'));
  });
});
