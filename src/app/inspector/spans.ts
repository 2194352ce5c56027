import type { Span } from '../../model/prompts.js';

/** "4-10, 12-15" -> spans, or an error naming the part that is wrong; empty text -> null (the token-diff mask) */
export function parseSpanList(s: string, len: number): { spans: Span[] | null; error: string | null } {
  if (!s.trim()) return { spans: null, error: null };
  const spans: Span[] = [];
  for (const part of s.split(',')) {
    const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part);
    if (!m) return { spans: null, error: `"${part.trim()}" is not a range start-end` };
    const a = Number(m[1]),
      b = Number(m[2]);
    if (a >= b || b > len) return { spans: null, error: `${a}-${b} is outside the answer (0-${len}, start < end)` };
    spans.push([a, b]);
  }
  return { spans, error: null };
}

export const formatSpans = (spans: readonly Span[]): string => spans.map(([a, b]) => `${a}-${b}`).join(', ');
