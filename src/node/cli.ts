/**
 * `vco-lab`: the Node side of VCO Lab. One subcommand per job; each prints a table for people or, with
 * --json, one JSON object for scripts, and exits non-zero when its check fails.
 */
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { checkLossOnly, loadCase, type LossCheck } from './reference-case.js';
import type { EP } from '../runtime/runtime.js';
import { UsageError } from './options.js';
import { progressReporter } from './progress.js';

const USAGE = `usage: vco-lab <command> [options]

commands:
  reference <case-dir> [--loss-only] [--device cpu|webgpu] [--backend ort|torch] [--json]
      Check the engine against a reference case made with HF transformers + PEFT
      (format: ../shared/reference/README.md). By default it loads the case's model
      and adapter, computes every sequence's policy and reference token log-probs with
      the project's own graphs, both IC-VCO presets' loss, and the LoRA gradients, and
      compares them with the case (log-probs 1e-4 absolute, 1e-3 on webgpu; loss 1e-5
      relative; LoRA gradients 1e-3 relative to each tensor's largest entry).
      --loss-only feeds the case's expected token log-probs to the loss module instead
      and checks both presets' loss, dL/ds and VCDist gates (1e-9). --backend torch runs
      the model in the PyTorch worker (transformers + PEFT) with the loss from here.
      Exits 1 when any error is over tolerance.
  bench [ops] [int4] [train] [page] [page-train] [--quick] [--ep cpu|webgpu|cuda] [--sizes 256,512,1024]
        [--models smolvlm,llava] [--backend ort|torch] [--json] [--out FILE]
      Benchmarks (ops and train when none is named). ops: MatMul throughput of
      onnxruntime-node used directly next to the same graphs through the project's
      runtime layer, and their ratio (one run). int4: how far int4 frozen linears move
      the per-token log-probs from float32 on a SmolVLM-256M-shaped model with random
      weights. train: scoring and training one preference sample (48-token answers) on
      SmolVLM-256M- and llava-interleave-0.5b-shaped models, with the packed/naive,
      cached/recomputed-features and top-k/all-layers ratios measured in the same run.
      page: the playground in headless Chromium: the inspector's scoring time in the page
      against the Node engine's on the same EP and sample, the longest main-thread task,
      and a SmolVLM-256M-shaped checkpoint loaded by URL from another origin (load time,
      GPU buffer memory fp32 and int4, a second load from IndexedDB, scoring on wasm).
      page-train: LoRA training in the page: an IC-VCO step on the default model in the
      page against the Node engine's on the same EP (WebGPU and wasm), and the GPU buffer
      memory of a SmolVLM-256M-shaped int4 base training LoRA r=16 in the page (slow on a
      CPU Vulkan; --quick leaves it out).
      train --backend torch: the PyTorch worker against the ORT engine on the same model
      folder and sample (scoring, a training step; the default model, and the SmolVLM-256M
      shape without --quick), and the loss round trip's share of a torch step.
      --quick: only a smaller SmolVLM-shaped scoring run (under 3 minutes), whose JSON
      has packed_vs_naive_speedup (page: without the 256M-shaped part). --out writes the
      JSON results to FILE as well.
  eval [--model DIR] [--adapter DIR] [--n N] [--seed S] [--batch B] [--device cpu|webgpu] [--json]
      The ShapesWorld hallucination benchmark (yes/no questions in the style of POPE/AMBER:
      existence, attribute, relation, a "trap" subset where the language prior and the
      image disagree, and "two-image": an edit pair shown together, the question with the
      anchor instruction, about the fact that differs), answered by comparing log p("Yes")
      and log p("No") after the prompt.
      Accuracy, F1 and yes-ratio per category. No --model: the embedded default model
      (models/shapesworld-tiny). --adapter: a PEFT LoRA folder on top. --n: questions per
      category (200).
  train-default [--stage K [--init DIR]] [--steps N] [--batch B] [--lr X] [--seed S]
        [--star-yellow P] [--mixture kind=share,...] [--two-image P] [--position-init normal|sincos-2d]
        [--layers N] [--eval-every N] [--out DIR] [--json]
      Retrain the embedded default model from scratch (every weight, ORT CPU EP) on a fresh
      stream of ShapesWorld SFT examples where stars are yellow with probability P (0.95:
      the planted language prior), in the recipe's two stages (src/train/pretrain.ts), then
      run the benchmark. Writes the HF model folder (default models/shapesworld-tiny)
      atomically, with training.json (time, machine, loss curves, benchmark) and a model
      card. --stage K runs one stage (K > 1 continues --init DIR); --steps etc. override
      the stage's settings; --eval-every N runs a 50-per-category benchmark every N steps.
      Recipe experiments: --mixture sets the SFT question kinds' shares (describe, existence,
      attribute, color, count, relation, where; they sum to 1), --two-image the share of
      two-image batches with the anchor instruction, --position-init the vision position
      embedding of a fresh start (sincos-2d: MAE's 2-D sin-cos code), --layers the language
      model's depth (with --init, extra layers go on top with zero output projections, so
      training starts from the folder's exact log-probs).
  train [--config run.json] [--<field> value ...] [--print-config] | train --resume DIR
      LoRA preference training of any model folder the loaders read, with any objective of
      the loss module, on ShapesWorld (generated), an IC-VCO JSONL file, or a folder in the
      official layout (preference/train/metadata.parquet + images/). Fields have the names of
      HF TrainingArguments / TRL DPOConfig / PEFT (learning_rate, per_device_train_batch_size,
      lora_r, ...) and the official VCOConfig's (beta, single_weight, vcdist_threshold, ...);
      --print-config shows them with their defaults. Writes output_dir: run.json, metrics.jsonl,
      checkpoint-N/ (PEFT adapter + resumable state), adapter/, train_results.json. Every row
      is checked before the first step; Ctrl-C saves and exits; --resume continues bit for bit.
  toy-paper [--quick] [--model DIR] [--pairs N] [--steps N] [--batch B] [--lr X] [--rank R] [--n N]
        [--held-out N] [--seeds 1,2,3] [--prior-share P] [--methods dpo,icvco:paper,...] [--no-ablations]
        [--json] [--out FILE] [--figures DIR]      toy-paper --merge A.json,B.json [--json] [--out] [--figures]
      The paper's Tables 2-4 and Figures 4 and 6 at toy scale: LoRA preference training of
      the default model with DPO, mDPO, image-swap visual DPO, S-VCO, SymMPO (no L_DPO_m) and
      IC-VCO (paper and reference-code presets), each on edited and on synthetic negatives
      of the same seed tuples with the same budget, and IC-VCO's Table 4 ablations on edited
      negatives; one run per seed. Reports the benchmark after each run, the training reward
      accuracies per branch (last quarter), and held-out reward accuracies on one yardstick
      (single-image, shared-context, image-swap), as mean +- sd over seeds; --json prints
      the schema of docs/toy-paper-schema.md; --figures writes the SVG figures.
      --quick: every method once, short (a smoke test, under 10 minutes). --merge: the results
      of separate runs (--out files of the same budget) reported as one.
  margins [--model DIR] [--adapter DIR] (--image-m A.png --image-mprime B.png --question Q
        --chosen Y --rejected Y2 [--chosen-spans 4-10] [--rejected-spans 4-9] | --shapesworld SEED
        [--edit existence|attribute|relation] [--negative edited|synthetic]) [--objective ID]
        [--settings JSON] [--order m-first|mprime-first] [--int4] [--device cpu|webgpu] [--json]
      The margin inspector: one preference sample scored in every context (m, m', the shared
      two-image context under each anchor, and the text-only x), policy (with the adapter)
      against reference (without), the margins h_single/h_multi, p_single/p_multi, the VCDist
      gates, position bias, and the objective's loss, terms and dL/ds. --json prints the
      schema of the playground's "Export JSON" (docs/margins-schema.md).
  data export|check|similarity ...
      ShapesWorld data: export preference or SFT sets in the official IC-VCO JSONL + PNG
      format, check a JSONL file, report edited-vs-synthetic image similarity
      (vco-lab data help).
  help
      Show this text.
`;

