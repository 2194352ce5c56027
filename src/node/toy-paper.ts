/**
 * The paper's comparison at toy scale (`vco-lab toy-paper`): LoRA preference training of the default model
 * with each method of the IC-VCO paper's Tables 2-4, on edited and on synthetic negatives built from the same
 * seed tuples, with the same budget, over several seeds. Reported per run and as mean ± sd over seeds:
 *  - the ShapesWorld benchmark after training (existence, attribute, relation, trap, two-image);
 *  - the training reward accuracies of the method's own branches over the last quarter of steps (TRL names);
 *  - held-out reward accuracies on the same yardstick for every method: response contrast within one image
 *    (IC-VCO's single branch), the shared two-image context (its multi branch) and image swap (visual DPO),
 *    on held-out edited pairs the method never trained on;
 *  - the curves of Figure 4 (chosen log-prob over training, IC-VCO with and without the anchor loss) and
 *    Figure 6 (VCDist gate pass rate, trigger rate, valid KL), written as SVG by `writeToyFigures`.
 * The preference set holds pairs about the planted prior (a non-yellow star; the rejected answer is the
 * prior's) besides existence, attribute and relation edits, so preference training can move the trap subset.
 */
import { cpus } from 'node:os';
import { type SetOptions, shapesworldSet } from '../data/sets.js';
import { Engine } from '../engine/engine.js';
import { shapesworldSamples } from '../engine/datasets.js';
import type { EngineSample } from '../engine/sample.js';
import { HELD_OUT_BRANCHES, type HeldOutBranch, heldOutAccuracy } from '../engine/heldout.js';
import { Trainer } from '../engine/trainer.js';
import { shapesBenchmark } from '../eval/shapesworld.js';
import { type CategoryMetrics, benchmarkMetrics, yesNoMargins } from '../eval/yesno.js';
import { resolveObjective } from '../loss/registry.js';
import type { Runtime } from '../runtime/runtime.js';
import { loadCheckpointDir } from './load-dir.js';
import { loadModelDir } from './model-dir.js';
import { lineChart } from './svg-plot.js';

export { HELD_OUT_BRANCHES };
export const TOY_SCHEMA = 'vco-lab/toy-paper@2';

export interface ToyMethod {
  /** the row's name */
  id: string;
  label: string;
  /** the loss module's objective id and settings */
  objective: string;
  settings?: Record<string, unknown>;
}

/** Tables 2-3: the methods, each trained on edited and on synthetic negatives */
export const TOY_METHODS: readonly ToyMethod[] = [
  { id: 'dpo', label: 'DPO', objective: 'dpo' },
  { id: 'mdpo', label: 'mDPO', objective: 'mdpo' },
  { id: 'visdpo', label: 'visual DPO (image swap)', objective: 'visdpo' },
  { id: 'svco', label: 'S-VCO', objective: 'svco' },
  { id: 'symmpo', label: 'SymMPO (no L_DPO_m)', objective: 'symmpo' },
  { id: 'icvco:paper', label: 'IC-VCO (paper)', objective: 'icvco:paper' },
  { id: 'icvco:reference-code', label: 'IC-VCO (reference code)', objective: 'icvco:reference-code' },
];

/** Table 4: IC-VCO (paper preset) with one part switched off, on edited negatives */
export const TOY_ABLATIONS: readonly ToyMethod[] = [
  ['no-single', 'w/o single-image branch', { singleBranch: false }],
  ['no-multi', 'w/o multi-image branch', { multiBranch: false }],
  ['no-anchor', 'w/o L_Anc', { anchor: false }],
  ['no-vcdist', 'w/o L_VCDist', { vcdist: false }],
  ['no-token-mask', 'w/o token mask', { tokenMask: false }],
  ['no-stop-gradient', 'w/o stop-gradient', { stopGradient: false }],
  ['no-dual-gating', 'w/o dual gating', { dualGating: false }],
].map(([id, label, settings]) => ({
  id: `icvco:paper/${id as string}`,
  label: `IC-VCO ${label as string}`,
  objective: 'icvco:paper',
  settings: settings as Record<string, unknown>,
}));

export type Negatives = 'edited' | 'synthetic';

export interface ToyOptions {
  modelDir: string;
  pairs: number;
  steps: number;
  batch: number;
  lr: number;
  rank: number;
  /** benchmark questions per category */
  perCategory: number;
  /** held-out edited pairs for the held-out reward accuracies */
  heldOut: number;
  /** one run per seed: the seed of the pairs, the LoRA initialisation and the data order */
  seeds: number[];
  /** share of pairs about the planted prior */
  priorShare: number;
  /** method ids to run (default: all); ablations run when `ablations` is set */
  methods?: string[];
  ablations: boolean;
  log?: (s: string) => void;
}

