"""VCO Lab's PyTorch worker: the thin side of `vco-lab train --backend torch`.

The loss lives only in TypeScript (src/loss). A rank of this worker loads a Hugging Face model (any
AutoModelForImageTextToText the installed transformers supports) with a PEFT LoRA adapter, and answers a Node
process over one TCP connection with newline-delimited JSON:

  load       the model, the processor and the adapter (a PEFT folder, or a new LoRA from settings)
  forward    token log-probs of each row's response (input ids from VCO Lab's prompt builder; pixels from the
             model's own processor, or given), policy (adapter on) or reference (adapter off); policy rows can
             keep their autograd graph
  backward   back-propagate sum_rows sum_t w[t] * logp[t] through the kept graphs; w = dL/ds * mask from Node,
             which is exact: the loss depends on the model only through these sequence scores
  step       all-reduce the LoRA gradients (SUM: each rank holds the part of one global loss), clip, AdamW;
             with a DeepSpeed config (load's "deepspeed"), ZeRO stage 1/2 does the reduction, clipping and a
             partitioned AdamW step instead (see DeepSpeedStep)
  grads, save, restore, close

Arrays travel as base64 of little-endian float32 ("f32") or float64 ("f64") with their shape. Launched by Node as
`python -m vco_lab_torch.worker --connect HOST:PORT`, or under torchrun (one connection per rank; the ranks
also form a torch.distributed group for the all-reduce: gloo on the CPU, nccl on GPUs).
"""
import argparse
import base64
import io
import json
import os
import socket
import sys
import time
import traceback

import numpy as np
import torch


