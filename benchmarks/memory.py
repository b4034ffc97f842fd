"""Expected peak GPU memory of one AgentPRM / InversePRM iteration, on paper, with the arithmetic shown.

The project keeps ONE 4-bit base model and gives every role its own LoRA adapter (policy π_i, reference π_{i-1},
PRM Q_i + a scalar head, value V^μ + head). The alternative is three separate bf16 models (policy, reference,
PRM), which is what full fine-tuning pipelines such as the official code (DeepSpeed, 6 GPUs) hold.

    python benchmarks/memory.py                 # the table (pure arithmetic, instant)
    python benchmarks/memory.py --measure       # also quantize a RANDOM model with Llama-3.2-3B's config to
                                                # 4 bits on this machine and report its parameter memory
                                                # (needs ~10 GB RAM and a few minutes on CPU; no download)
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import tempfile
import time

GiB = 1024 ** 3


@dataclasses.dataclass
class LlamaShape:
    name: str
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_params(self) -> int:
        """Parameters in the decoder's linear layers (what 4-bit quantization and LoRA apply to)."""
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        per_layer = h * h + 2 * h * kv + h * h + 3 * h * i  # q, k, v, o, gate, up, down
        return per_layer * self.layers

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def total_params(self) -> int:
        return self.linear_params() + self.embedding_params() + self.layers * 2 * self.hidden + self.hidden

    def lora_params(self, r: int) -> int:
        """LoRA on every linear layer ("all-linear"): r * (in + out) per matrix."""
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        per_layer = r * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h))
        return per_layer * self.layers

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * bytes_per_value


LLAMA_3_2_1B = LlamaShape("llama-3.2-1b", vocab=128256, hidden=2048, intermediate=8192, layers=16, heads=32,
                          kv_heads=8, tied=True)
LLAMA_3_2_3B = LlamaShape("llama-3.2-3b", vocab=128256, hidden=3072, intermediate=8192, layers=28, heads=24,
                          kv_heads=8, tied=True)


def estimate(shape: LlamaShape, lora_r: int = 16, gen_batch: int = 16, context: int = 2048, train_seqs: int = 8,
             response_tokens: int = 48) -> dict[str, float]:
    """Peak memory in GiB for both layouts; every term is returned so the table can show the arithmetic."""
    nf4 = 0.5 + 0.5 / 64 + 4 / (64 * 256)  # 4 bits + an 8-bit absmax per 64 (double-quantized) + fp32 per 256 absmax
    base_4bit = shape.linear_params() * nf4 + shape.embedding_params() * 2  # embeddings stay bf16
    lora = shape.lora_params(lora_r)
    adapters = 4 * lora * 4  # 4 roles, fp32 LoRA weights
    optimizer = lora * 4 * 3  # gradients + Adam m, v for the ONE adapter being trained
    kv_cache = gen_batch * context * shape.kv_bytes_per_token()  # generation (rollouts, DPO samples, BoN)
    # training activations with gradient checkpointing: one bf16 hidden state per layer per token, plus the
    # recomputed layer (MLP intermediate dominates) and fp32 logits on the response positions only
    checkpoints = train_seqs * context * shape.hidden * 2 * shape.layers
    recompute = train_seqs * context * shape.intermediate * 2 * 3
    logits = train_seqs * response_tokens * shape.vocab * 4 * 2
    shared = base_4bit + adapters + optimizer + max(kv_cache, checkpoints + recompute + logits)
    bf16_models = 3 * shape.total_params() * 2
    full_ft_optimizer = shape.total_params() * (4 + 4 + 4 + 2)  # fp32 master + Adam m, v + bf16 grads (policy)
    separate = bf16_models + full_ft_optimizer + max(kv_cache, checkpoints + recompute + logits)
    return {k: v / GiB for k, v in {
        "base_4bit": base_4bit, "lora_adapter_fp32": lora * 4, "four_adapters": adapters, "optimizer_one_adapter": optimizer,
        "kv_cache_generation": kv_cache, "activations_training": checkpoints + recompute + logits,
        "peak_shared_4bit": shared, "three_bf16_models": bf16_models, "full_ft_optimizer": full_ft_optimizer,
        "peak_separate_bf16": separate}.items()}


