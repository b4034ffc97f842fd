"""Speed benchmarks: each section prints ratios or rates measured side by side in one run.

    python benchmarks/speed.py                     # every section (the quick runs take ~10 minutes)
    python benchmarks/speed.py --only env prefix   # some sections
    python benchmarks/speed.py --only prefix --prefix-model smollm2-135m   # prefix sharing on the real model
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envs  # noqa: E402


def bench_env(n_games: int = 200, seed: int = 0) -> None:
    """Single-threaded environment steps per second, with and without listing admissible commands each step."""
    games = envs.make_envs("household", "train", n_games)
    rng = random.Random(seed)
    for with_admissible in (False, True):
        steps, start = 0, time.perf_counter()
        for env in games:
            env.reset()
            commands = env.admissible_commands
            while not env.done:
                env.step(rng.choice(commands))
                steps += 1
                if with_admissible:
                    commands = env.admissible_commands
        elapsed = time.perf_counter() - start
        label = "random admissible agent, admissible list recomputed every step" if with_admissible \
            else "steps only (commands from the first state)"
        print(f"env: {steps / elapsed:>10,.0f} steps/s   {label}  ({steps} steps)")
    start = time.perf_counter()
    envs.make_envs("household", "eval_in_distribution", n_games)
    print(f"env: {n_games / (time.perf_counter() - start):>10,.0f} games/s generated (each verified by the expert)")


def _tiny_model(prompt_words: int = 0):
    """A random tiny Llama (the `tiny` architecture) and prompts from expert games; optionally padded with
    extra history turns so prompts reach a target length."""
    import torch

    import common

    torch.manual_seed(0)
    demos = envs.expert_demonstrations("household", "train", 60)
    tokenizer = common.build_tiny_tokenizer(common.tiny_corpus(demos, 2))
    arch = common.TINY_ARCHITECTURE
    model = common.build_tiny_model(tokenizer, arch["hidden_size"], arch["layers"], arch["heads"]).eval()
    codec = common.ChatCodec(tokenizer, 2048)
    prompts = [m for m, _ in common.sft_examples(demos, 2)]
    return model, tokenizer, codec, prompts


def _timed(fn):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _median_ratio(rounds: list[tuple[float, float]]) -> tuple[float, float, float, float, float]:
    """rounds = [(slow_seconds, fast_seconds), ...] measured back to back: median times, then the median,
    min and max of the per-round speed-up. One round is at the mercy of whatever else the machine does; the
    median of interleaved rounds is not, and min/max show how much the rounds disagreed."""
    ratios = sorted(slow / fast for slow, fast in rounds)
    return (statistics.median(slow for slow, _ in rounds), statistics.median(fast for _, fast in rounds),
            statistics.median(ratios), ratios[0], ratios[-1])


def bench_generation(batch: int = 32, new_tokens: int = 32, repeats: int = 5) -> None:
    """Batched generation (one generate call for 32 prompts) vs one prompt at a time, same tokens; `repeats`
    interleaved rounds (batched, then one at a time), median reported."""
    import torch

    import common

    model, tokenizer, codec, prompts = _tiny_model()
    prompts = prompts[:batch]
    # Greedy with a fixed number of new tokens: both sides produce exactly batch * new_tokens tokens.
    config = dict(n=1, temperature=0.0, max_new_tokens=new_tokens)
    common.generate(model, codec, prompts[:2], batch_size=2, **config)  # warm-up
    rounds = []
    with torch.no_grad():
        for _ in range(repeats):
            t_batched, batched = _timed(lambda: common.generate(model, codec, prompts, batch_size=batch, **config))
            t_single, single = _timed(lambda: [common.generate(model, codec, [p], batch_size=1, **config)[0]
                                              for p in prompts])
            n_tokens = sum(len(s[0].token_ids) for s in batched)
            n_single = sum(len(s[0].token_ids) for s in single)
            assert n_tokens == n_single, "both sides must produce the same tokens"
            rounds.append((t_single, t_batched))
    t_single, t_batched, ratio, low, high = _median_ratio(rounds)
    print(f"generation: batched {n_tokens / t_batched:8.0f} tok/s vs one at a time {n_single / t_single:8.0f} tok/s"
          f"  -> {ratio:.1f}x (median of {repeats} rounds, range {low:.1f}-{high:.1f}x; tiny model, batch {batch}, "
          f"≤{new_tokens} new tokens, prompts ~{sum(len(codec.prompt_ids(p)) for p in prompts) // len(prompts)} tokens)")


def bench_prefix_sharing(g: int = 8, prompt_tokens: int = 512, model_name: str = "tiny", repeats: int = 5) -> None:
    """Scoring G continuations of one prompt: encode the prompt once and reuse its KV cache (prefix sharing)
    vs scoring every full sequence, `repeats` interleaved rounds, median reported. Also checks that the
    log-probs agree."""
    import torch

    import common

    if model_name == "tiny":
        model, tokenizer, codec, prompts = _tiny_model()
    else:
        runtime = common.resolve_runtime("cpu")
        model, tokenizer = common.load_pretrained(common.resolve_model_path(model_name), runtime, load_in_4bit=False)
        model.eval()
        codec = common.ChatCodec(tokenizer, 4096)
        demos = envs.expert_demonstrations("household", "train", 5)
        prompts = [m for m, _ in common.sft_examples(demos, 2)]
    # one long prompt: the system + user turn, its user content repeated until it has `prompt_tokens` tokens
    base = prompts[0]
    ids = codec.prompt_ids(base)
    content = base[1]["content"]
    while len(ids) < prompt_tokens:
        content = content + "\n" + base[1]["content"]
        ids = codec.prompt_ids([base[0], {"role": "user", "content": content}])
    ids = ids[-prompt_tokens:]
    demos = envs.expert_demonstrations("household", "train", 3)
    continuations = [codec.response_ids(s.response) for t in demos for s in t.steps][:g]
    pad = tokenizer.pad_token_id
    rounds, diff = [], 0.0
    with torch.no_grad():
        common.continuation_logprobs(model, [ids], [continuations], pad)  # warm-up
        for _ in range(repeats):
            t_shared, (shared, _) = _timed(lambda: common.continuation_logprobs(model, [ids], [continuations], pad))
            t_naive, (naive, _) = _timed(lambda: common.sequence_logprobs(model, [ids] * g, continuations, pad,
                                                                          batch_size=g))
            rounds.append((t_naive, t_shared))
            diff = max(diff, (shared.flatten() - naive).abs().max().item())
    t_naive, t_shared, ratio, low, high = _median_ratio(rounds)
    print(f"prefix sharing ({model_name}, G={g}, {prompt_tokens}-token prompt): shared {t_shared:.3f} s vs naive "
          f"{t_naive:.3f} s -> {ratio:.1f}x (median of {repeats} rounds, range {low:.1f}-{high:.1f}x); "
          f"max |Δ log p| = {diff:.2e}")


def _with_lora(model, r: int = 16, alpha: int = 32):
    """The model wrapped as the algorithms wrap it (LoRA on every linear layer), with random non-zero A and B
    so that the adapter changes the outputs, as a trained π_i or PRM adapter does."""
    import torch
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.05)
    return peft_model.eval()


@contextlib.contextmanager
def _unfolded():
    """common's calls without lora_folded: every linear runs W x + s·B(A x), as PEFT does by default."""
    import common

    folded = common.lora_folded
    common.lora_folded = lambda lm: contextlib.nullcontext()
    try:
        yield
    finally:
        common.lora_folded = folded


