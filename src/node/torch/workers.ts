/**
 * The PyTorch backend's processes, seen from Node: `python -m vco_lab_torch.worker` (one rank), or the same
 * module under torchrun (N ranks, a torch.distributed group among them), each connected to a TCP server on the
 * loopback interface that this module opens. Requests and replies are newline-delimited JSON (python/
 * vco_lab_torch/worker.py); arrays travel as base64 float32/float64. The loss stays here, in src/loss.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { REPO_ROOT } from '../model-dir.js';

export interface B64Array {
  dtype: 'f32' | 'f64';
  shape: number[];
  data: string;
}

export function toB64(x: Float32Array | Float64Array, shape: number[]): B64Array {
  return {
    dtype: x instanceof Float64Array ? 'f64' : 'f32',
    shape,
    data: Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64'),
  };
}

export function fromB64(a: B64Array): Float32Array | Float64Array {
  const b = Buffer.from(a.data, 'base64');
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return a.dtype === 'f64' ? new Float64Array(copy.buffer) : new Float32Array(copy.buffer);
}

/** the Python that runs the worker: VCO_LAB_PYTHON, else the repository's .venv-torch, else python3 */
export function torchPython(): string {
  if (process.env.VCO_LAB_PYTHON) return process.env.VCO_LAB_PYTHON;
  const venv = join(REPO_ROOT, '.venv-torch', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

interface Rank {
  socket: Socket;
  rank: number;
  buffer: string;
  waiting: Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>;
}

export class TorchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TorchError';
  }
}

export class TorchWorkers {
  private nextId = 1;
  private constructor(
    private readonly server: Server,
    private readonly proc: ChildProcess,
    readonly ranks: Rank[],
    private readonly stderr: () => string,
  ) {}

