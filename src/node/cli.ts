/**
 * `vco-lab`: the Node side of VCO Lab. One subcommand per job; each prints a table for people or, with
 * --json, one JSON object for scripts, and exits non-zero when its check fails.
 */
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { checkLossOnly, loadCase, type LossCheck } from './reference-case.js';
import type { EP } from '../runtime/runtime.js';

const USAGE = `usage: vco-lab <command> [options]

commands:
  reference <case-dir> [--loss-only] [--json]
      Check the engine against a reference case made with HF transformers + PEFT
      (format: ../shared/reference/README.md). --loss-only feeds the case's expected
      token log-probs to the loss module and checks both IC-VCO presets' loss, dL/ds
      and VCDist gates. Exits 1 when any error is over tolerance.
  bench [ops] [--ep cpu|webgpu|cuda] [--sizes 256,512,1024] [--json] [--out FILE]
      Benchmarks. ops: MatMul throughput of onnxruntime-node used directly next to the
      same graphs through the project's runtime layer, and their ratio (one run).
      --out writes the JSON result to FILE as well.
  help
      Show this text.
`;

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s),
  err: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'reference':
        return reference(rest, out, err);
      case 'bench':
        return await bench(rest, out, err);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        err(`vco-lab: unknown command "${cmd}"\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    err(`vco-lab ${cmd}: ${(e as Error).message}\n`);
    return 1;
  }
}

function reference(args: string[], out: (s: string) => void, err: (s: string) => void): number {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { 'loss-only': { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
  });
  if (positionals.length !== 1) {
    err(`vco-lab reference: expected one case folder, got ${positionals.length}\n\n${USAGE}`);
    return 2;
  }
  if (!values['loss-only']) {
    err('vco-lab reference: running the model on a case is not available in this build yet; pass --loss-only ' +
      'to check the loss module on the case\'s expected log-probs\n');
    return 2;
  }
  const result = checkLossOnly(loadCase(positionals[0]));
  out(values.json ? `${JSON.stringify(result, null, 1)}\n` : formatLossCheck(result));
  return result.pass ? 0 : 1;
}

async function bench(args: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { ep: { type: 'string', default: 'cpu' }, sizes: { type: 'string' }, json: { type: 'boolean', default: false },
      out: { type: 'string' } },
  });
  const suites = positionals.length ? positionals : ['ops'];
  const known = ['ops'];
  const bad = suites.filter((s) => !known.includes(s));
  if (bad.length) {
    err(`vco-lab bench: unknown suite ${bad.join(', ')}; suites: ${known.join(', ')}\n`);
    return 2;
  }
  const ep = values.ep as EP;
  const sizes = values.sizes?.split(',').map(Number);
  if (sizes?.some((n) => !Number.isInteger(n) || n <= 0)) {
    err(`vco-lab bench: --sizes takes positive integers separated by commas, got "${values.sizes}"\n`);
    return 2;
  }
  const { benchOps, OPS_HEADER } = await import('./bench-ops.js');
  if (!values.json) out(`bench ops on ${ep}\n${OPS_HEADER}\n`);
  const result = await benchOps({ ep, sizes, log: values.json ? undefined : (s) => out(`${s}\n`) });
  const text = JSON.stringify(result, null, 1);
  if (values.out) writeFileSync(values.out, `${text}\n`);
  if (values.json) out(`${text}\n`);
  else out(`layer/raw geometric mean ${result.layer_over_raw_geomean.toFixed(3)}\nruntime: ${result.detail}; ${result.machine.cpus} x ${result.machine.model}\n`);
  return 0;
}

function formatLossCheck(r: LossCheck): string {
  const e = (x: number) => x.toExponential(2);
  const lines = [`reference case ${r.case} (${r.family}), loss only`, ''];
  lines.push('preset           loss            rel err   dL/ds err  margin err prob err  gates  ok');
  for (const [name, p] of Object.entries(r.presets)) {
    lines.push(`${name.padEnd(16)} ${p.loss.value.toFixed(12).padEnd(15)} ${e(p.loss.rel_err)}  ${e(p.dlds_max_abs_err)}` +
      `   ${e(p.h_max_abs_err)}   ${e(p.p_max_abs_err)} ${String(p.gate_mismatches).padStart(3)}    ${p.pass ? 'yes' : 'NO'}`);
  }
  lines.push('', `tolerances: loss ${r.tolerances.loss_rel} relative, dL/ds ${r.tolerances.dlds_abs} absolute; ` +
    (r.pass ? 'PASS' : 'FAIL'), '');
  return lines.join('\n');
}
