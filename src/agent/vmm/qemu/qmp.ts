/**
 * A small client for QMP, QEMU's JSON control protocol, over the VM's Unix socket: one
 * persistent connection that matches answers to commands by id and passes asynchronous
 * events (SHUTDOWN, STOP, RESUME, ...) to listeners.
 */
import { connect, type Socket } from 'node:net';

/** QEMU refused a command; `desc` is its own explanation, `errorClass` its category. */
export class QmpError extends Error {
  readonly attempt: string;
  readonly errorClass: string;
  readonly desc: string;

  constructor(attempt: string, errorClass: string, desc: string) {
    super(`${attempt}: QEMU answered ${errorClass}: ${desc}`);
    this.name = 'QmpError';
    this.attempt = attempt;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/** An asynchronous event as QEMU sends it, e.g. `{ event: 'SHUTDOWN', data: {...} }`. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpCommandOptions {
  /** What the command is for, e.g. `pause VM web`; leads every error message. */
  attempt?: string;
  timeoutMs?: number;
}

interface Pending {
  attempt: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** One QMP connection, in command mode once `connect` resolves. */
export class QmpClient {
  readonly socketPath: string;
  /** Resolves when the connection has closed, for whatever reason. */
  readonly closed: Promise<void>;
  private readonly socket: Socket;
  private readonly defaultTimeoutMs: number;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private greeted: (() => void) | undefined;
  private nextId = 1;
  private buffered = '';
  private isClosed = false;
  private closeReason: Error | undefined;

  private constructor(socketPath: string, socket: Socket, defaultTimeoutMs: number) {
    this.socketPath = socketPath;
    this.socket = socket;
    this.defaultTimeoutMs = defaultTimeoutMs;
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.isClosed = true;
        const reason = this.closeReason ?? new Error(`QMP connection to ${socketPath} closed`);
        for (const [id, pending] of this.pending) {
          clearTimeout(pending.timer);
          pending.reject(new Error(`${pending.attempt}: no answer`, { cause: reason }));
          this.pending.delete(id);
        }
        resolve();
      });
    });
    // An idle connection must not keep the agent running; a pending command's timer does.
    socket.unref();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', (error) => {
      this.closeReason ??= error;
    });
  }

  /**
   * Connects to the QMP socket at `socketPath`, waits for QEMU's greeting and leaves
   * capabilities negotiation, each within `timeoutMs`. QEMU serves one QMP client per socket
   * at a time: while another client is connected, no greeting comes. Commands get
   * `commandTimeoutMs` unless they say otherwise.
   */
  static async connect(
    socketPath: string,
    options: { timeoutMs: number; commandTimeoutMs: number },
  ): Promise<QmpClient> {
    const { timeoutMs } = options;
    const client = new QmpClient(socketPath, connect(socketPath), options.commandTimeoutMs);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve) => {
          client.greeted = resolve;
        }),
        client.closed.then(() => {
          throw new Error(`cannot connect to QMP at ${socketPath}`, { cause: client.closeReason });
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            reject(new Error(`no QMP greeting on ${socketPath} within ${timeoutMs} ms`));
          }, timeoutMs);
        }),
      ]);
      await client.execute('qmp_capabilities', undefined, { attempt: 'negotiate QMP', timeoutMs });
    } catch (error) {
      client.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** Runs `command`; resolves with its `return` value, rejects with a `QmpError`. */
  execute(
    command: string,
    args?: Record<string, unknown>,
    options: QmpCommandOptions = {},
  ): Promise<unknown> {
    const attempt = options.attempt ?? `QMP ${command}`;
    if (this.isClosed) {
      return Promise.reject(
        new Error(`${attempt}: QMP connection to ${this.socketPath} is closed`, {
          cause: this.closeReason,
        }),
      );
    }
    const id = this.nextId++;
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${attempt}: no answer from QEMU within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { attempt, resolve, reject, timer });
      const message = { execute: command, id, ...(args === undefined ? {} : { arguments: args }) };
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Calls `listener` for every event; returns a function that removes it. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Closes the connection; QEMU and the VM carry on. */
  close(): void {
    this.socket.destroy();
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** QMP messages are JSON objects, one per line (QEMU ends lines with CRLF). */
  private receive(chunk: string): void {
    this.buffered += chunk;
    for (;;) {
      const end = this.buffered.indexOf('\n');
      if (end < 0) return;
      const line = this.buffered.slice(0, end).trim();
      this.buffered = this.buffered.slice(end + 1);
      if (line === '') continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line);
      } catch (cause) {
        this.closeReason = new Error(`QEMU sent a line that is not JSON: ${line.slice(0, 200)}`, {
          cause,
        });
        this.socket.destroy();
        return;
      }
      this.dispatch(message);
    }
  }

  private dispatch(message: Record<string, unknown>): void {
    if ('QMP' in message) {
      this.greeted?.();
      this.greeted = undefined;
      return;
    }
    if (typeof message.event === 'string') {
      for (const listener of this.listeners) listener(message as unknown as QmpEvent);
      return;
    }
    const pending = typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
    // An answer without a known id belongs to a command that already timed out.
    if (!pending || typeof message.id !== 'number') return;
    this.pending.delete(message.id);
    clearTimeout(pending.timer);
    if ('error' in message) {
      const error = (message.error ?? {}) as { class?: unknown; desc?: unknown };
      pending.reject(
        new QmpError(
          pending.attempt,
          String(error.class ?? 'GenericError'),
          String(error.desc ?? JSON.stringify(message.error)),
        ),
      );
      return;
    }
    pending.resolve(message.return);
  }
}