export const DEFAULT_TOY: Omit<ToyOptions, 'modelDir'> = {
  pairs: 256,
  steps: 64,
  batch: 8,
  lr: 2e-3,
  rank: 8,
  perCategory: 200,
  heldOut: 64,
  seeds: [1, 2, 3],
  priorShare: 0.25,
  ablations: true,
};

/** the smoke test: every method once, short (under 10 minutes on two CPU cores) */
export const QUICK_TOY: Omit<ToyOptions, 'modelDir'> = {
  ...DEFAULT_TOY,
  pairs: 32,
  steps: 12,
  batch: 4,
  perCategory: 40,
  heldOut: 16,
  seeds: [1],
  ablations: false,
};

/** the training metrics kept per step for the curves */
const CURVE_METRICS = [
  'rewards/accuracies',
  'image_rewards/accuracies',
  'single_rewards/accuracies',
  'multi_rewards/accuracies',
  'logps/chosen',
  'single_logps/chosen',
  'multi_logps/chosen',
  'vcdist_gate_pass_rate',
  'vcdist_trigger_rate',
  'vcdist_valid_kl',
] as const;

export interface ToyRun {
  method: string;
  label: string;
  objective: string;
  settings: Record<string, unknown>;
  negatives: Negatives;
  seed: number;
  /** every reward accuracy the method's objective reports, averaged over the last quarter of steps */
  train_accuracy_last_quarter: Record<string, number>;
  loss_first_quarter: number;
  loss_last_quarter: number;
  held_out_accuracy: Record<HeldOutBranch, number>;
  benchmark: Record<string, CategoryMetrics>;
  /** per step: loss and the CURVE_METRICS the objective reports */
  curve: Array<{ step: number; loss: number } & Record<string, number>>;
  seconds: number;
}

export interface MeanSd {
  mean: number;
  sd: number;
  n: number;
}

export interface ToySummaryRow {
  method: string;
  label: string;
  negatives: Negatives;
  benchmark: Record<string, MeanSd>;
  train_accuracy_last_quarter: Record<string, MeanSd>;
  held_out_accuracy: Record<HeldOutBranch, MeanSd>;
}

export interface ToyResult {
  schema: typeof TOY_SCHEMA;
  machine: string;
  seconds: number;
  options: Omit<ToyOptions, 'log'>;
  /** the model before any preference training */
  before: { benchmark: Record<string, CategoryMetrics>; held_out_accuracy: Record<HeldOutBranch, number> };
  runs: ToyRun[];
  summary: ToySummaryRow[];
}

const LM_LINEARS = String.raw`model\.text_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)`;

/** the training set of one seed: edited and synthetic sets share every m, y and y′; only m′ differs */
export function toySet(o: Pick<ToyOptions, 'pairs' | 'priorShare'>, seed: number, negatives: Negatives): SetOptions {
  return { pairs: o.pairs, seed, priorShare: o.priorShare, negative: negatives };
}

/** held-out edited pairs: a seed space the training sets never use (training seeds are small integers) */
export const heldOutSet = (n: number, seed: number): SetOptions => ({
  pairs: n,
  seed: 0x40000000 + seed,
  priorShare: 0.25,
  negative: 'edited',
});

export const meanSd = (xs: number[]): MeanSd => {
  const v = xs.filter(Number.isFinite),
    n = v.length;
  const mean = n ? v.reduce((a, b) => a + b, 0) / n : NaN;
  const sd = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, n };
};

const meanOf = (xs: number[]) => meanSd(xs).mean;

function summarise(runs: ToyRun[]): ToySummaryRow[] {
  const rows: ToySummaryRow[] = [];
  const keyOf = (r: ToyRun) => `${r.method}\u0000${r.negatives}`;
  const groups = new Map<string, ToyRun[]>();
  for (const r of runs) groups.set(keyOf(r), [...(groups.get(keyOf(r)) ?? []), r]);
  for (const g of groups.values()) {
    const stat = <T extends Record<string, unknown>>(pick: (r: ToyRun) => T) => {
      const keys = Object.keys(pick(g[0]));
      return Object.fromEntries(
        keys.map((k) => [k, meanSd(g.map((r) => Number((pick(r) as Record<string, unknown>)[k])))]),
      ) as Record<string, MeanSd>;
    };
    rows.push({
      method: g[0].method,
      label: g[0].label,
      negatives: g[0].negatives,
      benchmark: Object.fromEntries(Object.keys(g[0].benchmark).map((c) => [c, meanSd(g.map((r) => r.benchmark[c].accuracy))])),
      train_accuracy_last_quarter: stat((r) => r.train_accuracy_last_quarter),
      held_out_accuracy: stat((r) => r.held_out_accuracy) as Record<HeldOutBranch, MeanSd>,
    });
  }
  return rows;
}

