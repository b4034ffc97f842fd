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
       (--expert-state-actions K: D_i also holds K one-step samples of π_{i-1} at every state of the demonstrations.)
  4.   Relabel the next action of every transition in D+ ∪ D-: a' ~ π_{i-1}(· | s') (Q estimates Q^{π_{i-1}}).
     Stage 2 — train the PRM to tell expert from learner transitions
  5.   Q_i = argmin  -E_{D+}[log σ(Q(s,a) - γ Q(s',a'))] - E_{D-}[log(1 - σ(Q(s,a) - γ Q(s',a')))]   (Eq. 9)
     Stage 3 — train the policy
  6.   π_i = argmax E_{s~D_i, a~π}[Q_i(s, a)] - β KL(π || π_{i-1})                                 (Eq. 10/11)
       by online DPO, exactly as in AgentPRM (agent_prm.online_dpo).
  7. End for; return the best π on the validation split.

    python inverse_prm.py --quick                      # tiny model on CPU, one iteration in a few minutes
    python inverse_prm.py --model llama-3.2-3b         # one 24 GB GPU: 4-bit base shared by policy/reference/PRM
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

import agent_prm
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
    demos_file: str | None = field(None, "a JSONL of expert trajectories (REASON/ACTION responses) to use as D+; "
                                   "see README for the format", group="stage 1: D+ and D-")
    sft_on_demos: bool = field(False, "behaviour-clone π0 on the InversePRM demonstrations themselves (default: on "
                               "separate --sft-demos episodes)", group="stage 1: D+ and D-")
    train_tasks: int = field(64, "training games rolled out by π_{i-1} for D- (from --first-task on: the games of "
                             "the first demonstrations)",
                             group="stage 1: D+ and D-")
    rollouts_per_task: int = field(2, "rollouts of π_{i-1} per training game", group="stage 1: D+ and D-")
    rollout_temperature: float = field(0.7, "sampling temperature of rollouts and of the relabelled a'",
                                       group="stage 1: D+ and D-")
    rollout_resets: float = field(0.0, "fraction of the Stage-1 rollouts that start at a random state of the "
                                  "expert's demonstration of the game instead of its first state (a reset "
                                  "distribution, Sec. 4.1; Swamy et al. 2023, IRL without RL): D- then holds "
                                  "π_{i-1}'s own choices at expert states; needs a demonstration of each such game "
                                  "(--train-tasks <= --demos). Measured: no gain on the tiny CPU setting "
                                  "(docs/findings.md)",
                                  group="stage 1: D+ and D-")
    expert_state_actions: int = field(0, "K > 0: D- also holds, at every state s* of the demonstrations, K one-step "
                                      "transitions (s*, a ~ π_{i-1}(·|s*), s'): the learner's choices at the "
                                      "expert's own states, so there only the action tells D+ from D- (with "
                                      "--train-tasks 0, D- holds nothing else). Measured: no gain for π1 on the tiny "
                                      "CPU setting (docs/findings.md)", group="stage 1: D+ and D-")
    gamma: float = field(0.95, "discount γ in r(s,a) = Q(s,a) - γ Q(s',a') (Eq. 8; official code: 0.95). Near 1, a "
                         "feature that persists from step to step (a learner repeating a useless action) enters r "
                         "only as (1-γ) of itself; the tiny CPU setting separates D+ from D- far better at 0.5 "
                         "(docs/findings.md)", group="stage 1: D+ and D-")
    # Stage 2
    prm_epochs: float = field(2.0, "PRM training epochs (over the smaller of D+ and D-)", group="stage 2: PRM")
    prm_lr: float = field(1e-3, "PRM learning rate (LoRA adapter + scalar head)", group="stage 2: PRM")
    prm_lr_schedule: str = field("constant", "constant | cosine: 5%% warm-up, then decay to 0",
                                 group="stage 2: PRM", choices=["constant", "cosine"])
    prm_batch_size: int = field(16, "PRM batch size (half expert, half learner transitions)", group="stage 2: PRM")
    prm_holdout: float = field(0.1, "fraction of games held out to report classification accuracy",
                               group="stage 2: PRM")
    # Stage 3 (online DPO, as in AgentPRM)
    dpo_steps: int = field(60, "online-DPO optimizer steps", group="stage 3: online DPO")
    dpo_prompts: int = field(8, "prompt states per DPO optimizer step (two samples each)", group="stage 3: online DPO")
    dpo_micro_prompts: int = field(16, "prompt states per forward/backward pass: a DPO step accumulates the gradients "
                                   "of ⌈dpo_prompts / this⌉ micro-batches", group="stage 3: online DPO")
    dpo_beta: float = field(0.1, "β, the KL weight to π_{i-1} in Eq. 10 (official code: 0.03)",
                            group="stage 3: online DPO")
    dpo_lr: float = field(5e-4, "policy learning rate (LoRA adapter)", group="stage 3: online DPO")
    dpo_temperature: float = field(1.0, "sampling temperature of the two DPO samples (official code: 0.7)",
                                   group="stage 3: online DPO")
    dpo_margin: float = field(0.0, "δ of the DPO pairs: the two samples' σ(Q) must differ by at least δ, smaller "
                              "gaps count as ties and are dropped (as Sec. 2.3 does for Bradley-Terry pairs); 0: "
                              "any strict preference", group="stage 3: online DPO")
    dpo_nll: float = field(0.0, "λ ≥ 0: add λ × the chosen response's per-token NLL under π_θ to the DPO loss (RPO, "
                           "Pang et al. 2024; not in the paper). DPO alone can lower the chosen response's likelihood "
                           "together with the rejected one's and hand the mass to a third response; this keeps the "
                           "chosen one likely. 0: DPO as in the paper", group="stage 3: online DPO")
    invalid_penalty: float = field(1.0, "a response without a parsable ACTION scores -penalty (σ(Q) is in [0,1])",
                                   group="stage 3: online DPO")
    reset_50_50: bool = field(False, "half of the DPO prompt states come from the expert demonstrations (Sec. 4.1)",
                              group="stage 3: online DPO")
    steered_exploration: bool = field(False, "sample DPO responses with Listing 1 added to the prompt (Sec. 4.1)",
                                      group="stage 3: online DPO")
    # baselines and inference
    sft_baseline: bool = field(True, "also train and evaluate SFT on the same demonstrations (π0 fine-tuned by "
                               "behaviour cloning on D+), the baseline of Table 2", group="baselines and inference")
    sft_baseline_epochs: float = field(2.0, "epochs of the SFT baseline", group="baselines and inference")
    sft_baseline_lr: float = field(5e-4, "learning rate of the SFT baseline (LoRA adapter)",
                                   group="baselines and inference")
    bon_n: list[int] = field([4], "N for Best-of-N evaluation (several values: the N-scaling curve, Fig. 5b); "
                             "0: no Best-of-N rows (they are the slowest evaluations)",
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
        agent_prm.check_dpo_pair_flags(self)
        if self.train_tasks < 0 or self.expert_state_actions < 0:
            raise common.UserError("--train-tasks and --expert-state-actions must be ≥ 0")
        if self.train_tasks == 0 and self.expert_state_actions == 0:
            raise common.UserError("D- would be empty: give --train-tasks > 0 or --expert-state-actions > 0")
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
    return agent_prm.rollout_in_batches(games, policy, args, desc, starts), first_steps


def expert_state_samples(policy: envs.Policy, demos: Sequence[envs.Trajectory], args: Args,
                         desc: str) -> tuple[list[envs.Trajectory], list[int]]:
    """D_i at the expert's own states (--expert-state-actions K): every demonstration is replayed to each of its
    states s*_t, and π_{i-1} takes K actions there, one env step each.

    Why: from the game's start, π_{i-1}'s first mistake takes it to states the expert never visits, and the
    classifier of Eq. 9 learns to spot those states (a prompt showing "Nothing happens.") instead of the wrong
    action. Every candidate of one state shares its prompt, so such a Q does not rank them, and online DPO has
    nothing to follow. At s*_t both sides act from the same prompt, so only a separates D+ from D-: the optimal
    classifier there is π_E(a|s*) / (π_E(a|s*) + π_{i-1}(a|s*)), 1/2 where π_{i-1} picks the expert's action and
    below it where it does not. (--rollout-resets replays to ONE random state per rollout and lets π_{i-1} play
    on: few contrasts, then its own states again.) Returns the trajectories (the replayed prefix + π_{i-1}'s one
    step, cut as by max_steps, so its s' is kept) and, per trajectory, t (the step π_{i-1} chose)."""
    seed_of = envs.game_seeds(args.env, "train", range(args.first_task, args.first_task + len(demos)),
                              max_steps=args.max_steps)
    unknown = sorted({d.game_id for d in demos} - set(seed_of))
    if unknown:
        raise common.UserError(f"--expert-state-actions replays the demonstrations in train games --first-task "
                               f"{args.first_task} on; {unknown[0]} is not one of them")
    games, starts, first_steps = [], [], []
    for demo in demos:
        for t in range(len(demo.steps)):
            for _ in range(args.expert_state_actions):
                game = envs.make(args.env, split="train", seed=seed_of[demo.game_id], max_steps=args.max_steps)
                games.append(game)
                starts.append(envs.replay(game, demo, t))
                first_steps.append(t)
    return agent_prm.rollout_in_batches(games, policy, args, desc, starts, max_actions=1), first_steps


def save_learner_trajectories(run: common.RunDir, name: str, trajectories: Sequence[envs.Trajectory],
                              first_steps: Sequence[int]) -> None:
    """Stage-1 trajectories, each with "learner_from": the first step π_{i-1} chose (> 0 after a replayed expert
    prefix: a reset, or a one-step sample at an expert state)."""
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
    at γ = 0.95 the classifier must give it 20x the weight to use it (see --gamma)."""
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


def q_values(agent: common.AgentModel, batch: Sequence[Transition], batch_size: int) -> tuple[torch.Tensor, ...]:
    """(Q(s, a), Q(s', a') — 0 where terminal, terminal mask) as PRM logits.  [B] each."""
    q_sa = agent_prm.prm_logits(agent, [t.state for t in batch], [t.action for t in batch], batch_size)
    terminal = torch.tensor([t.next_state is None for t in batch], device=q_sa.device)
    q_next = torch.zeros_like(q_sa)
    live = [k for k, t in enumerate(batch) if t.next_state is not None]
    if live:
        q_next[live] = agent_prm.prm_logits(agent, [batch[k].next_state for k in live],
                                            [batch[k].next_action for k in live], batch_size)
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
        rows.append(("Expert", agent_prm.evaluate_row(agent, run, args, "Expert", policy=envs.expert_policy)))
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
        rows.append(("SFT", agent_prm.evaluate_row(agent, run, args, "SFT", role="sft_baseline")))
    rows.append(("InversePRM π0", agent_prm.evaluate_row(agent, run, args, "InversePRM π0")))

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
            samples, sample_steps = expert_state_samples(policy, demos, args, f"{it} stage 1: π{i - 1} at expert "
                                                         f"states") if args.expert_state_actions else ([], [])
            save_learner_trajectories(run, f"{it}/rollouts.jsonl", rollouts, first_steps)
            save_learner_trajectories(run, f"{it}/expert_state_samples.jsonl", samples, sample_steps)
            run.mark_done(f"{it}/stage1")
        rollouts, first_steps = load_learner_trajectories(run.path / it / "rollouts.jsonl")
        negatives += transitions_from(rollouts, 0.0, i, args.history_window, args.history_reasons, first_steps)
        samples_file = run.path / it / "expert_state_samples.jsonl"  # absent in runs made before the flag
        samples, sample_steps = load_learner_trajectories(samples_file) if samples_file.exists() else ([], [])
        negatives += transitions_from(samples, 0.0, i, args.history_window, args.history_reasons, sample_steps)
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
        # how often π_{i-1} took the expert's own action at the expert's states (each such pair is in D+ and D-)
        demo_of = {d.game_id: d for d in demos}
        agree = [traj.steps[t].action == demo_of[traj.game_id].steps[t].action for traj, t in zip(samples, sample_steps)]
        stage1 = {"positives": len(positives), "negatives": len(negatives), "rollouts": len(rollouts),
                  "rollout_success": 100.0 * sum(from_start) / max(1, len(from_start)), "reset_rollouts": len(from_reset),
                  "expert_state_samples": len(samples)}
        if from_reset:
            stage1["reset_rollout_success"] = 100.0 * sum(from_reset) / len(from_reset)
        if samples:
            stage1["expert_action_agreement"] = sum(agree) / len(agree)
        run.log(stage=f"{it}/stage1", **stage1)
        print(f"[{it}] stage 1: |D+| = {len(positives)} expert transitions, |D-| = {len(negatives)} learner "
              f"transitions (" + (f"π{i - 1} rollouts: {stage1['rollout_success']:.1f}% success" if rollouts else
                                  "no rollouts from the start")
              + (f"; {len(from_reset)} from expert states: {stage1['reset_rollout_success']:.1f}%" if from_reset else "")
              + (f"; {len(samples)} one-step samples at expert states, {100 * sum(agree) / max(1, len(agree)):.0f}% "
                 f"of them the expert's own action" if samples else "") + ")")

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
            name = agent_prm.paper_name(i - 1, i - 1, n if len(args.bon_n) > 1 else None)
            rows.append((name, agent_prm.evaluate_row(agent, run, args, name, n)))

        # ── Stage 3: online DPO of π_i against Q_i on s ~ D_i, KL to π_{i-1} (Alg. 2 line 6, Eq. 10-11) ──
        if not run.done(f"{it}/stage3"):
            states = agent_prm.dpo_prompt_states([*rollouts, *samples], args.history_window, args.history_reasons,
                                                 [*first_steps, *sample_steps])  # s ~ D_i (Eq. 11)
            stage3 = agent_prm.online_dpo(agent, states, expert_states, args, desc=f"{it} stage 3: online DPO",
                                          run=run, iteration=i)
            agent.save_role("policy", run.path / it / "policy")
            run.write_json(f"{it}/dpo_metrics.json", stage3)
            run.mark_done(f"{it}/stage3")
        else:
            agent.load_role("policy", run.path / it / "policy")
        stage3 = run.read_json(f"{it}/dpo_metrics.json")
        print(f"[{it}] stage 3: {stage3['dpo_steps']} DPO steps ({stage3.get('dpo_steps_without_pairs', 0)} batches "
              f"without a preference pair skipped), last loss {stage3.get('dpo_loss', float('nan')):.3f}")
        rows.append((f"InversePRM π{i}", agent_prm.evaluate_row(agent, run, args, f"InversePRM π{i}")))
        for n in args.bon_n:
            name = agent_prm.paper_name(i, i - 1, n if len(args.bon_n) > 1 else None)
            rows.append((name, agent_prm.evaluate_row(agent, run, args, name, n)))

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
