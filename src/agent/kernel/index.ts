/** The guest kernel: where it comes from and what it is told at boot; see docs/guest.md. */
export { type GuestBootParams, kernelCommandLine } from './cmdline.ts';
export {
  bzImageRelease,
  type GuestKernelFiles,
  type GuestKernelOptions,
  GuestKernelSource,
  provideGuestKernel,
} from './provider.ts';
export { hostTscKhz, tscKhzFromCpuinfo, tscKhzFromKernelLog } from './tsc.ts';