/** the runs the options ask for, in order: methods on edited then synthetic negatives, then the ablations */
export function plannedRuns(o: Pick<ToyOptions, 'methods' | 'ablations'>): Array<{ method: ToyMethod; negatives: Negatives }> {
  const known = [...TOY_METHODS, ...TOY_ABLATIONS].map((m) => m.id);
  const unknown = (o.methods ?? []).filter((m) => !known.includes(m));
  if (unknown.length) throw new Error(`toy-paper: unknown method ${unknown.join(', ')}; the methods are ${known.join(', ')}`);
  const want = (m: ToyMethod) => !o.methods || o.methods.includes(m.id);
  const out: Array<{ method: ToyMethod; negatives: Negatives }> = [];
  for (const negatives of ['edited', 'synthetic'] as const)
    for (const method of TOY_METHODS) if (want(method)) out.push({ method, negatives });
  for (const method of TOY_ABLATIONS)
    if ((o.ablations && !o.methods) || o.methods?.includes(method.id)) out.push({ method, negatives: 'edited' });
  if (!out.length) throw new Error('toy-paper: no run selected');
  return out;
}

export async function toyPaper(rt: Runtime, o: ToyOptions): Promise<ToyResult> {
  const log = o.log ?? (() => {});
  const t00 = performance.now();
  const plan = plannedRuns(o);
  const base = await loadModelDir(rt, o.modelDir);
  const items = shapesBenchmark(o.perCategory);
  const bench = async (engine: Engine) => benchmarkMetrics('', items, await yesNoMargins(engine, base, items)).categories;
  const heldOut = shapesworldSamples(base, shapesworldSet(heldOutSet(o.heldOut, 1)));
  const accs = (b: Record<string, CategoryMetrics>) =>
    Object.entries(b)
      .map(([k, v]) => `${k} ${(100 * v.accuracy).toFixed(1)}%`)
      .join(', ');
  const before = { benchmark: await bench(base.engine), held_out_accuracy: await heldOutAccuracy(base.engine, heldOut) };
  log(`before training: ${accs(before.benchmark)}`);
  const runs: ToyRun[] = [];
  const total = plan.length * o.seeds.length;
  for (const seed of o.seeds) {
    const sets = new Map<Negatives, EngineSample[]>();
    for (const { method, negatives } of plan) {
      const t0 = performance.now();
      if (!sets.has(negatives)) sets.set(negatives, shapesworldSamples(base, shapesworldSet(toySet(o, seed, negatives))));
      const settings = method.settings ?? {};
      resolveObjective(method.objective, settings); // a bad setting fails before any work
      const engine = await Engine.create(rt, base.spec, loadCheckpointDir(o.modelDir), {
        lora: { r: o.rank, alpha: 2 * o.rank, targets: LM_LINEARS },
        seed,
      });
      engine.adoptFeatureCache(base.engine);
      const trainer = new Trainer(engine, sets.get(negatives)!, {
        objective: method.objective,
        objectiveSettings: settings,
        optimizer: { lr: o.lr, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 },
        schedule: { kind: 'cosine', warmupSteps: Math.ceil(o.steps / 10), totalSteps: o.steps },
        batchSize: o.batch,
        gradAccum: 1,
        maxGradNorm: 1,
        seed,
        shuffle: true,
      });
      const curve: ToyRun['curve'] = [];
      for (let s = 0; s < o.steps; s++) {
        const st = await trainer.step();
        const point: ToyRun['curve'][number] = { step: st.step, loss: st.loss };
        for (const k of CURVE_METRICS) if (k in st.metrics) point[k] = st.metrics[k];
        curve.push(point);
      }
      const q = Math.max(1, Math.floor(o.steps / 4));
      const last = curve.slice(-q);
      const accKeys = Object.keys(curve[0]).filter((k) => k.endsWith('rewards/accuracies'));
      const run: ToyRun = {
        method: method.id,
        label: method.label,
        objective: method.objective,
        settings,
        negatives,
        seed,
        train_accuracy_last_quarter: Object.fromEntries(accKeys.map((k) => [k, meanOf(last.map((p) => p[k]))])),
        loss_first_quarter: meanOf(curve.slice(0, q).map((p) => p.loss)),
        loss_last_quarter: meanOf(last.map((p) => p.loss)),
        held_out_accuracy: await heldOutAccuracy(engine, heldOut),
        benchmark: await bench(engine),
        curve,
        seconds: (performance.now() - t0) / 1000,
      };
      runs.push(run);
      log(
        `[${runs.length}/${total}] seed ${seed} ${method.id} on ${negatives}: ${accs(run.benchmark)}; held-out multi ` +
          `${(100 * run.held_out_accuracy.multi).toFixed(1)}% (${run.seconds.toFixed(0)} s)`,
      );
      await engine.release();
    }
  }
  await base.engine.release();
  const { log: _l, ...options } = o;
  return {
    schema: TOY_SCHEMA,
    machine: `${cpus().length} x ${cpus()[0]?.model ?? 'CPU'}`,
    seconds: (performance.now() - t00) / 1000,
    options,
    before,
    runs,
    summary: summarise(runs),
  };
}

