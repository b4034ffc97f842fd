"""InversePRM: a process reward model learned from expert demonstrations only (no outcome reward).

Paper: S. Choudhury, "Process Reward Models for LLM Agents: Practical Framework and Directions" (2025),
Sec. 3 (Algorithm 2, Eq. 6-11). Inverse RL as a game between a reward player and a policy player (Eq. 6-7),
with the one-step reward written through Q (Eq. 8): r(s, a) = Q(s, a) - γ E_{a'~π}[Q(s', a')], so the PRM is
learned directly, without an inner RL loop.

Algorithm 2 (Inverse PRM), as implemented below:
  1. Initialise: policy π0, positives D+ = {(s*, a*, s'*)} from expert demonstrations, negatives D- = {}.
  2. For iteration i = 1..K:
     Stage 1 — positive / negative transitions
  3.   Roll out π_{i-1}: D_i = {(s, a, s')}; aggregate D- <- D- ∪ D_i (all past learners: no-regret, Eq. 7).
       (--rollout-resets: some rollouts start at states of the demonstrations, a reset distribution, Sec. 4.1.)
  4.   Relabel the next action of every transition in D+ ∪ D-: a' ~ π_{i-1}(· | s') (Q estimates Q^{π_{i-1}}).
     Stage 2 — train the PRM to tell expert from learner transitions
  5.   Q_i = argmin  -E_{D+}[log σ(Q(s,a) - γ Q(s',a'))] - E_{D-}[log(1 - σ(Q(s,a) - γ Q(s',a')))]   (Eq. 9)
     Stage 3 — train the policy
  6.   π_i = argmax E_{s~D_i, a~π}[Q_i(s, a)] - β KL(π || π_{i-1})                                 (Eq. 10/11)
       by online DPO, as in AgentPRM: two samples per state, Q_i picks chosen / rejected, reference π_{i-1}.
  7. End for; return the best π on the validation split.

    python inverse_prm.py --quick                      # tiny model on CPU, one iteration in a few minutes
    python inverse_prm.py --model llama-3.2-3b         # one 24 GB GPU: 4-bit base shared by policy/reference/PRM
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

import common
import envs

# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Arguments
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


# The official recipe (the AgentPRM repository's bash/train-inverse-prm-llama3.2-3B.sh, scripts/train/iqlearn.py,
# configs/compute_inverse_prm_target.yaml; Stage 3 as AgentPRM's) as a preset of flags: `--recipe paper` sets each
# flag not given on the command line. flag -> (value, where it comes from).
PAPER_RECIPE: dict[str, tuple[Any, str]] = {
    "demos": (2000, "D+: official ~10k expert rollouts (oracle-10k); here as many as π0 is cloned on"),
    "train_tasks": (2000, "D-: official ~10k rollouts of π0 (iter0-10k), balanced with D+ (balance_pos_neg)"),
    "rollouts_per_task": (1, "one rollout per game: D- as large as D+"),
    "rollout_temperature": (0.3, "a' ~ π_{i-1}(s') relabelled at T 0.3; rollouts at AgentPRM's Stage-1 0.3"),
    "prm_batch_size": (384, "Stage 2: batch 384 = 4 per GPU x 16 accumulation x 6 GPUs"),
    "prm_epochs": (1.0, "Stage 2: one epoch"),
    "prm_lr_schedule": ("cosine", "Stage 2: decays to 0 (official: linear, no warm-up; here cosine, 5% warm-up)"),
    "prm_holdout": (0.15, "Stage 2: train split 0.85"),
    "dpo_steps": (400, "Stage 3 as AgentPRM's: 400 optimizer steps (official: 50,000 episodes / 60 ≈ 830)"),
    "dpo_prompts": (60, "Stage 3: 60 prompts per optimizer step, two samples each"),
    "dpo_temperature": (0.7, "Stage 3: sampling temperature 0.7"),
    "dpo_beta": (0.03, "Stage 3: β = 0.03"),
    "dpo_lr": (1e-4, "Stage 3: the adapter's lr, from a sweep against the exact Q^μ at this recipe (docs/findings.md: "
               "5e-4 and 2e-4 lower π0, 1e-4 keeps it; the official 8e-7 fine-tunes all weights of a 3B model)"),
    "max_new_tokens": (64, "Stage 3: 64-token responses"),
}


stage1_flag = common.flag_group("stage 1: D+ and D-")  # field() in one --help group
stage2_flag = common.flag_group("stage 2: PRM")
stage3_flag = common.flag_group("stage 3: online DPO")
baseline_flag = common.flag_group("baselines and inference")


@dataclasses.dataclass
class Args(common.BaseArgs):
    """Model, environment, π0 and evaluation flags come from common.BaseArgs; these are Algorithm 2's."""

    RECIPES = {"paper": PAPER_RECIPE}  # --recipe NAME: a preset of flags (common.parse_args); not a field
    # Stage 1
    iterations: int = stage1_flag(1, "K, the number of InversePRM iterations")
    demos: int = stage1_flag(200, "expert demonstrations for D+ (train games from --first-task on), if no --demos-file")
    demos_file: str | None = stage1_flag(None, "a JSONL of expert trajectories to use as D+ (format: README)")
    sft_on_demos: bool = stage1_flag(False, "behaviour-clone π0 on D+ itself instead of separate --sft-demos episodes")
    train_tasks: int = stage1_flag(64, "training games rolled out by π_{i-1} for D- (from --first-task on)")
    rollouts_per_task: int = stage1_flag(2, "rollouts of π_{i-1} per training game")
    rollout_temperature: float = stage1_flag(0.7, "sampling temperature of rollouts and of the relabelled a'")
    rollout_resets: float = stage1_flag(0.0, "fraction of Stage-1 rollouts that start at a random state of the game's "
                                        "demonstration (a reset distribution, Sec. 4.1)")
    gamma: float = stage1_flag(0.95, "discount γ in r(s,a) = Q(s,a) - γ Q(s',a') (Eq. 8) (official code: 0.95)")
    # Stage 2
    prm_epochs: float = stage2_flag(2.0, "PRM training epochs (over the smaller of D+ and D-)")
    prm_lr: float = stage2_flag(1e-3, "PRM learning rate (LoRA adapter + scalar head)")
    prm_lr_schedule: str = stage2_flag("constant", "PRM learning-rate schedule: constant, or cosine (5%% warm-up, "
                                       "decay to 0)", choices=["constant", "cosine"])
    prm_batch_size: int = stage2_flag(16, "PRM transitions per optimizer step, half expert, half learner (in "
                                      "micro-batches of --batch-size, gradients accumulated)")
    prm_holdout: float = stage2_flag(0.1, "fraction of games held out to report classification accuracy")
    # Stage 3 (online DPO, as in AgentPRM)
    dpo_steps: int = stage3_flag(60, "online-DPO optimizer steps")
    dpo_prompts: int = stage3_flag(8, "prompt states per DPO optimizer step (two samples each)")
    dpo_micro_prompts: int = stage3_flag(16, "prompt states per forward/backward pass (gradients accumulated per step)")
    dpo_beta: float = stage3_flag(0.1, "β, the KL weight to π_{i-1} in Eq. 10 (official code: 0.03)")
    dpo_lr: float = stage3_flag(5e-4, "policy learning rate (LoRA adapter)")
    dpo_temperature: float = stage3_flag(1.0, "sampling temperature of the two DPO samples (official code: 0.7)")
    dpo_margin: float = stage3_flag(0.0, "δ: drop DPO pairs whose σ(Q) gap is below δ (0: any strict preference)")
    invalid_penalty: float = stage3_flag(1.0, "a response with no parsable ACTION scores -penalty (σ(Q) is in [0, 1])")
    reset_50_50: bool = stage3_flag(False, "half of the DPO prompt states are expert demonstration states (Sec. 4.1)")
    steered_exploration: bool = stage3_flag(False, "sample DPO responses with Listing 1 added to the prompt (Sec. 4.1)")
    # baselines and inference
    sft_baseline: bool = baseline_flag(True, "also train and evaluate Table 2's SFT baseline: π0 fine-tuned on D+")
    sft_baseline_epochs: float = baseline_flag(2.0, "epochs of the SFT baseline")
    sft_baseline_lr: float = baseline_flag(5e-4, "learning rate of the SFT baseline (LoRA adapter)")
    bon_n: list[int] = baseline_flag([4], "N of the Best-of-N rows; several: the N-scaling curve (Fig. 5b); 0: none")
    bon_temperature: float = baseline_flag(0.7, "sampling temperature of the N Best-of-N candidates")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quick:  # a CPU smoke test: the algorithm is unchanged, only the sizes shrink
            self.demos, self.train_tasks, self.rollouts_per_task = min(self.demos, 20), min(self.train_tasks, 6), 1
            self.prm_epochs, self.dpo_steps, self.dpo_prompts = min(self.prm_epochs, 1.0), min(self.dpo_steps, 4), 4
            self.sft_baseline_epochs, self.bon_n = min(self.sft_baseline_epochs, 0.5), [min(n, 2) for n in self.bon_n][:1]
        self.bon_n = common.best_of_n_sizes(self.bon_n)
        common.require(0.0 <= self.rollout_resets <= 1.0,
                       f"--rollout-resets must be in [0, 1], got {self.rollout_resets}")
        common.require(0.0 < self.gamma <= 1.0, f"--gamma must be in (0, 1], got {self.gamma}")
        common.check_dpo_flags(self)
        common.require(self.train_tasks >= 1, f"D- would be empty: --train-tasks must be ≥ 1, got {self.train_tasks}")
        common.require(self.demos_file is not None or self.demos >= 1,
                       "--demos must be at least 1 (or give --demos-file)")


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Stage 1: positive and negative transitions, next actions relabelled by π_{i-1} (Alg. 2 lines 3-4)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class Transition:
    """(s, a, s', a'): prompts of s and s', the response a, and a' ~ π_{i-1}(·|s') (relabelled every iteration).
    A terminal transition (the episode ended by success) has no (s', a'): its reward is Q(s, a) alone.
    An episode cut by max_steps is NOT terminal: the state after it still has a future."""
    state: list[dict[str, str]]
    action: str
    next_state: list[dict[str, str]] | None
    next_action: str | None
    label: float  # 1 for expert (D+), 0 for learner (D-)
    game_id: str
    iteration: int  # which policy produced it (0 for the expert)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def transitions_from(trajectories: Sequence[envs.Trajectory], label: float, iteration: int,
                     history_window: int, history_reasons: bool = False,
                     first_steps: Sequence[int] | None = None) -> list[Transition]:
    """Every step of every trajectory as a transition; s' is the prompt of the next step (or of the state after
    the last step when the episode was cut by max_steps); terminal iff the step ended the episode by success.
    first_steps[k]: the steps of trajectory k before it are left out (an expert prefix a reset replayed)."""
    out = []
    for k, traj in enumerate(trajectories):
        for t, step in enumerate(traj.steps):
            if first_steps is not None and t < first_steps[k]:
                continue
            last = t == len(traj.steps) - 1
            terminal = last and (traj.won or not traj.final_observation)
            next_state = None if terminal else envs.trajectory_messages(traj, t + 1, history_window,
                                                                        history_reasons=history_reasons)
            out.append(Transition(envs.trajectory_messages(traj, t, history_window, history_reasons=history_reasons),
                                  step.response, next_state,
                                  None, label, traj.game_id, iteration))
    return out


