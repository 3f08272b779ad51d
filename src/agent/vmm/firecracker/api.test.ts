import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { apiErrorFrom, FirecrackerApi, FirecrackerApiError } from './api.ts';

describe('apiErrorFrom', () => {
  it("carries Firecracker's fault message and what was attempted", () => {
    const error = apiErrorFrom(
      'attach drive root (/d/root.ext4)',
      400,
      '{"fault_message":"Drive config error: No such file or directory (os error 2)"}',
    );
    assert.ok(error instanceof FirecrackerApiError);
    assert.equal(error.status, 400);
    assert.equal(error.faultMessage, 'Drive config error: No such file or directory (os error 2)');
    assert.equal(
      error.message,
      'attach drive root (/d/root.ext4): Firecracker answered 400: ' +
        'Drive config error: No such file or directory (os error 2)',
    );
  });

  it('keeps a body that is not Firecracker JSON', () => {
    assert.equal(apiErrorFrom('pause the VM', 500, 'oops\n').faultMessage, 'oops');
    assert.equal(apiErrorFrom('pause the VM', 502, '').faultMessage, '(empty body)');
  });
});

describe('FirecrackerApi over a Unix socket', () => {
  let dir: string;
  let server: Server;
  const seen: { method?: string; url?: string; body: string; length?: string }[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imp-fc-api-'));
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      req.on('end', () => {
        seen.push({
          method: req.method,
          url: req.url,
          body,
          length: req.headers['content-length'],
        });
        if (req.url === '/') {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end('{"id":"vm-1","state":"Running","vmm_version":"1.14.1"}');
        } else if (req.url === '/vm') {
          res.writeHead(400, { 'Content-Type': 'application/json' });
          res.end('{"fault_message":"The requested operation is not supported"}');
        } else if (req.url === '/slow') {
          setTimeout(() => res.end(), 300);
        } else {
          res.writeHead(204);
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(join(dir, 'api.sock'), resolve));
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('sends JSON with a length and reads 204 as no answer', async () => {
    const api = new FirecrackerApi(join(dir, 'api.sock'), 1_000);
    const answer = await api.send({
      method: 'PUT',
      path: '/actions',
      body: { action_type: 'InstanceStart' },
      attempt: 'boot the guest',
    });
    assert.equal(answer, undefined);
    const last = seen.at(-1);
    assert.equal(last?.method, 'PUT');
    assert.equal(last?.body, '{"action_type":"InstanceStart"}');
    assert.equal(last?.length, String(last?.body.length));
  });

  it('parses a JSON answer', async () => {
    const api = new FirecrackerApi(join(dir, 'api.sock'), 1_000);
    const answer = await api.send({ method: 'GET', path: '/', attempt: 'describe' });
    assert.deepEqual(answer, { id: 'vm-1', state: 'Running', vmm_version: '1.14.1' });
  });

  it('rejects a refusal with the fault message', async () => {
    const api = new FirecrackerApi(join(dir, 'api.sock'), 1_000);
    await assert.rejects(
      api.send({
        method: 'PATCH',
        path: '/vm',
        body: { state: 'Paused' },
        attempt: 'pause the VM',
      }),
      (error: unknown) =>
        error instanceof FirecrackerApiError &&
        error.status === 400 &&
        error.message ===
          'pause the VM: Firecracker answered 400: ' + 'The requested operation is not supported',
    );
  });

  it('says which socket it could not reach, keeping the cause', async () => {
    const api = new FirecrackerApi(join(dir, 'missing.sock'), 1_000);
    await assert.rejects(api.send({ method: 'GET', path: '/', attempt: 'describe' }), (error) => {
      assert.ok(error instanceof Error);
      assert.match(
        error.message,
        /^describe: cannot reach the Firecracker API at .*missing\.sock$/,
      );
      assert.equal((error.cause as NodeJS.ErrnoException).code, 'ENOENT');
      return true;
    });
  });

  it('gives up on a request that gets no answer in time', async () => {
    const api = new FirecrackerApi(join(dir, 'api.sock'), 100);
    await assert.rejects(
      api.send({ method: 'GET', path: '/slow', attempt: 'wait' }),
      (error: Error) => /no answer within 100 ms/.test(String((error.cause as Error).message)),
    );
  });
});
