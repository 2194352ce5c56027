/**
 * `vco-lab margins`: the margin inspector from the command line. The same computation as the page's worker
 * (src/inspect/margins.ts), so `--json` prints exactly the schema of the page's "Export JSON".
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { decodePng } from '../data/png.js';
import { EDIT_TYPES, type EditType } from '../data/edits.js';
import { type ImageOrder, type MarginsReport, type MarginsRequest, computeMargins } from '../inspect/margins.js';
import { shapesworldPair } from '../inspect/shapesworld.js';
import { OBJECTIVES } from '../loss/registry.js';
import type { PixelImage } from '../model/processor.js';
import type { Span } from '../model/prompts.js';
import { createNodeRuntime } from '../runtime/node.js';
import type { EP } from '../runtime/runtime.js';
import { DEFAULT_MODEL_DIR, loadModelDir } from './model-dir.js';

type Out = (s: string) => void;

export const MARGINS_USAGE = `usage: vco-lab margins [--model DIR] [--adapter DIR]
         (--image-m A.png --image-mprime B.png --question Q --chosen Y --rejected Y2
          [--chosen-spans 4-10,12-15] [--rejected-spans 4-9] | --shapesworld SEED [--edit existence|attribute|relation]
          [--negative edited|synthetic])
         [--objective ID] [--settings JSON] [--order m-first|mprime-first] [--int4] [--device cpu|webgpu] [--json]`;

/** "4-10,12-15" -> [[4, 10], [12, 15]] */
export function parseSpans(v: string, flag: string): Span[] {
  if (v.trim() === '') return [];
  return v.split(',').map((part) => {
    const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part);
    if (!m || Number(m[1]) >= Number(m[2]))
      throw new Error(
        `--${flag} takes character ranges start-end (start < end), comma-separated, e.g. 4-10,12-15; got "${part}"`,
      );
    return [Number(m[1]), Number(m[2])] as Span;
  });
}