export async function main(
  argv: string[],
  out: (s: string) => void = (s) => process.stdout.write(s),
  err: (s: string) => void = (s) => process.stderr.write(s),
): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'reference':
        return await reference(rest, out, err);
      case 'bench':
        return await bench(rest, out, err);
      case 'eval':
        return await (await import('./shapes-cli.js')).evalCommand(rest, out, err);
      case 'train-default':
        return await (await import('./shapes-cli.js')).trainDefaultCommand(rest, out, err);
      case 'train':
        return await (await import('./train.js')).trainCommand(rest, out, err);
      case 'toy-paper':
        return await (await import('./shapes-cli.js')).toyPaperCommand(rest, out, err);
      case 'data':
        return await (await import('./data-cli.js')).dataCommand(rest, out, err);
      case 'margins':
        return await (await import('./margins-cli.js')).marginsCommand(rest, out);
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
    // a wrong command line (an unknown option, a value out of range) is a usage error: exit 2
    const code = (e as { code?: string }).code;
    return e instanceof UsageError || code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
  }
}

async function reference(args: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'loss-only': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      device: { type: 'string', default: 'cpu' },
      backend: { type: 'string', default: 'ort' },
    },
  });
  if (values.backend !== 'ort' && values.backend !== 'torch')
    throw new UsageError(`--backend takes ort (the project's engine) or torch (transformers + PEFT), got "${values.backend}"`);
  if (positionals.length !== 1) {
    err(`vco-lab reference: expected one case folder, got ${positionals.length}\n\n${USAGE}`);
    return 2;
  }
  const c = loadCase(positionals[0]);
  if (values['loss-only']) {
    const result = checkLossOnly(c);
    out(values.json ? `${JSON.stringify(result, null, 1)}\n` : formatLossCheck(result));
    return result.pass ? 0 : 1;
  }
  const device = values.device as EP;
  if (device !== 'cpu' && device !== 'webgpu' && device !== 'cuda') {
    err(`vco-lab reference: --device must be cpu, webgpu or cuda, not "${values.device}"\n`);
    return 2;
  }
  const progress = progressReporter(err);
  const result =
    values.backend === 'torch'
      ? await (await import('./torch/reference.js')).checkModelTorch(c, { log: progress })
      : await (await import('./reference-model.js')).checkModel(c, device, progress);
  progress.done();
  out(values.json ? `${JSON.stringify(result, null, 1)}\n` : formatModelCheck(result));
  return result.pass ? 0 : 1;
}