def table(lora_r: int, gen_batch: int, context: int, train_seqs: int) -> str:
    lines = [f"Assumptions: LoRA r={lora_r} on all linear layers, generation batch {gen_batch} x {context} tokens "
             f"(bf16 KV cache), training micro-batch {train_seqs} sequences x {context} tokens with gradient "
             f"checkpointing, fp32 logits on 48 response tokens only.", "",
             "| | llama-3.2-1b | llama-3.2-3b |", "| --- | ---: | ---: |"]
    rows = {s.name: estimate(s, lora_r, gen_batch, context, train_seqs) for s in (LLAMA_3_2_1B, LLAMA_3_2_3B)}
    a, b = rows["llama-3.2-1b"], rows["llama-3.2-3b"]
    fmt = lambda k, label: f"| {label} | {a[k]:.2f} GiB | {b[k]:.2f} GiB |"  # noqa: E731
    lines += [
        f"| parameters | {LLAMA_3_2_1B.total_params() / 1e9:.2f} B | {LLAMA_3_2_3B.total_params() / 1e9:.2f} B |",
        fmt("base_4bit", "shared base, NF4 (linear layers 4.13 bits/param; embeddings bf16)"),
        fmt("four_adapters", "4 LoRA adapters (policy, reference, PRM, value), fp32"),
        fmt("optimizer_one_adapter", "grads + Adam state of the adapter being trained"),
        fmt("kv_cache_generation", "KV cache while generating"),
        fmt("activations_training", "training activations (checkpointed) + response logits"),
        fmt("peak_shared_4bit", "**peak, shared 4-bit base + adapters**"),
        fmt("three_bf16_models", "three separate bf16 models (policy, reference, PRM)"),
        fmt("full_ft_optimizer", "+ full fine-tuning state of the policy (fp32 master, Adam, grads)"),
        fmt("peak_separate_bf16", "**peak, three bf16 models, full fine-tuning**"),
        "", "Add ~1 GiB for the CUDA context and allocator slack. Roles are trained one at a time (Stage 2 the PRM,",
        "Stage 3 the policy), so only one adapter's optimizer state exists at once.",
    ]
    return "\n".join(lines)


def measure_4bit_params() -> None:
    """Quantize a randomly initialised model with Llama-3.2-3B's shape to NF4 on CPU; report parameter memory."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

    s = LLAMA_3_2_3B
    config = LlamaConfig(vocab_size=s.vocab, hidden_size=s.hidden, intermediate_size=s.intermediate,
                         num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                         tie_word_embeddings=s.tied, max_position_embeddings=2048)
    with tempfile.TemporaryDirectory() as folder:
        start = time.time()
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        del model
        gc.collect()
        print(f"random bf16 checkpoint written in {time.time() - start:.0f} s", file=sys.stderr)
        start = time.time()
        quantized = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=torch.bfloat16),
            dtype=torch.bfloat16, device_map={"": "cpu"})
        footprint = quantized.get_memory_footprint()
        print(f"measured: 4-bit NF4 model with Llama-3.2-3B's config holds {footprint / GiB:.2f} GiB of parameters "
              f"(quantized in {time.time() - start:.0f} s); estimate above: "
              f"{estimate(LLAMA_3_2_3B)['base_4bit']:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank of every adapter")
    parser.add_argument("--gen-batch", type=int, default=16, help="sequences generated at once")
    parser.add_argument("--context", type=int, default=2048, help="tokens per sequence (prompt + response)")
    parser.add_argument("--train-seqs", type=int, default=8, help="sequences per training micro-batch")
    parser.add_argument("--measure", action="store_true", help="quantize a random 3B model here and measure it")
    args = parser.parse_args()
    print(table(args.lora_r, args.gen_batch, args.context, args.train_seqs))
    if args.measure:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        measure_4bit_params()


if __name__ == "__main__":
    main()
