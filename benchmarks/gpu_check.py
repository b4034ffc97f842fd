"""One command that says whether the GPU path works on this machine, and at what speed and memory.

Two parts, nothing downloaded:
  quick  every algorithm's `--quick` (tiny model) on CUDA, once in bf16 (`--load-in-4bit off`) and once with a
         4-bit NF4 base (`--load-in-4bit on`): six subprocesses side by side, each with its own run folder;
         exit code, wall time and the run's summary.json go into the report
  3b     a RANDOM model with Llama-3.2-3B-Instruct's architecture (`llama_3b_config`), built in bf16 on the GPU,
         saved, and loaded back through the project's own path (common.build_agent_model: NF4 base, bf16 compute,
         gradient checkpointing, four LoRA roles and two scalar heads), with the tiny BPE tokenizer and its chat
         template (ids beyond its vocabulary are simply never used); then one short pass of each algorithm's
         heavy steps at the recipe's shapes (~2,000-token prompts, 64-token responses): generation, a PRM step,
         an online-DPO step, an Action-PRM M-step. Per stage: peak GPU memory (torch.cuda.max_memory_allocated)
         next to benchmarks/memory.py's estimate for the same shapes, and tokens per second
Tokens per second: generated tokens for generation; for training, the tokens through the trained role's forward
and backward (the DPO step's time includes its no-grad reference pass), leaving out the first (warm-up) step.
Meant to take under 8 minutes on one GPU (not yet run on one). Exit code 1 if a run or a stage failed; without
CUDA it prints one line and exits 0.

    python benchmarks/gpu_check.py --out report.json
    python benchmarks/gpu_check.py --parts 3b --prompt-tokens 1000     # the 3B-shaped part only, shorter prompts
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.metadata
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402
import envs  # noqa: E402
import memory  # noqa: E402

GiB = memory.GiB
ALGORITHMS = ("agent_prm", "inverse_prm", "action_prm")
VARIANTS = {"bf16": ("--load-in-4bit", "off"), "nf4": ("--load-in-4bit", "on")}
# The report's fields (tests/test_gpu_check.py holds the script to them: keep them stable).
REPORT_FIELDS = ("cuda", "environment", "quick_runs", "stages", "max_peak_gib", "total_s")
ENVIRONMENT_FIELDS = ("python", "torch", "transformers", "peft", "bitsandbytes", "cuda_version", "gpu",
                      "gpu_memory_gib")
QUICK_RUN_FIELDS = ("algo", "variant", "command", "returncode", "timed_out", "wall_s", "summary", "log_tail")
STAGE_FIELDS = ("stage", "algorithms", "shape", "seconds", "tokens", "tokens_per_s", "peak_gib", "reserved_gib",
                "estimate_gib", "error")


def llama_3b_config(vocab_size: int = 128256) -> dict:
    """LlamaConfig keyword arguments of meta-llama/Llama-3.2-3B-Instruct (its config.json, written out here)."""
    return dict(vocab_size=vocab_size, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                num_attention_heads=24, num_key_value_heads=8, head_dim=128, hidden_act="silu", rms_norm_eps=1e-5,
                tie_word_embeddings=True, max_position_embeddings=131072, rope_theta=500000.0,
                rope_scaling={"rope_type": "llama3", "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                              "original_max_position_embeddings": 8192})


def shape_of(config: dict) -> memory.LlamaShape:
    """The config as benchmarks/memory.py's shape, so its estimates are for exactly this model."""
    return memory.LlamaShape("llama-3.2-3b", vocab=config["vocab_size"], hidden=config["hidden_size"],
                             intermediate=config["intermediate_size"], layers=config["num_hidden_layers"],
                             heads=config["num_attention_heads"], kv_heads=config["num_key_value_heads"],
                             tied=config["tie_word_embeddings"])