function formatModelCheck(r: import('./reference-model.js').ModelCheck): string {
  const e = (x: number) => x.toExponential(2);
  const lines = [
    '',
    `reference case ${r.case} (${r.family}), model on ${r.device}: ${r.sequences} sequences`,
    `runtime: ${r.runtime}`,
    '',
    `token log-probs   policy max |err| ${e(r.logprobs.policy_max_abs_err)}   reference ${e(r.logprobs.reference_max_abs_err)}` +
      `   (tolerance ${r.tolerances.logprob_abs})`,
    '',
    'preset           loss            rel err   LoRA grad rel err   zero tensors  ok',
  ];
  for (const [name, p] of Object.entries(r.presets)) {
    lines.push(
      `${name.padEnd(16)} ${p.loss.value.toFixed(10).padEnd(15)} ${e(p.loss.rel_err)}  ${e(p.lora_grad_max_rel_err).padEnd(19)} ` +
        `${String(p.zero_tensors).padStart(4)}${p.zero_tensors_nonzero.length ? ` (${p.zero_tensors_nonzero.length} NOT zero)` : ''}` +
        `          ${p.pass ? 'yes' : 'NO'}`,
    );
  }
  lines.push('', r.pass ? 'PASS' : 'FAIL', '');
  return lines.join('\n');
}