def bench_lora_folding(batch: int = 32, new_tokens: int = 32, repeats: int = 5) -> None:
    """Inference through a LoRA adapter: folded into the base weights (common.lora_folded, what the algorithms
    do without gradients) vs PEFT's unfolded forward, for scoring `batch` (prompt, response) pairs and for
    generating `new_tokens` greedy tokens for `batch` prompts; interleaved rounds, median reported."""
    import torch

    import common

    model, tokenizer, codec, prompts = _tiny_model()
    model = _with_lora(model)
    demos = envs.expert_demonstrations("household", "train", 20)
    examples = common.sft_examples(demos, 2)[:batch]
    prompt_ids = [codec.prompt_ids(m) for m, _ in examples]
    response_ids = [codec.response_ids(r) for _, r in examples]
    pad = tokenizer.pad_token_id
    score = lambda: common.sequence_logprobs(model, prompt_ids, response_ids, pad, batch_size=batch)[0]  # noqa: E731
    config = dict(n=1, temperature=0.0, max_new_tokens=new_tokens, batch_size=batch)
    gen = lambda: common.generate(model, codec, prompts[:batch], **config)  # noqa: E731
    with torch.no_grad():
        score(), gen()  # warm-up
        score_rounds, gen_rounds, diff, same_tokens = [], [], 0.0, True
        for _ in range(repeats):
            t_folded, folded = _timed(score)
            with _unfolded():
                t_plain, plain = _timed(score)
            score_rounds.append((t_plain, t_folded))
            diff = max(diff, (folded - plain).abs().max().item())
            t_folded, folded_samples = _timed(gen)
            with _unfolded():
                t_plain, plain_samples = _timed(gen)
            gen_rounds.append((t_plain, t_folded))
            same_tokens &= [s[0].token_ids for s in folded_samples] == [s[0].token_ids for s in plain_samples]
    for what, rounds in (("scoring", score_rounds), ("generation", gen_rounds)):
        t_plain, t_folded, ratio, low, high = _median_ratio(rounds)
        print(f"LoRA folded, {what}: {t_folded:.3f} s vs unfolded {t_plain:.3f} s -> {ratio:.2f}x (median of "
              f"{repeats} rounds, range {low:.2f}-{high:.2f}x; tiny model + r=16 adapter, batch {batch})")
    print(f"LoRA folded: max |Δ log p| = {diff:.2e} over {batch} responses; greedy tokens "
          f"{'identical' if same_tokens else 'DIFFERENT'}")


