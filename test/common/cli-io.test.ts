/** The one CLI output helper and the one UsageError (common/cli-io.ts). */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { UsageError, write, writeRaw } from '../../common/cli-io.js';
import { GatehouseError } from '../../common/errors.js';

function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

describe('common/cli-io', () => {
  it('write ends every text with exactly one newline', () => {
    const s = sink();
    write(s.stream, 'a');
    write(s.stream, 'b\n');
    write(s.stream, '');
    assert.equal(s.text(), 'a\nb\n\n');
  });

  it('writeRaw writes exactly what it is given, text or bytes', () => {
    const s = sink();
    writeRaw(s.stream, '\rprogress 1/2');
    writeRaw(s.stream, new Uint8Array([0x41, 0x0a]));
    assert.equal(s.text(), '\rprogress 1/2A\n');
  });

  it('UsageError is a GatehouseError with the stable code GH_CLI_USAGE', () => {
    const e = new UsageError('--limit must be an integer');
    assert.ok(e instanceof GatehouseError);
    assert.equal(e.code, 'GH_CLI_USAGE');
    assert.equal(e.name, 'UsageError');
  });
});
