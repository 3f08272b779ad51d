/** What /proc tells about a VMM process: CPU time, memory, identity, liveness. */
import { readdir, readFile, readlink } from 'node:fs/promises';

/**
 * Clock ticks per second in /proc/<pid>/stat. Linux fixes USER_HZ at 100 on x86 and arm64,
 * the only architectures Imp's VMMs run on.
 */
const ticksPerSecond = 100;

/** The fields of /proc/<pid>/stat the driver reads. */
export interface ProcStat {
  /** One letter: R running, S sleeping, Z zombie, ... */
  state: string;
  userTicks: number;
  systemTicks: number;
  /** Ticks after boot at which the process started; with the pid it names one process. */
  startTicks: number;
}

/**
 * Parses /proc/<pid>/stat. The command name sits in parentheses and may itself hold spaces
 * or parentheses, so fields are counted from the last `)`.
 */
export function parseProcStat(text: string): ProcStat {
  const end = text.lastIndexOf(')');
  if (end < 0) throw new Error(`malformed /proc stat line: ${text.slice(0, 80)}`);
  // After the name: field 3 (state) onwards; utime is field 14, stime 15, starttime 22.
  const fields = text
    .slice(end + 1)
    .trim()
    .split(/\s+/);
  const field = (n: number): string => {
    const value = fields[n - 3];
    if (value === undefined) throw new Error(`/proc stat line has no field ${n}`);
    return value;
  };
  return {
    state: field(3),
    userTicks: Number(field(14)),
    systemTicks: Number(field(15)),
    startTicks: Number(field(22)),
  };
}

/** Resident set size from /proc/<pid>/status (`VmRSS:  1234 kB`), in bytes. */
export function parseRssBytes(statusText: string): number | undefined {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(statusText);
  return match ? Number(match[1]) * 1024 : undefined;
}

/** CPU seconds (user and system) and resident memory of a live process. */
export async function processUsage(
  pid: number,
): Promise<{ cpuSeconds: number; rssBytes?: number }> {
  const [statText, statusText] = await Promise.all([
    readFile(`/proc/${pid}/stat`, 'utf8'),
    readFile(`/proc/${pid}/status`, 'utf8'),
  ]);
  const stat = parseProcStat(statText);
  const rssBytes = parseRssBytes(statusText);
  return {
    cpuSeconds: (stat.userTicks + stat.systemTicks) / ticksPerSecond,
    ...(rssBytes === undefined ? {} : { rssBytes }),
  };
}

/** The stat of `pid`, or undefined when no such process exists (or it is a zombie). */
export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  try {
    const stat = parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
    return stat.state === 'Z' ? undefined : stat;
  } catch {
    return undefined;
  }
}

/**
 * Paths of the listening Unix sockets in /proc/<pid>/net/unix, by inode. The file lists the
 * sockets of the process's network namespace, with the path exactly as passed to bind().
 */
export function parseUnixSocketPaths(text: string): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of text.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path
    const parts = line.trim().split(/\s+/);
    const inode = parts[6];
    const path = parts.slice(7).join(' ');
    if (inode && path) paths.set(inode, path);
  }
  return paths;
}

/** True when one of `pid`'s open descriptors is the Unix socket bound at `boundPath`. */
export async function ownsUnixSocket(pid: number, boundPath: string): Promise<boolean> {
  const paths = parseUnixSocketPaths(await readFile(`/proc/${pid}/net/unix`, 'utf8'));
  const fds = await readdir(`/proc/${pid}/fd`);
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode && paths.get(inode) === boundPath) return true;
  }
  return false;
}

/** The program name and argv[0] of `pid`, to tell a VMM from anything else. */
export async function processIdentity(pid: number): Promise<{ comm: string; argv0: string }> {
  const [comm, argv] = await Promise.all([
    readFile(`/proc/${pid}/comm`, 'utf8'),
    processArguments(pid),
  ]);
  return { comm: comm.trim(), argv0: argv[0] ?? '' };
}

/** The argument vector of `pid` (argv[0] first), from /proc/<pid>/cmdline. */
export async function processArguments(pid: number): Promise<string[]> {
  const text = await readFile(`/proc/${pid}/cmdline`, 'utf8');
  // Every argument ends with a NUL, the last one included; kernel threads have none.
  return text === '' ? [] : text.replace(/\0$/, '').split('\0');
}

/**
 * Resolves once the process that was `pid` at `startTicks` is gone. For a process the agent
 * did not start (an adopted VMM) there is no exit status to wait for, so /proc is polled;
 * the start time guards against the pid being reused by an unrelated process. The poll does
 * not keep Node running on its own.
 */
export function watchForExit(pid: number, startTicks: number, intervalMs: number): Promise<string> {
  return new Promise<string>((resolve) => {
    const check = async (): Promise<void> => {
      const stat = await readProcStat(pid);
      if (!stat || stat.startTicks !== startTicks) {
        resolve('unknown');
        return;
      }
      setTimeout(() => void check(), intervalMs).unref();
    };
    void check();
  });
}

/**
 * Sends `signal` to the process that was `pid` at `startTicks`. The start time is checked
 * first because the process may have ended and its pid been reused by an unrelated one; a
 * process that is already gone is what the caller wanted anyway.
 */
export async function signalProcess(
  pid: number,
  startTicks: number,
  signal: NodeJS.Signals,
): Promise<void> {
  if ((await readProcStat(pid))?.startTicks !== startTicks) return;
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}
