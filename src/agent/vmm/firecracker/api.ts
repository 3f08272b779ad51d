/** A small client for Firecracker's REST API, served over the VM's Unix socket. */
import { request } from 'node:http';

/** An HTTP request to Firecracker, with the words the agent uses for what it attempts. */
export interface ApiCall {
  method: 'GET' | 'PUT' | 'PATCH';
  path: string;
  body?: unknown;
  /** What the request is for, e.g. `configure drive root`; leads every error message. */
  attempt: string;
  timeoutMs?: number;
}

/** Firecracker refused a request; `faultMessage` is its own explanation. */
export class FirecrackerApiError extends Error {
  readonly status: number;
  readonly faultMessage: string;
  readonly attempt: string;

  constructor(attempt: string, status: number, faultMessage: string) {
    super(`${attempt}: Firecracker answered ${status}: ${faultMessage}`);
    this.name = 'FirecrackerApiError';
    this.attempt = attempt;
    this.status = status;
    this.faultMessage = faultMessage;
  }
}

/**
 * Turns a non-2xx answer into an error. Firecracker puts its reason in `fault_message`;
 * anything else (an empty or foreign body) is quoted so nothing is lost.
 */
export function apiErrorFrom(attempt: string, status: number, body: string): FirecrackerApiError {
  let fault = body.trim() || '(empty body)';
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed && typeof parsed === 'object' && 'fault_message' in parsed) {
      fault = String(parsed.fault_message);
    }
  } catch {
    // Not JSON: keep the raw text as the fault.
  }
  return new FirecrackerApiError(attempt, status, fault);
}

/** Talks to one Firecracker process. Every call opens a fresh connection. */
export class FirecrackerApi {
  readonly socketPath: string;
  private readonly defaultTimeoutMs: number;

  constructor(socketPath: string, defaultTimeoutMs: number) {
    this.socketPath = socketPath;
    this.defaultTimeoutMs = defaultTimeoutMs;
  }

  /** Sends `call`; resolves with the parsed JSON answer, or undefined for 204. */
  send(call: ApiCall): Promise<unknown> {
    const payload = call.body === undefined ? undefined : JSON.stringify(call.body);
    const timeoutMs = call.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method: call.method,
          path: call.path,
          // Firecracker's HTTP server cannot read chunked bodies: always send the length.
          headers: {
            Accept: 'application/json',
            ...(payload === undefined
              ? {}
              : {
                  'Content-Type': 'application/json',
                  'Content-Length': Buffer.byteLength(payload),
                }),
          },
          agent: false,
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', (cause) =>
            reject(new Error(`${call.attempt}: reading Firecracker's answer failed`, { cause })),
          );
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status < 200 || status > 299) {
              reject(apiErrorFrom(call.attempt, status, text));
              return;
            }
            try {
              resolve(parseAnswer(call.attempt, text));
            } catch (error) {
              reject(error);
            }
          });
        },
      );
      req.on('timeout', () => {
        req.destroy(new Error(`no answer within ${timeoutMs} ms`));
      });
      req.on('error', (cause) => {
        reject(
          new Error(`${call.attempt}: cannot reach the Firecracker API at ${this.socketPath}`, {
            cause,
          }),
        );
      });
      req.end(payload);
    });
  }
}

function parseAnswer(attempt: string, text: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new Error(`${attempt}: Firecracker answered with invalid JSON`, { cause });
  }
}
