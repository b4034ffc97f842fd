"""AgentPRM: train an LLM agent with a process reward model learned from Monte-Carlo rollouts.

Paper: S. Choudhury, "Process Reward Models for LLM Agents: Practical Framework and Directions" (2025),
Sec. 2 (Algorithm 1, Eq. 1-5), Sec. 4 (reset-50-50, steered exploration, process reward shaping, Eq. 13).

Algorithm 1 (Training Agent PRMs), as implemented below:
  1. Initialise the agent policy π0 (behaviour cloning on expert demonstrations, or --policy).
  2. For iteration i = 1..K:
     Stage 1 — roll out and compute targets
  3.   Roll out π_{i-1} several times on the same tasks; store every visit of (s, a) in G(s, a).
  4.   Q̂(s, a) = mean over the visits of the discounted reward-to-go Σ_{k≥t} γ^{k-t} r_k        (Eq. 1)
  5.   Normalise Q̂ to [0, 1]; dataset D = {(s, a, Q̂)}.
     Stage 2 — train the process reward model
  6.   Q_i = argmin soft binary cross-entropy on D                                             (Eq. 2 / 4)
       (or Bradley-Terry on same-state action pairs with Q̂(s,a1) - Q̂(s,a2) ≥ δ, Sec. 2.3)
     Stage 3 — train the policy
  7.   π_i = argmax E_{s~D, a~π}[Q_i(s, a)] - β KL(π || π_{i-1})                               (Eq. 3 / 5)
       solved by online DPO: two samples per state, the PRM picks chosen / rejected, reference π_{i-1}.
  8. End for.
  9. Return the best π on the validation split.
  Inference: Best-of-N, BoN(π, Q): at each turn sample N responses from π, act with the highest Q.

    python agent_prm.py --quick                        # tiny model on CPU, one iteration in a few minutes
    python agent_prm.py --model llama-3.2-3b           # one 24 GB GPU: 4-bit base shared by policy/reference/PRM
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import warnings
from collections import defaultdict
from typing import Any, Sequence

import torch
import torch.nn.functional as F

import common
import envs

# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Arguments
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


# The official recipe (the AgentPRM repository's bash/ and configs/) as a preset of flags: `--recipe paper` sets
# each flag not given on the command line (in Python: Args(**common.recipe_flags(Args, "paper"), ...)).
# flag -> (value, where it comes from).
PAPER_RECIPE: dict[str, tuple[Any, str]] = {
    "rollouts_per_task": (16, "Stage 1: 16 rollouts per task"),
    "rollout_temperature": (0.3, "Stage 1: sampling temperature 0.3"),
    "train_tasks": (320, "Stage 1: 320 tasks x 16 = 5,120 episodes (the official run: ~70k rollout rows)"),
    "prm_batch_size": (128, "Stage 2: batch 128 (here by gradient accumulation)"),
    "prm_epochs": (1.0, "Stage 2: one epoch"),
    "prm_lr_schedule": ("cosine", "Stage 2: decays to 0 (official: linear; here cosine after a 5% warm-up)"),
    "dpo_steps": (400, "Stage 3: 400 optimizer steps (official: 50,000 episodes / 60 ≈ 830)"),
    "dpo_prompts": (60, "Stage 3: 60 prompts per optimizer step, two samples each"),
    "dpo_temperature": (0.7, "Stage 3: sampling temperature 0.7"),
    "dpo_beta": (0.03, "Stage 3: β = 0.03"),
    "dpo_lr": (1e-4, "Stage 3: the adapter's lr, from a sweep against the exact Q^μ at this recipe (docs/findings.md: "
               "5e-4 and 2e-4 lower π0, 1e-4 keeps it; the official 8e-7 fine-tunes all weights of a 3B model)"),
    "max_new_tokens": (64, "Stage 3: 64-token responses"),
}


stage1_flag = common.flag_group("stage 1: rollouts and Q̂")  # field() in one --help group
stage2_flag = common.flag_group("stage 2: PRM")
stage3_flag = common.flag_group("stage 3: online DPO")
inference_flag = common.flag_group("inference")


@dataclasses.dataclass
class Args(common.BaseArgs):
    """Model, environment, π0 and evaluation flags come from common.BaseArgs; these are Algorithm 1's."""

    RECIPES = {"paper": PAPER_RECIPE}  # --recipe NAME: a preset of flags (common.parse_args); not a field
    # Stage 1
    iterations: int = stage1_flag(1, "K, the number of AgentPRM iterations")
    train_tasks: int = stage1_flag(32, "distinct training games rolled out in Stage 1 (from --first-task on)")
    rollouts_per_task: int = stage1_flag(4, "rollouts of π_{i-1} per training game")
    rollout_temperature: float = stage1_flag(0.7, "sampling temperature of Stage-1 rollouts")
    gamma: float = stage1_flag(0.95, "discount γ of the reward-to-go (Eq. 1)")
    # Stage 2
    prm_loss: str = stage2_flag("bce", "bce: soft BCE on Q̂ (Eq. 2/4) | bt: Bradley-Terry on same-state pairs "
                                "(Sec. 2.3)", choices=["bce", "bt"])
    bt_margin: float = stage2_flag(0.03, "δ: a Bradley-Terry pair needs Q̂(s,a1) - Q̂(s,a2) ≥ δ (official code: 0.03)")
    prm_epochs: float = stage2_flag(1.0, "PRM training epochs")
    prm_lr: float = stage2_flag(1e-3, "PRM learning rate (LoRA adapter + scalar head)")
    prm_lr_schedule: str = stage2_flag("constant", "PRM learning-rate schedule: constant, or cosine (5%% warm-up, "
                                       "decay to 0) (official code: linear decay to 0)", choices=["constant", "cosine"])
    prm_batch_size: int = stage2_flag(16, "PRM rows per optimizer step (in micro-batches of --batch-size)")
    prm_holdout: float = stage2_flag(0.1, "fraction of training games held out to report the PRM's loss and accuracy")
    # Stage 3
    dpo_steps: int = stage3_flag(60, "online-DPO optimizer steps")
    dpo_prompts: int = stage3_flag(8, "prompt states per DPO optimizer step (--dpo-samples each)")
    dpo_micro_prompts: int = stage3_flag(16, "prompt states per forward/backward pass (gradients accumulated per step)")
    dpo_samples: int = stage3_flag(2, "K samples per state; the PRM's best and worst form the pair (official code: 2)")
    dpo_beta: float = stage3_flag(0.1, "β, the KL weight to π_{i-1} in Eq. 3 (official code: 0.03)")
    dpo_lr: float = stage3_flag(5e-4, "policy learning rate (LoRA adapter)")
    dpo_temperature: float = stage3_flag(1.0, "sampling temperature of the DPO samples (official code: 0.7)")
    dpo_margin: float = stage3_flag(0.0, "δ: drop DPO pairs whose PRM score gap is below δ (0: any strict preference)")
    invalid_penalty: float = stage3_flag(1.0, "a response without a parsable ACTION scores -penalty (valid Q: [0, 1])")
    reset_50_50: bool = stage3_flag(False, "half of the DPO prompt states come from expert trajectories (Sec. 4.1)")
    steered_exploration: bool = stage3_flag(False, "sample DPO responses with Listing 1 added to the prompt (Sec. 4.1)")
    shaping_alpha: float = stage3_flag(0.0, "α of process reward shaping, Q̂ <- (1-α) Q̂ + α A^μ, μ = π0 (Eq. 13)")
    # inference
    bon_n: list[int] = inference_flag([4], "N of the Best-of-N rows; several: the N-scaling curve (Fig. 2b); 0: none")
    bon_temperature: float = inference_flag(0.7, "sampling temperature of the N Best-of-N candidates")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quick:  # a CPU smoke test: the algorithm is unchanged, only the sizes shrink
            self.train_tasks, self.rollouts_per_task = min(self.train_tasks, 6), min(self.rollouts_per_task, 2)
            self.prm_epochs, self.dpo_steps, self.dpo_prompts = min(self.prm_epochs, 1.0), min(self.dpo_steps, 4), 4
            self.bon_n = [min(n, 2) for n in self.bon_n][:1]
            if self.model != "tiny":  # see BaseArgs: a pretrained model on a CPU is ~1000x slower per token
                self.train_tasks, self.dpo_steps = min(self.train_tasks, 3), min(self.dpo_steps, 2)
                # a PRM step on 16 full-length prompts takes minutes on a CPU: a tenth of an epoch of the
                # ~100-200 (s, a) pairs of 6 rollouts is one or two steps, enough to prove the path
                self.prm_epochs = min(self.prm_epochs, 0.1)
        self.bon_n = common.best_of_n_sizes(self.bon_n)
        common.check_dpo_flags(self)
        for name in ("train_tasks", "rollouts_per_task", "prm_batch_size"):
            value = getattr(self, name)
            common.require(value >= 1, f"--{name.replace('_', '-')} must be ≥ 1, got {value}")
        common.require(0.0 < self.gamma <= 1.0, f"--gamma must be in (0, 1], got {self.gamma}")
        common.require(0.0 <= self.shaping_alpha <= 1.0, f"--shaping-alpha must be in [0, 1], got {self.shaping_alpha}")


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Stage 1: roll out π_{i-1}, estimate Q̂ (Alg. 1 lines 3-5, Eq. 1)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────

