import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readProcStat } from '../agent/vmm/proc.ts';

/**
 * Runs a Node process that starts a helper (`sleep`) and marks a scratch dir, then ends by
 * `ending`; returns the helper's pid once that process is gone.
 */
async function helperOwner(scratch: string, ending: string): Promise<number> {
  const module = join(import.meta.dirname, 'process.ts');
  const script = `
    import { removeOnExit, startProcess } from ${JSON.stringify(module)};
    const helper = startProcess('sleep', 'sleep', ['60'], '/dev/null');
    removeOnExit(${JSON.stringify(scratch)});
    console.log(helper.child.pid);
    setTimeout(() => { ${ending} }, 100);
    setInterval(() => {}, 1000);
  `;
  const owner = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  owner.stdout.on('data', (chunk) => {
    out += chunk;
  });
  await new Promise((resolve) => owner.on('close', resolve));
  return Number(out.trim());
}

describe('helper processes', () => {
  for (const [how, ending] of [
    ['a signal nothing else handles', "process.kill(process.pid, 'SIGTERM')"],
    ['an early exit', 'process.exit(3)'],
  ] as const) {
    it(`end, with their scratch dirs, on ${how}`, async () => {
      const scratch = await mkdtemp(join(tmpdir(), 'imp-scratch-'));
      try {
        const pid = await helperOwner(scratch, ending);
        assert.ok(pid > 0, 'the helper was started');
        // A zombie no longer runs; it waits for whoever adopted it to reap it.
        for (let i = 0; i < 50 && (await readProcStat(pid)); i++) await sleep(20);
        assert.equal(await readProcStat(pid), undefined, 'the helper is gone');
        assert.equal(existsSync(scratch), false, 'the scratch dir is gone');
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    });
  }
});
