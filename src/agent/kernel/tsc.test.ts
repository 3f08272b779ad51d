import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostTscKhz, tscKhzFromCpuinfo, tscKhzFromKernelLog } from './tsc.ts';

const cpuinfo = (flags: string) =>
  `processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2445.422\nflags\t\t: fpu ${flags} sse2\n`;

describe('host TSC rate', () => {
  it('prefers the refined calibration in the kernel log', () => {
    const log =
      '[    0.000066] tsc: Detected 2445.422 MHz processor\n' +
      '[    1.432100] tsc: Refined TSC clocksource calibration: 2445.406 MHz\n';
    assert.equal(tscKhzFromKernelLog(log), 2445406);
    assert.equal(tscKhzFromKernelLog('[    0.0] tsc: Detected 3000 MHz TSC\n'), 3000000);
    assert.equal(tscKhzFromKernelLog('nothing about clocks'), undefined);
  });

  it('reads cpuinfo only when "cpu MHz" is the calibrated TSC rate', () => {
    assert.equal(tscKhzFromCpuinfo(cpuinfo('constant_tsc')), 2445422);
    assert.equal(tscKhzFromCpuinfo(cpuinfo('constant_tsc aperfmperf')), undefined);
    assert.equal(tscKhzFromCpuinfo(cpuinfo('tsc')), undefined);
  });

  it('falls back from the kernel log to cpuinfo, and to nothing', async () => {
    const failing = async (): Promise<string> => {
      throw new Error('dmesg: read kernel buffer failed: Operation not permitted');
    };
    assert.equal(
      await hostTscKhz({
        readKernelLog: failing,
        readCpuinfo: async () => cpuinfo('constant_tsc'),
      }),
      2445422,
    );
    assert.equal(await hostTscKhz({ readKernelLog: failing, readCpuinfo: failing }), undefined);
  });
});
