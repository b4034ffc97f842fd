"""The oracle ladder: the most a PRM can give. Best-of-N and AgentPRM's Stage 3 against the exact

    Q^μ(s, a) = r(s, a) + γ V^expert(s'),

the household expert played on from the state s' that action a leads to. The game and the expert are
deterministic, so one rollout of the expert is V^expert(s') exactly. A learned PRM Q_i estimates Q^{π_{i-1}} from
Monte-Carlo returns; Q^μ is what a perfect PRM of a (much better) policy would say. If Best-of-N and online DPO
do not raise π0 even against Q^μ, the recipe (steps, batch, lr, β, temperature) is wrong, not the PRM.

Q^μ is computed in the true game, so it also knows where the objects the agent has not seen yet are: it prefers
the lucky search. --hidden-worlds M values each action by its mean over M copies of the game with the unseen
objects placed anew by their priors (HouseholdEnv.resample_unseen): the value of what the agent has observed,
which is what a PRM trained on many games can at best learn. --census tells what there is to learn: where each
row's episodes leave the expert, and at how many of its states the expert itself is below the oracle's best action.
--relabel-sft E is a control on the policy's side: π0 fine-tuned by SFT on the expert's response at each of Stage 3's
states (DAgger's relabelling): what direct supervision at the same states gives, against what Stage 3 gives.
--policy-weights all trains every weight of π0 in Stage 3 and in --relabel-sft (the official code fine-tunes all of
the policy's weights) instead of the LoRA adapter that agent_prm.py trains; the reference stays π0, frozen.
On the PRM's side, --target-check asks which stage loses the ranking: at the states of Stage 1 where π0 took two
actions, do Stage 1's targets Q̂ order them as Q^μ does, and does the run's Q0 fit Q̂? --relabel-prm K is the PRM's
relabelling control: a fresh PRM trained on Q^μ of K samples of π0 at each of Stage 3's states, then its --prm-check
and BoN(π0, it): what the tiny PRM can rank when every state holds its own contrasts; with --relabel-target
admissible its targets are 1 / 0 for whether the action is in the prompt's admissible list (can it read the list?),
and --bon-admissible adds BoN(π0, admissible), the first sample whose action is in the list (no Q at all).

    python benchmarks/oracle_ladder.py runs/<agent_prm run> --bon-n 1 2 4 8 16         # BoN(π0, Q^μ) curve
    python benchmarks/oracle_ladder.py runs/<agent_prm run> --bon-n 0 --dpo-lr 1e-4 3e-4  # Stage 3 vs Q^μ, lr sweep
    python benchmarks/oracle_ladder.py runs/<agent_prm run> --bon-n 0 --prm-check 400     # the run's Q0 vs Q^μ
    python benchmarks/oracle_ladder.py runs/<agent_prm run> --bon-n 4 16 --hidden-worlds 16 --census
    python benchmarks/oracle_ladder.py runs/<agent_prm run> --bon-n 0 --dpo-lr 3e-5 --policy-weights all
    python benchmarks/oracle_ladder.py runs/<agent_prm run> --bon-n 0 --target-check              # Q̂, Q0 vs Q^μ
    python benchmarks/oracle_ladder.py runs/<agent_prm run> --bon-n 0 --relabel-prm 4 --prm-check 400
    python benchmarks/oracle_ladder.py runs/<agent_prm run> --bon-n 4 16 --bon-admissible \
        --relabel-prm 4 --relabel-target admissible --prm-check 2000

RUN is an agent_prm.py run (its π0; all but the Best-of-N rows need its Stage 1, iter1/rollouts.jsonl); its
settings (args.json) are the ladder's, and the flags below replace some of them. Writes RUN/oracle_ladder/:
evals.json and the episodes of every row (Best-of-N steps carry every candidate's Q^μ), one policy per learning
rate (an adapter folder; weights.pt with --policy-weights all), metrics.jsonl, ladder.json (the rows as printed),
census_W<M>.json, target_check.json, the --relabel-prm PRM (prm_relabel_prm_K<K>_<loss>[_admissible]/).
Re-running skips what is done.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import agent_prm  # noqa: E402
import common  # noqa: E402
import envs  # noqa: E402
from prm_diagnostics import is_inverse_run, load_prm, load_run, prm_replaced_by  # noqa: E402


def expert_return(env: envs.TextEnv, gamma: float) -> float:
    """V^expert(s) = Σ_k γ^k r_k of the expert played on from env's current state (env is stepped: pass a copy)."""
    value, discount, done = 0.0, 1.0, env.done
    while not done:
        _, reward, done, _ = env.step(env.expert_action()[1])
        value += discount * reward
        discount *= gamma
    return value


def oracle_q(env: envs.TextEnv, action: str, gamma: float) -> float:
    """Q^μ(s, a) = r + γ V^expert(s') at env's current state s (env itself is left as it is)."""
    after = copy.deepcopy(env)
    _, reward, done, _ = after.step(action)
    return reward if done else reward + gamma * expert_return(after, gamma)


def hidden_worlds(env: envs.TextEnv, worlds: int) -> list[envs.TextEnv]:
    """The game itself (worlds = 0: Q^μ sees where the unseen objects are), or `worlds` copies of it with the
    unseen objects placed anew by their priors (HouseholdEnv.resample_unseen), seeded by the state, so every
    action of a state is valued in the same copies."""
    if worlds == 0:
        return [env]
    key = f"{env.game_id}|{env.steps}|{env.state_fingerprint()}|{sorted(env.known)}"
    return [env.resample_unseen(random.Random(f"{key}|{w}")) for w in range(worlds)]


