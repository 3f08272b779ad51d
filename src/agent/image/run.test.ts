import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runTool, ToolError, toolMessage } from './run.ts';

test("a tool failure is reported with the tool's own message", () => {
  const stderr =
    'time="2026-01-01T00:00:00Z" level=warning msg="noise"\n' +
    'time="2026-01-01T00:00:00Z" level=fatal ' +
    'msg="reading manifest 1 in x: manifest unknown: \\"x\\""\n';
  assert.equal(toolMessage(stderr), 'reading manifest 1 in x: manifest unknown: "x"');
  assert.equal(
    toolMessage('mkfs.ext4: Could not allocate block\n\n'),
    'mkfs.ext4: Could not allocate block',
  );
});

test('a tool that runs too long is killed and the error says so', async () => {
  const started = performance.now();
  await assert.rejects(runTool('sleep', ['10'], { timeoutMs: 100, label: 'sleep test' }), (err) => {
    assert.ok(err instanceof ToolError);
    assert.equal(err.message, 'sleep test timed out after 100 ms');
    return true;
  });
  assert.ok(performance.now() - started < 5000);
});

test('a failing tool reports its exit code and stderr; stdout is kept as bytes', async () => {
  await assert.rejects(
    runTool('sh', ['-c', 'echo "it broke" >&2; exit 3'], { timeoutMs: 5000 }),
    /^ToolError: sh failed \(exit code 3\): it broke$/,
  );
  const lines: string[] = [];
  const result = await runTool('printf', ['a\\nb\\n\\377'], {
    timeoutMs: 5000,
    onLine: (line) => lines.push(line),
  });
  assert.deepEqual([...result.stdout], [0x61, 0x0a, 0x62, 0x0a, 0xff]);
  assert.deepEqual(lines.slice(0, 2), ['a', 'b']);
});

test('a missing tool is reported, not thrown from the event loop', async () => {
  await assert.rejects(
    runTool('/nonexistent/tool', [], { timeoutMs: 5000 }),
    /\/nonexistent\/tool could not be started: spawn \/nonexistent\/tool ENOENT/,
  );
});
