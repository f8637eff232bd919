import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VECTORS_V2_PATH } from './generate-v2.js';

const DOC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'protocol.md');

describe('docs/protocol.md: the v2 worked example matches protocol-v2.json', () => {
  it('every hex string of 16 or more digits in the v2 example appears in the vectors', () => {
    const doc = readFileSync(DOC, 'utf8');
    const start = doc.indexOf('### Worked example (v2)');
    const end = doc.indexOf('\n### ', start + 1);
    assert.ok(start > 0 && end > start);
    const vectors = readFileSync(VECTORS_V2_PATH, 'utf8');
    const found = doc.slice(start, end).match(/\b[0-9a-f]{16,}\b/g) ?? [];
    assert.ok(found.length >= 16, `only ${found.length} hex strings found`);
    for (const h of found) assert.ok(vectors.includes(`"${h}"`), `${h} is not a value in protocol-v2.json`);
  });
});
