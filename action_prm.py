"""Action-PRM: infer the thoughts behind action-only demonstrations, trained as policy gradient (EM).

Note: M. Zhang, "Action Process Reward Models" (2026); official code HazyResearch/act-prm-tinker. A process log
records what a person did (the actions x), not why (the thoughts z). Treat z as a latent variable and run EM:
sample thoughts from the model, weight each by how likely it makes the observed action, and train the model on
(thought, action) with those weights. The note has no equation numbers; the code refers to these:

  (1) EM objective   Q(θ | θ_n) = E_{z ~ p_θn(z | x, s)} [ log p_θ(x, z | s) ]
  (2) Bayes          p_θn(z | x, s) = p_θn(x | z, s) p_θn(z | s) / p_θn(x | s)
  (3) gradient       ∇Q = E_{z ~ p_θn(z | s)} [ r(z) ∇ log p_θ(x, z | s) ],   r(z) = p_θn(x | z, s) / p_θn(x | s)
  (4) reward         r̃(z) = p_θn(x | z, s)            the likelihood of the observed action after thought z
  (5) marginal       p_θn(x | s) ≈ 1/G Σ_g r̃(z_g),    z_g ~ p_θn(z | s)
  (6) EM weights     r̄(z_g) = r̃(z_g) / Σ_g' r̃(z_g') = softmax_g(log r̃(z_g))
  (7) policy grad.   ∇J ≈ Σ_g R(z_g) ∇ log p_θ(x, z_g | s)
  (8) R, --reward    em: r̄ (6) | prob: r̃ (4) | grpo: r̃ − mean_g r̃ (/ std_g) | return: Σ_{t'≥t} γ^{t'-t} r̄_{t'}

Algorithm, as implemented below:
  1. π0: a model that can write thoughts. Tiny model: behaviour cloning on expert demonstrations WITH reasons
     on separate games (how it learns the language of thoughts). Pretrained models: the model itself.
  2. D: action-only demonstrations (o_1, x_1, ..., o_T, x_T): the env's expert with its reasons stripped, or
     your process log (--demos-file).
  3. For iteration n = 1..K:
       E-step (generation), for every demonstration step by step, all demonstrations batched:
  4.     sample G thoughts z_t^(g) ~ π_θn(· | s_t), the response prefix "REASON:" forced;
  5.     score log r̃ = log p(x_t | s_t, z_t^(g)) on the action tokens only, each prompt encoded once (4);
  6.     rewards R_t^(g) from the G scores (6), (8);
  7.     continue with the best thought: s_{t+1} = (s_t, z*_t, x_t, o_{t+1}).
       M-step (policy update):
  8.     θ_{n+1}: ascend Σ_g R_t^(g) log p_θ(z_t^(g), x_t | s_t) over thought AND action tokens (7) (LoRA).
  9. Outputs: the demonstrations with θ_K's thoughts filled in, the policy adapter θ_K, metrics; evaluated by
     held-out action likelihood with vs without thoughts, env success vs three SFT baselines (actions only, the
     hidden reasons, the inferred thoughts), and the overlap of the inferred thoughts with the hidden reasons.

    python action_prm.py --quick                        # tiny model on CPU, one iteration in a few minutes
    python action_prm.py --model llama-3.2-3b           # one 24 GB GPU (4-bit base + LoRA); see README
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import warnings
from collections import Counter, defaultdict
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

import common
import envs
from common import field

# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Arguments
# ──────────────────────────────────────────────────────────────────────────────────────────────────────

REWARDS = ("em", "prob", "grpo", "return")
# The official recipe (act-prm-tinker: configs/trainer/qwen3_4b_aprm.yaml, configs/generator/aprm_qwen3.yaml,
# configs/environments/act_prm/textworld.yaml) as a preset of flags: `--recipe paper` sets each flag not given on
# the command line. Theirs samples fresh thoughts for every batch of 16 states; here an E-step infers thoughts for
# every step of D and the M-step then takes ~9 batches of 16 (20 compact demonstrations hold ~135 steps), so 111
# E/M rounds are their 1,000 batches. flag -> (value, where it comes from).
PAPER_RECIPE: dict[str, tuple[Any, str]] = {
    "demos": (20, "20 training demonstrations (num_train_samples, TextWorld)"),
    "iterations": (111, "1,000 batches (num_batches) / ~9 batches of 16 per E/M round on 20 compact demonstrations"),
    "m_batch_size": (16, "16 states per batch (batch_size)"),
    "group_size": (8, "G = 8 thoughts per state (group_size)"),
    "thought_temperature": (1.0, "thoughts sampled at temperature 1.0"),
    "reward": ("em", "reward_method em (Eq. 6)"),
    "m_lr": (4e-5, "learning rate 4e-5 (a LoRA adapter, as here)"),
    "lora_r": (32, "LoRA rank 32"),
    "eval_every": (111, "evaluate the last π only: a row per round would cost more than the rounds"),
}
demos_flag = common.flag_group("demonstrations")  # field() in one --help group
e_step_flag = common.flag_group("E-step")
m_step_flag = common.flag_group("M-step")
baseline_flag = common.flag_group("baselines")


@dataclasses.dataclass
class Args(common.BaseArgs):
    """Model, environment, π0 and evaluation flags come from common.BaseArgs; these are Action-PRM's."""

    RECIPES = {"paper": PAPER_RECIPE}  # --recipe NAME: a preset of flags (common.parse_args); not a field
    # π0 (overrides BaseArgs.sft_demos: the right default depends on the model)
    sft_demos: int | None = field(None, "expert episodes with reasons to behaviour-clone π0 (default: 2000 for "
                                  "--model tiny, else 0: π0 is the pretrained model)", group="pi0")
    # environment (overrides BaseArgs.history_reasons: the latent thoughts are part of the state here)
    history_reasons: bool = field(True, "the prompt's history shows the past thoughts, as in the note's model",
                                  group="env")
    # demonstrations
    demos: int = demos_flag(48, "action-only expert demonstrations on the train games from --first-task on")
    demos_file: str | None = demos_flag(None, "a JSONL process log to infer thoughts for, in place of --demos "
                                        "(format: README)")
    heldout_demos: int = demos_flag(16, "held-out demonstrations for the likelihood evaluation (0: skip)")
    # E-step
    iterations: int = e_step_flag(2, "K, the number of E-step / M-step rounds")
    group_size: int = e_step_flag(8, "G, thoughts sampled per demonstration step (official code: 8)")
    thought_temperature: float = e_step_flag(1.0, "sampling temperature of the thoughts (official code: 1.0)")
    reward: str = e_step_flag("em", "a thought's reward: em r̃ / Σ r̃ (Eq. 6) | prob p(x|z,s) | grpo r̃ - mean | "
                              "return Σ γ^k r̄ (Eq. 8)", choices=list(REWARDS))
    length_normalize: bool = e_step_flag(False, "score a thought by exp(mean log p) of the action tokens, not "
                                         "p(x|z,s) (official code: on)")
    grpo_std: bool = e_step_flag(False, "grpo: also divide by the group's standard deviation")
    gamma: float = e_step_flag(1.0, "discount γ of --reward return (the note: 1)")
    # M-step
    m_epochs: float = m_step_flag(1.0, "passes over the E-step's groups per M-step")
    m_lr: float = m_step_flag(5e-4, "policy learning rate (LoRA adapter)")
    m_batch_size: int = m_step_flag(4, "demonstration steps per optimizer step, each with its G thoughts")
    eval_every: int = m_step_flag(1, "evaluate π_i (success, held-out likelihood) every this many rounds, and the last")
    # baselines
    sft_baseline: bool = baseline_flag(True, "also train the SFT baselines from π0: on the actions, with the hidden "
                                       "reasons (an upper bound), and with θ_K's inferred thoughts filled in")
    sft_baseline_epochs: float = baseline_flag(2.0, "epochs of the SFT baselines")
    sft_baseline_lr: float = baseline_flag(5e-4, "learning rate of the SFT baselines (LoRA adapter)")

    def __post_init__(self) -> None:
        if self.sft_demos is None:  # resolved before BaseArgs.__post_init__, which caps it under --quick
            self.sft_demos = 2000 if self.model == "tiny" else 0
        super().__post_init__()
        if self.quick:  # a CPU smoke test: the algorithm is unchanged, only the sizes shrink
            self.demos, self.heldout_demos = min(self.demos, 6), min(self.heldout_demos, 3)
            self.group_size, self.iterations = min(self.group_size, 4), min(self.iterations, 1)
            self.m_epochs, self.sft_baseline_epochs = min(self.m_epochs, 1.0), min(self.sft_baseline_epochs, 1.0)
            # the E-steps (sequential over steps) and the evaluation episodes dominate a quick run's time
            self.max_new_tokens, self.max_steps = min(self.max_new_tokens, 32), min(self.max_steps, 20)
            self.eval_games = min(self.eval_games, 4)
        if self.group_size < 2 and self.reward in ("em", "grpo", "return"):
            why = ("its advantage r̃ - mean is always 0" if self.reward == "grpo" else
                   "its weight r̃ / Σ r̃ is always 1, whatever the thought says")
            raise common.UserError(f"--reward {self.reward} needs --group-size >= 2: it compares the G thoughts of "
                                   f"a step with each other, and with a single thought {why}; use --reward prob "
                                   f"for G = 1")
        common.require(self.group_size >= 1, "--group-size must be at least 1")
        common.require(0.0 < self.gamma <= 1.0, f"--gamma must be in (0, 1], got {self.gamma}")
        common.require(self.iterations >= 1, "--iterations must be at least 1")
        common.require(self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}")
        common.require(self.demos_file is not None or self.demos >= 1,
                       "--demos must be at least 1 (or give --demos-file)")
        if self.model == "tiny" and self.sft_demos < 1 and not self.policy:
            raise common.UserError("--model tiny starts from random weights: it needs --sft-demos > 0 (behaviour "
                                   "cloning with reasons) or --policy to be able to write thoughts")


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Thoughts and actions as text and tokens
# ──────────────────────────────────────────────────────────────────────────────────────────────────────