def oracle_scores(states: Sequence[envs.TextEnv], samples: Sequence[Sequence[common.Sample]], gamma: float,
                  invalid_penalty: float, worlds: int = 0) -> list[list[float]]:
    """Q^μ of every sample at its state [B][N] (with worlds > 0: its mean over that many hidden worlds); a response
    without a usable ACTION scores -penalty, as agent_prm.score_samples scores it for a learned PRM."""
    scores = []
    for env, group in zip(states, samples):
        actions = [envs.parse_response(s.text).action if agent_prm.is_valid_sample(s) else None for s in group]
        copies = hidden_worlds(env, worlds)
        q = {a: sum(oracle_q(w, a, gamma) for w in copies) / len(copies)  # each distinct action valued once
             for a in set(actions) - {None}}
        scores.append([q[a] if a is not None else -invalid_penalty for a in actions])
    return scores


def admissible_scores(states: Sequence[envs.TextEnv], samples: Sequence[Sequence[common.Sample]],
                      invalid_penalty: float) -> list[list[float]]:
    """1 if a sample's action is in its state's admissible list, else 0 [B][N]; -penalty without a usable ACTION."""
    return [[float(envs.parse_response(s.text).action in env.admissible_commands) if agent_prm.is_valid_sample(s)
             else -invalid_penalty for s in group] for env, group in zip(states, samples)]


def oracle_bon_policy(agent: common.AgentModel, args: agent_prm.Args, n: int, log: dict[str, list[dict]],
                      worlds: int = 0, admissible: bool = False) -> envs.Policy:
    """BoN(π, Q^μ): N samples of the "policy" adapter per turn, act with the highest Q^μ (the live games are the
    states). Each turn's candidates and their Q^μ are appended to log[game_id]. admissible=True: score by
    admissible_scores instead (the first sampled admissible action), what a PRM that reads only the list gives."""

    def policy(prompts: list[list[dict[str, str]]], live_envs: list[envs.TextEnv]) -> list[str]:
        with agent.role("policy"):
            samples = common.generate(agent.peft, agent.codec, prompts, n=n, temperature=args.bon_temperature,
                                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)  # [B][N]
        scores = admissible_scores(live_envs, samples, args.invalid_penalty) if admissible else \
            oracle_scores(live_envs, samples, args.gamma, args.invalid_penalty, worlds)  # [B][N]
        for env, group, q in zip(live_envs, samples, scores):
            log[env.game_id].append({"candidates": [s.text for s in group], "oracle_q_candidates": q})
        return [c.text for c in common.best_of_n(samples, scores)]

    return policy


def stage3_oracle(args: agent_prm.Args, trajectories: Sequence[envs.Trajectory], worlds: int = 0,
                  inadmissible_only: bool = False):
    """Stage 3's states s ~ D (agent_prm.dpo_prompt_states of the Stage-1 rollouts; with inadmissible_only, only
    those at which π0 took an action the game cannot do) and a score function (prompts, samples) -> Q^μ [P][K] for
    agent_prm.online_dpo (prm_replaced_by), and env_at(prompt) -> its game replayed to that state (envs.replay) the
    first time it is asked, then kept."""
    where: dict[str, tuple[envs.Trajectory, int]] = {}  # a state's messages (JSON) -> the first (episode, t) there
    inadmissible: set[str] = set()  # the states' messages (JSON) at which π0 took an inadmissible action
    for traj in trajectories:
        for t, step in enumerate(traj.steps):
            messages = json.dumps(envs.trajectory_messages(traj, t, args.history_window,
                                                           history_reasons=args.history_reasons))
            where.setdefault(messages, (traj, t))
            if step.action not in step.admissible:
                inadmissible.add(messages)
    seed_of = envs.game_seeds(args.env, "train", range(args.first_task, args.first_task + args.train_tasks),
                              max_steps=args.max_steps)
    games: dict[str, envs.TextEnv] = {}  # game id -> the game at its start
    at_state: dict[str, envs.TextEnv] = {}  # a state's messages (JSON) -> its game replayed there

    def env_at(messages: list[dict]) -> envs.TextEnv:
        key = json.dumps(messages)
        if key not in at_state:
            traj, t = where[key]
            if traj.game_id not in games:
                games[traj.game_id] = envs.make(args.env, "train", seed_of[traj.game_id], max_steps=args.max_steps)
            env = copy.deepcopy(games[traj.game_id])
            envs.replay(env, traj, t)
            at_state[key] = env
        return at_state[key]

    def score(prompts: list[list[dict]], samples: list[list[common.Sample]]) -> list[list[float]]:
        return oracle_scores([env_at(m) for m in prompts], samples, args.gamma, args.invalid_penalty, worlds)

    states = agent_prm.dpo_prompt_states(trajectories, args.history_window, args.history_reasons)
    if inadmissible_only:
        states = [m for m in states if json.dumps(m) in inadmissible]
    return states, score, env_at