def b64(t: torch.Tensor) -> dict:
    a = t.detach().cpu()
    kind = "f64" if a.dtype == torch.float64 else "f32"
    a = a.to(torch.float64 if kind == "f64" else torch.float32).contiguous().numpy()
    return {"dtype": kind, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def unb64(d: dict) -> torch.Tensor:
    dt = np.float64 if d["dtype"] == "f64" else np.float32
    return torch.from_numpy(np.frombuffer(base64.b64decode(d["data"]), dtype=dt).reshape(d["shape"]).copy())


DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Worker:
    def __init__(self):
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.model = None
        self.processor = None
        self.kept = {}
        self.optimizer = None
        self.ds = None
        self.device = torch.device("cpu")
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)

    # ------------------------------------------------------------------ load
    def load(self, m):
        from transformers import AutoModelForImageTextToText
        from peft import LoraConfig, PeftModel, get_peft_model

        if m.get("device", "cpu") == "cuda":
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        dtype = DTYPES[m.get("dtype", "float32")]
        torch.manual_seed(int(m.get("seed", 0)))
        model = AutoModelForImageTextToText.from_pretrained(m["model"], dtype=dtype)
        model.config.use_cache = False
        if m.get("adapter"):
            model = PeftModel.from_pretrained(model, m["adapter"], is_trainable=True)
        else:
            lo = m["lora"]
            model = get_peft_model(
                model,
                LoraConfig(r=lo["r"], lora_alpha=lo["alpha"], target_modules=lo["target_modules"], lora_dropout=0.0),
            )
        # every weight is frozen but LoRA's; dropout off (eval mode), as TRL's DPOTrainer trains (disable_dropout)
        model = model.to(self.device).to(dtype).eval()
        for n, p in model.named_parameters():
            p.requires_grad_("lora_" in n)
        self.model = model
        self.dtype = dtype
        # the image processor loads when image files come (rows usually carry VCO Lab's pixel tiles)
        self.processor = None
        self.model_dir = m["model"]
        self.lora = {self.peft_name(n): p for n, p in model.named_parameters() if "lora_" in n}
        self.optimizer = None
        self.ds = DeepSpeedStep(self, m["deepspeed"]) if m.get("deepspeed") else None
        return {"lora": [{"name": k, "shape": list(p.shape)} for k, p in self.lora.items()], "rank": self.rank, "world": self.world}

    @staticmethod
    def peft_name(n):
        return n.replace(".default", "")

    # ------------------------------------------------------------------ inputs
    def pixels(self, images):
        """pixel_values (and the pixel mask where the family has one) of one row's images, in order"""
        family = self.model.config.model_type
        given = [im for im in images if "pixels" in im]
        if given and len(given) != len(images):
            raise ValueError("a row mixes given pixels and image files")
        if given:
            pv = torch.stack([unb64(im["pixels"]) for im in images]).to(self.device, self.dtype)
            return {"pixel_values": pv[None] if family == "idefics3" else pv}
        if not images:
            return {}
        if self.processor is None:
            if not os.path.exists(os.path.join(self.model_dir, "preprocessor_config.json")):
                raise ValueError("the model folder has no preprocessor_config.json to process image files with")
            from transformers import AutoImageProcessor

            self.processor = AutoImageProcessor.from_pretrained(self.model_dir)
        from PIL import Image

        ims = [Image.open(io.BytesIO(base64.b64decode(im["file"]))).convert("RGB") for im in images]
        if family == "idefics3":
            out = self.processor(images=[ims], return_tensors="pt")
        else:
            out = self.processor(images=ims, return_tensors="pt")
        return {k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype) for k, v in out.items() if k.startswith("pixel")}

    def row_logprobs(self, row):
        ids = torch.tensor([row["ids"]], device=self.device)
        out = self.model(input_ids=ids, **self.pixels(row.get("images", [])))
        lp = torch.log_softmax(out.logits[0].float() if self.dtype != torch.float64 else out.logits[0], -1)
        start = row["response_start"]
        pos = torch.arange(start, ids.shape[1], device=self.device)
        return lp[pos - 1, ids[0, pos]]

    # ------------------------------------------------------------------ commands
    def forward(self, m):
        out = []
        if m["which"] == "reference":
            with torch.no_grad(), self.model.disable_adapter():
                for row in m["rows"]:
                    out.append(b64(self.row_logprobs(row)))
            return {"logprobs": out}
        keep = m.get("keep")
        ctx = torch.enable_grad() if keep else torch.no_grad()
        with ctx:
            for k, row in enumerate(m["rows"]):
                lp = self.row_logprobs(row)
                if keep:
                    self.kept[f"{keep}:{k}"] = lp
                out.append(b64(lp))
        return {"logprobs": out}

    def backward(self, m):
        total = None
        for k, w in enumerate(m["weights"]):
            lp = self.kept.pop(f"{m['handle']}:{k}")
            term = (lp * unb64(w).to(lp.device, lp.dtype)).sum()
            total = term if total is None else total + term
        if total is not None and total.requires_grad:
            if self.ds:
                self.ds.accumulate(total)
            else:
                total.backward()
        return {}

    def drop(self, m):
        for key in [k for k in self.kept if k.startswith(f"{m['handle']}:")]:
            del self.kept[key]
        return {}

    def zero_grad(self, m):
        for p in self.lora.values():
            p.grad = None
        if self.ds:
            self.ds.local.clear()
        return {}

    def all_reduced_grads(self):
        for p in self.lora.values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if self.world > 1:
                torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)

    def grads(self, m):
        if self.ds:
            for k, p in self.lora.items():
                p.grad = self.ds.local.get(k, torch.zeros_like(p)).clone()
        self.all_reduced_grads()
        return {"grads": {k: b64(p.grad) for k, p in self.lora.items()}}

    def step(self, m):
        if self.ds:
            return self.ds.step(m)
        if self.optimizer is None:
            self.optimizer = torch.optim.AdamW(
                list(self.lora.values()), lr=m["lr"], betas=tuple(m["betas"]), eps=m["eps"], weight_decay=m["weight_decay"]
            )
        self.all_reduced_grads()
        params = list(self.lora.values())
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.double()) for p in params]))
        if not torch.isfinite(norm):
            # a non-finite gradient would poison every moment of AdamW: nothing is updated
            bad = next(k for k, p in self.lora.items() if not torch.isfinite(p.grad).all())
            self.zero_grad(m)
            return {"grad_norm": float(norm), "bad": bad}
        if m.get("max_grad_norm"):
            torch.nn.utils.clip_grad_norm_(params, m["max_grad_norm"])
        for g in self.optimizer.param_groups:
            g["lr"] = m["lr"]
        self.optimizer.step()
        self.zero_grad(m)
        return {"grad_norm": float(norm)}

    def save(self, m):
        if self.rank == 0:
            os.makedirs(m["dir"], exist_ok=True)
            self.model.save_pretrained(m["dir"])
            if m.get("optimizer") and self.optimizer is not None:
                torch.save(self.optimizer.state_dict(), os.path.join(m["dir"], "optimizer.pt"))
        if m.get("optimizer") and self.ds:
            # every rank writes its partition of the optimizer state (DeepSpeed's checkpoint layout)
            self.ds.engine.save_checkpoint(os.path.join(m["dir"], "deepspeed"), tag="state", exclude_frozen_parameters=True)
        if self.world > 1:
            torch.distributed.barrier()
        return {}

    def restore(self, m):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        sd = load_file(os.path.join(m["dir"], "adapter_model.safetensors"))
        set_peft_model_state_dict(self.model, sd)
        if self.ds:
            where = os.path.join(m["dir"], "deepspeed")
            if not os.path.isdir(where):
                raise ValueError(f"{m['dir']} has no deepspeed/ folder: it was saved without --deepspeed; resume it the same way")
            # the LoRA weights and each rank's partition of the fp32 master weights and AdamW moments
            self.ds.engine.load_checkpoint(where, tag="state", load_module_strict=False, load_lr_scheduler_states=False)
            return {}
        opt = os.path.join(m["dir"], "optimizer.pt")
        if os.path.exists(opt):
            state = torch.load(opt, weights_only=True)
            self.optimizer = torch.optim.AdamW(list(self.lora.values()), lr=0.0)
            self.optimizer.load_state_dict(state)
        return {}