export async function marginsCommand(args: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      adapter: { type: 'string' },
      'image-m': { type: 'string' },
      'image-mprime': { type: 'string' },
      question: { type: 'string' },
      chosen: { type: 'string' },
      rejected: { type: 'string' },
      'chosen-spans': { type: 'string' },
      'rejected-spans': { type: 'string' },
      shapesworld: { type: 'string' },
      edit: { type: 'string' },
      negative: { type: 'string' },
      objective: { type: 'string', default: 'icvco' },
      settings: { type: 'string' },
      order: { type: 'string', default: 'm-first' },
      int4: { type: 'boolean', default: false },
      device: { type: 'string', default: 'cpu' },
      json: { type: 'boolean', default: false },
    },
  });
  const order = values.order as ImageOrder;
  if (order !== 'm-first' && order !== 'mprime-first')
    throw new Error(`--order takes m-first or mprime-first, not "${values.order}"`);
  const objectiveId = values.objective!.split(':')[0];
  if (!OBJECTIVES[objectiveId])
    throw new Error(
      `--objective "${values.objective}" is not an objective; choose one of ${Object.keys(OBJECTIVES).join(', ')}, icvco:reference-code`,
    );
  let settings: Record<string, unknown> = {};
  if (values.settings !== undefined) {
    try {
      settings = JSON.parse(values.settings);
    } catch (e) {
      throw new Error(`--settings takes a JSON object, e.g. '{"beta": 0.2}' (${(e as Error).message})`, { cause: e });
    }
    if (!settings || typeof settings !== 'object' || Array.isArray(settings))
      throw new Error('--settings takes a JSON object, e.g. \'{"beta": 0.2}\'');
  }
  let images: { m: PixelImage; mPrime: PixelImage };
  let text: Pick<MarginsRequest, 'question' | 'chosen' | 'rejected' | 'chosenSpans' | 'rejectedSpans'>;
  if (values.shapesworld !== undefined) {
    const seed = Number(values.shapesworld);
    if (!Number.isInteger(seed) || seed < 0)
      throw new Error(`--shapesworld takes a non-negative integer seed, not "${values.shapesworld}"`);
    if (values.edit !== undefined && !EDIT_TYPES.includes(values.edit as EditType))
      throw new Error(`--edit takes ${EDIT_TYPES.join(', ')}, not "${values.edit}"`);
    if (values.negative !== undefined && values.negative !== 'edited' && values.negative !== 'synthetic')
      throw new Error(`--negative takes edited or synthetic, not "${values.negative}"`);
    const p = shapesworldPair(seed, {
      type: values.edit as EditType | undefined,
      negative: values.negative as 'edited' | 'synthetic' | undefined,
    });
    images = { m: p.m, mPrime: p.mPrime };
    text = {
      question: p.question,
      chosen: p.chosen,
      rejected: p.rejected,
      chosenSpans: p.chosenSpans,
      rejectedSpans: p.rejectedSpans,
    };
  } else {
    const missing = ['image-m', 'image-mprime', 'question', 'chosen', 'rejected'].filter(
      (k) => values[k as keyof typeof values] === undefined,
    );
    if (missing.length)
      throw new Error(`missing ${missing.map((k) => `--${k}`).join(', ')} (or give --shapesworld SEED)\n${MARGINS_USAGE}`);
    const png = (flag: 'image-m' | 'image-mprime') => {
      const file = values[flag]!;
      let bytes: Uint8Array;
      try {
        bytes = readFileSync(file);
      } catch (e) {
        throw new Error(
          `--${flag} ${file}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
          { cause: e },
        );
      }
      return decodePng(bytes, file);
    };
    images = { m: png('image-m'), mPrime: png('image-mprime') };
    const spans = (flag: 'chosen-spans' | 'rejected-spans') =>
      values[flag] === undefined ? undefined : parseSpans(values[flag]!, flag);
    text = {
      question: values.question!,
      chosen: values.chosen!,
      rejected: values.rejected!,
      chosenSpans: spans('chosen-spans'),
      rejectedSpans: spans('rejected-spans'),
    };
  }
  const rt = await createNodeRuntime(values.device as EP);
  const dir = values.model ?? DEFAULT_MODEL_DIR;
  const model = await loadModelDir(rt, dir, values.adapter, { int4: values.int4 });
  const report = await computeMargins(
    { ...model, name: values.model ?? 'shapesworld-tiny', adapter: values.adapter ?? null },
    images,
    { ...text, order, objective: values.objective!, settings },
  );
  await model.engine.release();
  out(values.json ? `${JSON.stringify(report, null, 1)}\n` : formatMargins(report));
  return 0;
}

const f = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

/** the report as tables for a terminal */
export function formatMargins(r: MarginsReport): string {
  const lines = [
    `${r.model.name} (${r.model.family}${r.model.adapter ? `, adapter ${r.model.adapter}` : ', no adapter: policy = reference'}) on ${r.model.ep}`,
    `question: ${r.input.question}`,
    `y  (chosen, faithful to m):   ${r.input.chosen}`,
    `y′ (rejected, faithful to m′): ${r.input.rejected}`,
    `shared context: ${r.input.order === 'm-first' ? '[m, m′]' : '[m′, m]'}; single-branch mask from ${r.input.mask_source}`,
    '',
    'sequence     policy   reference  log-ratio   (masked: policy  reference  log-ratio)',
  ];
  for (const [k, q] of Object.entries(r.sequences)) {
    lines.push(
      `${k.padEnd(10)} ${f(q.score.policy_full).padStart(9)} ${f(q.score.reference_full).padStart(10)} ${f(q.log_ratio.full).padStart(10)}` +
        `            ${f(q.score.policy_masked).padStart(8)} ${f(q.score.reference_masked).padStart(10)} ${f(q.log_ratio.masked).padStart(10)}`,
    );
  }
  lines.push('', 'direction  h_single  h_multi  p_single  p_multi  gates (τ, conf)  VCDist  image-swap  raw single  raw multi');
  for (const d of r.directions) {
    lines.push(
      `target ${d.target.padEnd(3)} ${f(d.h_single).padStart(8)} ${f(d.h_multi).padStart(8)} ${f(d.p_single).padStart(9)} ${f(d.p_multi).padStart(8)}` +
        `  ${d.gate_correct ? 'pass' : 'fail'}, ${d.gate_confident ? 'pass' : 'fail'}       ${d.vcdist_fires ? 'fires' : 'off  '}  ${f(d.h_image_swap).padStart(10)}` +
        ` ${f(d.raw_single).padStart(11)} ${f(d.raw_multi).padStart(10)}`,
    );
  }
  lines.push('', 'position bias (h_multi):');
  for (const p of r.position_bias)
    lines.push(
      `  target ${p.target}: m first ${f(p.h_multi_m_first)}, m′ first ${f(p.h_multi_mprime_first)}, difference ${f(p.difference)}`,
    );
  const o = r.objective;
  lines.push('', `objective ${o.id}: loss ${f(o.loss, 6)}`);
  for (const [k, v] of Object.entries(o.terms)) lines.push(`  ${k.padEnd(24)} ${f(v, 6)}`);
  lines.push('  dL/ds (a gradient step moves each score against its sign):');
  for (const [k, v] of Object.entries(o.dlds)) lines.push(`    ${k.padEnd(10)} ${f(v as number, 6)}`);
  lines.push(
    '',
    `visual DPO (image swap) loss ${f(r.comparison.visdpo.loss, 6)}; IC-VCO (paper) loss ${f(r.comparison.icvco.loss, 6)}`,
    `timing: preprocess ${f(r.timing.preprocess_ms, 0)} ms, features ${f(r.timing.features_ms, 0)} ms, scoring ${f(r.timing.scoring_ms, 0)} ms (${r.timing.backend})`,
    '',
  );
  return lines.join('\n');
}
