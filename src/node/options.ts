/**
 * Command-line options read strictly: every value is checked for its type and range, list items against the
 * known names, and a wrong one stops the command with one message naming the option and what it takes
 * (exit code 2), before any work starts. No value is silently coerced (`--seed abc` is not seed 0).
 */

/** a wrong command line: the CLI prints the message and exits 2 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const fail = (name: string, what: string, got: string): never => {
  throw new UsageError(`--${name} takes ${what}, got "${got}"`);
};

interface Range {
  min?: number;
  max?: number;
  /** min is excluded (a value must be > min) */
  minExclusive?: boolean;
}

function rangeText(r: Range): string {
  const lo = r.min === undefined ? '' : `${r.minExclusive ? '>' : '≥'} ${r.min}`;
  const hi = r.max === undefined ? '' : `≤ ${r.max}`;
  return [lo, hi].filter(Boolean).join(' and ');
}

function inRange(x: number, r: Range): boolean {
  if (r.min !== undefined && (r.minExclusive ? !(x > r.min) : !(x >= r.min))) return false;
  return !(r.max !== undefined && !(x <= r.max));
}

/** an integer option (decimal digits only, optionally signed) within the range; `dflt` when absent */
export function intOption(name: string, v: string | undefined, dflt: number, r: Range = {}): number {
  if (v === undefined) return dflt;
  const what = `an integer${rangeText(r) ? ` ${rangeText(r)}` : ''}`;
  if (!/^[+-]?\d+$/.test(v.trim())) fail(name, what, v);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || !inRange(n, r)) fail(name, what, v);
  return n;
}

/** a finite number within the range; `dflt` when absent */
export function numberOption(name: string, v: string | undefined, dflt: number, r: Range = {}): number {
  if (v === undefined) return dflt;
  const what = `a number${rangeText(r) ? ` ${rangeText(r)}` : ''}`;
  const n = v.trim() === '' ? NaN : Number(v);
  if (!Number.isFinite(n) || !inRange(n, r)) fail(name, what, v);
  return n;
}

/** one of the known values */
export function choiceOption<T extends string>(name: string, v: string | undefined, dflt: T, known: readonly T[]): T {
  if (v === undefined) return dflt;
  if (!known.includes(v as T)) fail(name, `one of ${known.join(', ')}`, v);
  return v as T;
}

/** a comma-separated list, each item one of the known values (when given) */
export function listOption(name: string, v: string | undefined, known?: readonly string[]): string[] | undefined {
  if (v === undefined) return undefined;
  const items = v.split(',').map((x) => x.trim());
  if (!items.length || items.some((x) => !x)) fail(name, 'a comma-separated list with no empty items', v);
  if (known) {
    const bad = items.filter((x) => !known.includes(x));
    if (bad.length) throw new UsageError(`--${name}: unknown ${bad.map((b) => `"${b}"`).join(', ')}; known: ${known.join(', ')}`);
  }
  return items;
}

/** a comma-separated list of integers within the range */
export function intListOption(name: string, v: string | undefined, dflt: number[], r: Range = {}): number[] {
  if (v === undefined) return dflt;
  return listOption(name, v)!.map((x) => intOption(name, x, 0, r));
}

/** the execution providers the Node runtime offers */
export const EPS = ['cpu', 'webgpu', 'cuda', 'wasm'] as const;
export const epOption = (name: string, v: string | undefined) => choiceOption(name, v, 'cpu', EPS);