INVALID_ACTION_KEY = "<invalid>"  # every unparsable response has the same effect on the game: a wasted turn


def state_action_keys(traj: envs.Trajectory) -> list[tuple[str, str]]:
    """(state key, action key) for every step. The REASON text is not part of the key: different reasons for
    the same action are the same (s, a).

    s_t is the full history (o_0, a_0, ..., o_t) — not the truncated prompt window — and with a deterministic
    game it is fixed by (game, environment actions so far). Two rollouts share s_t only while they have played
    the same actions, so after the first few steps almost every (s, a) is visited once and Q̂ is a single return."""
    keys, actions = [], []
    for step in traj.steps:
        state = hashlib.sha1("\x1f".join([traj.game_id, *actions]).encode()).hexdigest()
        action = step.action or INVALID_ACTION_KEY
        keys.append((state, action))
        actions.append(action)
    return keys


def reward_to_go(rewards: Sequence[float], gamma: float) -> list[float]:
    """G_t = Σ_{k≥t} γ^{k-t} r_k for every t (the inner sum of Eq. 1), computed backwards.

    The official code discounted by γ^t counted from the episode START, which makes the targets of a successful
    episode shrink as the agent gets closer to the goal; the reward-to-go is the Q-function's definition."""
    returns, running = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def estimate_q_targets(trajectories: Sequence[envs.Trajectory], gamma: float) -> tuple[dict, dict]:
    """Eq. 1: Q̂(s, a) = 1/|G(s,a)| Σ_{visits of (s,a)} Σ_{k≥t} γ^{k-t} r_k. Returns (Q̂, visit counts)."""
    G: dict[tuple[str, str], list[float]] = defaultdict(list)  # G(s, a): the returns of every visit
    for traj in trajectories:
        returns = reward_to_go([s.reward for s in traj.steps], gamma)
        for key, g in zip(state_action_keys(traj), returns):
            G[key].append(g)
    q_hat = {key: sum(gs) / len(gs) for key, gs in G.items()}
    return q_hat, {key: len(gs) for key, gs in G.items()}


