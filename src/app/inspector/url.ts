/**
 * The inspector's shareable state in the URL hash (`#/inspect?sw=7&edit=attribute&...`): a ShapesWorld sample
 * is a pure function of its seed and options, so the link reproduces the view. Images the user dropped are
 * not in the URL; their texts and settings are.
 */
import type { EditType } from '../../data/edits.js';
import type { ImageOrder } from '../../inspect/margins.js';

export interface InspectorUrlState {
  /** a ShapesWorld seed (the images and texts come from it) */
  sw?: number;
  edit?: EditType;
  negative?: 'edited' | 'synthetic';
  order: ImageOrder;
  objective: string;
  settings: Record<string, unknown>;
  /** texts, when they are not a ShapesWorld sample's */
  question?: string;
  chosen?: string;
  rejected?: string;
}

export function readInspectorUrl(hash: string): Partial<InspectorUrlState> {
  const q = new URLSearchParams(hash.split('?')[1] ?? '');
  const out: Partial<InspectorUrlState> = {};
  const sw = q.get('sw');
  if (sw !== null && /^\d+$/.test(sw)) out.sw = Number(sw);
  const edit = q.get('edit');
  if (edit === 'existence' || edit === 'attribute' || edit === 'relation') out.edit = edit;
  const neg = q.get('neg');
  if (neg === 'edited' || neg === 'synthetic') out.negative = neg;
  const order = q.get('order');
  if (order === 'm-first' || order === 'mprime-first') out.order = order;
  const objective = q.get('objective');
  if (objective) out.objective = objective;
  const settings = q.get('settings');
  if (settings) {
    try {
      const s = JSON.parse(settings);
      if (s && typeof s === 'object' && !Array.isArray(s)) out.settings = s;
    } catch {
      // a hand-edited link with broken settings falls back to the defaults
    }
  }
  for (const k of ['question', 'chosen', 'rejected'] as const) {
    const v = q.get(k);
    if (v !== null) out[k] = v;
  }
  return out;
}

export function inspectorHash(s: InspectorUrlState): string {
  const q = new URLSearchParams();
  if (s.sw !== undefined) {
    q.set('sw', String(s.sw));
    if (s.edit) q.set('edit', s.edit);
    if (s.negative && s.negative !== 'edited') q.set('neg', s.negative);
  } else {
    for (const k of ['question', 'chosen', 'rejected'] as const) if (s[k] !== undefined) q.set(k, s[k]!);
  }
  q.set('order', s.order);
  q.set('objective', s.objective);
  if (Object.keys(s.settings).length) q.set('settings', JSON.stringify(s.settings));
  return `#/inspect?${q.toString()}`;
}
