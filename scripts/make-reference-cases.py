"""Reference cases the shared set (../shared/reference) lacks, made with the same generator (refgen.py: HF
transformers + PEFT in float64) and written to tests/fixtures/reference/:

- idefics3-attnbias-llama3rope: a Llama LM with attention_bias (q/k/v and o_proj biases) and llama3 RoPE scaling
- llava-linearrope-legacy-tied: a Qwen2 LM with linear RoPE scaling and tied word embeddings, saved in llava-hf's
  legacy key layout (language_model.model.*, vision_tower.*, multi_modal_projector.*; no lm_head)

Run: python3 scripts/make-reference-cases.py  (needs torch, transformers 5.17, peft 0.21, safetensors)
"""
import os, sys, json

HERE = os.path.dirname(os.path.abspath(__file__))
REFGEN = os.environ.get("REFGEN", os.path.join(HERE, "..", "..", "shared", "reference", "refgen.py"))
os.environ["OUT"] = os.path.join(HERE, "..", "tests", "fixtures", "reference")
src = open(REFGEN).read()
# the generator's definitions only (its own case list and GPU timings follow "CASES = [")
exec(compile(src.split("\nCASES = [")[0], REFGEN, "exec"))

LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=64, rope_theta=10000.0)
make_case("idefics3", 51, "attnbias-llama3rope",
          dict(text=dict(attention_bias=True, rope_parameters=LLAMA3)), None)
make_case("llava", 52, "linearrope-legacy-tied",
          dict(text=dict(tie_word_embeddings=True, rope_parameters=dict(rope_type="linear", factor=2.0, rope_theta=1000000.0))),
          dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))

# the LLaVA case's weights in the legacy layout: what transformers 4 wrote for llava-hf checkpoints
from safetensors.torch import load_file, save_file
d = os.path.join(os.environ["OUT"], "llava-linearrope-legacy-tied", "model")
w = load_file(os.path.join(d, "model.safetensors"))
legacy = {}
for k, v in w.items():
    if k == "lm_head.weight":
        continue  # tied: the embeddings serve as lm_head
    if k.startswith("model.language_model."):
        k = "language_model.model." + k[len("model.language_model."):]
    elif k.startswith("model."):
        k = k[len("model."):]
    legacy[k] = v
save_file(legacy, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
log("legacy layout", sorted(legacy)[:3], "...", len(legacy), "tensors")