class AllWeights:
    """π0 with every weight trainable, in the shape of a common.AgentModel for agent_prm.online_dpo, common.sft and
    common.evaluate_row: its "policy" role is a copy of the agent's π0 whose weights all train (the official code's
    full fine-tuning; the copy's LoRA adapter is π0's and stays as it is), its "reference" role the agent's π0,
    frozen (the KL anchor of Eq. 3). The two models share nothing, so the reference does not move; two full copies
    and the optimizer's state for every weight: a check for small models, not a recipe for a 3B one on 24 GB."""

    def __init__(self, agent: common.AgentModel):
        self.reference, self.policy = agent, copy.deepcopy(agent)
        self.codec, self.tokenizer, self._active = agent.codec, agent.tokenizer, "policy"

    @property
    def peft(self):
        return self.reference.peft if self._active == "reference" else self.policy.peft

    @contextlib.contextmanager
    def role(self, name: str):
        previous, self._active = self._active, name
        try:
            with (self.reference if name == "reference" else self.policy).role("policy"):
                yield self
        finally:
            self._active = previous

    def weights(self) -> dict[str, torch.nn.Parameter]:
        """The policy's own weights (not its LoRA adapter): what is trained and saved."""
        return {n: p for n, p in self.policy.peft.named_parameters() if "lora_" not in n}

    def trainable_parameters(self, name: str) -> list[torch.nn.Parameter]:
        assert name == "policy", name
        params = list(self.weights().values())
        for p in params:
            p.requires_grad_(True)
        return params

    def save_role(self, name: str, path: str | Path) -> None:  # AgentModel's signature, for RunDir.stage
        assert name == "policy", name
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save({n: p.detach().cpu() for n, p in self.weights().items()}, Path(path) / "weights.pt")

    def load_role(self, name: str, path: str | Path) -> None:
        assert name == "policy", name
        saved = torch.load(Path(path) / "weights.pt", map_location="cpu")
        with torch.no_grad():
            for n, p in self.weights().items():
                p.copy_(saved[n])


def expert_relabelled(env_at: Callable[[list[dict]], envs.TextEnv],
                      states: Sequence[list[dict]]) -> list[tuple[list[dict], str]]:
    """(prompt, the expert's response there) at each of Stage 3's states (env_at of stage3_oracle): DAgger's
    relabelling of π0's own states, for SFT."""
    return [(messages, envs.format_response(*env_at(messages).expert_action())) for messages in states]


CHECK_MARGINS = (0.0, 0.02, 0.05, 0.1, 0.2)  # --prm-check: the PRM's DPO pairs kept at each Q-gap margin δ


def prm_against_oracle(agent: common.AgentModel, args: agent_prm.Args, states: Sequence[list[dict]], score,
                       n_states: int, env_at: Callable[[list[dict]], envs.TextEnv]) -> dict:
    """Where a learned PRM departs from Q^μ: at n of Stage 3's states, π0's two samples (as Stage 3 draws them)
    scored by the run's PRM (agent_prm.score_samples) and by Q^μ. Of the pairs of two usable responses that Q^μ
    separates, how many the PRM orders the same way, the other way, or ties; and how often the DPO pair each would
    make (agent_prm.dpo_pair) is the same. Beside the PRM, π0's own log-likelihood of each response (what a PRM
    that reads the action through the policy would start from), and, of the separated pairs where one action is
    in the prompt's admissible list and the other is not, which one Q^μ, the PRM and π0 prefer. And, for each
    δ of CHECK_MARGINS, the PRM's DPO pairs with a Q gap ≥ δ (what `--dpo-margin δ` keeps) and how Q^μ orders
    their two responses: the same way, equal (mostly one action in two wordings), or the other way."""
    picked = random.Random(args.seed).sample(list(states), min(n_states, len(states)))
    common.set_seed(args.seed)
    with agent.role("policy"):
        samples = common.generate(agent.peft, agent.codec, picked, n=2, temperature=args.dpo_temperature,
                                  max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)  # [S][2]
        with torch.no_grad():
            logp, _ = common.continuation_logprobs(agent.peft, [agent.codec.prompt_ids(m) for m in picked],
                                                   [[x.token_ids for x in group] for group in samples],
                                                   agent.tokenizer.pad_token_id)  # [S, 2] log π0(response | s)
    q_prm = agent_prm.score_samples(agent, picked, samples, args.invalid_penalty, args.batch_size)  # [S][2]
    q_mu = score(picked, samples)  # [S][2]
    counts = {"states": len(picked), "separated": 0, "same_order": 0, "reversed": 0, "prm_tie": 0,
              "same_dpo_pair": 0, "dpo_pairs_prm": 0, "dpo_pairs_oracle": 0, "logp_same": 0, "logp_reversed": 0,
              "admissibility_differs": 0, "q_mu_prefers_admissible": 0, "prm_prefers_admissible": 0,
              "logp_prefers_admissible": 0,
              "by_margin": {str(d): {"pairs": 0, "oracle_agrees": 0, "oracle_ties": 0, "oracle_reverses": 0}
                            for d in CHECK_MARGINS}}
    for messages, group, (m0, m1), (p0, p1), (l0, l1) in zip(picked, samples, q_mu, q_prm, logp.tolist()):
        mine, theirs = agent_prm.dpo_pair(group, [p0, p1]), agent_prm.dpo_pair(group, [m0, m1])
        if mine is not None:
            oracle_gap = (m0 - m1) if mine[0] is group[0] else (m1 - m0)  # Q^μ(chosen) − Q^μ(rejected)
            verdict = "oracle_agrees" if oracle_gap > 0 else "oracle_ties" if oracle_gap == 0 else "oracle_reverses"
            for d in CHECK_MARGINS:
                if mine[2] >= d:
                    counts["by_margin"][str(d)]["pairs"] += 1
                    counts["by_margin"][str(d)][verdict] += 1
        counts["dpo_pairs_prm"] += mine is not None
        counts["dpo_pairs_oracle"] += theirs is not None
        counts["same_dpo_pair"] += mine is not None and theirs is not None and mine[0] is theirs[0]
        if min(m0, m1) < 0 or m0 == m1 or group[0].token_ids == group[1].token_ids:
            continue  # an unusable response (both score it -penalty) or no preference of Q^μ's
        counts["separated"] += 1
        key = "prm_tie" if p0 == p1 else "same_order" if (m0 - m1) * (p0 - p1) > 0 else "reversed"
        counts[key] += 1
        counts["logp_same" if (m0 - m1) * (l0 - l1) > 0 else "logp_reversed"] += 1
        in0, in1 = admissible_scores([env_at(messages)], [group], args.invalid_penalty)[0]  # both usable: 1 / 0
        if in0 != in1:  # +1 where the first response's action is the admissible one
            sign = 1 if in0 else -1
            counts["admissibility_differs"] += 1
            counts["q_mu_prefers_admissible"] += sign * (m0 - m1) > 0
            counts["prm_prefers_admissible"] += sign * (p0 - p1) > 0
            counts["logp_prefers_admissible"] += sign * (l0 - l1) > 0
    return counts


