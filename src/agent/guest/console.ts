/**
 * Reads the markers the guest init prints on the serial console (docs/guest.md): ready,
 * exit code and startup errors. The log only grows, so each read continues where the last
 * one stopped.
 */
import { open } from 'node:fs/promises';

export interface ConsoleState {
  ready: boolean;
  /** Guest seconds since boot when it reported ready. */
  readyUptime?: number;
  exitCode?: number;
  error?: { reason: string; message: string };
}

export class ConsoleWatcher {
  private readonly path: string;
  private offset = 0;
  private partial = '';
  readonly state: ConsoleState = { ready: false };

  constructor(path: string) {
    this.path = path;
  }

  /** Reads what was appended since the last call and updates `state`. */
  async poll(): Promise<ConsoleState> {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.path, 'r');
    } catch {
      return this.state;
    }
    try {
      const { size } = await handle.stat();
      if (size < this.offset) this.offset = 0; // a new VMM process started a fresh log
      if (size === this.offset) return this.state;
      const buffer = Buffer.alloc(Math.min(size - this.offset, 1 << 20));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.offset);
      this.offset += bytesRead;
      const text = this.partial + buffer.subarray(0, bytesRead).toString('utf8');
      const lines = text.split(/\r?\n/);
      this.partial = lines.pop() ?? '';
      for (const line of lines) this.parse(line);
    } finally {
      await handle.close();
    }
    return this.state;
  }

  /**
   * Skips what the log already holds: a new VMM appends to the log of the VM's earlier
   * runs, whose markers must not count for the new boot.
   */
  async skipExisting(): Promise<void> {
    try {
      const handle = await open(this.path, 'r');
      this.offset = (await handle.stat()).size;
      await handle.close();
    } catch {
      this.offset = 0;
    }
    this.partial = '';
  }

  /** Starts over, for a restarted VM whose log is truncated. */
  reset(): void {
    this.offset = 0;
    this.partial = '';
    this.state.ready = false;
    delete this.state.readyUptime;
    delete this.state.exitCode;
    delete this.state.error;
  }

  private parse(line: string): void {
    const ready = /^IMP_READY\b.*?(?:uptime=([0-9.]+))?\s*$/.exec(line);
    if (ready) {
      // A later boot in the same log: what an earlier run reported no longer holds.
      delete this.state.exitCode;
      delete this.state.error;
      this.state.ready = true;
      if (ready[1]) this.state.readyUptime = Number(ready[1]);
      return;
    }
    const exit = /^IMP_EXIT code=(\d+)/.exec(line);
    if (exit) {
      this.state.exitCode = Number(exit[1]);
      return;
    }
    const error = /^IMP_ERROR reason=(\w+)(?: message="(.*)")?/.exec(line);
    if (error) this.state.error = { reason: error[1]!, message: error[2] ?? '' };
  }
}
