/** The Firecracker VMM driver; see docs/firecracker.md. */
export { FirecrackerApiError } from './api.ts';
export { FirecrackerDriver } from './driver.ts';
export { FirecrackerMachine } from './machine.ts';
export type {
  BalloonOptions,
  DriverLogger,
  FirecrackerDriverOptions,
  FirecrackerLogLevel,
  JailerOptions,
} from './options.ts';
