/** Numbers as people read them in the page: bytes, rates, durations, log-probs. */

export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '—';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : n < 10 ? 2 : 1)} ${u[i]}`;
}

export function duration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '—';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s - 60 * m)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** a signed number with a fixed number of decimals, '−' for minus (tables line up) */
export function num(x: number, d = 3): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '−∞';
  const s = Math.abs(x).toFixed(d);
  return x < 0 && Number(s) !== 0 ? `−${s}` : s;
}

/** a rate and time-left estimate from (time, done) samples over the last few seconds */
export class RateMeter {
  private samples: Array<[number, number]> = [];
  constructor(private readonly windowMs = 3000) {}
  reset() {
    this.samples = [];
  }
  add(done: number, now = performance.now()): void {
    this.samples.push([now, done]);
    while (this.samples.length > 2 && now - this.samples[0][0] > this.windowMs) this.samples.shift();
  }
  /** units per second, or NaN before two samples */
  rate(): number {
    if (this.samples.length < 2) return NaN;
    const [t0, d0] = this.samples[0],
      [t1, d1] = this.samples[this.samples.length - 1];
    return t1 > t0 ? ((d1 - d0) * 1000) / (t1 - t0) : NaN;
  }
  secondsLeft(done: number, total: number): number {
    const r = this.rate();
    return r > 0 && total > done ? (total - done) / r : NaN;
  }
}