/** the budget and the yardstick: runs that agree on these can be reported together */
const COMPARABLE = ['modelDir', 'pairs', 'steps', 'batch', 'lr', 'rank', 'perCategory', 'heldOut', 'priorShare'] as const;

/**
 * Results of separate `toy-paper` runs (parts of the plan run at different times or on different machines)
 * as one: the same budget, yardstick and starting model, no run twice; the summary over all the runs.
 */
export function mergeToyResults(parts: ToyResult[], names: string[] = parts.map((_, i) => `part ${i + 1}`)): ToyResult {
  if (!parts.length) throw new Error('toy-paper --merge: no result to merge');
  const [first] = parts;
  parts.forEach((r, i) => {
    if (r.schema !== TOY_SCHEMA) throw new Error(`${names[i]}: schema ${r.schema}, not ${TOY_SCHEMA}`);
    for (const k of COMPARABLE)
      if (JSON.stringify(r.options[k]) !== JSON.stringify(first.options[k]))
        throw new Error(
          `${names[i]}: options.${k} is ${JSON.stringify(r.options[k])}, ${names[0]}'s ${JSON.stringify(first.options[k])}; only runs with the same budget and yardstick can be reported together`,
        );
    if (JSON.stringify(r.before) !== JSON.stringify(first.before))
      throw new Error(`${names[i]}: its "before training" figures differ from ${names[0]}'s (another model?)`);
  });
  const seen = new Set<string>();
  const runs = parts.flatMap((r, i) =>
    r.runs.map((x) => {
      const key = `seed ${x.seed} ${x.method} on ${x.negatives}`;
      if (seen.has(key)) throw new Error(`${names[i]}: ${key} is in an earlier part too`);
      seen.add(key);
      return x;
    }),
  );
  return {
    ...first,
    seconds: parts.reduce((a, r) => a + r.seconds, 0),
    options: {
      ...first.options,
      seeds: [...new Set(parts.flatMap((r) => r.options.seeds))],
      methods: [...new Set(runs.map((x) => x.method))],
      ablations: parts.some((r) => r.options.ablations),
    },
    runs,
    summary: summarise(runs),
  };
}

const pct = (m: MeanSd | undefined) =>
  m && Number.isFinite(m.mean) ? `${(100 * m.mean).toFixed(1)}±${(100 * m.sd).toFixed(1)}` : '-';

export function formatToy(r: ToyResult): string {
  const cats = Object.keys(r.before.benchmark);
  const branches = Object.keys(HELD_OUT_BRANCHES) as HeldOutBranch[];
  const head =
    `${'method'.padEnd(36)} ${'neg'.padEnd(9)} ` +
    `${cats.map((c) => c.padStart(11)).join(' ')}  ${branches.map((b) => `h/o ${b}`.padStart(14)).join(' ')}`;
  const lines = [
    `benchmark accuracy and held-out reward accuracy, % (mean±sd over ${r.options.seeds.length} seed(s))`,
    head,
    `${'before training'.padEnd(36)} ${''.padEnd(9)} ${cats
      .map((c) => `${(100 * r.before.benchmark[c].accuracy).toFixed(1)}`.padStart(11))
      .join(' ')}  ${branches.map((b) => `${(100 * r.before.held_out_accuracy[b]).toFixed(1)}`.padStart(14)).join(' ')}`,
  ];
  for (const s of r.summary)
    lines.push(
      `${s.label.padEnd(36)} ${s.negatives.padEnd(9)} ${cats.map((c) => pct(s.benchmark[c]).padStart(11)).join(' ')}  ` +
        `${branches.map((b) => pct(s.held_out_accuracy[b]).padStart(14)).join(' ')}`,
    );
  lines.push('', 'training reward accuracy, last quarter of steps, % (mean±sd)');
  for (const s of r.summary)
    lines.push(
      `${s.label.padEnd(36)} ${s.negatives.padEnd(9)} ${Object.entries(s.train_accuracy_last_quarter)
        .map(([k, v]) => `${k} ${pct(v)}`)
        .join(', ')}`,
    );
  lines.push('', `${r.runs.length} runs in ${(r.seconds / 60).toFixed(1)} min on ${r.machine}`);
  return `${lines.join('\n')}\n`;
}

