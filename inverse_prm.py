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
import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

import common
import envs
from common import field

# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Arguments
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class Args(common.BaseArgs):
    """Model, environment, π0 and evaluation flags come from common.BaseArgs; these are Algorithm 2's."""

    # Stage 1
    iterations: int = field(1, "K, the number of InversePRM iterations", group="stage 1: D+ and D-")
    demos: int = field(200, "expert demonstrations for D+ (train games from --first-task on), if no --demos-file",
                       group="stage 1: D+ and D-")
    demos_file: str | None = field(None, "a JSONL of expert trajectories to use as D+ (format: README)",
                                   group="stage 1: D+ and D-")
    sft_on_demos: bool = field(False, "behaviour-clone π0 on D+ itself instead of separate --sft-demos episodes",
                               group="stage 1: D+ and D-")
    train_tasks: int = field(64, "training games rolled out by π_{i-1} for D- (from --first-task on)",
                             group="stage 1: D+ and D-")
    rollouts_per_task: int = field(2, "rollouts of π_{i-1} per training game", group="stage 1: D+ and D-")
    rollout_temperature: float = field(0.7, "sampling temperature of rollouts and of the relabelled a'",
                                       group="stage 1: D+ and D-")
    rollout_resets: float = field(0.0, "fraction of Stage-1 rollouts that start at a random state of the game's "
                                  "demonstration (a reset distribution, Sec. 4.1)", group="stage 1: D+ and D-")
    gamma: float = field(0.95, "discount γ in r(s,a) = Q(s,a) - γ Q(s',a') (Eq. 8) (official code: 0.95)",
                         group="stage 1: D+ and D-")
    # Stage 2
    prm_epochs: float = field(2.0, "PRM training epochs (over the smaller of D+ and D-)", group="stage 2: PRM")
    prm_lr: float = field(1e-3, "PRM learning rate (LoRA adapter + scalar head)", group="stage 2: PRM")
    prm_lr_schedule: str = field("constant", "PRM learning-rate schedule: constant, or cosine (5%% warm-up, decay to 0)",
                                 group="stage 2: PRM", choices=["constant", "cosine"])
    prm_batch_size: int = field(16, "PRM batch size (half expert, half learner transitions)", group="stage 2: PRM")
    prm_holdout: float = field(0.1, "fraction of games held out to report classification accuracy",
                               group="stage 2: PRM")
    # Stage 3 (online DPO, as in AgentPRM)
    dpo_steps: int = field(60, "online-DPO optimizer steps", group="stage 3: online DPO")
    dpo_prompts: int = field(8, "prompt states per DPO optimizer step (two samples each)", group="stage 3: online DPO")
    dpo_micro_prompts: int = field(16, "prompt states per forward/backward pass (gradients accumulated per step)",
                                   group="stage 3: online DPO")
    dpo_beta: float = field(0.1, "β, the KL weight to π_{i-1} in Eq. 10 (official code: 0.03)",
                            group="stage 3: online DPO")
    dpo_lr: float = field(5e-4, "policy learning rate (LoRA adapter)", group="stage 3: online DPO")
    dpo_temperature: float = field(1.0, "sampling temperature of the two DPO samples (official code: 0.7)",
                                   group="stage 3: online DPO")
    dpo_margin: float = field(0.0, "δ: drop DPO pairs whose σ(Q) differ by less than δ (0: any strict preference)",
                              group="stage 3: online DPO")
    invalid_penalty: float = field(1.0, "a response without a parsable ACTION scores -penalty (σ(Q) is in [0, 1])",
                                   group="stage 3: online DPO")
    reset_50_50: bool = field(False, "half of the DPO prompt states come from the expert demonstrations (Sec. 4.1)",
                              group="stage 3: online DPO")
    steered_exploration: bool = field(False, "sample DPO responses with Listing 1 added to the prompt (Sec. 4.1)",
                                      group="stage 3: online DPO")
    # baselines and inference
    sft_baseline: bool = field(True, "also train and evaluate Table 2's SFT baseline (π0 behaviour-cloned on D+)",
                               group="baselines and inference")
    sft_baseline_epochs: float = field(2.0, "epochs of the SFT baseline", group="baselines and inference")
    sft_baseline_lr: float = field(5e-4, "learning rate of the SFT baseline (LoRA adapter)",
                                   group="baselines and inference")
    bon_n: list[int] = field([4], "N of the Best-of-N rows; several give the N-scaling curve (Fig. 5b); 0: none",
                             group="baselines and inference")
    bon_temperature: float = field(0.7, "sampling temperature of the N Best-of-N candidates",
                                   group="baselines and inference")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quick:  # a CPU smoke test: the algorithm is unchanged, only the sizes shrink
            self.demos, self.train_tasks, self.rollouts_per_task = min(self.demos, 20), min(self.train_tasks, 6), 1
            self.prm_epochs, self.dpo_steps, self.dpo_prompts = min(self.prm_epochs, 1.0), min(self.dpo_steps, 4), 4
            self.sft_baseline_epochs, self.bon_n = min(self.sft_baseline_epochs, 0.5), [min(n, 2) for n in self.bon_n][:1]
        self.bon_n = common.best_of_n_sizes(self.bon_n)
        if not 0.0 <= self.rollout_resets <= 1.0:
            raise common.UserError(f"--rollout-resets must be in [0, 1], got {self.rollout_resets}")
        if not 0.0 < self.gamma <= 1.0:
            raise common.UserError(f"--gamma must be in (0, 1], got {self.gamma}")
        if self.dpo_steps < 0 or self.dpo_prompts < 1 or self.dpo_micro_prompts < 1:
            raise common.UserError(f"--dpo-steps must be ≥ 0 and --dpo-prompts, --dpo-micro-prompts ≥ 1, got "
                                   f"{self.dpo_steps}, {self.dpo_prompts}, {self.dpo_micro_prompts}")
        if self.dpo_margin < 0:
            raise common.UserError(f"--dpo-margin must be ≥ 0, got {self.dpo_margin}")
        if self.train_tasks < 1:
            raise common.UserError(f"D- would be empty: --train-tasks must be ≥ 1, got {self.train_tasks}")
        if self.demos_file is None and self.demos < 1:
            raise common.UserError("--demos must be at least 1 (or give --demos-file)")


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
    games = [envs.make(args.env, split="train", seed=s, max_steps=args.max_steps)
             for s in tasks for _ in range(args.rollouts_per_task)]
    resettable, n_resets = reset_candidates([game.game_id for game in games], demos, args.rollout_resets)
    first_steps = [0] * len(games)
    for k in rng.sample(resettable, n_resets):
        first_steps[k] = rng.randrange(1, len(demo_of[games[k].game_id].steps))
    starts = [envs.replay(game, demo_of[game.game_id], t0) if t0 else envs.begin(game)
              for game, t0 in zip(games, first_steps)]
    return common.rollout_in_batches(games, policy, args, desc, starts), first_steps