THOUGHT_PREFIX = "REASON:"  # forced at the start of every sampled response: what follows is the thought z
# Whatever parse_response would read as an ACTION line ends the thought (same pattern as envs._ACTION_RE), so a
# thought can never contain a second ACTION marker that would hide the demonstrated action.
_ACTION_MARKER = re.compile(r"action\s*[:：]", re.IGNORECASE)
ACTION_RESERVE = 32  # tokens kept free in the context for the demonstrated action after the sampled thought


def response_texts(thought: str, action: str) -> tuple[str, str]:
    """(head, full): head = "REASON: z\\nACTION:" ends where the action begins; full = envs.format_response(z, x).
    An empty thought gives the action-only response "ACTION: x"."""
    head = (f"REASON: {thought}\n" if thought else "") + "ACTION:"
    return head, f"{head} {action}"


def split_thought(text: str) -> tuple[str, bool, str | None]:
    """A sampled continuation of "REASON:" -> (thought, cut at an ACTION marker?, the model's own action).

    The model usually goes on to write "\\nACTION: <its own action>"; everything from that marker on is cut (and
    counted): the demonstrated action is appended instead. Whitespace is collapsed so that the thought is one
    line, as the prompt's history shows it, and so that no trailing space can merge with the next token."""
    match = _ACTION_MARKER.search(text)
    thought = text[:match.start()] if match else text
    own_action = envs.normalize_command(text[match.end():].split("\n")[0]) if match else None
    return " ".join(thought.split()), match is not None, own_action