def resettable_demonstrations(demos: Sequence[envs.Trajectory]) -> dict[str, envs.Trajectory]:
    """game id -> its demonstration, for the demonstrations with a state to reset to after the first (> 1 step)."""
    return {d.game_id: d for d in demos if len(d.steps) > 1}


def reset_candidates(game_ids: Sequence[str], demos: Sequence[envs.Trajectory], fraction: float) -> tuple[list[int], int]:
    """The rollouts (by index) whose game has a demonstration to reset to, and how many resets `fraction` asks for;
    a user error when there are too few (checked before anything runs, and again when Stage 1 draws them)."""
    with_demo = resettable_demonstrations(demos)
    resettable = [k for k, game_id in enumerate(game_ids) if game_id in with_demo]
    n_resets = round(fraction * len(game_ids))
    if n_resets > len(resettable):
        raise common.UserError(f"--rollout-resets {fraction} needs {n_resets} rollouts on games with an expert "
                               f"demonstration; only {len(resettable)} of the {len(game_ids)} have one (the "
                               f"demonstrations must include the --train-tasks games)")
    return resettable, n_resets


def collect_learner_rollouts(policy: envs.Policy, tasks: Sequence[int], demos: Sequence[envs.Trajectory], args: Args,
                             rng: random.Random, desc: str) -> tuple[list[envs.Trajectory], list[int]]:
    """D_i (Alg. 2 line 3): `rollouts_per_task` episodes of π_{i-1} on every task, stepped in batches.

    A fraction `rollout_resets` of them (chosen at random) first replay the expert's demonstration of their game
    up to a random step t ≥ 1, and π_{i-1} plays from s*_t on. From the game's start, the learner's first mistake
    takes it to states the expert never visits, where the classifier can tell the sides apart by the STATE alone
    (e.g. "Nothing happens." in the prompt) without learning which ACTION was wrong; a reset puts learner and
    expert transitions at the same states, so only the action separates them. Returns the trajectories (with the
    replayed prefix, so prompts show the history the expert left) and, per trajectory, the first step π_{i-1}
    chose (0 without a reset)."""
    demo_of = resettable_demonstrations(demos)
    games = common.training_games(args, tasks)
    resettable, n_resets = reset_candidates([game.game_id for game in games], demos, args.rollout_resets)
    first_steps = [0] * len(games)
    for k in rng.sample(resettable, n_resets):
        first_steps[k] = rng.randrange(1, len(demo_of[games[k].game_id].steps))
    starts = [envs.replay(game, demo_of[game.game_id], t0) if t0 else envs.begin(game)
              for game, t0 in zip(games, first_steps)]
    return common.rollout_in_batches(games, policy, args, desc, starts), first_steps