def _allocator_workload(seconds_file: str) -> None:
    """What bench_allocator times in a child process: sampling 4 responses for 16 prompts, 3 times."""
    import torch

    import common

    torch.manual_seed(0)
    model, _, codec, prompts = _tiny_model()
    start = time.perf_counter()
    for _ in range(3):
        common.generate(model, codec, prompts[:16], n=4, temperature=0.7, max_new_tokens=48, batch_size=32)
    Path(seconds_file).write_text(str(time.perf_counter() - start))


def bench_allocator(repeats: int = 5) -> None:
    """The same generation workload in a child process with glibc malloc's defaults vs with reproduce.py's
    MALLOC_ENV (freed memory kept in the process), interleaved rounds, median reported."""
    import os
    import subprocess
    import tempfile

    from reproduce import MALLOC_ENV

    here = Path(__file__).resolve().parent
    plain_env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}

    def child(env: dict[str, str]) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            seconds = Path(tmp) / "seconds"
            subprocess.run([sys.executable, "-c", f"import speed; speed._allocator_workload({str(seconds)!r})"],
                           cwd=here, env=env, check=True, capture_output=True)
            return float(seconds.read_text())

    rounds = [(child(plain_env), child({**plain_env, **MALLOC_ENV})) for _ in range(repeats)]
    t_plain, t_tuned, ratio, low, high = _median_ratio(rounds)
    settings = " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
    print(f"allocator: {settings}: {t_tuned:.2f} s vs glibc defaults {t_plain:.2f} s -> {ratio:.2f}x (median of "
          f"{repeats} rounds, range {low:.2f}-{high:.2f}x; tiny model sampling 4 x 16 responses, 3 times)")


