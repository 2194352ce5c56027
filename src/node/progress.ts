/**
 * Progress of long commands on stderr: on a terminal one line rewritten in place; otherwise (a log file, CI, a
 * pipe) a plain line at most every `everyMs`, so a run that takes minutes never looks hung. stdout stays for
 * results (tables, --json).
 */
export interface Progress {
  (line: string): void;
  /** end the progress display (clears the terminal line; prints the last line elsewhere) */
  done(): void;
}

export function progressReporter(
  err: (s: string) => void,
  o: { tty?: boolean; everyMs?: number; now?: () => number } = {},
): Progress {
  const tty = o.tty ?? !!process.stderr.isTTY,
    every = o.everyMs ?? 10_000,
    now = o.now ?? (() => performance.now());
  let last = -Infinity,
    pending: string | null = null;
  const p = ((line: string) => {
    if (tty) return err(`\r${line}\x1b[K`);
    pending = line;
    if (now() - last >= every) {
      err(`${line}\n`);
      last = now();
      pending = null;
    }
  }) as Progress;
  p.done = () => {
    if (tty) err('\r\x1b[K');
    else if (pending !== null) err(`${pending}\n`);
    pending = null;
  };
  return p;
}