/** a curve's metric over training, mean and sd over the seeds of one method and kind of negatives */
function meanCurve(runs: ToyRun[], metric: string): { points: Array<[number, number]>; band: number[] } | null {
  if (!runs.length || !runs.some((r) => r.curve.some((p) => metric in p))) return null;
  const steps = runs[0].curve.map((p) => p.step);
  const stats = steps.map((_, i) => meanSd(runs.map((r) => r.curve[i]?.[metric] ?? NaN)));
  return { points: steps.map((s, i) => [s, stats[i].mean]), band: stats.map((x) => x.sd) };
}

/**
 * The figures as SVG files in `dir`: Figure 4 (the chosen response's log-prob over training, IC-VCO with and
 * without the anchor loss, single-image and shared context) and Figure 6 (VCDist's gate pass rate and trigger
 * rate, and its KL over the directions that pass the correctness gate). Lines are means over seeds, bands ±sd.
 */
export function toyFigures(r: ToyResult): Record<string, string> {
  const of = (method: string, negatives: Negatives = 'edited') =>
    r.runs.filter((x) => x.method === method && x.negatives === negatives);
  const series = (runs: ToyRun[], metric: string, name: string, color: string, dashed = false) => {
    const c = meanCurve(runs, metric);
    return c ? [{ name, color, dashed, ...c }] : [];
  };
  const full = of('icvco:paper'),
    noAnchor = of('icvco:paper/no-anchor'),
    code = of('icvco:reference-code');
  const out: Record<string, string> = {};
  const fig4 = [
    ...series(full, 'single_logps/chosen', 'IC-VCO, log π(y|m)', '#2563eb'),
    ...series(full, 'multi_logps/chosen', 'IC-VCO, log π(y|M, x̂)', '#16a34a'),
    ...series(noAnchor, 'single_logps/chosen', 'w/o L_Anc, log π(y|m)', '#2563eb', true),
    ...series(noAnchor, 'multi_logps/chosen', 'w/o L_Anc, log π(y|M, x̂)', '#16a34a', true),
  ];
  if (fig4.length)
    out['fig4-chosen-logp.svg'] = lineChart({
      title: 'Chosen log-prob over training (edited negatives)',
      xLabel: 'step',
      yLabel: 'log-prob of the chosen answer (nats)',
      series: fig4,
    });
  const fig6 = [
    ...series(full, 'vcdist_gate_pass_rate', 'gate pass rate (paper)', '#7c3aed'),
    ...series(full, 'vcdist_trigger_rate', 'trigger rate (paper)', '#db2777'),
    ...series(code, 'vcdist_gate_pass_rate', 'gate pass rate (reference code)', '#7c3aed', true),
    ...series(code, 'vcdist_trigger_rate', 'trigger rate (reference code)', '#db2777', true),
  ];
  if (fig6.length)
    out['fig6-vcdist-gates.svg'] = lineChart({
      title: 'VCDist dual gating over training (edited negatives)',
      xLabel: 'step',
      yLabel: 'share of directions',
      yRange: [0, 1],
      series: fig6,
    });
  const kl = [
    ...series(full, 'vcdist_valid_kl', 'valid KL (paper)', '#ea580c'),
    ...series(code, 'vcdist_valid_kl', 'valid KL (reference code)', '#ea580c', true),
  ];
  if (kl.length)
    out['fig6-vcdist-kl.svg'] = lineChart({
      title: 'VCDist KL over the directions that pass the correctness gate',
      xLabel: 'step',
      yLabel: 'KL (nats)',
      series: kl,
    });
  return out;
}