async function bench(args: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ep: { type: 'string', default: 'cpu' },
      sizes: { type: 'string' },
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      models: { type: 'string' },
      backend: { type: 'string', default: 'ort' },
    },
  });
  if (values.backend !== 'ort' && values.backend !== 'torch')
    throw new UsageError(`--backend takes ort or torch, got "${values.backend}"`);
  const known = ['ops', 'int4', 'train', 'page', 'page-train'];
  // the default run: the runtime layer's overhead and the training engine (int4's accuracy is its own suite)
  const suites = positionals.length ? positionals : values.quick ? ['train'] : ['ops', 'train'];
  const bad = suites.filter((x) => !known.includes(x));
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
  const results: Record<string, unknown> = {};
  for (const suite of suites) {
    if (suite === 'ops') {
      const { benchOps, OPS_HEADER } = await import('./bench-ops.js');
      if (!values.json) out(`bench ops on ${ep}\n${OPS_HEADER}\n`);
      const r = await benchOps({ ep, sizes, log: values.json ? undefined : (x) => out(`${x}\n`) });
      results.ops = r;
      if (!values.json)
        out(
          `layer/raw geometric mean ${r.layer_over_raw_geomean.toFixed(3)}\nruntime: ${r.detail}; ${r.machine.cpus} x ${r.machine.model}\n\n`,
        );
    } else if (suite === 'train' && values.backend === 'torch') {
      const { benchTorch, formatTorchBench } = await import('./bench-torch.js');
      const r = await benchTorch({ quick: values.quick, log: values.json ? undefined : (x) => err(`  ${x}\n`) });
      results.train = r;
      if (!values.json) out(formatTorchBench(r));
    } else if (suite === 'train') {
      const { benchTrain, formatTrainBench } = await import('./bench-train.js');
      const models = values.models?.split(',');
      const r = await benchTrain({ ep, quick: values.quick, models, log: values.json ? undefined : (x) => err(`  ${x}\n`) });
      results.train = r;
      if (!values.json) out(`${formatTrainBench(r)}\n`);
    } else if (suite === 'page') {
      const { benchPage, formatPageBench } = await import('./bench-page.js');
      const r = await benchPage({ realSize: !values.quick, log: values.json ? undefined : (x) => err(`  ${x}\n`) });
      results.page = r;
      if (!values.json) out(formatPageBench(r));
    } else if (suite === 'page-train') {
      const { benchPageTrain, formatPageTrainBench } = await import('./bench-page-train.js');
      const r = await benchPageTrain({ memory: !values.quick, log: values.json ? undefined : (x) => err(`  ${x}\n`) });
      results['page-train'] = r;
      if (!values.json) out(formatPageTrainBench(r));
    } else if (suite === 'int4') {
      const { benchInt4 } = await import('./bench-int4.js');
      const r = await benchInt4({ ep });
      results.int4 = r;
      if (!values.json) {
        out(
          `bench int4 on ${ep}: ${r.model}, ${r.response_tokens} response tokens\n` +
            `  |log p int4 - log p fp32| per token: max ${r.max_abs_dev.toFixed(4)}, mean ${r.mean_abs_dev.toFixed(4)} nats\n` +
            `  sequence score (sum over the response) moves by ${r.sequence_score_dev.toFixed(4)} nats` +
            ` (fp32 mean log p ${r.fp32_mean_logprob.toFixed(3)})\n` +
            `  one scoring pass: fp32 ${r.fp32_ms.toFixed(0)} ms, int4 ${r.int4_ms.toFixed(0)} ms\n\n`,
        );
      }
    }
  }
  const text = JSON.stringify(suites.length === 1 ? results[suites[0]] : results, null, 1);
  if (values.out) writeFileSync(values.out, `${text}\n`);
  if (values.json) out(`${text}\n`);
  return 0;
}

function formatLossCheck(r: LossCheck): string {
  const e = (x: number) => x.toExponential(2);
  const lines = [`reference case ${r.case} (${r.family}), loss only`, ''];
  lines.push('preset           loss            rel err   dL/ds err  margin err prob err  gates  ok');
  for (const [name, p] of Object.entries(r.presets)) {
    lines.push(
      `${name.padEnd(16)} ${p.loss.value.toFixed(12).padEnd(15)} ${e(p.loss.rel_err)}  ${e(p.dlds_max_abs_err)}` +
        `   ${e(p.h_max_abs_err)}   ${e(p.p_max_abs_err)} ${String(p.gate_mismatches).padStart(3)}    ${p.pass ? 'yes' : 'NO'}`,
    );
  }
  lines.push(
    '',
    `tolerances: loss ${r.tolerances.loss_rel} relative, dL/ds ${r.tolerances.dlds_abs} absolute; ` + (r.pass ? 'PASS' : 'FAIL'),
    '',
  );
  return lines.join('\n');
}
