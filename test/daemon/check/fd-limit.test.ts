import assert from 'node:assert/strict';
import { openDescriptorCount, openFileLimit } from '../../../common/descriptors.js';
import { fdLimit } from '../../../daemon/check/checks/fd-limit.js';
import type { CheckContext, DescriptorFacts } from '../../../daemon/check/types.js';
import { parseConfigText } from '../../../daemon/config/load.js';
import { minimalConfigYaml } from '../../../testkit/config.js';

function ctx(descriptors: DescriptorFacts | undefined, maxConnections = 1000): CheckContext {
  const config = parseConfigText(minimalConfigYaml(`  caFile: /etc/ca.pem\nmqtt:\n  maxConnections: ${maxConnections}\n`));
  return { config: { ok: true, config, file: 'x.yaml' }, now: () => new Date(), ...(descriptors === undefined ? {} : { descriptors: () => descriptors }) };
}

describe('daemon/check fd.limit', () => {
  it('warns when RLIMIT_NOFILE is below what mqtt.maxConnections needs, naming the fix', async () => {
    const r = await fdLimit.run(ctx({ limit: 8192, open: 40, whose: 'daemon' }, 10_000));
    assert.equal(r.status, 'warn');
    assert.match(r.message, /8192/);
    assert.match(r.action ?? '', /LimitNOFILE=10192/);
  });

  it('is ok when the limit fits, and skips without facts', async () => {
    assert.equal((await fdLimit.run(ctx({ limit: 16384, open: 40, whose: 'daemon' }, 10_000))).status, 'ok');
    assert.equal((await fdLimit.run(ctx(undefined))).status, 'skip');
    assert.equal((await fdLimit.run(ctx({ limit: undefined, open: undefined, whose: 'this process' }))).status, 'skip');
  });

  it('reads this process\'s limit and open descriptors from /proc', () => {
    const limit = openFileLimit();
    assert.ok(limit !== undefined && limit.soft >= 1 && limit.hard >= limit.soft);
    const open = openDescriptorCount();
    assert.ok(open !== undefined && open >= 3 && open <= limit.soft);
    assert.deepEqual(openFileLimit('Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 unlimited            files\n'), { soft: 1024, hard: Infinity });
    assert.equal(openFileLimit('nothing here'), undefined);
  });
});