def targets_against_oracle(agent: common.AgentModel, args: agent_prm.Args,
                           trajectories: Sequence[envs.Trajectory]) -> dict:
    """Which of Stage 1 and Stage 2 loses the ranking: at every state of D where π0 took two or more different
    actions, each pair of actions (a, b) with Q^μ(s, a) ≠ Q^μ(s, b) is ordered by Stage 1's targets Q̂ (Eq. 1)
    and by the run's PRM Q0, on the games Stage 2 trained on and on those it held out (common.split_by_game, as
    agent_prm.train_prm splits). Q̂ against Q^μ: do the targets hold the ranking; Q0 against Q̂ on the training
    games: does the PRM fit it; on the held-out games: does it generalise."""
    q_hat, _ = agent_prm.estimate_q_targets(trajectories, args.gamma)  # Eq. 1 (unnormalised: the same order)
    dataset = agent_prm.build_prm_dataset(trajectories, q_hat, args.history_window, args.history_reasons)
    held = {ex.game_id for ex in common.split_by_game(dataset, args.prm_holdout, args.seed)[1]}
    at: dict[str, tuple[envs.Trajectory, int]] = {}  # state key -> the first (episode, t) there
    for traj in trajectories:
        for t, (state, _) in enumerate(agent_prm.state_action_keys(traj)):
            at.setdefault(state, (traj, t))
    by_state: dict[str, list[agent_prm.PRMExample]] = defaultdict(list)
    for ex in dataset:
        if ex.action != agent_prm.INVALID_ACTION_KEY:  # an unparsable response is no action of the game
            by_state[ex.state_key].append(ex)
    rows = [ex for group in by_state.values() if len(group) > 1 for ex in group]
    with torch.no_grad():
        logits = agent_prm.prm_logits(agent, [e.messages for e in rows], [e.response for e in rows],
                                      args.batch_size).tolist() if rows else []  # [R]
    q0 = {id(e): z for e, z in zip(rows, logits)}
    seed_of = envs.game_seeds(args.env, "train", range(args.first_task, args.first_task + args.train_tasks),
                              max_steps=args.max_steps)
    counts = {part: defaultdict(int) for part in ("train", "held_out")}
    for state, group in tqdm(by_state.items(), desc="Q̂ and Q0 against Q^μ", leave=False):
        if len(group) < 2:
            continue
        traj, t = at[state]
        env = envs.make(args.env, "train", seed_of[traj.game_id], max_steps=args.max_steps)
        envs.replay(env, traj, t)
        mu = {ex.action: oracle_q(env, ex.action, args.gamma) for ex in group}
        c = counts["held_out" if traj.game_id in held else "train"]
        c["states"] += 1
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                d_mu = mu[a.action] - mu[b.action]
                d_hat = a.target - b.target  # the rows' targets are Q̂ itself (unnormalised)
                d_q0 = q0[id(a)] - q0[id(b)]
                if d_hat != 0:  # a preference of the targets: does Q0 fit it?
                    c["q_hat_separated"] += 1
                    c["q0_fits_q_hat"] += d_hat * d_q0 > 0
                if d_mu == 0:
                    continue  # no preference of Q^μ's
                c["separated"] += 1
                for name, d in (("q_hat", d_hat), ("q0", d_q0)):
                    c[f"{name}_" + ("tie" if d == 0 else "same" if d * d_mu > 0 else "reversed")] += 1
    return {part: dict(c) for part, c in counts.items()}


def oracle_prm_dataset(agent: common.AgentModel, args: agent_prm.Args, states: Sequence[list[dict]], score,
                       env_at: Callable[[list[dict]], envs.TextEnv], k: int,
                       target: str = "q_mu") -> list[agent_prm.PRMExample]:
    """A PRM's training set with exact targets: k samples of π0 (Stage 3's temperature) at each of Stage 3's
    states, one row per distinct usable action with its Q^μ (in [0, 1]: no normalisation) in place of Stage 1's
    Monte-Carlo Q̂. Every state holds its own contrasts, where Stage 1 has two actions at ~5% of its states.
    target="admissible": the target is 1 if the action is in the prompt's admissible list, else 0 — a probe of
    whether the PRM can read the list at all (most of the pairs Q^μ separates differ in exactly that)."""
    common.set_seed(args.seed)
    with agent.role("policy"):
        samples = common.generate(agent.peft, agent.codec, states, n=k, temperature=args.dpo_temperature,
                                  max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                  progress="π0's samples at Stage 3's states")  # [S][k]
    if target == "admissible":  # [S][k] 1 / 0 by the list, -1 when unusable
        targets = admissible_scores([env_at(m) for m in states], samples, invalid_penalty=1.0)
    else:
        targets = score(states, samples)  # [S][k] Q^μ, -penalty when unusable
    rows = []
    for messages, group, q in zip(states, samples, targets):
        seen: set[str] = set()
        for sample, value in zip(group, q):
            action = envs.parse_response(sample.text).action
            if value >= 0 and action not in seen:
                seen.add(action)
                rows.append(agent_prm.PRMExample(messages, sample.text, value, json.dumps(messages), action,
                                                 env_at(messages).game_id))
    return rows


