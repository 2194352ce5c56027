/** Numbers written into TeX: fixed decimals, no "-0.00", large or tiny values in scientific notation. */

export function tn(x: number, d = 2): string {
  if (!Number.isFinite(x)) return x > 0 ? '\\infty' : x < 0 ? '-\\infty' : '\\text{—}';
  const s = x.toFixed(d);
  return Number(s) === 0 ? (0).toFixed(d) : s;
}

/** " + 0.32" or " - 0.32", for writing a sum term by term */
export function plus(x: number, d = 2): string {
  const s = tn(Math.abs(x), d);
  return x < 0 && Number(s) !== 0 ? ` - ${s}` : ` + ${s}`;
}

/** a positive quantity that may be astronomically large (Z with a small β): e^{log} in scientific notation */
export function fromLog(logx: number, d = 3): string {
  if (!Number.isFinite(logx)) return logx > 0 ? '\\infty' : '0';
  const e10 = logx / Math.LN10;
  if (e10 > -3 && e10 < 4) return Math.exp(logx).toPrecision(d);
  const k = Math.floor(e10);
  return `${(10 ** (e10 - k)).toFixed(d - 1)} \\times 10^{${k}}`;
}

/** the same for plain text (tables) */
export function sci(logx: number, d = 3): string {
  if (!Number.isFinite(logx)) return logx > 0 ? '∞' : '0';
  const e10 = logx / Math.LN10;
  if (e10 > -3 && e10 < 4) return Math.exp(logx).toPrecision(d);
  const k = Math.floor(e10);
  return `${(10 ** (e10 - k)).toFixed(d - 1)}e${k}`;
}

/** the toy's answers in TeX text, short (\text{yellow}) */
export const ans = (name: string) => `\\text{${name}}`;

/** one colour per answer, the star's colour where the answer names one */
export const ANSWER_COLOURS = ['#f5c518', '#e0402a', '#3b6fd8', '#9aa3b5'];