def action_token_start(head_ids: Sequence[int], full_ids: Sequence[int]) -> int | None:
    """The token boundary check: the tokens of "REASON: z\\nACTION:" must be a prefix of the tokens of the full
    response, so that log p(x | s, z) is the log-prob of exactly the tokens after the prefix. Returns the index of
    the first action token, or None when the tokenizer merged across the boundary (or the action is empty)."""
    n = len(head_ids)
    if list(full_ids[:n]) != list(head_ids) or len(full_ids) <= n:
        return None
    return n


def encode_thought_action(codec: common.ChatCodec, thought: str, action: str) -> tuple[list[int], int | None]:
    """Token ids of the response "REASON: z\\nACTION: x" + end of turn (exactly as SFT and generation see it) and
    the index where x's tokens start (None: bad token boundary)."""
    head, full = response_texts(thought, action)
    full_ids = codec.response_ids(full)
    return full_ids, action_token_start(codec.tokenizer(head, add_special_tokens=False)["input_ids"], full_ids)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Sampling thoughts and scoring the observed action (Algorithm steps 4-5)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def sample_thoughts(lm, codec: common.ChatCodec, prompt_ids: Sequence[list[int]], g: int, temperature: float,
                    max_new_tokens: int, batch_size: int) -> list[list[tuple[str, bool]]]:
    """G continuations of each prompt after the forced response prefix "REASON:" -> [P][G] (text, ended by the
    end-of-turn token?). Forcing the prefix makes even a model that has never seen the format write a thought
    (rather than answer with an action straight away). Each prompt is encoded once for its G samples (prefix
    sharing, in common.generate_from_ids)."""
    prefix = codec.tokenizer(THOUGHT_PREFIX, add_special_tokens=False)["input_ids"]
    samples = common.generate_from_ids(lm, codec, [list(p) + prefix for p in prompt_ids], n=g, temperature=temperature,
                                       max_new_tokens=max_new_tokens, batch_size=batch_size)  # [P][G]
    # the text without the end-of-turn token, unstripped (split_thought normalises the whitespace)
    return [[(codec.tokenizer.decode(s.token_ids[:-1] if s.finished else s.token_ids, skip_special_tokens=True),
              s.finished) for s in group] for group in samples]