def normalize_targets(q_hat: dict[Any, float]) -> dict[Any, float]:
    """Min-max normalise Q̂ to [0, 1] (Alg. 1 line 5).

    If every target is equal (e.g. every rollout failed) there is nothing to rank: say so, and keep the raw
    values (clipped to [0, 1]) instead of dividing by zero. The PRM then learns a constant, which is the honest
    outcome of such a Stage 1; a stronger π0, more tasks or more rollouts fix it."""
    if not q_hat:
        raise common.UserError("Stage 1 produced no (state, action) pairs: no rollouts were collected")
    lo, hi = min(q_hat.values()), max(q_hat.values())
    if hi - lo < 1e-12:
        outcome = "succeeded" if hi > 0 else "failed"
        warnings.warn(f"all {len(q_hat)} Q̂ targets equal {hi:.3g} (every rollout {outcome}): the PRM has no "
                      f"ranking to learn; use a stronger π0, more tasks (--train-tasks) or more rollouts "
                      f"(--rollouts-per-task)", stacklevel=2)
        return {key: min(1.0, max(0.0, q)) for key, q in q_hat.items()}
    return {key: (q - lo) / (hi - lo) for key, q in q_hat.items()}


@dataclasses.dataclass
class PRMExample:
    """One row of D: the prompt of state s, the response a (REASON + ACTION), its target Q̂(s, a). state_key
    identifies the state s: Bradley-Terry pairs are formed between rows that share it."""
    messages: list[dict[str, str]]
    response: str
    target: float
    state_key: str
    action: str
    game_id: str


def build_prm_dataset(trajectories: Sequence[envs.Trajectory], q_targets: dict, history_window: int,
                      history_reasons: bool = False) -> list[PRMExample]:
    """D = {(s, a, Q̂)}: one example per distinct (s, a), with the first response seen for it, the prompt of the
    first visit of s and the target Q̂(s, a); the actions taken at one state s are consecutive rows."""
    prompts: dict[str, tuple[list[dict], str]] = {}  # s -> (messages of its first visit, game)
    actions_at: dict[str, dict[str, str]] = defaultdict(dict)  # s -> {a: the first response seen for (s, a)}
    for traj in trajectories:
        for t, ((state, action), step) in enumerate(zip(state_action_keys(traj), traj.steps)):
            if state not in prompts:
                prompts[state] = (envs.trajectory_messages(traj, t, history_window, history_reasons=history_reasons),
                                  traj.game_id)
            actions_at[state].setdefault(action, step.response)
    return [PRMExample(messages, response, q_targets[(state, a)], state, a, game_id)
            for state, (messages, game_id) in prompts.items() for a, response in actions_at[state].items()]