def param_count(config: dict) -> int:
    """Parameters of the model the config builds, counted on the meta device (no memory, no init)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**config))
    return sum(p.numel() for p in model.parameters())  # tied embeddings are one parameter, counted once


@dataclasses.dataclass
class Shapes:
    """The 3B part's sizes (the recipe's: ~2,000-token prompts, 64-token responses; a few of everything)."""
    prompt_tokens: int = common.field(2000, "tokens per prompt (chat template + random tokens)")
    response_tokens: int = common.field(64, "tokens per response, generated or trained on")
    gen_prompts: int = common.field(4, "prompts generated from at once")
    gen_samples: int = common.field(2, "samples per prompt (2, as online DPO draws them: one shared prefill)")
    train_seqs: int = common.field(8, "prompt + response sequences per PRM step")
    dpo_prompts: int = common.field(8, "prompts per online-DPO step (chosen + rejected each; agent_prm's default)")
    m_states: int = common.field(4, "states per Action-PRM M-step (action_prm's --m-batch-size)")
    group_size: int = common.field(8, "thoughts per state in the M-step (action_prm's G)")
    train_steps: int = common.field(2, "optimizer steps of each training stage (the first is warm-up)")
    lora_r: int = common.field(16, "LoRA rank of every role")


def estimates(shape: memory.LlamaShape, s: Shapes) -> dict[str, float]:
    """memory.py's terms for each stage's shapes (GiB); the CUDA context is not in max_memory_allocated either."""
    L, R = s.prompt_tokens, s.response_tokens
    base = memory.estimate(shape, s.lora_r)
    resident = base["base_4bit"] + base["four_adapters"]

    def train(seqs: int, continuation: int) -> float:
        e = memory.estimate(shape, s.lora_r, train_seqs=seqs, context=L + continuation, response_tokens=continuation)
        return resident + e["optimizer_one_adapter"] + e["activations_training"]

    gen = memory.estimate(shape, s.lora_r, gen_batch=s.gen_prompts * s.gen_samples, context=L + R)
    return {"build_bf16": shape.total_params() * 2 / GiB, "load_nf4": resident,
            "rollouts": resident + gen["kv_cache_generation"], "prm_step": train(s.train_seqs, R),
            "dpo_step": train(s.dpo_prompts, 2 * R), "m_step": train(s.m_states, s.group_size * R)}


def stage_record(stage: str, algorithms: str, shape: str, seconds: float, tokens: int, rate_seconds: float,
                 peak_gib: float | None, reserved_gib: float | None, estimate_gib: float | None,
                 error: str | None) -> dict:
    rnd = lambda x, k=2: None if x is None else round(x, k)  # noqa: E731
    rate = tokens / rate_seconds if tokens and rate_seconds > 0 else None
    return dict(zip(STAGE_FIELDS, (stage, algorithms, shape, rnd(seconds, 1), tokens, rnd(rate, 1), rnd(peak_gib),
                                   rnd(reserved_gib), rnd(estimate_gib), error)))


def run_stage(stage: str, algorithms: str, shape: str, estimate_gib: float | None, fn, device: torch.device) -> dict:
    """fn() -> (tokens, seconds they took); peak memory is reset before and read after."""
    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start, tokens, rate_seconds, error = time.perf_counter(), 0, 0.0, None
    try:
        tokens, rate_seconds = fn()
    except Exception as e:  # an OOM or a crash in one stage must not hide the other stages' numbers
        error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"[:300]
    if cuda:
        torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / GiB if cuda else None
    reserved = torch.cuda.max_memory_reserved(device) / GiB if cuda else None
    record = stage_record(stage, algorithms, shape, time.perf_counter() - start, tokens, rate_seconds, peak, reserved,
                          estimate_gib, error)
    print(f"[gpu_check] {stage:<10} {record['seconds']:7.1f} s  peak {record['peak_gib']} GiB (estimate "
          f"{record['estimate_gib']})  {record['tokens_per_s']} tok/s  {error or ''}", flush=True)
    return record


def build_checkpoint(folder: str, config: dict, tokenizer, device: torch.device, dtype: torch.dtype) -> None:
    """A randomly initialised model with `config`, built directly on `device`, saved with the tokenizer."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    with torch.device(device):  # random init on the GPU takes seconds; a 3B init on a CPU takes minutes
        model = AutoModelForCausalLM.from_config(LlamaConfig(**config, **ids), dtype=dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_agent(folder: str, runtime: common.Runtime, quantize: bool, lora_r: int) -> common.AgentModel:
    """The user's GPU path: the project's loader, gradient checkpointing on, every role of a run present."""
    agent = common.build_agent_model(folder, runtime, quantize, lora_r, 2 * lora_r, max_length=1 << 15,
                                     gradient_checkpointing=True)
    agent.add_role("reference", copy_from="policy")
    agent.add_role("prm", head=True)
    agent.add_role("value", head=True)
    return agent


def random_ids(codec: common.ChatCodec, rng: random.Random, n: int) -> list[int]:
    specials = set(codec.tokenizer.all_special_ids)
    return rng.choices([i for i in range(len(codec.tokenizer)) if i not in specials], k=n)


def random_prompt(codec: common.ChatCodec, rng: random.Random, length: int) -> list[int]:
    """A chat-template prompt whose user turn is random tokens, `length` tokens in all."""
    template = codec.prompt_ids([{"role": "user", "content": ""}])
    cut = template.index(codec.eot)  # the user's content goes right before its end-of-turn token
    return template[:cut] + random_ids(codec, rng, max(1, length - len(template))) + template[cut:]


def timed_train(agent: common.AgentModel, role: str, batches: list, loss_fn, tokens_per_step: int) -> tuple[int, float]:
    """common.train_loop on `role`; the rate leaves out the first step (cuBLAS / bitsandbytes warm-up) if it can."""
    agent.peft.zero_grad(set_to_none=True)  # gradients a failed (e.g. out-of-memory) stage left behind
    agent.heads.zero_grad(set_to_none=True)
    stamps = [time.perf_counter()]
    with agent.role(role):
        common.train_loop(agent.trainable_parameters(role), batches, loss_fn, lr=1e-4, total=len(batches),
                          desc=role, on_step=lambda step, metrics: stamps.append(time.perf_counter()))
    skip = 1 if len(stamps) > 2 else 0
    return tokens_per_step * (len(stamps) - 1 - skip), stamps[-1] - stamps[skip]


def run_stages(agent: common.AgentModel, s: Shapes, estimate: dict[str, float], seed: int = 0) -> list[dict]:
    """One short pass of each algorithm's heavy steps, with the project's own functions."""
    codec, pad, device, rng = agent.codec, agent.tokenizer.pad_token_id, agent.runtime.device, random.Random(seed)
    L, R, steps = s.prompt_tokens, s.response_tokens, s.train_steps
    prompt = lambda: random_prompt(codec, rng, L)  # noqa: E731
    response = lambda: random_ids(codec, rng, R - 1) + [codec.eot]  # noqa: E731

    def rollouts() -> tuple[int, float]:
        prompts = [prompt() for _ in range(s.gen_prompts)]
        n = s.gen_samples
        with agent.role("policy"):
            common.generate_from_ids(agent.peft, codec, prompts[:1], n=n, max_new_tokens=2, batch_size=n)  # warm-up
            start = time.perf_counter()
            samples = common.generate_from_ids(agent.peft, codec, prompts, n=n, max_new_tokens=R,
                                               batch_size=len(prompts) * n)
        return sum(len(x.token_ids) for group in samples for x in group), time.perf_counter() - start

    def prm_step() -> tuple[int, float]:  # AgentPRM's soft BCE on Q̂ (InversePRM scores 2 sequences a transition)
        batches = [[prompt() + response() for _ in range(s.train_seqs)] for _ in range(steps)]

        def loss_fn(batch):
            logits = common.scalar_scores(agent.peft, agent.heads["prm"], batch, pad, len(batch))
            loss = F.binary_cross_entropy_with_logits(logits, torch.rand(len(batch), device=logits.device))
            return loss, {"loss": loss.item()}
        return timed_train(agent, "prm", batches, loss_fn, s.train_seqs * (L + R))

    def dpo_step() -> tuple[int, float]:  # online DPO: reference without grad, policy with, one prompt pass each
        batches = [[(prompt(), [response(), response()]) for _ in range(s.dpo_prompts)] for _ in range(steps)]

        def loss_fn(batch):
            prompts, pairs = [p for p, _ in batch], [c for _, c in batch]
            with agent.role("reference"), torch.no_grad():
                ref, _ = common.continuation_logprobs(agent.peft, prompts, pairs, pad, len(prompts))  # [P, 2]
            policy, _ = common.continuation_logprobs(agent.peft, prompts, pairs, pad, len(prompts))
            delta = policy - ref  # [P, 2] log π_θ/π_ref of chosen, rejected; β = 0.1 (agent_prm's default)
            loss = -F.logsigmoid(0.1 * (delta[:, 0] - delta[:, 1])).mean()
            return loss, {"loss": loss.item()}
        return timed_train(agent, "policy", batches, loss_fn, s.dpo_prompts * (L + 2 * R))

    def m_step() -> tuple[int, float]:  # Action-PRM: reward-weighted log p of G thoughts per state
        batches = [[(prompt(), [response() for _ in range(s.group_size)]) for _ in range(s.m_states)]
                   for _ in range(steps)]

        def loss_fn(batch):
            logp, _ = common.continuation_logprobs(agent.peft, [p for p, _ in batch], [g for _, g in batch], pad,
                                                   len(batch))  # [B, G]
            loss = -(torch.rand_like(logp) * logp).sum(-1).mean() / R
            return loss, {"loss": loss.item()}
        return timed_train(agent, "policy", batches, loss_fn, s.m_states * (L + s.group_size * R))

    plan = [("rollouts", "all (rollouts, DPO samples, E-step)", f"{s.gen_prompts} prompts x {s.gen_samples} samples",
             rollouts),
            ("prm_step", "AgentPRM / InversePRM stage 2", f"{s.train_seqs} sequences", prm_step),
            ("dpo_step", "AgentPRM / InversePRM stage 3", f"{s.dpo_prompts} prompts x 2 responses", dpo_step),
            ("m_step", "Action-PRM M-step", f"{s.m_states} states x {s.group_size} thoughts", m_step)]
    return [run_stage(name, algos, f"{shape}, {L} + {R} tokens, {steps} steps" if name != "rollouts"
                      else f"{shape}, {L} + {R} tokens", estimate[name], fn, device)
            for name, algos, shape, fn in plan]


def three_b_part(s: Shapes, work_dir: str | None) -> list[dict]:
    device = torch.device("cuda")
    runtime = common.resolve_runtime("cuda", "bf16")
    config = llama_3b_config()
    estimate = estimates(shape_of(config), s)
    tokenizer = common.build_tiny_tokenizer([envs.SYSTEM_PROMPT, envs.STEERED_EXPLORATION_PROMPT])
    with tempfile.TemporaryDirectory(dir=work_dir) as folder:  # a 6.4 GB bf16 checkpoint, removed afterwards
        box: dict = {}

        def build() -> tuple[int, float]:
            build_checkpoint(folder, config, tokenizer, device, torch.bfloat16)
            return 0, 0.0

        def load() -> tuple[int, float]:
            box["agent"] = load_agent(folder, runtime, True, s.lora_r)
            return 0, 0.0

        stages = [run_stage("build_bf16", "-", "random init on the GPU + save", estimate["build_bf16"], build, device),
                  run_stage("load_nf4", "-", "NF4 base + 4 LoRA roles + 2 heads", estimate["load_nf4"], load, device)]
        if "agent" in box:
            stages += run_stages(box["agent"], s, estimate)
    return stages


def quick_run(algo: str, variant: str, folder: Path, timeout: float, threads: int) -> dict:
    flags = ["--quick", "--device", "cuda", "--dtype", "bf16", *VARIANTS[variant]]
    out, start, timed_out, rc = folder / f"{algo}-{variant}", time.perf_counter(), False, None
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    log = folder / f"{algo}-{variant}.log"
    with open(log, "w", encoding="utf-8") as f:
        try:
            rc = subprocess.run([sys.executable, str(ROOT / f"{algo}.py"), *flags, "--out", str(out)], cwd=ROOT,
                                stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            timed_out = True
    summary = out / "summary.json"  # the run's own numbers; its printed table is not parsed
    record = dict(zip(QUICK_RUN_FIELDS, (algo, variant, f"python {algo}.py {' '.join(flags)}", rc, timed_out,
                                         round(time.perf_counter() - start, 1),
                                         json.loads(summary.read_text()) if rc == 0 and summary.exists() else None,
                                         None if rc == 0 else log.read_text(errors="replace")[-3000:])))
    print(f"[gpu_check] quick {algo:<12} {variant}: exit {rc}{' (timed out)' if timed_out else ''}, "
          f"{record['wall_s']} s", flush=True)
    return record


def quick_part(runs_dir: str | None, jobs: int, timeout: float) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(runs_dir or tmp) / f"gpu_check-{time.strftime('%Y%m%d-%H%M%S')}"
        folder.mkdir(parents=True)
        threads = max(1, (os.cpu_count() or 1) // jobs)  # side-by-side runs share the cores instead of fighting
        with ThreadPoolExecutor(jobs) as pool:
            return list(pool.map(lambda av: quick_run(*av, folder, timeout, threads),
                                 [(a, v) for v in VARIANTS for a in ALGORITHMS]))


def environment() -> dict:
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None
    cuda = torch.cuda.is_available()
    gpu_gib = round(torch.cuda.get_device_properties(0).total_memory / GiB, 1) if cuda else None
    return dict(zip(ENVIRONMENT_FIELDS, (platform.python_version(), version("torch"), version("transformers"),
                                         version("peft"), version("bitsandbytes"), torch.version.cuda,
                                         torch.cuda.get_device_name(0) if cuda else None, gpu_gib)))


def build_report(cuda: bool, env: dict, quick_runs: list[dict], stages: list[dict], total_s: float) -> dict:
    peaks = [st["peak_gib"] for st in stages if st["peak_gib"] is not None]
    return dict(zip(REPORT_FIELDS, (cuda, env, quick_runs, stages, max(peaks) if peaks else None, round(total_s, 1))))


def format_table(report: dict) -> str:
    """The report as markdown (what goes into the README)."""
    lines = [f"{report['environment']['gpu']}, torch {report['environment']['torch']}, bitsandbytes "
             f"{report['environment']['bitsandbytes']}; {report['total_s']} s in all", "",
             "| run | exit | wall s |", "| --- | ---: | ---: |"]
    lines += [f"| {r['algo']}.py --quick, {r['variant']} | {r['returncode']} | {r['wall_s']} |"
              for r in report["quick_runs"]]
    lines += ["", "| stage (Llama-3.2-3B shape, random, NF4) | shape | peak GiB | memory.py GiB | tok/s | s |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {st['stage']}: {st['algorithms']} | {st['shape']} | {st['peak_gib']} | {st['estimate_gib']} | "
              f"{st['tokens_per_s'] or '-'} | {st['seconds']}{' ' + st['error'] if st['error'] else ''} |"
              for st in report["stages"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--parts", nargs="+", choices=["quick", "3b"], default=["quick", "3b"], help="what to run")
    parser.add_argument("--jobs", type=int, default=6, help="--quick runs side by side")
    parser.add_argument("--quick-timeout", type=float, default=300, help="seconds before a --quick run is stopped")
    parser.add_argument("--runs-dir", help="keep the --quick run folders here (default: a temporary folder)")
    parser.add_argument("--work-dir", help="where the random 3B checkpoint is written (default: the system temp)")
    defaults = Shapes()
    for f in dataclasses.fields(Shapes):
        parser.add_argument("--" + f.name.replace("_", "-"), type=int, default=getattr(defaults, f.name),
                            help=f"3B part: {f.metadata['help']} (default {getattr(defaults, f.name)})")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def report(cuda: bool, quick: list[dict], stages: list[dict]) -> dict:
        built = build_report(cuda, environment(), quick, stages, time.perf_counter() - start)
        if args.out:
            Path(args.out).write_text(json.dumps(built, indent=2) + "\n")
        return built

    if not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA device; nothing to check on this machine")
        report(False, [], [])
        return 0
    shapes = Shapes(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Shapes)})
    print(f"[gpu_check] {torch.cuda.get_device_name(0)}; parts: {' '.join(args.parts)}", flush=True)
    quick = quick_part(args.runs_dir, args.jobs, args.quick_timeout) if "quick" in args.parts else []
    report(True, quick, [])  # written now too: a hard crash in the 3B part still leaves the quick runs' numbers
    stages = three_b_part(shapes, args.work_dir) if "3b" in args.parts else []
    print("\n" + format_table(report(True, quick, stages)))
    failed = any(r["returncode"] != 0 for r in quick) or any(st["error"] for st in stages)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
