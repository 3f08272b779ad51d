/** The QEMU microvm driver; see docs/qemu.md. */
export { type AccelChoice, chooseAccel } from './accel.ts';
export { QemuDriver } from './driver.ts';
export { QemuMachine, type QemuStatus } from './machine.ts';
export type { QemuAccel, QemuBalloonOptions, QemuDriverOptions } from './options.ts';
export { QmpClient, QmpError, type QmpEvent } from './qmp.ts';