def save_learner_trajectories(run: common.RunDir, name: str, trajectories: Sequence[envs.Trajectory],
                              first_steps: Sequence[int]) -> None:
    """Stage-1 trajectories, each with "learner_from": the first step π_{i-1} chose (> 0 after a reset: a replayed
    expert prefix)."""
    run.write_jsonl(name, [{**traj.to_json(), "learner_from": t0} for traj, t0 in zip(trajectories, first_steps)])


def load_learner_trajectories(path: Path) -> tuple[list[envs.Trajectory], list[int]]:
    """What save_learner_trajectories wrote: (trajectories, first steps); a record without "learner_from" (an
    agent_prm.py rollout) is the learner's from its first step."""
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
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
    return [p + q for p, q in zip(pos_batches, neg_batches)]


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

        batches = balanced_batches(train_pos, train_neg, args.prm_batch_size, args.prm_epochs, rng)
        result = common.train_loop(agent.trainable_parameters("prm"), batches, loss_fn, lr=args.prm_lr,
                                   total=len(batches), desc=desc, cosine=args.prm_lr_schedule == "cosine")
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


def relabel_with_policy(agent: common.AgentModel, transitions: Sequence[Transition], args: Args) -> None:
    """Relabel every a' with one sample of the current "policy" adapter π_{i-1}."""
    def sample(prompts: list[list[dict[str, str]]]) -> list[str]:
        with agent.role("policy"):
            out = common.generate(agent.peft, agent.codec, prompts, n=1, temperature=args.rollout_temperature,
                                  max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                  progress="relabel a' ~ π(·|s')")
        return [group[0].text for group in out]

    relabel_next_actions(transitions, sample)