def collect_rollouts(agent: common.AgentModel, tasks: Sequence[int], args: Args, desc: str) -> list[envs.Trajectory]:
    """`rollouts_per_task` episodes of the current "policy" adapter on every task, stepped in batches."""
    policy = common.make_llm_policy(agent.peft, agent.codec, args.rollout_temperature, args.max_new_tokens,
                                    args.batch_size)
    return common.rollout_in_batches(common.training_games(args, tasks), policy, args, desc)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Process reward shaping (Sec. 4.2, Eq. 13): Q̂ <- (1 - α) Q̂ + α A^μ, A^μ(s,a) = r + γ V^μ(s') - V^μ(s)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def fit_value_function(agent: common.AgentModel, mu_trajectories: Sequence[envs.Trajectory], args: Args) -> dict:
    """V^μ(s): a state-only head ("value" adapter) fit by soft BCE to μ's Monte-Carlo returns from s."""
    states = []
    for traj in mu_trajectories:
        returns = reward_to_go([s.reward for s in traj.steps], args.gamma)
        for t, g in enumerate(returns):
            prompt = envs.trajectory_messages(traj, t, args.history_window, history_reasons=args.history_reasons)
            states.append((agent.codec.prompt_ids(prompt), min(g, 1.0)))
    agent.add_role("value", head=True)
    pad = agent.tokenizer.pad_token_id
    with agent.role("value"):
        def loss_fn(batch):
            logits = common.scalar_scores(agent.peft, agent.heads["value"], [s for s, _ in batch], pad, len(batch))
            targets = torch.tensor([g for _, g in batch], device=logits.device)
            loss = F.binary_cross_entropy_with_logits(logits, targets)
            return loss, {"value_bce": loss.item()}

        batches = common.epochs_of(states, args.prm_batch_size, args.prm_epochs, random.Random(args.seed))
        result = common.train_loop(agent.trainable_parameters("value"), batches, loss_fn, lr=args.prm_lr,
                                   total=len(batches), desc="fit V^μ")
    return result.metrics


def reference_advantage(reward: float, v_s: float, v_next: float, gamma: float) -> float:
    """A^μ(s, a) = r(s, a) + γ V^μ(s') - V^μ(s)   (Sec. 4.2)."""
    return reward + gamma * v_next - v_s


def shape_target(q: float, advantage: float, alpha: float) -> float:
    """Eq. 13: (1 - α) Q(s, a) + α A^μ(s, a). A^μ lies in [-1, 1]; it enters as (A + 1) / 2 so the shaped
    target stays in [0, 1] for the soft BCE — an affine map, which leaves the ranking of actions unchanged."""
    return (1 - alpha) * q + alpha * (advantage + 1) / 2


@torch.no_grad()
def value_head_values(agent: common.AgentModel, trajectories: Sequence[envs.Trajectory], args: Args) -> list[list[float]]:
    """V^μ(s_t) from the fitted "value" head, for t = 0..T of every trajectory (μ = π0)."""
    pad, values = agent.tokenizer.pad_token_id, []
    with agent.role("value"):
        for traj in trajectories:
            prompts = [agent.codec.prompt_ids(envs.trajectory_messages(traj, t, args.history_window,
                                                                       history_reasons=args.history_reasons))
                       for t in range(len(traj.steps) + 1)]
            v = torch.sigmoid(common.scalar_scores(agent.peft, agent.heads["value"], prompts, pad, args.batch_size))
            values.append(v.tolist())  # [T + 1]
    return values


def reference_values(agent: common.AgentModel, trajectories: Sequence[envs.Trajectory],
                     mu_trajectories: Sequence[envs.Trajectory], args: Args) -> tuple[list[list[float]], dict | None]:
    """V^μ(s_t) of Eq. 13 for every state of `trajectories`: μ = π0, its value head fit on `mu_trajectories` unless
    it already is. Returns the values and the fit's metrics (None when nothing was fit)."""
    fit = fit_value_function(agent, mu_trajectories, args) if "value" not in agent.heads else None
    return value_head_values(agent, trajectories, args), fit


def shaped_targets(trajectories: Sequence[envs.Trajectory], q_hat: dict, values: Sequence[Sequence[float]],
                   args: Args) -> dict:
    """Eq. 13 on every (s, a), with A^μ averaged over the visits of (s, a) like Q̂; values[i][t] = V^μ(s_t) of
    trajectory i; V^μ(s') = 0 after the end."""
    advantages: dict[tuple[str, str], list[float]] = defaultdict(list)
    for traj, v in zip(trajectories, values):
        for t, (key, step) in enumerate(zip(state_action_keys(traj), traj.steps)):
            v_next = 0.0 if step.done else float(v[t + 1])
            advantages[key].append(reference_advantage(step.reward, float(v[t]), v_next, args.gamma))
    return {key: shape_target(q, sum(advantages[key]) / len(advantages[key]), args.shaping_alpha)
            for key, q in q_hat.items()}


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Stage 2: train the PRM Q_i (Alg. 1 line 6, Eq. 2 / 4; Bradley-Terry ablation of Sec. 2.3)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def soft_bce_loss(logits: torch.Tensor, q_targets: torch.Tensor) -> torch.Tensor:
    """Eq. 2 / 4: -E[Q̂ log Q_φ(s,a) + (1 - Q̂) log(1 - Q_φ(s,a))] with Q_φ = σ(logit)."""
    return F.binary_cross_entropy_with_logits(logits, q_targets)


def bradley_terry_loss(logits_chosen: torch.Tensor, logits_rejected: torch.Tensor) -> torch.Tensor:
    """Sec. 2.3: -E[log σ(Q_φ(s, a1) - Q_φ(s, a2))] over pairs with Q̂(s,a1) - Q̂(s,a2) ≥ δ (scores as logits)."""
    return -F.logsigmoid(logits_chosen - logits_rejected).mean()


def preference_pairs(dataset: Sequence[PRMExample], margin: float) -> list[tuple[PRMExample, PRMExample]]:
    """(chosen, rejected) pairs of actions taken in the same state whose targets differ by at least δ."""
    by_state: dict[str, list[PRMExample]] = defaultdict(list)
    for ex in dataset:
        by_state[ex.state_key].append(ex)
    return [(a, b) for group in by_state.values() for a in group for b in group if a.target - b.target >= margin]


def prm_logits(agent: common.AgentModel, messages: Sequence[list[dict]], responses: Sequence[str],
               batch_size: int, response_ids: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """Q_φ(s, a) as a logit (Q = σ(logit)): the PRM head on the last token of prompt + response [B]."""
    if response_ids is None:
        response_ids = [agent.codec.response_ids(r) for r in responses]
    sequences = [agent.codec.prompt_ids(m) + list(r) for m, r in zip(messages, response_ids)]
    with agent.role("prm"):
        return common.scalar_scores(agent.peft, agent.heads["prm"], sequences, agent.tokenizer.pad_token_id,
                                    batch_size)


def train_prm(agent: common.AgentModel, dataset: Sequence[PRMExample], args: Args, desc: str) -> dict[str, float]:
    """Fit a fresh "prm" adapter + head on D; report held-out loss and accuracy."""
    agent.add_role("prm", head=True, fresh=True)
    train, held_out = common.split_by_game(dataset, args.prm_holdout, args.seed)  # whole games: no shared prefixes
    rng = random.Random(args.seed)
    # an optimizer step of --prm-batch-size rows, in micro-batches of at most --batch-size (gradients accumulated)
    micro = min(args.prm_batch_size, args.batch_size)
    accum = math.ceil(args.prm_batch_size / micro)
    with agent.role("prm"):
        if args.prm_loss == "bce":
            def loss_fn(batch):
                logits = prm_logits(agent, [e.messages for e in batch], [e.response for e in batch], len(batch))
                targets = torch.tensor([e.target for e in batch], device=logits.device)
                loss = soft_bce_loss(logits, targets)
                return loss, {"prm_loss": loss.item()}

            batches = common.epochs_of(train, micro, args.prm_epochs, rng, multiple_of=accum)
        else:
            pairs = preference_pairs(train, args.bt_margin)
            if not pairs:
                raise common.UserError(f"no same-state action pairs with Q̂ gap ≥ δ={args.bt_margin}: Bradley-Terry "
                                       f"needs revisited states; raise --rollouts-per-task or use --prm-loss bce")

            def loss_fn(batch):
                logits = prm_logits(agent, [e.messages for p in batch for e in p], [e.response for p in batch for e in p],
                                    2 * len(batch))
                loss = bradley_terry_loss(logits[0::2], logits[1::2])
                return loss, {"prm_loss": loss.item()}

            batches = common.epochs_of(pairs, max(1, micro // 2), args.prm_epochs, rng, multiple_of=accum)
        result = common.train_loop(agent.trainable_parameters("prm"), batches, loss_fn, lr=args.prm_lr,
                                   grad_accum=accum, total=len(batches), desc=desc,
                                   cosine=args.prm_lr_schedule == "cosine")
        metrics = {"prm_train_loss": result.metrics.get("prm_loss", float("nan")), "prm_train_examples": len(train)}
        metrics.update(evaluate_prm(agent, held_out, args))
        if held_out and args.prm_loss == "bce":
            # The reference a PRM must beat to have learned anything from (s, a): predicting the mean training
            # target everywhere. At CPU sizes the PRM's held-out loss is often no lower (docs/findings.md).
            mean_target = sum(ex.target for ex in train) / len(train)
            targets = torch.tensor([ex.target for ex in held_out])
            constant = torch.full_like(targets, mean_target).logit(eps=1e-6)  # [H] the same logit everywhere
            metrics["prm_heldout_loss_constant"] = soft_bce_loss(constant, targets).item()
    return metrics


@torch.no_grad()
def evaluate_prm(agent: common.AgentModel, held_out: Sequence[PRMExample], args: Args) -> dict[str, float]:
    """Held-out soft-BCE loss, accuracy of σ(logit) > 1/2 against Q̂ > 1/2, and same-state pair accuracy."""
    if not held_out:
        return {}
    logits = prm_logits(agent, [e.messages for e in held_out], [e.response for e in held_out], args.batch_size)
    targets = torch.tensor([e.target for e in held_out], device=logits.device)
    index = {id(e): k for k, e in enumerate(held_out)}
    pairs = preference_pairs(held_out, max(args.bt_margin, 1e-6))
    pair_acc = (sum(float(logits[index[id(a)]] > logits[index[id(b)]]) for a, b in pairs) / len(pairs)) if pairs else float("nan")
    return {"prm_heldout_loss": soft_bce_loss(logits, targets).item(),
            "prm_heldout_acc": ((logits > 0) == (targets > 0.5)).float().mean().item(),
            "prm_heldout_pair_acc": pair_acc, "prm_heldout_examples": len(held_out), "prm_heldout_pairs": len(pairs)}


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Stage 3: train π_i against Q_i by online DPO, reference π_{i-1} (Alg. 1 line 7, Eq. 3 / 5)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO's solution of Eq. 3/5 (maximise Q while staying β-close in KL to π_{i-1}):
    -log σ(β [(log π_θ(c) - log π_ref(c)) - (log π_θ(r) - log π_ref(r))]), log-probs summed over response tokens.
    All inputs are [P] (one entry per prompt)."""
    chosen_reward = beta * (policy_chosen - ref_chosen)  # [P] implicit rewards
    rejected_reward = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    metrics = {"dpo_loss": loss.item(), "reward_margin": (chosen_reward - rejected_reward).mean().item(),
               "reward_acc": (chosen_reward > rejected_reward).float().mean().item()}
    return loss, metrics


def is_valid_sample(sample: common.Sample) -> bool:
    """A response that ended (not cut by max_new_tokens) and has a parsable ACTION."""
    return sample.finished and envs.parse_response(sample.text).action is not None


@torch.no_grad()
def score_samples(agent: common.AgentModel, messages: Sequence[list[dict]], samples: Sequence[Sequence[common.Sample]],
                  invalid_penalty: float, batch_size: int) -> list[list[float]]:
    """Q_i(s, a) = σ(PRM logit) for every sample (each prompt encoded once for its N samples); a response
    without a usable ACTION scores -penalty, below every valid Q in [0, 1]."""
    prompts = [agent.codec.prompt_ids(m) for m in messages]
    with agent.role("prm"):
        logits = common.continuation_scores(agent.peft, agent.heads["prm"], prompts,
                                            [[s.token_ids for s in group] for group in samples],
                                            agent.tokenizer.pad_token_id, max(1, batch_size // len(samples[0])))
    q = torch.sigmoid(logits).tolist()  # [B][N]
    return [[qk if is_valid_sample(s) else -invalid_penalty for s, qk in zip(group, row)]
            for group, row in zip(samples, q)]


def dpo_pair(samples: Sequence[common.Sample], scores: Sequence[float],
             margin: float = 0.0) -> tuple[common.Sample, common.Sample, float] | None:
    """The PRM's preference among the K samples of one state: (chosen = highest Q, rejected = lowest Q, Q gap),
    or None when it expresses none — identical responses, equal scores, or a gap below the margin δ. Online DPO
    takes every pair it is given as a full preference (its loss has no margin), so a tiny Q gap, which a PRM
    trained on little data gets mostly from noise, moves the policy as firmly as a large one; δ drops such pairs."""
    best = max(range(len(scores)), key=lambda k: scores[k])  # the first of equal maxima, as with K = 2
    worst = min(range(len(scores)), key=lambda k: scores[k])
    gap = scores[best] - scores[worst]
    if samples[best].token_ids == samples[worst].token_ids or gap == 0 or gap < margin:
        return None
    return samples[best], samples[worst], gap


def dpo_prompt_states(trajectories: Sequence[envs.Trajectory], history_window: int,
                      history_reasons: bool = False, first_steps: Sequence[int] | None = None) -> list[list[dict]]:
    """The distinct states s ~ D visited by π_{i-1} (Eq. 3's expectation), as prompts. first_steps[k]: the
    first step of trajectory k that π_{i-1} chose (later than 0 when it was reset to a demonstration's state)."""
    seen, prompts = set(), []
    for k, traj in enumerate(trajectories):
        for t, (state, _) in enumerate(state_action_keys(traj)):
            if first_steps is not None and t < first_steps[k]:
                continue
            if state not in seen:
                seen.add(state)
                prompts.append(envs.trajectory_messages(traj, t, history_window, history_reasons=history_reasons))
    return prompts


def online_dpo(agent: common.AgentModel, states: Sequence[list[dict]], expert_states: Sequence[list[dict]],
               args: Args, desc: str, run: common.RunDir | None = None, iteration: int = 0) -> dict[str, float]:
    """Online DPO of the "policy" adapter against the "prm" adapter, KL-anchored to the "reference" adapter.

    Each step: P prompt states (half from expert trajectories with --reset-50-50), K = --dpo-samples samples each
    from π_θ (with Listing 1 in the prompt under --steered-exploration: it is removed again for the loss and the
    PRM), the PRM picks chosen/rejected, one DPO update."""
    rng = random.Random(args.seed + 1000 * iteration)
    pad = agent.tokenizer.pad_token_id
    extra = envs.STEERED_EXPLORATION_PROMPT if args.steered_exploration else None
    accum = math.ceil(args.dpo_prompts / args.dpo_micro_prompts)  # micro-batches per optimizer step
    skipped, pairs_this_step = 0, 0

    def micro_batches():
        for _ in range(args.dpo_steps):
            # Sec. 4.1 reset distribution (--reset-50-50): ρ = ½ d^{π_{i-1}} + ½ d^{expert}
            n_expert = args.dpo_prompts // 2 if args.reset_50_50 and expert_states else 0
            batch = rng.sample(list(states), min(len(states), args.dpo_prompts - n_expert))  # s ~ D (Eq. 3)
            if n_expert:
                batch += rng.sample(list(expert_states), min(len(expert_states), n_expert))
            size = math.ceil(len(batch) / accum)  # the step's prompts in `accum` micro-batches (gradients accumulated)
            yield from (batch[k * size:(k + 1) * size] for k in range(accum))

    def loss_fn(batch: list[list[dict]]):
        nonlocal skipped, pairs_this_step
        if not batch:
            return None, {}
        sampling_prompts = [envs.with_extra_instructions(m, extra) for m in batch] if extra else batch
        with agent.role("policy"):
            samples = common.generate(agent.peft, agent.codec, sampling_prompts, n=args.dpo_samples,
                                      temperature=args.dpo_temperature, max_new_tokens=args.max_new_tokens,
                                      batch_size=args.batch_size)  # [P][K]
        scores = score_samples(agent, batch, samples, args.invalid_penalty, args.batch_size)  # [P][K] Q_i(s, a)
        pairs = []
        for m, group, q in zip(batch, samples, scores):
            pair = dpo_pair(group, q, args.dpo_margin)  # None: a tie (or a gap below δ) carries no preference
            if pair is not None:
                chosen, rejected, gap = pair
                pairs.append((agent.codec.prompt_ids(m), chosen.token_ids, rejected.token_ids, gap))
        if not pairs:  # every pair tied: no gradient (a step without any pair is skipped, Adam's momentum included)
            skipped += 1
            return None, {}
        pairs_this_step += len(pairs)
        prompts, chosen_rejected = [p for p, *_ in pairs], [[c, r] for _, c, r, _ in pairs]  # a prompt encoded once
        per_batch = max(1, args.batch_size // 2)
        with agent.role("reference"), torch.no_grad():
            ref, _ = common.continuation_logprobs(agent.peft, prompts, chosen_rejected, pad, per_batch)  # [P, 2]
        with agent.role("policy"):
            pol, _ = common.continuation_logprobs(agent.peft, prompts, chosen_rejected, pad, per_batch)  # [P, 2]
        loss, metrics = dpo_loss(pol[:, 0], pol[:, 1], ref[:, 0], ref[:, 1], args.dpo_beta)
        valid_q = [q for qs in scores for q in qs if q >= 0]
        metrics.update(q_gap=sum(g for *_, g in pairs) / len(pairs), q_mean=sum(valid_q) / max(1, len(valid_q)))
        return loss, metrics

    def on_step(step: int, metrics: dict[str, float]) -> None:
        nonlocal pairs_this_step
        metrics["pairs"], pairs_this_step = float(pairs_this_step), 0  # the pairs of the step's micro-batches
        if run is not None:
            run.log(stage=f"iter{iteration}/stage3", step=step, **metrics)

    with agent.role("policy"):
        result = common.train_loop(agent.trainable_parameters("policy"), micro_batches(), loss_fn, lr=args.dpo_lr,
                                   grad_accum=accum, total=args.dpo_steps * accum, desc=desc, on_step=on_step)
    # dpo_steps_without_pairs: micro-batches without a pair (the name predates gradient accumulation)
    return {**result.metrics, "dpo_steps": result.steps, "dpo_steps_without_pairs": skipped,
            "dpo_stopped_on_nan": result.stopped_on_nan}


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Inference: Best-of-N with the PRM, BoN(π, Q) (Sec. 2.2)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def make_bon_policy(agent: common.AgentModel, n: int, args: Args) -> tuple[envs.Policy, dict[str, list[dict]]]:
    """BoN(π, Q_i) (Sec. 2.2): at every turn N samples of the "policy" adapter, act with the one of highest
    Q_i(s, a) (score_samples: the "prm" adapter). Returns (policy, each turn's candidates and their Q by game id)."""
    return common.best_of_n_policy(agent, n, args, lambda prompts, samples: score_samples(
        agent, prompts, samples, args.invalid_penalty, args.batch_size))  # [B][N]


def evaluate_row(agent: common.AgentModel, run: common.RunDir, args: Any, name: str, bon_n: int | None = None) -> dict:
    """One row of Table 1 (common.evaluate_row, cached in <run>/evals.json): the policy, or BoN(π, Q) when `bon_n`
    is given, whose episodes keep every candidate's PRM score."""
    bon = (lambda split: make_bon_policy(agent, bon_n, args)) if bon_n else None  # fresh records per split
    return common.evaluate_row(agent, run, args, name, make_policy=bon)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# main
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def main(args: Args) -> dict[str, Any]:
    runtime, quantize = common.start(args)
    run = common.RunDir("agent_prm", args.env, args.seed, args.out, args)
    print(common.banner("AgentPRM", args, runtime, quantize, run))
    # Disjoint training games: behaviour cloning uses games [0, sft_demos), Stage 1 games from --first-task on.
    train_tasks = list(range(args.first_task, args.first_task + args.train_tasks))

    # ── π0: behaviour cloning on expert demonstrations (Alg. 1 line 1) ──
    demos = envs.expert_demonstrations(args.env, "train", args.sft_demos, max_steps=args.max_steps) if not args.policy else []
    run.write_jsonl("sft_demos.jsonl", demos)
    agent = common.initial_policy(args, run, runtime, quantize, demos)
    rows: list[tuple[str, dict]] = [(common.paper_name(0), evaluate_row(agent, run, args, common.paper_name(0), None))]
    expert_states: list[list[dict]] = []
    if args.reset_50_50:
        expert_trajs = envs.rollout([envs.make(args.env, "train", s, max_steps=args.max_steps) for s in train_tasks],
                                    envs.expert_policy, args.history_window)
        expert_states = dpo_prompt_states(expert_trajs, args.history_window, args.history_reasons)

    for i in range(1, args.iterations + 1):
        it = f"iter{i}"
        if i > 1:  # π_{i-1} is the policy saved at the end of the previous iteration
            agent.load_role("policy", run.path / f"iter{i - 1}" / "policy")
        agent.add_role("reference", copy_from="policy")  # π_{i-1}, frozen: the KL anchor of Eq. 3
        (run.path / it).mkdir(exist_ok=True)

        # ── Stage 1: roll out π_{i-1}, estimate Q̂ (Alg. 1 lines 3-5, Eq. 1) ──
        # (each run.stage computes and saves once; a re-run with the same --out loads what it saved)
        records = run.stage(f"{it}/stage1", lambda: collect_rollouts(agent, train_tasks, args,
                                                                     desc=f"{it} stage 1: rollouts of π{i - 1}"),
                            save_as=f"{it}/rollouts.jsonl")
        trajectories = [envs.Trajectory.from_json(r) for r in records]
        q_hat, visits = estimate_q_targets(trajectories, args.gamma)  # Eq. 1
        if args.shaping_alpha > 0:  # Eq. 13; μ = π0, whose rollouts are iteration 1's
            mu_trajectories = [envs.Trajectory.from_json(r) for r in run.read_jsonl("iter1/rollouts.jsonl")]
            values, fit = reference_values(agent, trajectories, mu_trajectories, args)
            if fit is not None:
                run.log(stage="value", **fit)
            q_hat = shaped_targets(trajectories, q_hat, values, args)
        q_targets = normalize_targets(q_hat)
        dataset = build_prm_dataset(trajectories, q_targets, args.history_window, args.history_reasons)  # D
        stage1 = {"rollouts": len(trajectories), "rollout_success": 100.0 * sum(t.won for t in trajectories) / len(trajectories),
                  "state_action_pairs": len(q_hat), "revisited_pairs": sum(v > 1 for v in visits.values()),
                  "mean_q_target": sum(q_targets.values()) / len(q_targets), "prm_rows": len(dataset)}
        run.log(stage=f"{it}/stage1", **stage1)
        print(f"[{it}] stage 1: {stage1['rollouts']} rollouts of π{i - 1} ({stage1['rollout_success']:.1f}% success), "
              f"{stage1['state_action_pairs']} (s,a) pairs, {stage1['revisited_pairs']} visited more than once; "
              f"{len(dataset)} PRM rows")

        # ── Stage 2: train the PRM Q_i on D (Alg. 1 line 6, Eq. 2/4 or Bradley-Terry) ──
        stage2 = run.stage(f"{it}/stage2", lambda: train_prm(agent, dataset, args,
                                                             desc=f"{it} stage 2: PRM ({args.prm_loss})"),
                           save_as=f"{it}/prm_metrics.json", adapter=(agent, "prm", f"{it}/prm"), fresh=True)
        run.log(stage=f"{it}/stage2", **stage2)
        print(f"[{it}] stage 2: PRM held-out loss {stage2.get('prm_heldout_loss', math.nan):.3f} "
              f"(mean-target constant: {stage2.get('prm_heldout_loss_constant', math.nan):.3f}), accuracy "
              f"{stage2.get('prm_heldout_acc', math.nan):.3f}, same-state pair accuracy "
              f"{stage2.get('prm_heldout_pair_acc', math.nan):.3f}")
        for n in args.bon_n if i == 1 else []:  # later iterations: Table 1 has BoN(π_i, Q_{i-1}) only
            name = common.paper_name(i - 1, i - 1, n if len(args.bon_n) > 1 else None)
            rows.append((name, evaluate_row(agent, run, args, name, n)))

        # ── Stage 3: online DPO of π_i against Q_i, KL to π_{i-1} (Alg. 1 line 7, Eq. 3/5) ──
        stage3 = run.stage(f"{it}/stage3", lambda: online_dpo(
            agent, dpo_prompt_states(trajectories, args.history_window, args.history_reasons), expert_states, args,
            desc=f"{it} stage 3: online DPO", run=run, iteration=i),
            save_as=f"{it}/dpo_metrics.json", adapter=(agent, "policy", f"{it}/policy"))
        print(f"[{it}] stage 3: {stage3['dpo_steps']} DPO steps ({stage3.get('dpo_steps_without_pairs', 0)} batches "
              f"without a preference pair skipped), last loss {stage3.get('dpo_loss', math.nan):.3f}, "
              f"reward accuracy {stage3.get('reward_acc', math.nan):.2f}")
        rows.append((common.paper_name(i), evaluate_row(agent, run, args, common.paper_name(i), None)))
        for n in args.bon_n:
            name = common.paper_name(i, i - 1, n if len(args.bon_n) > 1 else None)
            rows.append((name, evaluate_row(agent, run, args, name, n)))

    # ── Alg. 1 line 9: the best π_i on the validation split (the first eval split) ──
    validation = args.eval_splits[0]
    policies = {name: row for name, row in rows if name.startswith("π") and name != "π0"}
    best = max(policies, key=lambda name: policies[name][validation]["success"]) if policies else "π0"
    summary = {"best_policy": best, "best_policy_adapter": str(run.path / f"iter{best[1:]}" / "policy") if best != "π0" else None,
               "validation_split": validation, "rows": {name: row for name, row in rows}}
    run.write_json("summary.json", summary)
    common.print_tables("AgentPRM", args, rows)
    print(f"\nbest policy on {validation}: {best}   (run folder: {run.path})")
    common.note_start_above_best(rows, "π0", best, validation)
    return summary


if __name__ == "__main__":
    common.run_cli(main, Args, __doc__)
