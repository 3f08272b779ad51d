/**
 * QMP framing against a tiny fake server; qemu.test.ts drives real QEMU through the same
 * client. The fake only answers what each test scripts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QmpClient, QmpError, type QmpEvent } from './qmp.ts';

const greeting = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}}}\r\n';

/** Serves one connection at a time; `onCommand` answers each command the client sends. */
async function fakeQemu(
  path: string,
  onCommand: (command: { execute: string; id: number; arguments?: unknown }, peer: Socket) => void,
  options: { greet?: boolean } = {},
): Promise<Server> {
  const server = createServer((peer) => {
    if (options.greet !== false) peer.write(greeting);
    let buffered = '';
    peer.on('data', (chunk) => {
      buffered += chunk.toString();
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        const command = JSON.parse(buffered.slice(0, end));
        buffered = buffered.slice(end + 1);
        if (command.execute === 'qmp_capabilities') {
          peer.write(`{"return": {}, "id": ${command.id}}\r\n`);
        } else {
          onCommand(command, peer);
        }
      }
    });
    peer.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

const timeouts = { timeoutMs: 1_000, commandTimeoutMs: 1_000 };

describe('QmpClient', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imp-qmp-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('matches answers to commands by id, even out of order and split across reads', async () => {
    const path = join(dir, 'order.sock');
    const held: { id: number; peer: Socket }[] = [];
    const server = await fakeQemu(path, (command, peer) => {
      held.push({ id: command.id, peer });
      if (held.length < 2) return;
      // Answer the second command first, the first one in two pieces.
      const [first, second] = held;
      second?.peer.write(`{"return": {"status": "running"}, "id": ${second.id}}\r\n`);
      const text = `{"return": {"name": "vm-1"}, "id": ${first?.id}}\r\n`;
      first?.peer.write(text.slice(0, 10));
      setTimeout(() => first?.peer.write(text.slice(10)), 20);
    });
    const client = await QmpClient.connect(path, timeouts);
    try {
      const [name, status] = await Promise.all([
        client.execute('query-name'),
        client.execute('query-status'),
      ]);
      assert.deepEqual(name, { name: 'vm-1' });
      assert.deepEqual(status, { status: 'running' });
    } finally {
      client.close();
      await close(server);
    }
  });

  it("passes events to listeners and QEMU's error desc to the caller", async () => {
    const path = join(dir, 'events.sock');
    const server = await fakeQemu(path, (command, peer) => {
      peer.write('{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}\r\n');
      peer.write(
        `{"error": {"class": "GenericError", "desc": "No balloon device has been activated"}, ` +
          `"id": ${command.id}}\r\n`,
      );
    });
    const client = await QmpClient.connect(path, timeouts);
    const events: QmpEvent[] = [];
    client.onEvent((event) => events.push(event));
    try {
      await assert.rejects(
        client.execute('query-balloon', undefined, { attempt: 'read the balloon of VM vm-1' }),
        (error: QmpError) => {
          assert.ok(error instanceof QmpError);
          assert.equal(error.desc, 'No balloon device has been activated');
          assert.equal(
            error.message,
            'read the balloon of VM vm-1: QEMU answered GenericError: ' +
              'No balloon device has been activated',
          );
          return true;
        },
      );
      assert.deepEqual(events, [{ timestamp: { seconds: 1, microseconds: 2 }, event: 'STOP' }]);
    } finally {
      client.close();
      await close(server);
    }
  });

  it('fails pending commands when QEMU goes away, and later ones at once', async () => {
    const path = join(dir, 'gone.sock');
    const server = await fakeQemu(path, (_command, peer) => peer.destroy());
    const client = await QmpClient.connect(path, timeouts);
    try {
      await assert.rejects(client.execute('system_powerdown'), /QMP system_powerdown: no answer/);
      await client.closed;
      assert.equal(client.isOpen, false);
      await assert.rejects(client.execute('cont'), /QMP cont: QMP connection to .* is closed/);
    } finally {
      await close(server);
    }
  });

  it('gives up on a command QEMU never answers', async () => {
    const path = join(dir, 'silent.sock');
    const server = await fakeQemu(path, () => undefined);
    const client = await QmpClient.connect(path, timeouts);
    try {
      await assert.rejects(
        client.execute('migrate', undefined, { attempt: 'snapshot VM vm-1', timeoutMs: 50 }),
        /^Error: snapshot VM vm-1: no answer from QEMU within 50 ms$/,
      );
    } finally {
      client.close();
      await close(server);
    }
  });

  it('reports a socket without a greeting, as when another client holds QMP', async () => {
    const path = join(dir, 'busy.sock');
    const server = await fakeQemu(path, () => undefined, { greet: false });
    try {
      await assert.rejects(
        QmpClient.connect(path, { timeoutMs: 100, commandTimeoutMs: 100 }),
        /no QMP greeting on .*busy.sock within 100 ms/,
      );
    } finally {
      await close(server);
    }
  });

  it('reports a socket nobody listens on', async () => {
    await assert.rejects(QmpClient.connect(join(dir, 'none.sock'), timeouts), (error: Error) => {
      assert.match(error.message, /cannot connect to QMP at .*none.sock/);
      assert.equal((error.cause as NodeJS.ErrnoException).code, 'ENOENT');
      return true;
    });
  });
});