def bench_cache(games: int = 32, new_tokens: int = 24, repeats: int = 5) -> None:
    """Stage-1-style rollouts (one response per prompt, `games` compact household games played to their 15-action
    limit at once) with generate's static KV cache (common.generate_from_ids' default for n = 1) vs its default
    cache, which concatenates a longer copy of itself at every decoding step. Episodes per minute, interleaved."""
    import functools

    import common

    model, _, codec, _ = _tiny_model()
    static = common.generate_from_ids
    dynamic = functools.partial(static, static_cache=False)
    policy = common.make_llm_policy(model, codec, temperature=0.3, max_new_tokens=new_tokens, batch_size=games)

    def play(generate_from_ids) -> float:
        common.generate_from_ids = generate_from_ids  # what common.generate (the policy) calls
        try:
            batch = envs.make_envs("household-compact", "train", games)
            start = time.perf_counter()
            episodes = envs.rollout(batch, policy)
            return len(episodes) / ((time.perf_counter() - start) / 60)
        finally:
            common.generate_from_ids = static

    rounds = [(1 / play(dynamic), 1 / play(static)) for _ in range(repeats)]  # minutes per episode
    slow, fast, median, low, high = _median_ratio(rounds)
    print(f"cache: rollouts {1 / fast:,.0f} episodes/min with the static KV cache vs {1 / slow:,.0f} with the "
          f"default cache: {median:.2f}x (rounds {low:.2f}-{high:.2f}x; random tiny model, {games} games at once, "
          f"{new_tokens}-token responses)")


def bench_quick_runs() -> None:
    """Wall time of each algorithm's --quick run (tiny model, CPU), in a temporary folder."""
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parent.parent
    for script in ("agent_prm.py", "inverse_prm.py", "action_prm.py"):
        if not (root / script).exists():
            continue
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = subprocess.run([sys.executable, str(root / script), "--quick", "--out", out],
                                    capture_output=True, text=True, cwd=root)
            status = "ok" if result.returncode == 0 else f"FAILED ({result.returncode})"
            print(f"quick run: {script:<16} {time.perf_counter() - start:6.0f} s  {status}")


SECTIONS = {"env": bench_env, "generation": bench_generation, "prefix": bench_prefix_sharing,
            "lora": bench_lora_folding, "allocator": bench_allocator, "cache": bench_cache, "quick": bench_quick_runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SECTIONS), nargs="+", help="run only these sections")
    parser.add_argument("--prefix-model", default="tiny", help="model for the prefix-sharing section "
                        "(tiny, or e.g. smollm2-135m)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of the generation, "
                        "prefix-sharing, LoRA-folding and allocator comparisons; the median speed-up is printed, "
                        "with the range")
    parser.add_argument("--readme", action="store_true", help="also write the printed lines into README.md "
                        "between the <!-- speed:begin --> / <!-- speed:end --> markers")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    import io
    import os

    printed = io.StringIO()

    class Tee(io.TextIOBase):  # print to the terminal and keep a copy for the README
        def write(self, text: str) -> int:
            sys.__stdout__.write(text)
            sys.__stdout__.flush()
            return printed.write(text)

    with contextlib.redirect_stdout(Tee()):
        print(f"({os.cpu_count()} cores, torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}; "
              f"{time.strftime('%Y-%m-%d')})")
        for name in args.only or SECTIONS:
            if name == "prefix":
                bench_prefix_sharing(model_name=args.prefix_model, repeats=args.repeats)
            elif name in ("generation", "lora", "allocator", "cache"):
                SECTIONS[name](repeats=args.repeats)
            else:
                SECTIONS[name]()
    if args.readme:
        readme = Path(__file__).resolve().parent.parent / "README.md"
        text, begin, end = readme.read_text(), "<!-- speed:begin -->", "<!-- speed:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            command = "python benchmarks/speed.py" + (f" --only {' '.join(args.only)}" if args.only else "") + \
                (f" --repeats {args.repeats}" if args.repeats != parser.get_default("repeats") else "")
            block = f"Printed by `{command} --readme`:\n\n```\n{printed.getvalue().strip()}\n```"
            readme.write_text(head + begin + "\n" + block + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    main()