def learner_records(trajectories: Sequence[envs.Trajectory], first_steps: Sequence[int]) -> list[dict]:
    """Stage-1 trajectories as JSONL records, each with "learner_from": the first step π_{i-1} chose (> 0 after a
    reset: a replayed expert prefix)."""
    return [{**traj.to_json(), "learner_from": t0} for traj, t0 in zip(trajectories, first_steps)]


def learner_trajectories(records: Sequence[dict]) -> tuple[list[envs.Trajectory], list[int]]:
    """learner_records back: (trajectories, first steps); a record without "learner_from" (an agent_prm.py rollout)
    is the learner's from its first step."""
    return [envs.Trajectory.from_json(r) for r in records], [r.get("learner_from", 0) for r in records]


def relabel_next_actions(transitions: Sequence[Transition],
                         sample: Callable[[list[list[dict[str, str]]]], list[str]]) -> None:
    """a' ~ π_{i-1}(· | s') for every non-terminal transition, written back IN PLACE by index.

    The official code sampled only the non-terminal transitions but zipped the answers against ALL transitions,
    so after the first terminal one every a' belonged to a different s' (from later steps, soon other games).
    Keeping the indices of the transitions that were asked about avoids that by construction."""
    asked = [k for k, tr in enumerate(transitions) if tr.next_state is not None]
    answers = sample([transitions[k].next_state for k in asked]) if asked else []
    if len(answers) != len(asked):
        raise RuntimeError(f"relabelling asked for {len(asked)} next actions and got {len(answers)}")
    for k, answer in zip(asked, answers):
        transitions[k].next_action = answer
    for tr in transitions:
        if tr.next_state is None:
            tr.next_action = None


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Stage 2: train Q_i to classify D+ vs D- through d = Q(s,a) - γ Q(s',a') (Alg. 2 line 5, Eq. 9)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def implied_reward(q_sa: torch.Tensor, q_next: torch.Tensor, terminal: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. 8: r(s, a) = Q(s, a) - γ Q(s', a'), and r = Q(s, a) at a terminal transition.  [B]

    Why γ matters for the classifier: a feature f that is the same at (s, a) and (s', a') adds f - γ f = (1 - γ) f
    to r. A learner stuck in a loop of inadmissible actions has that feature at both ends of the transition, so
    at γ = 0.95 the classifier must give it 20x the weight to use it."""
    return q_sa - gamma * q_next * (~terminal).float()


def inverse_prm_loss(rewards: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-E_{D+}[log σ(r)] - E_{D-}[log(1 - σ(r))], each expectation over its own half of the batch.

    The paper prints "+ E_{D-}[log(1 - σ(...))]", a sign slip: with "+" minimising would push learner transitions
    towards r → +∞. The intended objective is the binary cross-entropy of expert (1) vs learner (0)."""
    positive, negative = labels > 0.5, labels <= 0.5
    loss = rewards.new_zeros(())
    if positive.any():
        loss = loss - F.logsigmoid(rewards[positive]).mean()
    if negative.any():
        loss = loss - F.logsigmoid(-rewards[negative]).mean()  # log(1 - σ(r)) = log σ(-r)
    return loss


def prm_logits(agent: common.AgentModel, messages: Sequence[list[dict]], responses: Sequence[str],
               batch_size: int) -> torch.Tensor:
    """Q(s, a) as a logit: the "prm" head on the last token of prompt + response.  [B]"""
    sequences = [agent.codec.prompt_ids(m) + agent.codec.response_ids(r) for m, r in zip(messages, responses)]
    with agent.role("prm"):
        return common.scalar_scores(agent.peft, agent.heads["prm"], sequences, agent.tokenizer.pad_token_id,
                                    batch_size)


def q_values(agent: common.AgentModel, batch: Sequence[Transition], batch_size: int) -> tuple[torch.Tensor, ...]:
    """(Q(s, a), Q(s', a') — 0 where terminal, terminal mask) as PRM logits.  [B] each."""
    q_sa = prm_logits(agent, [t.state for t in batch], [t.action for t in batch], batch_size)
    terminal = torch.tensor([t.next_state is None for t in batch], device=q_sa.device)
    q_next = torch.zeros_like(q_sa)
    live = [k for k, t in enumerate(batch) if t.next_state is not None]
    if live:
        q_next[live] = prm_logits(agent, [batch[k].next_state for k in live], [batch[k].next_action for k in live],
                                  batch_size)
    return q_sa, q_next, terminal


def balanced_batches(positives: Sequence[Transition], negatives: Sequence[Transition], batch_size: int,
                     epochs: float, rng: random.Random) -> list[list[Transition]]:
    """Batches with as many expert as learner transitions (the larger side is subsampled per epoch), so the
    classifier sees a balanced problem whatever the sizes of D+ and D-."""
    half = max(1, batch_size // 2)
    n = min(len(positives), len(negatives))
    pos_batches = common.epochs_of(positives, half, epochs * n / max(1, len(positives)), rng)
    neg_batches = common.epochs_of(negatives, half, epochs * n / max(1, len(negatives)), rng)
    # interleaved (expert, learner, expert, ...): every micro-batch cut from the front of a batch is balanced too
    return [[t for pair in zip(p, q) for t in pair] + p[len(q):] + q[len(p):] for p, q in zip(pos_batches, neg_batches)]


def train_inverse_prm(agent: common.AgentModel, positives: Sequence[Transition], negatives: Sequence[Transition],
                      args: Args, desc: str) -> dict[str, float]:
    """A fresh "prm" adapter + head trained on Eq. 9; held-out games report classification accuracy."""
    agent.add_role("prm", head=True, fresh=True)
    rng = random.Random(args.seed)
    games = sorted({t.game_id for t in [*positives, *negatives]})
    rng.shuffle(games)
    held = set(games[:max(1, int(len(games) * args.prm_holdout))]) if args.prm_holdout > 0 else set()
    train_pos = [t for t in positives if t.game_id not in held]
    train_neg = [t for t in negatives if t.game_id not in held]
    if not train_pos or not train_neg:
        raise common.UserError("InversePRM needs both expert and learner transitions to train on")
    with agent.role("prm"):
        def loss_fn(batch):
            q_sa, q_next, terminal = q_values(agent, batch, len(batch))
            rewards = implied_reward(q_sa, q_next, terminal, args.gamma)  # Eq. 8
            labels = torch.tensor([t.label for t in batch], device=rewards.device)
            loss = inverse_prm_loss(rewards, labels)  # Eq. 9
            accuracy = ((rewards > 0).float() == labels).float().mean().item()
            return loss, {"prm_loss": loss.item(), "prm_acc": accuracy}

        # an optimizer step of --prm-batch-size transitions, in micro-batches of at most --batch-size (gradients
        # accumulated; the recipe's 384 transitions are 768 sequences, too many for one forward pass)
        accum = math.ceil(args.prm_batch_size / min(args.prm_batch_size, args.batch_size))
        batches = balanced_batches(train_pos, train_neg, args.prm_batch_size, args.prm_epochs, rng)
        size = math.ceil(args.prm_batch_size / accum)
        micro = [batch[k * size:(k + 1) * size] for batch in batches for k in range(accum)]  # [accum per step]
        result = common.train_loop(agent.trainable_parameters("prm"), micro, loss_fn, lr=args.prm_lr,
                                   grad_accum=accum, total=len(micro), desc=desc,
                                   cosine=args.prm_lr_schedule == "cosine")
        metrics = {"prm_train_loss": result.metrics.get("prm_loss", float("nan")),
                   "prm_train_acc": result.metrics.get("prm_acc", float("nan")),
                   "positives": len(train_pos), "negatives": len(train_neg)}
        held_out = [t for t in [*positives, *negatives] if t.game_id in held]
        if held_out:
            with torch.no_grad():
                q_sa, q_next, terminal = q_values(agent, held_out, args.batch_size)
                rewards = implied_reward(q_sa, q_next, terminal, args.gamma)
                labels = torch.tensor([t.label for t in held_out], device=rewards.device)
            correct = ((rewards > 0).float() == labels).float()
            metrics.update(prm_heldout_loss=inverse_prm_loss(rewards, labels).item(),
                           prm_heldout_acc_expert=correct[labels > 0.5].mean().item() if (labels > 0.5).any() else float("nan"),
                           prm_heldout_acc_learner=correct[labels <= 0.5].mean().item() if (labels <= 0.5).any() else float("nan"))
            metrics["prm_heldout_acc"] = (metrics["prm_heldout_acc_expert"] + metrics["prm_heldout_acc_learner"]) / 2
    return metrics


def relabel_with_policy(agent: common.AgentModel, transitions: Sequence[Transition],
                        args: Args) -> Sequence[Transition]:
    """Relabel every a' with one sample of the current "policy" adapter π_{i-1}; returns the transitions."""
    def sample(prompts: list[list[dict[str, str]]]) -> list[str]:
        with agent.role("policy"):
            out = common.generate(agent.peft, agent.codec, prompts, n=1, temperature=args.rollout_temperature,
                                  max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                  progress="relabel a' ~ π(·|s')")
        return [group[0].text for group in out]

    relabel_next_actions(transitions, sample)
    return transitions


def take_next_actions(transitions: Sequence[Transition], saved: Sequence[dict], where: Path) -> None:
    """The a' of the saved transitions, written into `transitions` IN PLACE. They must be the same (s, a) in the
    same order, else each a' would land on another s'."""
    if len(saved) != len(transitions) or any((r["state"], r["action"]) != (t.state, t.action)
                                             for t, r in zip(transitions, saved)):
        raise common.UserError(f"{where} holds other transitions than D+ and D- of these flags (changed "
                               f"--history-window?): use a new --out")
    for tr, record in zip(transitions, saved):
        tr.next_action = record["next_action"]


def load_demonstrations(args: Args) -> list[envs.Trajectory]:
    """D+ as trajectories: the user's JSONL (validated) or the environment's expert."""
    if args.demos_file is None:
        return envs.expert_demonstrations(args.env, "train", args.demos, start=args.first_task, max_steps=args.max_steps)
    return common.load_demos_file(args.demos_file, args.env)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Stage 3: π_i against Q_i by online DPO on s ~ D_i, KL to π_{i-1} (Alg. 2 line 6, Eq. 10-11)
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def dpo_prompt_states(trajectories: Sequence[envs.Trajectory], history_window: int, history_reasons: bool = False,
                      first_steps: Sequence[int] | None = None) -> list[list[dict]]:
    """The distinct states s ~ D_i (a game and the actions played so far) as prompts, each trajectory k from the
    first step π_{i-1} chose, first_steps[k] (> 0 after a replayed expert prefix)."""
    seen, prompts = set(), []
    for k, traj in enumerate(trajectories):
        for t in range(first_steps[k] if first_steps is not None else 0, len(traj.steps)):
            state = (traj.game_id, *(step.action or None for step in traj.steps[:t]))  # unparsable: None
            if state not in seen:
                seen.add(state)
                prompts.append(envs.trajectory_messages(traj, t, history_window, history_reasons=history_reasons))
    return prompts


@torch.no_grad()
def score_samples(agent: common.AgentModel, messages: Sequence[list[dict]], samples: Sequence[Sequence[common.Sample]],
                  invalid_penalty: float, batch_size: int) -> list[list[float]]:
    """Q_i(s, a) = σ(PRM logit) of N samples per prompt (the prompt encoded once); a response cut by
    max_new_tokens or without a parsable ACTION scores -penalty, below every valid Q.  [B][N]"""
    prompts = [agent.codec.prompt_ids(m) for m in messages]
    with agent.role("prm"):
        logits = common.continuation_scores(agent.peft, agent.heads["prm"], prompts,
                                            [[s.token_ids for s in group] for group in samples],
                                            agent.tokenizer.pad_token_id, max(1, batch_size // len(samples[0])))
    q = torch.sigmoid(logits).tolist()  # [B][N]
    return [[qk if s.finished and envs.parse_response(s.text).action is not None else -invalid_penalty
             for s, qk in zip(group, row)] for group, row in zip(samples, q)]


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO's solution of Eq. 10 on summed response log-probs [P]."""
    chosen_reward = beta * (policy_chosen - ref_chosen)  # [P] β log π_θ(c)/π_{i-1}(c), the implicit reward
    rejected_reward = beta * (policy_rejected - ref_rejected)  # [P]
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    metrics = {"dpo_loss": loss.item(), "reward_margin": (chosen_reward - rejected_reward).mean().item(),
               "reward_acc": (chosen_reward > rejected_reward).float().mean().item()}
    return loss, metrics


def online_dpo(agent: common.AgentModel, states: Sequence[list[dict]], expert_states: Sequence[list[dict]],
               args: Args, desc: str, run: common.RunDir, iteration: int) -> dict[str, float]:
    """π_i: the "policy" adapter trained against Q_i ("prm"), KL to π_{i-1} ("reference"). Each optimizer step:
    --dpo-prompts states, two samples each (Listing 1 in the sampling prompt only, with --steered-exploration),
    Q_i picks chosen / rejected, one DPO update."""
    rng = random.Random(args.seed + 1000 * iteration)
    extra = envs.STEERED_EXPLORATION_PROMPT if args.steered_exploration else None
    accum = math.ceil(args.dpo_prompts / args.dpo_micro_prompts)  # micro-batches per optimizer step
    skipped, pairs_this_step = 0, 0

    def micro_batches():
        for _ in range(args.dpo_steps):
            n_expert = args.dpo_prompts // 2 if args.reset_50_50 and expert_states else 0  # Sec. 4.1: ½ D_i + ½ D+
            batch = rng.sample(list(states), min(len(states), args.dpo_prompts - n_expert))  # s ~ D_i (Eq. 11)
            if n_expert:
                batch += rng.sample(list(expert_states), min(len(expert_states), n_expert))
            size = math.ceil(len(batch) / accum)
            yield from (batch[k * size:(k + 1) * size] for k in range(accum))

    def loss_fn(batch: list[list[dict]]):
        nonlocal skipped, pairs_this_step
        if not batch:
            return None, {}
        sampling_prompts = [envs.with_extra_instructions(m, extra) for m in batch] if extra else batch
        with agent.role("policy"):
            samples = common.generate(agent.peft, agent.codec, sampling_prompts, n=2, temperature=args.dpo_temperature,
                                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)  # [P][2]
        scores = score_samples(agent, batch, samples, args.invalid_penalty, args.batch_size)  # [P][2] Q_i(s, a)
        pairs = []  # (prompt, chosen, rejected, Q gap); identical samples or a gap of 0 or below δ: no preference
        for m, (s0, s1), (q0, q1) in zip(batch, samples, scores):
            gap = abs(q0 - q1)
            if not (s0.token_ids == s1.token_ids or gap == 0 or gap < args.dpo_margin):
                chosen, rejected = (s0, s1) if q0 > q1 else (s1, s0)
                pairs.append((agent.codec.prompt_ids(m), chosen.token_ids, rejected.token_ids, gap))
        if not pairs:  # no gradient (train_loop skips a step none of whose micro-batches has a pair)
            skipped += 1
            return None, {}
        pairs_this_step += len(pairs)
        prompts, chosen_rejected = [p[0] for p in pairs], [[p[1], p[2]] for p in pairs]
        pad, per_batch = agent.tokenizer.pad_token_id, max(1, args.batch_size // 2)
        with agent.role("reference"), torch.no_grad():
            ref, _ = common.continuation_logprobs(agent.peft, prompts, chosen_rejected, pad, per_batch)  # [P, 2]
        with agent.role("policy"):
            pol, _ = common.continuation_logprobs(agent.peft, prompts, chosen_rejected, pad, per_batch)  # [P, 2]
        loss, metrics = dpo_loss(pol[:, 0], pol[:, 1], ref[:, 0], ref[:, 1], args.dpo_beta)
        valid_q = [q for qs in scores for q in qs if q >= 0]
        metrics.update(q_gap=sum(p[3] for p in pairs) / len(pairs), q_mean=sum(valid_q) / max(1, len(valid_q)))
        return loss, metrics

    def on_step(step: int, metrics: dict[str, float]) -> None:
        nonlocal pairs_this_step
        metrics["pairs"], pairs_this_step = float(pairs_this_step), 0  # the pairs of the step's micro-batches
        run.log(stage=f"iter{iteration}/stage3", step=step, **metrics)

    with agent.role("policy"):
        result = common.train_loop(agent.trainable_parameters("policy"), micro_batches(), loss_fn, lr=args.dpo_lr,
                                   grad_accum=accum, total=args.dpo_steps * accum, desc=desc, on_step=on_step)
    return {**result.metrics, "dpo_steps": result.steps, "dpo_steps_without_pairs": skipped,  # (micro-batches)
            "dpo_stopped_on_nan": result.stopped_on_nan}


def make_bon_policy(agent: common.AgentModel, n: int, args: Args) -> tuple[envs.Policy, dict[str, list[dict]]]:
    """BoN(π, Q_i) (Sec. 2.2): at every turn N samples of the "policy" adapter, act with the one of highest σ(Q_i)
    (score_samples). Returns (policy, each turn's candidates and their Q by game id, for the dumped episodes)."""
    return common.best_of_n_policy(agent, n, args, lambda prompts, samples: score_samples(
        agent, prompts, samples, args.invalid_penalty, args.batch_size))  # [B][N]


def bon_row(agent: common.AgentModel, run: common.RunDir, args: Args, name: str, n: int) -> dict:
    """The row BoN(π, Q_i) of Table 2 (common.evaluate_row); its episodes keep every candidate's Q."""
    return common.evaluate_row(agent, run, args, name, make_policy=lambda _split: make_bon_policy(agent, n, args))


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# main
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def main(args: Args) -> dict[str, Any]:
    runtime, quantize = common.start(args)
    demos = load_demonstrations(args)  # validated before anything is written
    train_tasks = list(range(args.first_task, args.first_task + args.train_tasks))
    if args.rollout_resets > 0:
        reset_candidates([game.game_id for game in common.training_games(args, train_tasks)], demos,
                         args.rollout_resets)  # checked before anything runs
    run = common.RunDir("inverse_prm", args.env, args.seed, args.out, args)
    print(common.banner("InversePRM", args, runtime, quantize, run, f"{len(demos)} demonstrations"))
    if run.done("iter1/relabel") and run.read_jsonl("demonstrations.jsonl") != [d.to_json() for d in demos]:
        raise common.UserError(f"{run.path} was made with other demonstrations (changed --demos, --demos-file or "
                               f"--first-task?): use a new --out")
    run.write_jsonl("demonstrations.jsonl", demos)

    # ── π0 (Alg. 2 line 1) and the baselines of Table 2 ──
    bc_demos = demos if args.sft_on_demos else (
        [] if args.policy else envs.expert_demonstrations(args.env, "train", args.sft_demos, max_steps=args.max_steps))
    agent = common.initial_policy(args, run, runtime, quantize, bc_demos)
    rows: list[tuple[str, dict]] = []
    if hasattr(envs.ENV_REGISTRY[args.env], "expert_action"):
        rows.append(("Expert", common.evaluate_row(agent, run, args, "Expert", policy=envs.expert_policy)))
    if args.sft_baseline:
        common.sft_baseline(agent, run, args, "sft_baseline", desc="SFT baseline on D+",
                            examples=common.sft_examples(demos, args.history_window, args.history_reasons))
        rows.append(("SFT", common.evaluate_row(agent, run, args, "SFT", role="sft_baseline")))
    rows.append(("InversePRM π0", common.evaluate_row(agent, run, args, "InversePRM π0")))

    positives = transitions_from(demos, 1.0, 0, args.history_window, args.history_reasons)  # D+
    expert_states = [t.state for t in positives]
    negatives: list[Transition] = []  # D-, aggregated over iterations
    for i in range(1, args.iterations + 1):
        it = f"iter{i}"
        (run.path / it).mkdir(exist_ok=True)
        if i > 1:
            agent.load_role("policy", run.path / f"iter{i - 1}" / "policy")
        agent.add_role("reference", copy_from="policy")  # π_{i-1}: the KL anchor of Eq. 10

        # ── Stage 1: roll out π_{i-1}, aggregate D-, relabel a' ~ π_{i-1}(·|s') (Alg. 2 lines 3-4) ──
        # (each run.stage computes and saves once; a re-run with the same --out loads what it saved)
        def roll_out() -> list[dict]:  # D_i, each trajectory with the first step π_{i-1} chose
            policy = common.make_llm_policy(agent.peft, agent.codec, args.rollout_temperature, args.max_new_tokens,
                                            args.batch_size)
            rollouts, first_steps = collect_learner_rollouts(policy, train_tasks, demos, args,
                                                             random.Random(f"{args.seed}/{it}/resets"),
                                                             desc=f"{it} stage 1: rollouts of π{i - 1}")
            return learner_records(rollouts, first_steps)

        records = run.stage(f"{it}/stage1", roll_out, save_as=f"{it}/rollouts.jsonl")
        rollouts, first_steps = learner_trajectories(records)
        negatives += transitions_from(rollouts, 0.0, i, args.history_window, args.history_reasons, first_steps)
        transitions = [*positives, *negatives]  # Alg. 2 line 4: a' ~ π_{i-1}(·|s') for all of D+ ∪ D-
        saved = run.stage(f"{it}/relabel", lambda: relabel_with_policy(agent, transitions, args),
                          save_as=f"{it}/transitions.jsonl")
        take_next_actions(transitions, saved, run.path / it / "transitions.jsonl")  # resuming: the saved a'
        from_start = [traj.won for traj, t0 in zip(rollouts, first_steps) if t0 == 0]
        from_reset = [traj.won for traj, t0 in zip(rollouts, first_steps) if t0 > 0]
        stage1 = {"positives": len(positives), "negatives": len(negatives), "rollouts": len(rollouts),
                  "rollout_success": 100.0 * sum(from_start) / max(1, len(from_start)), "reset_rollouts": len(from_reset)}
        if from_reset:
            stage1["reset_rollout_success"] = 100.0 * sum(from_reset) / len(from_reset)
        run.log(stage=f"{it}/stage1", **stage1)
        print(f"[{it}] stage 1: |D+| = {len(positives)} expert transitions, |D-| = {len(negatives)} learner "
              f"transitions (" + (f"π{i - 1} rollouts: {stage1['rollout_success']:.1f}% success" if from_start else
                                  "no rollouts from the start")
              + (f"; {len(from_reset)} from expert states: {stage1['reset_rollout_success']:.1f}%" if from_reset else "")
              + ")")

        # ── Stage 2: Q_i classifies D+ vs D- through Q(s,a) - γ Q(s',a') (Alg. 2 line 5, Eq. 9) ──
        stage2 = run.stage(f"{it}/stage2", lambda: train_inverse_prm(agent, positives, negatives, args,
                                                                     desc=f"{it} stage 2: InversePRM"),
                           save_as=f"{it}/prm_metrics.json", adapter=(agent, "prm", f"{it}/prm"), fresh=True)
        run.log(stage=f"{it}/stage2", **stage2)
        print(f"[{it}] stage 2: held-out accuracy {stage2.get('prm_heldout_acc', math.nan):.3f} "
              f"(expert {stage2.get('prm_heldout_acc_expert', math.nan):.3f}, "
              f"learner {stage2.get('prm_heldout_acc_learner', math.nan):.3f})")
        for n in args.bon_n:
            name = common.paper_name(i - 1, i - 1, n if len(args.bon_n) > 1 else None)
            rows.append((name, bon_row(agent, run, args, name, n)))

        # ── Stage 3: online DPO of π_i against Q_i on s ~ D_i, KL to π_{i-1} (Alg. 2 line 6, Eq. 10-11) ──
        stage3 = run.stage(f"{it}/stage3", lambda: online_dpo(
            agent, dpo_prompt_states(rollouts, args.history_window, args.history_reasons, first_steps),  # s ~ D_i
            expert_states, args, f"{it} stage 3: online DPO", run, i),
            save_as=f"{it}/dpo_metrics.json", adapter=(agent, "policy", f"{it}/policy"))
        print(f"[{it}] stage 3: {stage3['dpo_steps']} DPO steps ({stage3.get('dpo_steps_without_pairs', 0)} batches "
              f"without a preference pair skipped), last loss {stage3.get('dpo_loss', math.nan):.3f}")
        rows.append((f"InversePRM π{i}", common.evaluate_row(agent, run, args, f"InversePRM π{i}")))
        for n in args.bon_n:
            name = common.paper_name(i, i - 1, n if len(args.bon_n) > 1 else None)
            rows.append((name, bon_row(agent, run, args, name, n)))

    # ── Alg. 2 line 7: the best π_i on the validation split (the first eval split) ──
    validation = args.eval_splits[0]
    policies = {name: row for name, row in rows if name.startswith("InversePRM π") and name != "InversePRM π0"}
    best = max(policies, key=lambda name: policies[name][validation]["success"]) if policies else "InversePRM π0"
    summary = {"best_policy": best, "validation_split": validation, "rows": dict(rows),
               "best_policy_adapter": str(run.path / f"iter{best.split('π')[-1]}" / "policy") if policies else None}
    run.write_json("summary.json", summary)
    common.print_tables("InversePRM", args, rows)
    print(f"\nbest policy on {validation}: {best}   (run folder: {run.path})")
    common.note_start_above_best(rows, "InversePRM π0", best, validation)
    return summary


if __name__ == "__main__":
    common.run_cli(main, Args, __doc__)