def deviation_census(episodes: Sequence[envs.Trajectory], args: agent_prm.Args, split: str, worlds: int) -> dict:
    """Where a policy's episodes leave the expert, by outcome (won / lost): its actions that are not the expert's
    at that state, by kind (inadmissible, or the command word of an admissible one); and the states at which the
    expert's own action is below the oracle's best admissible action (Q^μ, with worlds > 0 its mean over hidden
    worlds): the expert's inefficiencies, the only part of Q^μ's preferences that cloning the expert cannot teach."""
    seed_of = envs.game_seeds(args.env, split, range(args.eval_games), max_steps=args.max_steps)
    census: dict = {"won": defaultdict(int), "lost": defaultdict(int), "states": 0, "expert_below_best": 0}
    for traj in episodes:
        env = envs.make(args.env, split, seed_of[traj.game_id], max_steps=args.max_steps)
        env.reset()
        counts = census["won" if traj.won else "lost"]
        counts["episodes"] += 1
        for step in traj.steps:
            expert = env.expert_action()[1]
            counts["actions"] += 1
            if step.action != expert:
                counts["not_expert"] += 1
                counts["not_expert_" + ("inadmissible" if step.action not in step.admissible
                                        else step.action.split(" ")[0])] += 1
            copies = hidden_worlds(env, worlds)
            q = {a: sum(oracle_q(w, a, args.gamma) for w in copies) / len(copies)
                 for a in set(step.admissible) | {expert}}
            census["states"] += 1
            census["expert_below_best"] += q[expert] < max(q.values()) - 1e-9
            env.step(step.action)
    return census