def thought_action_logprobs(lm, prompt_ids: Sequence[Sequence[int]], responses: Sequence[Sequence[Sequence[int]]],
                            action_starts: Sequence[Sequence[int]], pad_id: int, prompts_per_batch: int = 4
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For G responses per prompt: (log p(thought tokens | s), log p(action tokens | s, thought), number of action
    tokens), each [P, G]. Token k of response (p, g) counts as action iff k >= action_starts[p][g].

    Prefix sharing: each prompt is run once and its KV cache reused for its G responses (common's shared-prefix
    forward; the G thoughts of a state share the whole prompt). Differentiable when grad is enabled: the M-step's
    log p_θ(z, x | s) is the sum of the first two."""
    thought, action, n_action = [], [], []
    for start in range(0, len(prompt_ids), prompts_per_batch):
        r_batch = responses[start:start + prompts_per_batch]
        g = len(r_batch[0])
        # log p of every real response token (row: response p*G + g, col: its position), log-softmax in fp32
        token_logp, rows, cols, mask = common.continuation_token_logprobs(
            lm, prompt_ids[start:start + prompts_per_batch], r_batch, pad_id)  # [N] each
        starts = torch.tensor([s for group in action_starts[start:start + prompts_per_batch] for s in group],
                              device=token_logp.device)  # [b*G]
        is_action = (cols >= starts[rows]).float()  # [N]
        zeros = torch.zeros(mask.shape[0], device=token_logp.device)  # [b*G]
        thought.append(zeros.index_add(0, rows, token_logp * (1 - is_action)).view(-1, g))
        action.append(zeros.index_add(0, rows, token_logp * is_action).view(-1, g))
        n_action.append(zeros.index_add(0, rows, is_action).view(-1, g))
    return torch.cat(thought), torch.cat(action), torch.cat(n_action)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Rewards (Algorithm step 6, Eq. 4, 6, 8): all from log r̃, never by exponentiating raw sums first
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def thought_rewards(action_logp: torch.Tensor, action_tokens: torch.Tensor, method: str,
                    length_normalize: bool = False, grpo_std: bool = False) -> torch.Tensor:
    """[P, G] log p(x | s, z_g) -> [P, G] rewards R(z_g). An entry of -inf marks an unusable thought (bad token
    boundary): it gets reward 0 and is left out of the group's mean and std. "return" gets the per-step em
    weights here; discounted_returns sums them over the trajectory."""
    log_r = action_logp.double()  # [P, G] log r̃ (Eq. 4); float64: sums of -1000 stay exact
    if length_normalize:  # log of exp(mean log p): the official code's per-token probability
        log_r = log_r / action_tokens.double().clamp(min=1)
    valid = torch.isfinite(log_r)  # [P, G]
    if method in ("em", "return"):
        # Eq. 6: r̃_g / Σ r̃_g' = softmax_g(log r̃) — the max is subtracted inside softmax, so log-probs of -1000
        # give proper weights instead of 0/0. A row with no usable thought is all -inf -> NaN -> 0.
        return torch.softmax(log_r, dim=-1).nan_to_num(0.0)
    if method == "prob":
        return torch.exp(log_r)  # Eq. 4 as it is: may underflow to 0 (counted by the E-step), never NaN
    if method != "grpo":
        raise ValueError(f"unknown reward {method!r}")
    n = valid.sum(-1, keepdim=True).clamp(min=1)  # [P, 1]
    if grpo_std:
        # (r̃ - mean) / std does not change when r̃ is scaled, so compute it on r̃ / max_g r̃ = exp(log r̃ - max):
        # exactly the same numbers, and no underflow when every r̃ is tiny.
        row_max = log_r.masked_fill(~valid, -math.inf).amax(dim=-1, keepdim=True)  # [P, 1]
        log_r = log_r - torch.where(torch.isfinite(row_max), row_max, 0.0)  # (a row without usable thoughts: as is)
    r_tilde = torch.exp(log_r).masked_fill(~valid, 0.0)  # [P, G]
    mean = r_tilde.sum(-1, keepdim=True) / n  # [P, 1]
    advantage = (r_tilde - mean).masked_fill(~valid, 0.0)  # [P, G], sums to 0 over the valid thoughts
    if grpo_std:
        std = (advantage.pow(2).sum(-1, keepdim=True) / n).sqrt()
        advantage = advantage / (std + 1e-8)
    return advantage


def discounted_returns(step_rewards: torch.Tensor, kept: Sequence[int], gamma: float) -> torch.Tensor:
    """[T, G] per-step rewards of one demonstration -> [T, G] returns R_t^(g) = r_t^(g) + Σ_{t'>t} γ^{t'-t}
    r_{t'}^(kept). The future after step t is only observed along the thought that was kept (z*_t continues the
    trajectory); every thought of step t shares it, so for the others it is a per-state offset."""
    out = torch.zeros_like(step_rewards)
    future = 0.0
    for t in reversed(range(step_rewards.shape[0])):
        out[t] = step_rewards[t] + gamma * future
        future = float(out[t, kept[t]])
    return out


def mean_thought_f1(inferred: Sequence[envs.Trajectory], reference: Sequence[envs.Trajectory]) -> float:
    """How much of the expert's hidden reasons the inferred thoughts recover: common.token_f1 (bag-of-words F1) of
    every inferred thought with the reference's reason, averaged over the steps that have one."""
    scores = [common.token_f1(z.reason, h.reason) for a, d in zip(inferred, reference)
              for z, h in zip(a.steps, d.steps) if h.reason]
    return sum(scores) / len(scores) if scores else math.nan


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# E-step: infer thoughts step by step (Algorithm steps 4-7)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class ThoughtGroup:
    """The G thoughts sampled at step t of demonstration `demo`, and what the M-step needs to train on them."""
    demo: int
    t: int
    prompt_ids: list[int]  # s_t
    thoughts: list[str]  # [G] z_t^(g)
    response_ids: list[list[int]]  # [G] "REASON: z\nACTION: x" + end of turn
    action_start: list[int]  # [G] index of x's first token in response_ids
    action_logp: list[float]  # [G] log p(x_t | s_t, z_t^(g)); -inf: unusable (bad token boundary)
    action_tokens: list[int]  # [G]
    kept: int  # argmax_g of action_logp: the thought that continues the trajectory
    rewards: list[float] = dataclasses.field(default_factory=list)  # [G] R_t^(g), set by assign_rewards

    def to_json(self) -> dict[str, Any]:
        return {"demo": self.demo, "t": self.t, "thoughts": self.thoughts, "kept": self.kept, "rewards": self.rewards,
                "action_logp": [x if math.isfinite(x) else None for x in self.action_logp],
                "action_tokens": self.action_tokens}


def prompt_at(agent: common.AgentModel, traj: envs.Trajectory, t: int, args: Args) -> list[int]:
    """s_t as token ids: the prompt of step t, past thoughts in the history when --history-reasons."""
    messages = envs.trajectory_messages(traj, t, args.history_window, history_reasons=args.history_reasons)
    return agent.codec.prompt_ids(messages, args.max_new_tokens + ACTION_RESERVE)


def with_thought(step: envs.Step, thought: str) -> envs.Step:
    return dataclasses.replace(step, reason=thought, response=envs.format_response(thought, step.action or ""))


def encode_samples(codec: common.ChatCodec, samples: Sequence[tuple[str, bool]], action: str,
                   counts: Counter) -> tuple[list[str], list[list[int]], list[int]]:
    """One step's G sampled continuations of "REASON:" -> (thoughts, response ids of "REASON: z\nACTION: x" + end
    of turn, index of x's first token), counting in `counts` how each thought ended. A thought with a bad token
    boundary gets start = len(ids): no token is scored as the action, and the E-step marks it unusable."""
    thoughts, responses, starts = [], [], []
    for text, ended in samples:
        thought, cut, own_action = split_thought(text)
        ids, start = encode_thought_action(codec, thought, action)
        counts.update(thoughts=1, cut_at_action_marker=cut, own_action_matches=own_action == action,
                      ended_without_action=ended and not cut, hit_token_limit=not ended and not cut,
                      empty=not thought, bad_token_boundary=start is None)
        thoughts.append(thought)
        responses.append(ids)
        starts.append(len(ids) if start is None else start)
    return thoughts, responses, starts


@torch.no_grad()
def e_step(agent: common.AgentModel, demos: Sequence[envs.Trajectory], args: Args, desc: str,
           role: str = "policy") -> tuple[list[envs.Trajectory], list[ThoughtGroup], dict[str, float]]:
    """Fill in a thought before every action of every (action-only) demonstration with the adapter `role`.

    Steps run in order because s_{t+1} contains the thought kept at step t; the demonstrations still alive at
    step t are batched. Returns (demonstrations with the kept thoughts, one ThoughtGroup per step, statistics)."""
    codec, pad, g = agent.codec, agent.tokenizer.pad_token_id, args.group_size
    work = [dataclasses.replace(d, steps=[with_thought(s, "") for s in d.steps]) for d in demos]
    groups: list[ThoughtGroup] = []
    counts: Counter = Counter()
    horizon = max((len(d.steps) for d in work), default=0)
    with agent.role(role):
        for t in tqdm(range(horizon), desc=desc, leave=False):
            live = [k for k, d in enumerate(work) if t < len(d.steps)]
            prompts = [prompt_at(agent, work[k], t, args) for k in live]  # [P] s_t
            samples = sample_thoughts(agent.peft, codec, prompts, g, args.thought_temperature, args.max_new_tokens,
                                      args.batch_size)  # [P][G] step 4
            encoded = [encode_samples(codec, group, work[k].steps[t].action, counts) for k, group in zip(live, samples)]
            thoughts, responses, starts = (list(column) for column in zip(*encoded))  # [P][G] each
            _, action_logp, action_tokens = thought_action_logprobs(
                agent.peft, prompts, responses, starts, pad, max(1, args.batch_size // g))  # [P, G] step 5
            action_logp = action_logp.masked_fill(action_tokens == 0, -math.inf)  # bad boundary: unusable
            for row, k in enumerate(live):
                # step 7: z*_t, the thought that best explains x_t (the argmax of every reward variant). Without any
                # usable thought the step keeps an empty one and is not trained on (kept = -1).
                usable = bool(torch.isfinite(action_logp[row]).any())
                kept = int(action_logp[row].argmax()) if usable else -1
                counts["steps_without_usable_thought"] += not usable
                groups.append(ThoughtGroup(k, t, prompts[row], thoughts[row], responses[row], starts[row],
                                           action_logp[row].tolist(), action_tokens[row].int().tolist(), kept))
                if usable:
                    work[k].steps[t] = with_thought(work[k].steps[t], thoughts[row][kept])
    if counts["bad_token_boundary"]:
        warnings.warn(f"{desc}: {counts['bad_token_boundary']} of {counts['thoughts']} thoughts were dropped because "
                      f"the tokenizer merged the thought with the ACTION marker or the action")
    kept_logp = [grp.action_logp[grp.kept] for grp in groups if grp.kept >= 0]
    n = max(1, counts["thoughts"])
    stats = {"steps": len(groups), "thoughts": counts["thoughts"],
             "cut_at_action_marker": counts["cut_at_action_marker"] / n,
             "own_action_matches": counts["own_action_matches"] / n,
             "ended_without_action": counts["ended_without_action"] / n,
             "hit_token_limit": counts["hit_token_limit"] / n, "empty_thoughts": counts["empty"] / n,
             "bad_token_boundary": counts["bad_token_boundary"],
             "steps_without_usable_thought": counts["steps_without_usable_thought"],
             "kept_action_logp": sum(kept_logp) / max(1, len(kept_logp))}
    return work, groups, stats


def assign_rewards(groups: Sequence[ThoughtGroup], args: Args) -> dict[str, float]:
    """R_t^(g) for every group (Eq. 6 / 8), written into group.rewards. Returns how many groups carry no signal
    (every reward 0, e.g. all p(x | z, s) underflowing under --reward prob)."""
    by_demo: dict[int, list[ThoughtGroup]] = defaultdict(list)
    for grp in groups:
        by_demo[grp.demo].append(grp)
    for demo_groups in by_demo.values():
        demo_groups.sort(key=lambda grp: grp.t)
        logp = torch.tensor([grp.action_logp for grp in demo_groups], dtype=torch.float64)  # [T, G]
        tokens = torch.tensor([grp.action_tokens for grp in demo_groups], dtype=torch.float64)  # [T, G]
        rewards = thought_rewards(logp, tokens, args.reward, args.length_normalize, args.grpo_std)  # [T, G]
        if args.reward == "return":
            kept = [max(grp.kept, 0) for grp in demo_groups]
            rewards = discounted_returns(rewards, kept, args.gamma)
        for grp, row in zip(demo_groups, rewards.tolist()):
            grp.rewards = row
    silent = sum(all(r == 0 for r in grp.rewards) for grp in groups)
    return {"groups_without_signal": silent, "reward_mean": sum(sum(grp.rewards) for grp in groups) /
            max(1, sum(len(grp.rewards) for grp in groups))}


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# M-step: policy gradient on log p_θ(z, x | s) weighted by R (Algorithm step 8, Eq. 7)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def m_step_loss(logp: torch.Tensor, rewards: torch.Tensor, tokens_per_response: float) -> torch.Tensor:
    """Eq. 7 as a loss: -Σ_g R^(g) log p_θ(z^(g), x | s), averaged over the states of the batch.

    logp and rewards are [B, G]. The rewards are constants: they came from θ_n in the E-step, and the M-step
    maximises the E-step's weighted log-likelihood (1) for fixed samples, which is why several optimizer steps
    on one E-step's samples need no importance ratio. Dividing by the mean response length (one constant for
    the whole M-step) only rescales the learning rate, so that --m-lr means what it means for per-token SFT."""
    return -(rewards * logp).sum(dim=-1).mean() / tokens_per_response


def m_step(agent: common.AgentModel, groups: Sequence[ThoughtGroup], args: Args, desc: str,
           run: common.RunDir | None = None, iteration: int = 0) -> dict[str, float]:
    """Train the "policy" adapter on the E-step's groups (Eq. 7). Groups whose rewards are all 0 carry no
    gradient and are skipped."""
    items = [grp for grp in groups if grp.kept >= 0 and any(r != 0 for r in grp.rewards)]
    if not items:
        raise common.UserError("the E-step produced no thought with a non-zero reward (e.g. every p(x | z, s) "
                               "underflowed under --reward prob): try --length-normalize or --reward em")
    tokens_per_response = sum(len(r) for grp in items for r in grp.response_ids) / sum(len(grp.response_ids)
                                                                                       for grp in items)
    pad = agent.tokenizer.pad_token_id

    def loss_fn(batch: list[ThoughtGroup]):
        thought_lp, action_lp, _ = thought_action_logprobs(
            agent.peft, [grp.prompt_ids for grp in batch], [grp.response_ids for grp in batch],
            [grp.action_start for grp in batch], pad, max(1, args.batch_size // args.group_size))  # [B, G] each
        logp = thought_lp + action_lp  # [B, G] log p_θ(z, x | s) = log p_θ(z | s) + log p_θ(x | s, z)
        rewards = torch.tensor([grp.rewards for grp in batch], dtype=logp.dtype, device=logp.device)  # [B, G]
        loss = m_step_loss(logp, rewards, tokens_per_response)
        best = rewards.argmax(dim=-1, keepdim=True)  # [B, 1]
        return loss, {"m_loss": loss.item(), "best_thought_action_logp": action_lp.gather(1, best).mean().item(),
                      "best_logp_per_token": (logp.gather(1, best).mean() / tokens_per_response).item()}

    def on_step(step: int, metrics: dict[str, float]) -> None:
        if run is not None and step % 5 == 0:
            run.log(stage=f"iter{iteration}/m_step", step=step, **metrics)

    batches = common.epochs_of(items, args.m_batch_size, args.m_epochs, random.Random(args.seed + iteration))
    with agent.role("policy"):
        result = common.train_loop(agent.trainable_parameters("policy"), batches, loss_fn, lr=args.m_lr,
                                   total=len(batches), desc=desc, on_step=on_step)
    return {**result.metrics, "m_steps": result.steps, "m_groups": len(items),
            "m_stopped_on_nan": result.stopped_on_nan}


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Evaluation: held-out likelihood (the EM objective), thought overlap, env success
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


@torch.no_grad()
def action_logp_given_thoughts(agent: common.AgentModel, demos: Sequence[envs.Trajectory], args: Args,
                               role: str = "policy") -> list[float]:
    """log p(x_t | s_t, z_t) for every step, with each step's own `reason` as the thought (an empty reason:
    no thought, the response is "ACTION: x") and the same thoughts in the history. Scores only x's tokens."""
    prompts, responses, starts = [], [], []
    for traj in demos:
        for t, step in enumerate(traj.steps):
            ids, start = encode_thought_action(agent.codec, step.reason, step.action)
            prompts.append(prompt_at(agent, traj, t, args))
            responses.append([ids])
            starts.append([len(ids) if start is None else start])
    if not prompts:
        return []
    with agent.role(role):
        _, logp, n = thought_action_logprobs(agent.peft, prompts, responses, starts, agent.tokenizer.pad_token_id,
                                             args.batch_size)  # [S, 1]
    return logp.masked_fill(n == 0, math.nan).squeeze(1).tolist()


def log_mean_exp(values: Sequence[float]) -> float:
    """log (1/G Σ_g exp(v_g)) without underflow: Eq. 5's estimate of log p(x | s) from G values of log r̃."""
    return (torch.logsumexp(torch.tensor(values, dtype=torch.float64), 0) - math.log(len(values))).item()


def heldout_metrics(agent: common.AgentModel, heldout: Sequence[envs.Trajectory], args: Args, name: str,
                    role: str = "policy") -> dict[str, float]:
    """The EM objective on held-out demonstrations, in nats per action (higher is better):
      no_thought        log p(x | s) with no thoughts anywhere (what SFT on actions optimises)
      inferred          log p(x | s, z*) with the best of G sampled thoughts, inferred step by step (the E-step)
      marginal          log 1/G Σ_g p(x | s, z_g), the sampled estimate of log p(x | s) (Eq. 5)
      expert_reasons    log p(x | s, z_expert) with the expert's hidden reasons (when the demonstrations have them)
      thought_f1        word overlap of z* with the hidden reason
    The thought sampling is seeded identically for every policy, so the numbers are comparable."""
    action_only = [envs.strip_reasons(d) for d in heldout]
    with torch.random.fork_rng():  # same seed for every policy; the training run's random stream is untouched
        torch.manual_seed(args.seed + 7919)
        inferred, groups, stats = e_step(agent, action_only, args, desc=f"held-out E-step {name}", role=role)
    usable = [grp for grp in groups if grp.kept >= 0]
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
    no_thought = action_logp_given_thoughts(agent, action_only, args, role)
    out = {"no_thought": mean(no_thought),
           "inferred": mean([grp.action_logp[grp.kept] for grp in usable]),
           "marginal": mean([log_mean_exp([x for x in grp.action_logp if math.isfinite(x)]) for grp in usable]),
           "own_action_matches": stats["own_action_matches"], "steps": len(groups)}
    if any(s.reason for d in heldout for s in d.steps):
        expert = [x for x in action_logp_given_thoughts(agent, heldout, args, role) if math.isfinite(x)]
        out["expert_reasons"] = mean(expert)
        out["thought_f1"] = mean_thought_f1(inferred, heldout)
    return out


def heldout_row(agent: common.AgentModel, run: common.RunDir, heldout: Sequence[envs.Trajectory], args: Args,
                name: str, role: str = "policy") -> dict[str, float] | None:
    """heldout_metrics, cached in <run>/heldout.json and logged."""
    if not heldout:
        return None
    cache = run.read_json("heldout.json") if (run.path / "heldout.json").exists() else {}
    if name not in cache:
        cache[name] = heldout_metrics(agent, heldout, args, name, role)
        run.write_json("heldout.json", cache)
        run.log(stage="heldout", method=name, **cache[name])
    m = cache[name]
    print(f"  {name:<28} held-out log p(x): no thought {m['no_thought']:7.3f} | inferred thought "
          f"{m['inferred']:7.3f} | marginal {m['marginal']:7.3f}"
          + (f" | expert reason {m['expert_reasons']:7.3f} | thought F1 {m['thought_f1']:.3f}"
             if "thought_f1" in m else ""))
    return m


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Inputs: demonstrations, π0
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def load_demonstrations(args: Args) -> tuple[list[envs.Trajectory], list[envs.Trajectory]]:
    """(training, held-out) demonstrations, reasons still in them (hidden from the algorithm, which only ever sees
    envs.strip_reasons copies; they score the inferred thoughts and train the upper-bound baseline)."""
    if args.demos_file is None:
        if not hasattr(envs.ENV_REGISTRY[args.env], "expert_action"):
            raise common.UserError(f"--env {args.env} has no expert to demonstrate: give --demos-file")
        start = args.first_task  # disjoint from π0's behaviour-cloning games
        train = envs.expert_demonstrations(args.env, "train", args.demos, start=start, max_steps=args.max_steps)
        heldout = envs.expert_demonstrations(args.env, "train", args.heldout_demos, start=start + args.demos,
                                             max_steps=args.max_steps) if args.heldout_demos > 0 else []
        return train, heldout
    demos = common.load_demos_file(args.demos_file, args.env)
    if not any(d.steps for d in demos):
        raise common.UserError(f"--demos-file {args.demos_file}: no trajectory has any steps")
    if args.heldout_demos >= len(demos):
        raise common.UserError(f"--demos-file has {len(demos)} trajectories: not enough to hold out "
                               f"--heldout-demos {args.heldout_demos} and train on the rest")
    cut = len(demos) - args.heldout_demos
    return demos[:cut], demos[cut:]


def initial_policy(args: Args, run: common.RunDir, runtime: common.Runtime, quantize: bool) -> common.AgentModel:
    """π0 in the "policy" adapter: --policy, else behaviour cloning with reasons on --sft-demos expert episodes
    (games 0..N-1, disjoint from the demonstrations), else (a pretrained model with --sft-demos 0) the model itself."""
    cloning = not args.policy and args.sft_demos > 0
    if cloning and not hasattr(envs.ENV_REGISTRY[args.env], "expert_action"):
        raise common.UserError(f"--env {args.env} has no expert for behaviour cloning π0: pass --sft-demos 0 "
                               f"(with a pretrained --model) or --policy")
    bc_demos = envs.expert_demonstrations(args.env, "train", args.sft_demos,
                                          max_steps=args.max_steps) if cloning else []
    # the cloning prompts are the ones Action-PRM uses: with --history-reasons they show the past thoughts; without
    # demonstrations (a pretrained model, --sft-demos 0) π0 is the model itself
    return common.initial_policy(args, run, runtime, quantize, bc_demos, history_reasons=args.history_reasons)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# main
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def main(args: Args) -> dict[str, Any]:
    runtime, quantize = common.start(args)
    demos, heldout = load_demonstrations(args)  # validated before anything is written
    action_only = [envs.strip_reasons(d) for d in demos]  # all the algorithm ever sees of them
    has_reasons = any(s.reason for d in demos for s in d.steps)
    run = common.RunDir("action_prm", args.env, args.seed, args.out, args)
    print(common.banner("Action-PRM", args, runtime, quantize, run, f"{len(demos)} action-only demonstrations "
                        f"({sum(len(d.steps) for d in demos)} steps), {len(heldout)} held out",
                        f"G = {args.group_size}, reward {args.reward}"))
    run.write_jsonl("demonstrations.jsonl", action_only)
    run.write_jsonl("heldout_demonstrations.jsonl", [envs.strip_reasons(d) for d in heldout])

    # ── π0 (Algorithm step 1) and two SFT baselines, fine-tuned copies of π0 on the same demonstrations ──
    agent = initial_policy(args, run, runtime, quantize)
    rows: list[tuple[str, dict]] = []
    likelihood: list[tuple[str, dict | None]] = []

    def add_row(name: str, role: str = "policy") -> None:  # env success and held-out likelihood of a policy
        rows.append((name, common.evaluate_row(agent, run, args, name, role=role)))
        likelihood.append((name, heldout_row(agent, run, heldout, args, name, role=role)))

    if hasattr(envs.ENV_REGISTRY[args.env], "expert_action"):
        rows.append(("Expert", common.evaluate_row(agent, run, args, "Expert", policy=envs.expert_policy)))
    add_row("π0")
    if args.sft_baseline:
        hw = args.history_window
        common.sft_baseline(agent, run, args, "sft_actions", [
            (envs.trajectory_messages(d, t, hw), envs.format_response("", s.action))
            for d in action_only for t, s in enumerate(d.steps)], desc="SFT baseline sft_actions")
        add_row("SFT actions only", role="sft_actions")
        if has_reasons:  # the upper bound: the thoughts Action-PRM has to infer, given
            common.sft_baseline(agent, run, args, "sft_reasons", [
                (envs.trajectory_messages(d, t, hw, history_reasons=args.history_reasons), s.response)
                for d in demos for t, s in enumerate(d.steps)], desc="SFT baseline sft_reasons")
            add_row("SFT expert reasons", role="sft_reasons")
        agent.add_role("pi0", copy_from="policy")  # π0 kept for the baseline on the inferred thoughts (after EM)

    for i in range(1, args.iterations + 1):
        it = f"iter{i}"
        (run.path / it).mkdir(exist_ok=True)

        def em_round() -> dict[str, float]:  # run.stage saves θ_i and these metrics; a re-run loads them
            # ── E-step: G thoughts per step, rewards from the likelihood of the observed action (steps 4-7) ──
            inferred, groups, stats = e_step(agent, action_only, args, desc=f"{it} E-step: infer thoughts (π{i - 1})")
            stats.update(assign_rewards(groups, args))
            run.write_jsonl(f"{it}/thought_groups.jsonl", groups)
            run.write_jsonl(f"{it}/demonstrations_with_thoughts.jsonl", inferred)
            run.log(stage=f"{it}/e_step", **stats)
            print(f"[{it}] E-step: {stats['steps']} steps x G={args.group_size} thoughts | kept thought: "
                  f"log p(x|s,z*) = {stats['kept_action_logp']:.3f} | own action = x in "
                  f"{100 * stats['own_action_matches']:.0f}% | cut at an ACTION marker "
                  f"{100 * stats['cut_at_action_marker']:.0f}% | bad boundary {stats['bad_token_boundary']} | "
                  f"groups without signal {stats['groups_without_signal']}")
            # ── M-step: policy gradient on log p_θ(z, x | s) weighted by R (step 8, Eq. 7) ──
            m = m_step(agent, groups, args, desc=f"{it} M-step", run=run, iteration=i)
            run.log(stage=f"{it}/m_step", final=True, **m)
            return m

        m = run.stage(f"{it}/m_step", em_round, save_as=f"{it}/m_step_metrics.json",
                      adapter=(agent, "policy", f"{it}/policy"))
        print(f"[{it}] M-step: {m['m_steps']} steps on {m['m_groups']} groups, "
              f"last loss {m.get('m_loss', math.nan):.3f}")
        if i % args.eval_every == 0 or i == args.iterations:
            add_row(f"Action-PRM π{i}")

    # ── Output: the demonstrations with θ_K's thoughts filled in (a product on its own) ──
    def infer_final_thoughts() -> dict[str, float]:
        inferred, _, stats = e_step(agent, action_only, args, desc=f"final E-step: infer thoughts (π{args.iterations})")
        run.write_jsonl("demonstrations_with_thoughts.jsonl", inferred)
        if has_reasons:
            stats["thought_f1"] = mean_thought_f1(inferred, demos)
        return stats

    final = run.stage("final_thoughts", infer_final_thoughts, save_as="final_thoughts.json")
    if args.sft_baseline:  # what the inferred thoughts teach as plain SFT data: π0 fine-tuned on them, like the others
        inferred = envs.load_trajectories(str(run.path / "demonstrations_with_thoughts.jsonl"))
        common.sft_baseline(agent, run, args, "sft_inferred", [
            (envs.trajectory_messages(d, t, args.history_window, history_reasons=args.history_reasons), s.response)
            for d in inferred for t, s in enumerate(d.steps)], desc="SFT baseline sft_inferred", copy_from="pi0")
        add_row("SFT inferred thoughts", role="sft_inferred")
    summary = {"rows": dict(rows), "heldout_likelihood": {n: m for n, m in likelihood if m is not None},
               "final_thoughts": final, "policy_adapter": str(run.path / f"iter{args.iterations}" / "policy"),
               "demonstrations_with_thoughts": str(run.path / "demonstrations_with_thoughts.jsonl")}
    run.write_json("summary.json", summary)
    common.print_tables("Action-PRM", args, rows)
    if heldout:
        print(f"\nHeld-out action log-likelihood, nats per action ({len(heldout)} demonstrations; higher is better)")
        print(common.format_columns(likelihood, [("no_thought", "no thought"), ("inferred", "inferred z*"),
                                                 ("marginal", "marginal"), ("expert_reasons", "expert reason"),
                                                 ("thought_f1", "thought F1")]))
    print(f"\ndemonstrations with inferred thoughts: {summary['demonstrations_with_thoughts']}"
          + (f" (word F1 with the hidden reasons {final['thought_f1']:.3f})" if "thought_f1" in final else "")
          + f"\npolicy adapter: {summary['policy_adapter']}   (run folder: {run.path})")
    return summary


if __name__ == "__main__":
    common.run_cli(main, Args, __doc__)