class DeepSpeedStep:
    """ZeRO stage 1/2 for the LoRA parameters, driven by VCO Lab's Trainer.

    The ranks score different rows with plain autograd, so DeepSpeed's gradient hooks must not fire then (their
    bucketed reductions are collectives that every rank must enter in the same order): each `backward`
    accumulates its gradients with torch.autograd.grad, which leaves .grad and the hooks alone. At the step every
    rank runs one backward of world * sum(p * g) through the engine, the same graph on every rank, whose gradient
    is world * g; DeepSpeed reduces it to its mean over the ranks, i.e. the sum of the ranks' gradients (one
    global loss, as the other path), partitions it, clips with gradient_clipping and steps its partition of
    torch's AdamW (the fp32 master weights and moments live only on their rank), then gathers the weights.
    """

    def __init__(self, w, config):
        import deepspeed

        if not torch.distributed.is_initialized():
            # a single process: a group of one (DeepSpeed always communicates through torch.distributed)
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
            torch.distributed.init_process_group("nccl" if w.device.type == "cuda" else "gloo", rank=0, world_size=1)
        self.w = w
        self.params = list(w.lora.values())
        # lr, betas, eps and weight decay are set from the Trainer's settings at every step
        opt = torch.optim.AdamW(self.params, lr=0.0)
        self.engine, _, _, _ = deepspeed.initialize(model=w.model, optimizer=opt, config=config)
        w.model.eval()
        self.local = {}

    def accumulate(self, total):
        names = list(self.w.lora)
        grads = torch.autograd.grad(total, self.params, allow_unused=True)
        for k, g in zip(names, grads):
            if g is not None:
                self.local[k] = g if k not in self.local else self.local[k] + g

    def step(self, m):
        w = self.w
        local = [self.local.get(k, torch.zeros_like(p)) for k, p in w.lora.items()]
        bad_here = next((k for k, g in zip(w.lora, local) if not torch.isfinite(g).all()), None)
        flag = torch.tensor([1.0 if bad_here else 0.0], device=w.device)
        if w.world > 1:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() > 0:
            # a non-finite gradient would poison every moment of AdamW: nothing is updated, on any rank
            self.local.clear()
            return {"grad_norm": float("nan"), "bad": bad_here or "(a tensor on another rank)"}
        for g in self.engine.optimizer.param_groups:
            g.update(lr=m["lr"], betas=tuple(m["betas"]), eps=m["eps"], weight_decay=m["weight_decay"])
        surrogate = sum((p * g.detach().to(p.dtype)).sum() for p, g in zip(self.params, local)) * w.world
        self.engine.backward(surrogate)
        self.engine.step()
        self.local.clear()
        norm = self.engine.get_global_grad_norm()
        return {"grad_norm": float(norm) if norm is not None else float("nan")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(address):
    host, port = address.rsplit(":", 1)
    w = Worker()
    s = socket.create_connection((host, int(port)))
    f = s.makefile("rwb")

    def send(obj):
        f.write((json.dumps(obj) + "\n").encode())
        f.flush()

    send({"hello": True, "rank": w.rank, "world": w.world, "torch": torch.__version__})
    for line in f:
        m = json.loads(line)
        cmd = m.get("cmd")
        try:
            if cmd == "close":
                send({"id": m.get("id"), "ok": True})
                break
            t0 = time.perf_counter()
            result = getattr(w, cmd)(m)
            # the time the command itself took: Node subtracts it from the round trip to measure the transport
            send({"id": m.get("id"), "ok": True, "compute_s": time.perf_counter() - t0, **result})
        except Exception as e:  # the message reaches the user through Node
            send({"id": m.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})
    if w.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connect", required=True, help="HOST:PORT of the vco-lab process")
    a = ap.parse_args()
    serve(a.connect)


if __name__ == "__main__":
    sys.exit(main())