def print_prm_check(name: str, c: dict, temperature: float) -> None:
    """prm_against_oracle's counts in two lines."""
    print(f"{name} against Q^μ at {c['states']} Stage-3 states (π0's two samples, T {temperature}): of the "
          f"{c['separated']} pairs of usable responses Q^μ separates, {name} orders {c['same_order']} the same way, "
          f"{c['reversed']} the other way, ties {c['prm_tie']}; DPO pairs: {name} {c['dpo_pairs_prm']}, Q^μ "
          f"{c['dpo_pairs_oracle']}, the same chosen response {c['same_dpo_pair']}")
    print(f"  π0's log-likelihood orders {c['logp_same']} of them as Q^μ does ({c['logp_reversed']} the other way); "
          f"in {c['admissibility_differs']} one action is in the admissible list and the other is not: Q^μ prefers "
          f"the admissible one in {c['q_mu_prefers_admissible']}, {name} in {c['prm_prefers_admissible']}, π0 in "
          f"{c['logp_prefers_admissible']}")
    if "by_margin" in c:  # (absent in a prm_check.json written before it was counted)
        print(f"  {name}'s DPO pairs with a Q gap ≥ δ (what --dpo-margin δ keeps) and Q^μ's order of their responses "
              "(same / equal / reversed): " + "; ".join(
                  f"δ {d}: {m['pairs']} ({m['oracle_agrees']} / {m['oracle_ties']} / {m['oracle_reverses']})"
                  for d, m in c["by_margin"].items()))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="an agent_prm.py run folder (its π0; Stage 3 rows need its Stage 1)")
    parser.add_argument("--bon-n", type=int, nargs="+", default=[1, 2, 4, 8, 16],
                        help="N of the BoN(π0, Q^μ) rows; 0: none")
    parser.add_argument("--bon-admissible", action="store_true",
                        help="also BoN(π0, admissible) for each --bon-n: act with the first sample whose action is in "
                             "the admissible list (how much of rung 1 is only that)")
    parser.add_argument("--dpo-lr", type=float, nargs="*", default=None,
                        help="Stage 3 against Q^μ once per learning rate (the run's --dpo-lr if the flag is given "
                             "without values); omit the flag for no Stage 3")
    parser.add_argument("--dpo-steps", type=int, default=None, help="Stage-3 optimizer steps (default: the run's)")
    parser.add_argument("--dpo-beta", type=float, default=None, help="Stage-3 β (default: the run's)")
    parser.add_argument("--dpo-temperature", type=float, default=None,
                        help="temperature of Stage 3's samples (default: the run's)")
    parser.add_argument("--dpo-samples", type=int, default=None,
                        help="Stage 3's samples per prompt; Q^μ's best and worst form the pair (default: the run's)")
    parser.add_argument("--dpo-prompts", type=int, default=None,
                        help="Stage 3's prompt states per optimizer step (default: the run's)")
    parser.add_argument("--eval-games", type=int, default=None, help="games per evaluation split (default: the run's)")
    parser.add_argument("--eval-splits", nargs="+", default=None, choices=envs.SPLITS,
                        help="splits to evaluate on (default: the run's; the first is the validation split)")
    parser.add_argument("--prm-check", type=int, default=0, metavar="S",
                        help="at S Stage-3 states, does the run's PRM (iter1/prm) order π0's two samples as Q^μ "
                             "does? 0: skip")
    parser.add_argument("--target-check", action="store_true",
                        help="at D's states where π0 took several actions: do Stage 1's Q̂ and the run's PRM order "
                             "them as Q^μ does, and does the PRM fit Q̂ (training / held-out games)?")
    parser.add_argument("--relabel-prm", type=int, default=0, metavar="K",
                        help="a control on the PRM's side: a fresh PRM (the run's --prm-loss) trained on Q^μ of K "
                             "samples of π0 at each of Stage 3's states instead of Stage 1's Q̂, then --prm-check "
                             "and BoN(π0, it) for --prm-bon-n; 0: none")
    parser.add_argument("--relabel-target", choices=["q_mu", "admissible"], default="q_mu",
                        help="the targets of --relabel-prm's rows: Q^μ, or 1 / 0 for whether the action is in the "
                             "prompt's admissible list (can the PRM read the list at all?)")
    parser.add_argument("--prm-bon-n", type=int, nargs="+", default=[4, 16],
                        help="N of the BoN(π0, PRM) rows of --relabel-prm")
    parser.add_argument("--hidden-worlds", type=int, default=0, metavar="M",
                        help="0: Q^μ in the true game (it sees where unseen objects are); M: its mean over M copies "
                             "with the unseen objects placed anew by their priors (the value of what was observed)")
    parser.add_argument("--dpo-states", choices=["all", "inadmissible"], default="all",
                        help="Stage 3's prompt states: all of D, or only those where π0 took an inadmissible action")
    parser.add_argument("--relabel-sft", type=float, default=0, metavar="EPOCHS",
                        help="a control: π0 fine-tuned by SFT (--policy-weights, --sft-lr) on the expert's responses at "
                             "Stage 3's states (DAgger's relabelling) for EPOCHS epochs; 0: none")
    parser.add_argument("--sft-lr", type=float, default=None,
                        help="learning rate of --relabel-sft (default: the run's --sft-lr)")
    parser.add_argument("--policy-weights", choices=["lora", "all"], default="lora",
                        help="what Stage 3 and --relabel-sft train: the policy's LoRA adapter (as agent_prm.py), or "
                             "all of π0's weights (the official code's full fine-tuning; reference: π0, frozen)")
    parser.add_argument("--census", action="store_true",
                        help="where each row's episodes (validation split) leave the expert, where the expert is "
                             "below Q^μ, and how many Stage-1 states saw an inadmissible action")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/oracle_ladder)")
    cli = parser.parse_args(argv)
    if any(n < 0 for n in cli.bon_n) or (cli.dpo_steps is not None and cli.dpo_steps < 1) or \
            (cli.eval_games is not None and cli.eval_games < 1) or any(lr <= 0 for lr in cli.dpo_lr or []) or \
            (cli.dpo_beta is not None and cli.dpo_beta <= 0) or \
            (cli.dpo_temperature is not None and cli.dpo_temperature <= 0) or \
            (cli.dpo_samples is not None and cli.dpo_samples < 2) or \
            (cli.dpo_prompts is not None and cli.dpo_prompts < 1) or (cli.sft_lr is not None and cli.sft_lr <= 0) or \
            cli.hidden_worlds < 0 or cli.relabel_sft < 0 or cli.relabel_prm < 0 or \
            any(n < 1 for n in cli.prm_bon_n):
        common.fail("--bon-n must be ≥ 0, --dpo-steps, --dpo-prompts, --eval-games and --prm-bon-n ≥ 1, "
                    "--dpo-samples ≥ 2, --hidden-worlds, --relabel-sft and --relabel-prm ≥ 0, "
                    "--dpo-lr, --dpo-beta, --dpo-temperature and --sft-lr > 0")
    needs_stage1 = cli.dpo_lr is not None or cli.prm_check or cli.relabel_sft or cli.target_check or cli.relabel_prm
    if needs_stage1 and not (cli.run / "iter1" / "rollouts.jsonl").exists():
        common.fail(f"{cli.run} has no iter1/rollouts.jsonl: Stage 3 rows and the checks and controls need "
                    f"agent_prm.py's Stage 1")
    args, agent = load_run(cli.run)
    if not hasattr(envs.make(args.env, "train", args.first_task, max_steps=args.max_steps), "expert_action"):
        common.fail(f"{args.env} has no expert: Q^μ needs one")
    if cli.hidden_worlds and not hasattr(envs.make(args.env, "train", args.first_task), "resample_unseen"):
        common.fail(f"--hidden-worlds needs a game that can place its unseen objects anew; {args.env} cannot")
    variant = "".join(f"_{name}{value:g}" for name, value in (("beta", cli.dpo_beta),
                                                              ("T", cli.dpo_temperature), ("K", cli.dpo_samples),
                                                              ("P", cli.dpo_prompts), ("W", cli.hidden_worlds or None))
                      if value is not None)  # in the names of the Stage-3 rows and folders
    suffix = ("_inadmissible" if cli.dpo_states == "inadmissible" else "") + \
        ("_all_weights" if cli.policy_weights == "all" else "")  # in the Stage-3 and --relabel-sft names
    variant += suffix
    args.dpo_steps = cli.dpo_steps or args.dpo_steps
    args.dpo_beta = args.dpo_beta if cli.dpo_beta is None else cli.dpo_beta
    args.dpo_temperature = args.dpo_temperature if cli.dpo_temperature is None else cli.dpo_temperature
    args.dpo_samples = cli.dpo_samples or getattr(args, "dpo_samples", 2)  # an inverse_prm.py run always samples 2
    args.dpo_prompts = cli.dpo_prompts or args.dpo_prompts
    args.eval_games = cli.eval_games or args.eval_games
    args.sft_lr = cli.sft_lr or args.sft_lr
    args.eval_splits = cli.eval_splits or args.eval_splits
    out = common.RunDir("oracle_ladder", args.env, args.seed, cli.out or str(cli.run / "oracle_ladder"), args)
    rows: list[tuple[str, dict]] = []
    oracle = f"Q^μ_W{cli.hidden_worlds}" if cli.hidden_worlds else "Q^μ"  # in the row names

    # ── the start: π0 as it plays (sampled at --eval-temperature) ──
    common.set_seed(args.seed)
    rows.append(("π0", common.evaluate_row(agent, out, args, "π0")))

    # ── rung 1: Best-of-N with Q^μ at every turn, BoN(π0, Q^μ) ──
    # (--bon-admissible: the same rows scored by list membership alone, BoN(π0, admissible))
    for label, listed in [(oracle, False)] + ([("admissible", True)] if cli.bon_admissible else []):
        for n in common.best_of_n_sizes(cli.bon_n):
            def bon(split: str, n: int = n, listed: bool = listed):
                log: dict[str, list[dict]] = defaultdict(list)
                return oracle_bon_policy(agent, args, n, log, cli.hidden_worlds, admissible=listed), log

            common.set_seed(args.seed)
            name = f"BoN(π0,{label}) N={n}"
            rows.append((name, common.evaluate_row(agent, out, args, name, make_policy=bon)))

    rollouts = cli.run / "iter1" / "rollouts.jsonl"  # Stage 1 of the run: D's states (needs_stage1: it exists)
    trajectories = [envs.Trajectory.from_json(json.loads(line))
                    for line in rollouts.read_text(encoding="utf-8").splitlines()] if rollouts.exists() else []
    if needs_stage1:
        states, score, env_at = stage3_oracle(args, trajectories, cli.hidden_worlds, cli.dpo_states == "inadmissible")

    # ── where the learned PRM departs from Q^μ: their preferences between π0's two samples ──
    if (cli.prm_check or cli.target_check) and not (cli.run / "iter1" / "prm" / "adapter_config.json").exists():
        common.fail(f"--prm-check and --target-check need the run's PRM, {cli.run}/iter1/prm")
    if cli.prm_check or cli.target_check:
        load_prm(agent, cli.run)
    if cli.prm_check:
        if not (out.path / "prm_check.json").exists():
            out.write_json("prm_check.json", prm_against_oracle(agent, args, states, score, cli.prm_check, env_at))
        # the run's PRM: AgentPRM's Q0 (trained on π0's rollouts), InversePRM's Q1 (Alg. 2's first)
        print_prm_check("Q1" if is_inverse_run(cli.run) else "Q0", out.read_json("prm_check.json"), args.dpo_temperature)

    # ── which stage loses the ranking: Stage 1's targets Q̂ and Stage 2's Q0 against Q^μ at D's own pairs ──
    if cli.target_check:
        if not (out.path / "target_check.json").exists():
            out.write_json("target_check.json", targets_against_oracle(agent, args, trajectories))
        for part, c in out.read_json("target_check.json").items():
            print(f"Stage 1's pairs on the {part} games ({c.get('states', 0)} states with two or more actions): of "
                  f"{c.get('separated', 0)} pairs Q^μ separates, Q̂ orders {c.get('q_hat_same', 0)} the same way, "
                  f"{c.get('q_hat_reversed', 0)} the other way, ties {c.get('q_hat_tie', 0)}; Q0 orders "
                  f"{c.get('q0_same', 0)} / {c.get('q0_reversed', 0)} / {c.get('q0_tie', 0)}; Q0 orders "
                  f"{c.get('q0_fits_q_hat', 0)} of the {c.get('q_hat_separated', 0)} pairs Q̂ separates as Q̂ does")

    # ── rung 2: Stage 3 (online DPO, Eq. 3/5) against Q^μ, from π0, KL to π0 ──
    if cli.dpo_lr is not None:
        print(f"Stage 3 against Q^μ: {len(states)} distinct states of {len(trajectories)} Stage-1 episodes; "
              f"{args.dpo_steps} steps x {args.dpo_prompts} prompts (each state used "
              f"{args.dpo_steps * args.dpo_prompts / len(states):.2f} times), {args.dpo_samples} samples each, "
              f"T {args.dpo_temperature}, β {args.dpo_beta}")
        agent.save_role("policy", out.path / "policy_pi0")  # every learning rate starts from π0
        agent.add_role("reference", copy_from="policy")  # π0, frozen: the KL anchor of Eq. 3
        for lr in cli.dpo_lr or [args.dpo_lr]:
            args.dpo_lr, tag = lr, f"lr{lr:g}{variant}"
            agent.load_role("policy", out.path / "policy_pi0")
            learner = AllWeights(agent) if cli.policy_weights == "all" else agent  # a fresh copy of π0 per lr
            if out.done(f"stage3_{tag}"):
                learner.load_role("policy", out.path / f"policy_{tag}")
            else:
                common.set_seed(args.seed)
                with prm_replaced_by(score):  # Q^μ in place of the PRM
                    metrics = agent_prm.online_dpo(learner, states, [], args, f"stage 3 vs Q^μ ({tag})", run=out,
                                                   iteration=1)
                learner.save_role("policy", out.path / f"policy_{tag}")
                out.write_json(f"dpo_metrics_{tag}.json", metrics)
                out.mark_done(f"stage3_{tag}")
            common.set_seed(args.seed)
            name = f"π1 vs {oracle} ({tag})"
            rows.append((name, common.evaluate_row(learner, out, args, name)))
        agent.load_role("policy", out.path / "policy_pi0")  # π0 again for the controls below (LoRA rows left a π1)

    # ── a control on the policy's side: SFT on the expert's responses at D's states (DAgger's relabelling) ──
    if cli.relabel_sft:
        tag = f"relabel_sft{cli.relabel_sft:g}" + (f"_lr{cli.sft_lr:g}" if cli.sft_lr else "") + suffix
        if cli.policy_weights == "all":
            learner, role = AllWeights(agent), "policy"  # a copy of π0, all its weights fine-tuned below
        else:
            learner, role = agent, "relabel"
            agent.add_role("relabel", copy_from="policy")  # π0's adapter, fine-tuned below

        def relabel_sft() -> dict:
            examples = expert_relabelled(env_at, states)
            with learner.role(role):
                result = common.sft(learner.peft, learner.codec, learner.trainable_parameters(role), examples,
                                    cli.relabel_sft, args.sft_lr, args.sft_batch_size, args.seed,
                                    desc=f"SFT on the expert at Stage 3's states ({tag})")
            return {"examples": len(examples), **result.metrics}

        common.set_seed(args.seed)
        fit = out.stage(tag, relabel_sft, save_as=f"{tag}.json", adapter=(learner, role, f"policy_{tag}"))
        print(f"{tag}: {fit['examples']} states relabelled by the expert, last SFT loss "
              f"{fit.get('sft_nll', math.nan):.3f}")
        common.set_seed(args.seed)
        name = f"π0 + SFT on the expert at D ({tag})"
        rows.append((name, common.evaluate_row(learner, out, args, name, role=role)))

    # ── a control on the PRM's side: Stage 2 on Q^μ of π0's samples at D's states instead of Stage 1's Q̂ ──
    if cli.relabel_prm:
        tag = f"relabel_prm_K{cli.relabel_prm}_{getattr(args, 'prm_loss', 'bce')}" + \
            ("_admissible" if cli.relabel_target == "admissible" else "")

        def relabel_prm() -> dict:
            dataset = oracle_prm_dataset(agent, args, states, score, env_at, cli.relabel_prm, cli.relabel_target)
            return {"rows": len(dataset), "mean_target": sum(r.target for r in dataset) / max(1, len(dataset)),
                    **agent_prm.train_prm(agent, dataset, args, f"PRM on {cli.relabel_target} ({tag})")}

        common.set_seed(args.seed)
        fit = out.stage(tag, relabel_prm, save_as=f"{tag}.json", adapter=(agent, "prm", f"prm_{tag}"), fresh=True)
        print(f"{tag}: {fit['rows']} (s, a, {cli.relabel_target}) rows (mean target "
              f"{fit.get('mean_target', math.nan):.3f}); held-out loss {fit.get('prm_heldout_loss', math.nan):.3f} "
              f"(mean-target constant {fit.get('prm_heldout_loss_constant', math.nan):.3f}), same-state pair "
              f"accuracy {fit.get('prm_heldout_pair_acc', math.nan):.3f} on {fit.get('prm_heldout_pairs', 0)} pairs")
        if cli.prm_check:
            if not (out.path / f"prm_check_{tag}.json").exists():
                out.write_json(f"prm_check_{tag}.json",
                               prm_against_oracle(agent, args, states, score, cli.prm_check, env_at))
            print_prm_check(f"Q({tag})", out.read_json(f"prm_check_{tag}.json"), args.dpo_temperature)
        for n in cli.prm_bon_n:
            common.set_seed(args.seed)
            name = f"BoN(π0,Q_{tag}) N={n}"
            rows.append((name, agent_prm.evaluate_row(agent, out, args, name, n)))

    out.write_json("ladder.json", {name: row for name, row in rows})

    # ── what there is to learn: where each row's episodes leave the expert, where the expert is below Q^μ ──
    if cli.census:
        split, census = args.eval_splits[0], {}
        for name, _ in rows:
            dump = f"evals/{common.slug(name)}__{split}.jsonl"
            episodes = [envs.Trajectory.from_json(r) for r in out.read_jsonl(dump)]
            census[name] = c = deviation_census(episodes, args, split, cli.hidden_worlds)
            for outcome in ("won", "lost"):
                k = c[outcome]
                by_kind = sorted(((v, key.removeprefix("not_expert_")) for key, v in k.items()
                                  if key.startswith("not_expert_")), reverse=True)
                kinds = ", ".join(f"{v} {kind}" for v, kind in by_kind)
                print(f"{name}: {outcome} {k['episodes']} of {len(episodes)} games on {split}, {k['actions']} actions, "
                      f"{k['not_expert']} not the expert's ({kinds})")
            print(f"{name}: the expert's own action is below {oracle}'s best at {c['expert_below_best']} of "
                  f"{c['states']} states")
        out.write_json(f"census_W{cli.hidden_worlds}.json", census)
        if trajectories:  # D: the states Stage 3 trains at (--dpo-states picks all or the inadmissible ones)
            every = stage3_oracle(args, trajectories)[0]
            flagged = stage3_oracle(args, trajectories, inadmissible_only=True)[0]
            print(f"Stage 1: π0 took an inadmissible action at {len(flagged)} of the {len(every)} distinct states "
                  f"Stage 3 draws from")
    for split in args.eval_splits:
        print(f"\nOracle ladder on {args.env} / {split} ({args.eval_games} games, max {args.max_steps} actions)")
        print(common.format_table([(name, row[split]) for name, row in rows]))


if __name__ == "__main__":
    main()