def load_demonstrations(args: Args) -> list[envs.Trajectory]:
    """D+ as trajectories: the user's JSONL (validated) or the environment's expert."""
    if args.demos_file is None:
        return envs.expert_demonstrations(args.env, "train", args.demos, start=args.first_task, max_steps=args.max_steps)
    if not Path(args.demos_file).is_file():
        raise common.UserError(f"--demos-file {args.demos_file}: no such file")
    try:
        demos = envs.load_trajectories(args.demos_file)
    except (ValueError, UnicodeDecodeError) as e:
        raise common.UserError(f"--demos-file: {e}") from None
    other = sorted({d.env for d in demos if d.env and d.env != args.env})
    if other:
        raise common.UserError(f"--demos-file holds demonstrations of {', '.join(other)}, not of --env {args.env}")
    return demos


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
    """BoN(π, Q_i) (Sec. 2.2): at every turn N samples of the "policy" adapter, act with the one Q_i scores highest.
    Returns (policy, records): each turn's candidates and their Q, by game id, for the dumped episodes."""
    records: dict[str, list[dict]] = defaultdict(list)

    def policy(prompts: list[list[dict[str, str]]], live_envs: list[envs.TextEnv]) -> list[str]:
        with agent.role("policy"):
            samples = common.generate(agent.peft, agent.codec, prompts, n=n, temperature=args.bon_temperature,
                                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)  # [B][N]
        scores = score_samples(agent, prompts, samples, args.invalid_penalty, args.batch_size)  # [B][N]
        for env, group, q in zip(live_envs, samples, scores):
            records[env.game_id].append({"candidates": [s.text for s in group], "prm_q_candidates": q})
        return [c.text for c in common.best_of_n(samples, scores)]

    return policy, records


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# main
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def main(args: Args) -> dict[str, Any]:
    if args.env not in envs.ENV_REGISTRY:
        raise common.UserError(f"unknown --env {args.env!r}; registered: {', '.join(sorted(envs.ENV_REGISTRY))}")
    runtime = common.resolve_runtime(args.device, args.dtype)
    quantize = common.quantize_flag(args.load_in_4bit, runtime)
    common.set_seed(args.seed)
    demos = load_demonstrations(args)  # validated before anything is written
    train_tasks = list(range(args.first_task, args.first_task + args.train_tasks))
    if args.rollout_resets > 0:
        reset_candidates([envs.make(args.env, split="train", seed=s, max_steps=args.max_steps).game_id
                          for s in train_tasks for _ in range(args.rollouts_per_task)], demos, args.rollout_resets)
    run = common.RunDir("inverse_prm", args.env, args.seed, args.out, args)
    print(f"InversePRM | model {args.model} | env {args.env} | {runtime.device} {str(runtime.dtype).split('.')[-1]}"
          f"{' 4-bit' if quantize else ''} | {len(demos)} demonstrations | run {run.path}")
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
        if not run.done("sft_baseline"):
            agent.add_role("sft_baseline", copy_from="policy")
            with agent.role("sft_baseline"):
                common.sft(agent.peft, agent.codec, agent.trainable_parameters("sft_baseline"),
                           common.sft_examples(demos, args.history_window, args.history_reasons),
                           args.sft_baseline_epochs,
                           args.sft_baseline_lr, args.sft_batch_size, args.seed, desc="SFT baseline on D+")
            agent.save_role("sft_baseline", run.path / "sft_baseline")
            run.mark_done("sft_baseline")
        else:
            agent.load_role("sft_baseline", run.path / "sft_baseline")
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
        if not run.done(f"{it}/stage1"):
            policy = common.make_llm_policy(agent.peft, agent.codec, args.rollout_temperature, args.max_new_tokens,
                                            args.batch_size)
            rollouts, first_steps = collect_learner_rollouts(policy, train_tasks, demos, args,
                                                             random.Random(f"{args.seed}/{it}/resets"),
                                                             desc=f"{it} stage 1: rollouts of π{i - 1}")
            save_learner_trajectories(run, f"{it}/rollouts.jsonl", rollouts, first_steps)
            run.mark_done(f"{it}/stage1")
        rollouts, first_steps = load_learner_trajectories(run.path / it / "rollouts.jsonl")
        negatives += transitions_from(rollouts, 0.0, i, args.history_window, args.history_reasons, first_steps)
        if not run.done(f"{it}/relabel"):
            relabel_with_policy(agent, [*positives, *negatives], args)
            run.write_jsonl(f"{it}/transitions.jsonl", [dataclasses.asdict(t) for t in [*positives, *negatives]])
            run.mark_done(f"{it}/relabel")
        else:
            saved, current = run.read_jsonl(f"{it}/transitions.jsonl"), [*positives, *negatives]
            if len(saved) != len(current) or any((r["state"], r["action"]) != (t.state, t.action)
                                                 for t, r in zip(current, saved)):  # else each a' lands on another s'
                raise common.UserError(f"{run.path / it / 'transitions.jsonl'} holds other transitions than D+ and D- "
                                       f"of these flags (changed --history-window?): use a new --out")
            for tr, record in zip(current, saved):
                tr.next_action = record["next_action"]
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
        if not run.done(f"{it}/stage2"):
            stage2 = train_inverse_prm(agent, positives, negatives, args, desc=f"{it} stage 2: InversePRM")
            agent.save_role("prm", run.path / it / "prm")
            run.write_json(f"{it}/prm_metrics.json", stage2)
            run.mark_done(f"{it}/stage2")
        else:
            agent.add_role("prm", head=True, fresh=True)
            agent.load_role("prm", run.path / it / "prm")
        stage2 = run.read_json(f"{it}/prm_metrics.json")
        run.log(stage=f"{it}/stage2", **stage2)
        print(f"[{it}] stage 2: held-out accuracy {stage2.get('prm_heldout_acc', float('nan')):.3f} "
              f"(expert {stage2.get('prm_heldout_acc_expert', float('nan')):.3f}, "
              f"learner {stage2.get('prm_heldout_acc_learner', float('nan')):.3f})")
        for n in args.bon_n:
            name = common.paper_name(i - 1, i - 1, n if len(args.bon_n) > 1 else None)
            rows.append((name, common.evaluate_row(agent, run, args, name,
                                                   make_policy=lambda _split, n=n: make_bon_policy(agent, n, args))))

        # ── Stage 3: online DPO of π_i against Q_i on s ~ D_i, KL to π_{i-1} (Alg. 2 line 6, Eq. 10-11) ──
        if not run.done(f"{it}/stage3"):
            states = dpo_prompt_states(rollouts, args.history_window, args.history_reasons, first_steps)  # s ~ D_i
            stage3 = online_dpo(agent, states, expert_states, args, f"{it} stage 3: online DPO", run, i)
            agent.save_role("policy", run.path / it / "policy")
            run.write_json(f"{it}/dpo_metrics.json", stage3)
            run.mark_done(f"{it}/stage3")
        else:
            agent.load_role("policy", run.path / it / "policy")
        stage3 = run.read_json(f"{it}/dpo_metrics.json")
        print(f"[{it}] stage 3: {stage3['dpo_steps']} DPO steps ({stage3.get('dpo_steps_without_pairs', 0)} batches "
              f"without a preference pair skipped), last loss {stage3.get('dpo_loss', float('nan')):.3f}")
        rows.append((f"InversePRM π{i}", common.evaluate_row(agent, run, args, f"InversePRM π{i}")))
        for n in args.bon_n:
            name = common.paper_name(i, i - 1, n if len(args.bon_n) > 1 else None)
            rows.append((name, common.evaluate_row(agent, run, args, name,
                                                   make_policy=lambda _split, n=n: make_bon_policy(agent, n, args))))

    validation = args.eval_splits[0]
    policies = {name: row for name, row in rows if name.startswith("InversePRM π") and name != "InversePRM π0"}
    best = max(policies, key=lambda name: policies[name][validation]["success"]) if policies else "InversePRM π0"
    summary = {"best_policy": best, "validation_split": validation, "rows": dict(rows),
               "best_policy_adapter": str(run.path / f"iter{best.split('π')[-1]}" / "policy") if policies else None}
    run.write_json("summary.json", summary)
    for split in args.eval_splits:
        print(f"\nInversePRM on {args.env} / {split} ({args.eval_games} games, max {args.max_steps} actions)")
        print(common.format_table([(name, row[split]) for name, row in rows]))
    print(f"\nbest policy on {validation}: {best}   (run folder: {run.path})")
    return summary


if __name__ == "__main__":
    common.run_cli(main, Args, __doc__)
