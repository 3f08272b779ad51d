/**
 * Runs the external tools the image pipeline is built on (skopeo, umoci, mkfs.ext4, cp).
 * Arguments go straight to the program, never through a shell, because image references
 * and paths come from users.
 */
import { spawn } from 'node:child_process';

export interface RunOptions {
  /** Killed with SIGKILL after this long; the error says so. */
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Names the tool in errors, e.g. `skopeo copy`; default the command. */
  label?: string;
  /** Called with each complete line the tool writes to stdout. */
  onLine?: (line: string) => void;
}

export interface RunResult {
  /** Raw bytes: manifests are hashed, so they must not pass through a text decoder. */
  stdout: Buffer;
  stderr: string;
}

/** Keeps memory bounded when a tool is chatty; errors only need the end of stderr. */
const stderrLimit = 16 * 1024;
const stdoutLimit = 64 * 1024 * 1024;

/**
 * Runs `command` with `args` and resolves with its output once it exits 0. Otherwise it
 * rejects with a `ToolError` that carries the exit status and the tool's own explanation.
 */
export function runTool(command: string, args: string[], options: RunOptions): Promise<RunResult> {
  const label = options.label ?? command;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let pendingLine = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);

    child.stdout.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes <= stdoutLimit) stdout.push(chunk);
      if (!options.onLine) return;
      const lines = (pendingLine + chunk.toString()).split('\n');
      pendingLine = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) options.onLine(line);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-stderrLimit);
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new ToolError(label, `could not be started: ${err.message}`, stderr, err));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (pendingLine.trim()) options.onLine?.(pendingLine);
      if (timedOut) {
        reject(new ToolError(label, `timed out after ${options.timeoutMs} ms`, stderr));
      } else if (code !== 0) {
        const status = code !== null ? `exit code ${code}` : `signal ${signal}`;
        reject(new ToolError(label, `failed (${status})`, stderr));
      } else if (stdoutBytes > stdoutLimit) {
        reject(new ToolError(label, `wrote more than ${stdoutLimit} bytes`, stderr));
      } else {
        resolve({ stdout: Buffer.concat(stdout), stderr });
      }
    });
  });
}

/** A tool that failed; `detail` is the tool's own one-line explanation, when it gave one. */
export class ToolError extends Error {
  readonly command: string;
  readonly stderr: string;
  readonly detail: string;

  constructor(command: string, what: string, stderr: string, cause?: unknown) {
    const detail = toolMessage(stderr);
    super(`${command} ${what}${detail ? `: ${detail}` : ''}`, { cause });
    this.name = 'ToolError';
    this.command = command;
    this.stderr = stderr;
    this.detail = detail;
  }
}

/**
 * The useful line of a tool's stderr. skopeo and umoci log through logrus, whose fatal line
 * reads `time="…" level=fatal msg="…"`; only the quoted message helps a user.
 */
export function toolMessage(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  const last = lines.at(-1)?.trim() ?? '';
  const quoted = /\bmsg="((?:[^"\\]|\\.)*)"/.exec(last);
  if (!quoted?.[1]) return last;
  return quoted[1].replace(/\\(.)/g, '$1');
}