  /** start `nproc` ranks (torchrun when more than one) and wait until each has connected */
  static async start(
    o: { nproc?: number; nnodes?: number; host?: string; python?: string; timeoutMs?: number; log?: (s: string) => void } = {},
  ): Promise<TorchWorkers> {
    const nproc = o.nproc ?? 1,
      nnodes = o.nnodes ?? 1,
      n = nproc * nnodes;
    const host = o.host ?? '127.0.0.1';
    const python = o.python ?? torchPython();
    const server = createServer();
    // other nodes' ranks connect over the network; a single node's stay on the loopback interface
    await new Promise<void>((res) => server.listen(0, nnodes > 1 ? '0.0.0.0' : '127.0.0.1', res));
    const { port } = server.address() as AddressInfo;
    const target = ['-m', 'vco_lab_torch.worker', '--connect', `${host}:${port}`];
    const run = (rank: number) => [
      '-m',
      'torch.distributed.run',
      '--nproc_per_node',
      String(nproc),
      '--nnodes',
      String(nnodes),
      '--node_rank',
      String(rank),
      '--master_addr',
      host,
      '--master_port',
      String(port + 1),
      ...target,
    ];
    const args = n > 1 ? run(0) : target;
    if (nnodes > 1)
      o.log?.(
        `start the other ${nnodes - 1} node(s) with (node_rank 1..${nnodes - 1}):\n  PYTHONPATH=${join(REPO_ROOT, 'python')} python ${run(1).join(' ').replace('--node_rank 1', '--node_rank K')}`,
      );
    const env = { ...process.env, PYTHONPATH: [join(REPO_ROOT, 'python'), process.env.PYTHONPATH].filter(Boolean).join(':') };
    const proc = spawn(python, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    proc.stderr!.on('data', (d) => {
      err = (err + d).slice(-20_000);
    });
    const ranks: Rank[] = [];
    const connected = new Promise<void>((resolve, reject) => {
      const fail = (why: string) =>
        reject(
          new TorchError(
            `the PyTorch worker (${python} ${args.join(' ')}) ${why}${err ? `:\n${err.trim().split('\n').slice(-12).join('\n')}` : ''}\n` +
              'It needs torch, transformers and peft: `python3 -m venv .venv-torch && .venv-torch/bin/pip install torch -e python/` ' +
              '(or set VCO_LAB_PYTHON to a Python that has them)',
          ),
        );
      proc.on('error', (e) => fail(`did not start (${e.message})`));
      proc.on('exit', (code) => {
        if (ranks.length < n) fail(`exited with code ${code} before all ${n} rank(s) connected`);
      });
      const timer = setTimeout(() => fail(`did not connect within ${(o.timeoutMs ?? 300_000) / 1000} s`), o.timeoutMs ?? 300_000);
      server.on('connection', (socket) => {
        const r: Rank = { socket, rank: -1, buffer: '', waiting: new Map() };
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => {
          r.buffer += chunk;
          for (let nl = r.buffer.indexOf('\n'); nl >= 0; nl = r.buffer.indexOf('\n')) {
            const line = r.buffer.slice(0, nl);
            r.buffer = r.buffer.slice(nl + 1);
            const msg = JSON.parse(line) as Record<string, unknown>;
            if (msg.hello) {
              r.rank = msg.rank as number;
              ranks.push(r);
              if (ranks.length === n) {
                clearTimeout(timer);
                ranks.sort((a, b) => a.rank - b.rank);
                resolve();
              }
              continue;
            }
            const w = r.waiting.get(msg.id as number);
            r.waiting.delete(msg.id as number);
            if (!w) continue;
            if (msg.ok) w.resolve(msg);
            else w.reject(new TorchError(`PyTorch worker rank ${r.rank}: ${msg.error as string}`));
          }
        });
        socket.on('close', () => {
          for (const w of r.waiting.values())
            w.reject(
              new TorchError(
                `PyTorch worker rank ${r.rank} closed the connection${err ? `:\n${err.trim().split('\n').slice(-8).join('\n')}` : ''}`,
              ),
            );
          r.waiting.clear();
        });
      });
    });
    try {
      await connected;
    } catch (e) {
      proc.kill();
      server.close();
      throw e;
    }
    return new TorchWorkers(server, proc, ranks, () => err);
  }

  get size(): number {
    return this.ranks.length;
  }

  /** seconds spent in requests (wall, on rank 0) and in the worker's commands: their difference is the transport */
  readonly timing = { wall: 0, compute: 0 };

  /** one request to one rank */
  request<T = Record<string, unknown>>(rank: number, cmd: string, body: Record<string, unknown> = {}): Promise<T> {
    const r = this.ranks[rank];
    const id = this.nextId++;
    const t0 = performance.now();
    return new Promise<T>((resolve, reject) => {
      r.waiting.set(id, {
        resolve: (v: Record<string, unknown>) => {
          if (rank === 0) {
            this.timing.wall += (performance.now() - t0) / 1000;
            this.timing.compute += Number(v.compute_s ?? 0);
          }
          (resolve as (v: Record<string, unknown>) => void)(v);
        },
        reject,
      });
      r.socket.write(`${JSON.stringify({ id, cmd, ...body })}\n`);
    });
  }

  /** the same request to every rank (collectives such as the gradient all-reduce need all of them) */
  all<T = Record<string, unknown>>(
    cmd: string,
    body: Record<string, unknown> | ((rank: number) => Record<string, unknown>) = {},
  ): Promise<T[]> {
    return Promise.all(this.ranks.map((_, i) => this.request<T>(i, cmd, typeof body === 'function' ? body(i) : body)));
  }

  async close(): Promise<void> {
    try {
      await Promise.race([this.all('close'), new Promise((r) => setTimeout(r, 5000))]);
    } catch {
      /* a worker that already failed */
    }
    this.proc.kill();
    this.server.close();
  }

  /** the workers' recent stderr (for messages) */
  log(): string {
    return this.stderr();
  }
}
