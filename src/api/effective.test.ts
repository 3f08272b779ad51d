import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expireAfterMs, resolveSpec } from './effective.ts';

describe('resolveSpec', () => {
  it('layers VM over template over class over cluster defaults', () => {
    const spec = resolveSpec({
      vm: { image: 'vm-image', env: [{ name: 'A', value: 'vm' }], resources: { vcpus: 4 } },
      template: {
        image: 'template-image',
        command: ['/bin/run'],
        env: [
          { name: 'A', value: 'template' },
          { name: 'B', value: 'template' },
        ],
        classRef: { name: 'small' },
        resources: { memory: '1Gi' },
      },
      vmClass: { vcpus: 2, memory: '512Mi', disk: '2Gi' },
      config: { defaults: { restartPolicy: 'Never', resources: { vcpus: 8, memory: '64Mi' } } },
    });
    assert.equal(spec.image, 'vm-image');
    assert.deepEqual(spec.command, ['/bin/run']);
    assert.equal(spec.vcpus, 4);
    assert.equal(spec.memoryMiB, 1024, 'template resources beat the class');
    assert.equal(spec.diskMiB, 2048, 'class fills what no layer above sets');
    assert.equal(spec.className, 'small');
    assert.equal(spec.restartPolicy, 'Never');
    assert.deepEqual(spec.env, [
      { name: 'A', value: 'vm' },
      { name: 'B', value: 'template' },
    ]);
  });

  it('falls back to built-in sizing', () => {
    const spec = resolveSpec({ vm: { image: 'x' } });
    assert.deepEqual([spec.vcpus, spec.memoryMiB, spec.diskMiB], [1, 256, 1024]);
    assert.equal(spec.restartPolicy, 'Always');
  });
});

describe('expireAfterMs', () => {
  it('prefers the VM, then the pool, then the template', () => {
    const template = { expireAfter: '2h' };
    assert.equal(expireAfterMs({ vm: { expireAfter: '90s' }, pool: '45m', template }), 90_000);
    assert.equal(expireAfterMs({ vm: {}, pool: '45m', template }), 2_700_000);
    assert.equal(expireAfterMs({ vm: {}, template }), 7_200_000);
    assert.equal(expireAfterMs({ vm: {} }), undefined);
  });

  it('treats 0 as disabled, also when a lower layer sets a value', () => {
    assert.equal(
      expireAfterMs({ vm: { expireAfter: '0' }, template: { expireAfter: '2h' } }),
      undefined,
    );
    assert.equal(expireAfterMs({ vm: { expireAfter: 0 }, pool: '45m' }), undefined);
  });
});
