"""Is a trained PRM useful for choosing actions? Checks on a finished agent_prm.py or inverse_prm.py run
(household env; the run's iter1/prm is Q0 of AgentPRM, or Q1 of InversePRM).

1. pick rate: at states of the expert's trajectories on eval games, sample N responses from π0 and ask how
   often the response the PRM ranks highest (what Best-of-N plays) takes the expert's action, against a
   random sample (what π0 plays), the lowest-ranked one, and an action-blind PRM (a uniform pick among the
   distinct responses: identical samples share a score, so a blind argmax loses π0's own majority vote).
   A PRM that ranks actions has argmax > blind > argmin; Best-of-N helps only if argmax > random sample.
   The lower-variance summary: over every (sample with the expert's action, sample with another action) pair
   of a state, how often the PRM scores the expert's higher (ties count half; an action-blind PRM: 0.5).
2. learnability (--learnability): train a fresh PRM with the same code (agent_prm.train_prm) on a synthetic D
   where Q̂ depends only on the action (expert response: 1; the same REASON with another admissible action: 0)
   and report its held-out same-state pair accuracy. If this is high while check 1 is at chance, the PRM code
   can rank actions and it is the rollout data that does not tell the actions apart.
   For an inverse_prm.py run the same question is asked of Eq. 9: a fresh InversePRM (inverse_prm.train_inverse_prm)
   classifies expert transitions (D+) against an ε-expert's (D-: with probability ε a random other admissible
   action, the expert's REASON kept), a' relabelled by π0 as in Alg. 2; then check 1 is run with it.
3. oracle (--oracle-q K): is there anything to learn? At the same states, the true Q^π0(s, a) that Stage 1
   estimates, by K Monte-Carlo rollouts of π0 after each distinct sampled action; then the value under it of
   the sample a random pick (π0), the PRM's argmax (Best-of-N), an action-blind pick and the oracle's argmax
   would play, and how often the PRM orders two samples like Q^π0. If the oracle's argmax is worth no more than
   a random sample, no PRM can make Best-of-N beat π0 at these states; if it is and the PRM's is not, the PRM
   is what is missing. Several runs sharing π0 are compared on the same samples and Q^π0 (--oracle-cache).
4. grounding (--grounding; no model, seconds): from the run's own Best-of-N evaluation logs, the steps whose
   N candidates mix admissible and inadmissible actions (an inadmissible action only wastes a turn: the game
   answers "Nothing happens."). How often the PRM's pick is admissible, against a random candidate (what π0
   plays) and an action-blind pick; and how often it scores an admissible candidate above an inadmissible one
   of the same step (ties half; blind 0.5). A PRM below the random candidate prefers actions that cannot work.
   The pair rate is also given over the pairs whose two actions share their command word (`take` vs `take`):
   a PRM that only prefers `go to` to `take` passes on all pairs at the learner's states, not on these.
   --grounding-on OTHER ...: the same on other runs' logs (same game and π0), their candidates re-scored by this
   run's PRM, so two PRMs (e.g. two trainings of one recipe) are judged on the same steps.
5. targets or model? (--retrain [ROLLOUTS.jsonl ...]; AgentPRM runs; minutes): two fresh PRMs trained with the
   run's Stage-2 code and settings (agent_prm.train_prm) on Stage-1 rollouts (the run's iter1/rollouts.jsonl, or
   the files given, e.g. several seeds' rollouts of one π0 for more data): one on Q̂ (Eq. 1, what Stage 2 fits),
   one on a control target, 1 iff the action is admissible (the list is in the prompt). Check 4 is then run with
   each on the run's Best-of-N logs, their candidates re-scored. If the control passes check 4 and the Q̂-trained
   PRM does not, this model can read admissibility from these states and it is the Q̂ targets that do not teach it.
6. a grounded PRM, in the game (--admissible-bon N [N ...]; π0 only, no PRM is trained): Best-of-N whose "PRM" is
   the indicator 1[the action is in the game's admissible list], ties broken by sampling order, so it plays π0's
   own first sample unless that one cannot work. Its success on the run's validation split (cf. BoN(π0, Q0) and
   N = 1) is what Best-of-N would gain from a PRM that had learned only grounding.

7. what online DPO is fed (--dpo-pairs S): at S of the run's own Stage-3 prompt states (s ~ D_i, as Stage 3 draws
   them), two samples of π0 at the run's --dpo-temperature, and the pair the run's PRM makes of them (its
   --dpo-margin, its --invalid-penalty: agent_prm.dpo_pair, as in Stage 3): the chosen and rejected actions'
   command words, and whether each is admissible. A PRM that prefers one command word to another (`go to` to
   `take`) teaches π_i to stop using the other, whatever check 4 says of its grounding. --dpo-margin δ: another δ.
8. (removed with agent_prm.py's Markov-state Q̂; its results are in docs/findings.md)
9. Stage 3 with an oracle PRM (--oracle-dpo admissible|expert; trains and plays eval games: minutes): the run's
   own Stage 3 (agent_prm.online_dpo from π0, KL to π0, at the run's Stage-3 prompt states, with its DPO settings)
   with an indicator in place of the PRM: 1[the action is in the game's admissible list], or 1[the action is the
   one the household expert takes at that state]; then that π1 on the run's validation split, beside the run's
   π1 (the same Stage 3 against its PRM). It tells whether online DPO can improve π0 when the PRM is right, i.e.
   whether Stage 3 or the PRM is what fails. It also prints check 7's census of the pairs the indicator makes,
   how often π0's and π1's samples take the oracle's good action at those states, and how often each takes the
   expert's action along its own evaluation episodes (do the states Stage 3 trains on carry over to play?).

    python benchmarks/prm_diagnostics.py runs/<agent_prm run>                    # check 1
    python benchmarks/prm_diagnostics.py runs/<agent_prm run> --learnability     # checks 1 and 2
    python benchmarks/prm_diagnostics.py runs/<inverse_prm run> --learnability   # the same for InversePRM
    python benchmarks/prm_diagnostics.py runs/<run1> runs/<run2> --oracle-q 8 --games 20 --temperatures 0.7  # 3
    python benchmarks/prm_diagnostics.py runs/<run> --grounding                 # check 4, from the BoN logs
    python benchmarks/prm_diagnostics.py runs/<run> --grounding-on runs/<other>  # check 4, <other>'s logs, this PRM
    python benchmarks/prm_diagnostics.py runs/<agent_prm run> --retrain          # check 5 (add rollout files: more data)
    python benchmarks/prm_diagnostics.py runs/<run> --admissible-bon 1 4 16      # check 6, plays eval games
    python benchmarks/prm_diagnostics.py runs/<run> --dpo-pairs 400              # check 7, at Stage 3's states
    python benchmarks/prm_diagnostics.py runs/<run> --oracle-dpo admissible [--dpo-steps 240]   # check 9
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import random
import sys
import unittest.mock
from pathlib import Path
from typing import NamedTuple, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import agent_prm  # noqa: E402
import common  # noqa: E402
import envs  # noqa: E402
import inverse_prm  # noqa: E402
import torch  # noqa: E402


def is_inverse_run(run: Path) -> bool:
    return (run / "demonstrations.jsonl").exists()  # inverse_prm.py writes D+ there first


def load_run(run: Path, prm_epochs: float | None = None) -> tuple[agent_prm.Args | inverse_prm.Args, common.AgentModel]:
    """An agent_prm.py / inverse_prm.py run's settings (its args.json, sizes as they ran; `prm_epochs` replaces
    its --prm-epochs for the fresh PRMs of checks 2 and 5) and π0: its cloned tiny base, or --model with the run's
    π0 adapter (cloned, or --policy; none: the model itself); the run's seed is set before the model is built."""
    saved = json.loads((run / "args.json").read_text())
    cls = inverse_prm.Args if is_inverse_run(run) else agent_prm.Args
    fields = set(cls.__dataclass_fields__)
    args = cls(**{k: v for k, v in saved.items() if k in fields and k != "quick"})
    if prm_epochs is not None:
        args.prm_epochs = prm_epochs
    runtime = common.resolve_runtime(args.device, args.dtype)
    common.set_seed(args.seed)
    base = run / "pi0_base" if (run / "pi0_base").exists() else common.resolve_model_path(args.model)
    agent = common.build_agent_model(str(base), runtime, common.quantize_flag(args.load_in_4bit, runtime),
                                     args.lora_r, args.lora_alpha, args.max_length)
    # a pretrained model's π0 is a LoRA adapter: the run's behaviour-cloned one, or the user's --policy
    adapter = run / "pi0" if (run / "pi0" / "adapter_config.json").exists() else args.policy
    if adapter:
        agent.load_role("policy", adapter)
    return args, agent


def prm_replaced_by(score):
    """A context in which agent_prm.score_samples, what Stage 3 (agent_prm.online_dpo) scores its samples with, is
    `score(prompts, samples) -> Q [P][K]` instead of the "prm" adapter: Stage 3 against an oracle."""
    def scores(agent, messages, samples, invalid_penalty, batch_size):  # agent_prm.score_samples' signature
        return score(messages, samples)

    return unittest.mock.patch.object(agent_prm, "score_samples", scores)


def load_prm(agent: common.AgentModel, run: Path) -> None:
    """The run's trained PRM (iter1/prm: AgentPRM's Q0, InversePRM's Q1) as the agent's "prm" role."""
    agent.add_role("prm", head=True, fresh=True)
    agent.load_role("prm", run / "iter1" / "prm")


def probe_states(args: agent_prm.Args, games: int) -> list[tuple[int, envs.Trajectory, int]]:
    """Two random states of the expert's trajectory on each of the first `games` eval games: (game, trajectory, t)."""
    trajectories = envs.rollout([envs.make(args.env, "eval_in_distribution", s, max_steps=args.max_steps)
                                 for s in range(games)], envs.expert_policy, args.history_window)
    rng = random.Random(0)
    return [(g, t, k) for g, t in enumerate(trajectories) for k in rng.sample(range(len(t.steps)), min(2, len(t.steps)))]


def probe_messages(args: agent_prm.Args, probes: list) -> list[list[dict]]:
    """π0's prompt at each probed state."""
    return [envs.trajectory_messages(t, k, args.history_window, history_reasons=args.history_reasons)
            for _, t, k in probes]


def sample_candidates(agent: common.AgentModel, args: agent_prm.Args, messages: list, n: int,
                      temperature: float) -> list[list[common.Sample]]:
    """n samples of π0 for each prompt: [S][N]."""
    with agent.role("policy"):
        return common.generate(agent.peft, agent.codec, messages, n=n, temperature=temperature,
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)


def _order_credit(difference: float) -> float:
    """A pair ordered the right way (difference > 0) counts 1, a tie 1/2, the wrong way 0."""
    return 1.0 if difference > 0 else 0.5 if difference == 0 else 0.0


def _better_above_worse(scores: Sequence[float], better: Sequence[bool],
                        groups: Sequence[str | None] | None = None) -> tuple[float, int]:
    """Over every (better, other) pair of one state's candidates: the summed order credit of the scores, and
    the number of pairs. groups: only pairs whose two candidates share a group (not None) count."""
    credits = [_order_credit(scores[i] - scores[j]) for i in range(len(scores)) if better[i]
               for j in range(len(scores)) if not better[j]
               and (groups is None or (groups[i] is not None and groups[i] == groups[j]))]
    return sum(credits), len(credits)


def action_verb(response: str) -> str | None:
    """The command word of a response's ACTION ("go", "take", "open", ...), None without an ACTION."""
    action = envs.parse_response(response).action
    return action.split()[0] if action else None


def pick_rate(agent: common.AgentModel, args: agent_prm.Args, games: int, n: int, temperature: float) -> dict:
    probes = probe_states(args, games)
    states = [(t, t.steps[k].action) for _, t, k in probes]
    messages = probe_messages(args, probes)
    samples = sample_candidates(agent, args, messages, n, temperature)
    scores = agent_prm.score_samples(agent, messages, samples, args.invalid_penalty, args.batch_size)  # [S][N]
    random_hit = best_hit = worst_hit = blind_hit = 0.0
    pair_wins, pairs = 0.0, 0  # (expert-action sample, other-action sample) pairs of one state
    for (_, expert_action), group, q in zip(states, samples, scores):
        actions = [envs.parse_response(s.text).action for s in group]
        wins, count = _better_above_worse(q, [a == expert_action for a in actions])
        pair_wins, pairs = pair_wins + wins, pairs + count
        random_hit += sum(a == expert_action for a in actions) / len(actions)
        best_hit += actions[max(range(n), key=lambda i: q[i])] == expert_action
        worst_hit += actions[min(range(n), key=lambda i: q[i])] == expert_action
        # A PRM blind to the action still gives identical responses identical scores, so its argmax is a
        # uniform pick among the DISTINCT responses: it loses π0's own vote (how often π0 repeats an action).
        distinct = {s.text: a for s, a in zip(group, actions)}
        blind_hit += sum(a == expert_action for a in distinct.values()) / len(distinct)
    s = len(states)
    return {"states": s, "N": n, "temperature": temperature, "random_sample": random_hit / s,
            "prm_argmax": best_hit / s, "prm_argmin": worst_hit / s, "blind_prm": blind_hit / s,
            "expert_pair_acc": pair_wins / pairs if pairs else float("nan"), "expert_pairs": pairs}


def oracle_q(agent: common.AgentModel, args: agent_prm.Args, probes: list, samples: list, rollouts: int) -> list[dict]:
    """The true Q^π0(s, a) that Stage 1 estimates, for every distinct valid action among each state's samples:
    replay the expert's steps to s, take a, let π0 play to the end (at the Stage-1 temperature), `rollouts`
    times. Returns one {action: [discounted reward-to-go from s of each rollout]} per state (Eq. 1's G(s, a))."""
    jobs, games, partials = [], [], []
    for si, ((game, traj, t), group) in enumerate(zip(probes, samples)):
        distinct = {}
        for sample in group:
            if agent_prm.is_valid_sample(sample):
                distinct.setdefault(envs.parse_response(sample.text).action, sample.text)
        for action, text in distinct.items():
            for _ in range(rollouts):
                env = envs.make(args.env, "eval_in_distribution", game, max_steps=args.max_steps)
                prefix = envs.replay(env, traj, t)
                obs, reward, done, info = env.step(action)
                taken = envs.Step(traj.observation_at(t), traj.admissible_at(t), text,
                                  envs.parse_response(text).reason, action, obs, float(reward), bool(done))
                partials.append(dataclasses.replace(prefix, steps=prefix.steps + [taken], final_observation=obs,
                                                    final_admissible=list(env.admissible_commands),
                                                    won=bool(done and info.get("won", getattr(env, "won", False)))))
                games.append(env)
                jobs.append((si, action))
    policy = common.make_llm_policy(agent.peft, agent.codec, args.rollout_temperature, args.max_new_tokens,
                                    args.batch_size)
    finished = []
    with agent.role("policy"):
        for i in range(0, len(games), args.batch_size):
            finished += envs.rollout(games[i:i + args.batch_size], policy, args.history_window, progress=True,
                                     history_reasons=args.history_reasons, resume=partials[i:i + args.batch_size],
                                     desc=f"oracle Q^π0 rollouts [{i // args.batch_size + 1}/"
                                          f"{-(-len(games) // args.batch_size)}]")
    returns: dict[tuple[int, str], list[float]] = {}
    for (si, action), traj in zip(jobs, finished):
        t = probes[si][2]
        returns.setdefault((si, action), []).append(
            agent_prm.reward_to_go([step.reward for step in traj.steps], args.gamma)[t])
    q: list[dict] = [{} for _ in probes]
    for (si, action), gs in returns.items():
        q[si][action] = gs
    return q


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def against_oracle(samples: list, prm_scores: list, returns: list[dict]) -> dict:
    """What each way of choosing among π0's N samples is worth under the true Q^π0 (the mean of each action's
    rollout returns): a random sample (π0), the PRM's argmax (Best-of-N), an action-blind pick, and the
    oracle's argmax — cross-fitted: picked by the first half of the rollouts, valued by the second half, so the
    noise it picks by does not inflate its value; and how often the PRM orders two samples like Q^π0 (blind: 0.5)."""
    totals = {"random_sample": 0.0, "prm_argmax": 0.0, "blind_prm": 0.0, "oracle_argmax": 0.0}
    agree, pairs, states = 0.0, 0, 0
    for group, scores, g_s in zip(samples, prm_scores, returns):
        valid = [(i, envs.parse_response(s.text).action) for i, s in enumerate(group) if agent_prm.is_valid_sample(s)]
        if not valid:
            continue
        states += 1
        q_s = {a: _mean(gs) for a, gs in g_s.items()}
        values = [q_s[a] for _, a in valid]
        totals["random_sample"] += _mean(values)
        totals["prm_argmax"] += q_s[max(valid, key=lambda v: scores[v[0]])[1]]
        distinct = {group[i].text: a for i, a in valid}
        totals["blind_prm"] += _mean([q_s[a] for a in distinct.values()])
        half = {a: len(gs) // 2 for a, gs in g_s.items()}
        pick = max((a for _, a in valid), key=lambda a: _mean(g_s[a][:max(1, half[a])]))
        totals["oracle_argmax"] += _mean(g_s[pick][half[pick]:])
        for x, (i, a) in enumerate(valid):
            for j, b in valid[x + 1:]:
                if q_s[a] != q_s[b]:
                    agree, pairs = agree + _order_credit((scores[i] - scores[j]) * (q_s[a] - q_s[b])), pairs + 1
    return {"states": states, **{k: v / max(1, states) for k, v in totals.items()},
            "pair_agreement": agree / pairs if pairs else float("nan"), "pairs": pairs}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bon_logs(run: Path) -> dict[Path, list[dict]]:
    """The run's Best-of-N evaluation logs (<run>/evals/BoN*.jsonl), read: what checks 4 and 5 judge."""
    logs = sorted((run / "evals").glob("BoN*.jsonl"))
    if not logs:
        common.fail(f"{run} has no Best-of-N evaluation logs (evals/BoN*.jsonl): run it with --bon-n > 0")
    return {log: _read_jsonl(log) for log in logs}


def admissible_candidates(step: dict) -> list[bool]:
    """For each Best-of-N candidate of a logged step: is its action admissible in that state?"""
    return [envs.parse_response(c).action in step["admissible"] for c in step["candidates"]]


def grounding(records: Sequence[dict]) -> dict:
    """Check 4 on Best-of-N evaluation records (trajectory dicts whose steps carry `candidates`, the N responses,
    and `prm_q_candidates`, their PRM scores): at the steps whose candidates mix admissible and inadmissible
    actions, the share of admissible picks by the PRM's argmax (common.best_of_n, as played), a random
    candidate and an action-blind pick (uniform over the distinct responses), and the PRM's admissible-above-
    inadmissible pair rate, over all pairs and over the pairs whose two actions share their command word ("take
    pen 1 from desk 1" vs "take watch 1 from desk 1"). At the learner's states the inadmissible candidates are
    mostly `take`s of objects that are not there and the admissible ones mostly `go to`s, so a PRM that merely
    prefers `go to` to `take` scores well on all pairs; only the same-verb rate asks whether it reads the list."""
    totals = {"prm_argmax": 0.0, "random_candidate": 0.0, "blind_prm": 0.0}
    states, above, pairs, same_verb_above, same_verb_pairs = 0, 0.0, 0, 0.0, 0
    for record in records:
        for step in record["steps"]:
            candidates, scores = step.get("candidates"), step.get("prm_q_candidates")
            if not candidates or not scores:
                continue
            ok = admissible_candidates(step)
            if all(ok) or not any(ok):
                continue
            states += 1
            totals["prm_argmax"] += common.best_of_n([ok], [scores])[0]  # what Best-of-N played
            totals["random_candidate"] += _mean(ok)
            distinct = dict(zip(candidates, ok))
            totals["blind_prm"] += _mean(list(distinct.values()))
            wins, count = _better_above_worse(scores, ok)
            above, pairs = above + wins, pairs + count
            wins, count = _better_above_worse(scores, ok, [action_verb(c) for c in candidates])
            same_verb_above, same_verb_pairs = same_verb_above + wins, same_verb_pairs + count
    return {"states": states, **{k: v / max(1, states) for k, v in totals.items()},
            "admissible_above": above / pairs if pairs else float("nan"), "pairs": pairs,
            "same_verb_admissible_above": same_verb_above / same_verb_pairs if same_verb_pairs else float("nan"),
            "same_verb_pairs": same_verb_pairs}


def admissible_targets(dataset: Sequence[agent_prm.PRMExample],
                       trajectories: Sequence[envs.Trajectory]) -> list[agent_prm.PRMExample]:
    """Check 5's control: the same rows of D with the target 1 if the action is admissible in s, else 0."""
    admissible_at = {state: set(step.admissible) for traj in trajectories
                     for (state, _), step in zip(agent_prm.state_action_keys(traj), traj.steps)}
    return [dataclasses.replace(ex, target=float(ex.action in admissible_at[ex.state_key])) for ex in dataset]


@torch.no_grad()
def rescore_mixed_steps(agent: common.AgentModel, args: agent_prm.Args, records: Sequence[dict]) -> list[dict]:
    """Best-of-N records with `prm_q_candidates` replaced by the current "prm" role's Q = σ(logit) at the steps
    check 4 reads (candidates mixing admissible and inadmissible actions) and dropped elsewhere."""
    out = []
    for record in records:
        traj = envs.Trajectory.from_json(record)
        steps = [dict(step, prm_q_candidates=None) for step in record["steps"]]
        mixed = [t for t, step in enumerate(steps)
                 if step.get("candidates") and len(set(admissible_candidates(step))) == 2]
        messages = [envs.trajectory_messages(traj, t, args.history_window, history_reasons=args.history_reasons)
                    for t in mixed for _ in steps[t]["candidates"]]
        responses = [c for t in mixed for c in steps[t]["candidates"]]
        if responses:
            with agent.role("prm"):
                q = torch.sigmoid(agent_prm.prm_logits(agent, messages, responses, args.batch_size)).tolist()
            for t in mixed:
                n = len(steps[t]["candidates"])
                steps[t]["prm_q_candidates"], q = q[:n], q[n:]
        out.append({**record, "steps": steps})
    return out


def retrain_main(run: Path, rollout_files: list[str], prm_epochs: float | None = None) -> None:
    """Check 5: fresh PRMs on Q̂ and on the admissibility control, each judged by check 4 on the run's BoN logs;
    trained for the run's --prm-epochs, or `prm_epochs`."""
    if is_inverse_run(run):
        common.fail("--retrain retrains AgentPRM's Q0 from Stage-1 rollouts; this is an inverse_prm.py run")
    records = bon_logs(run)
    files = [Path(f) for f in rollout_files] or [run / "iter1" / "rollouts.jsonl"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        common.fail(f"no such rollout file: {', '.join(missing)}")
    args, agent = load_run(run, prm_epochs)
    trajectories = [envs.Trajectory.from_json(record) for f in files for record in _read_jsonl(f)]
    q_hat, _ = agent_prm.estimate_q_targets(trajectories, args.gamma)  # Eq. 1, as Stage 1 of the run
    if args.shaping_alpha > 0:  # Eq. 13, as the run did (π0's value head fit on these rollouts)
        values, _ = agent_prm.reference_values(agent, trajectories, trajectories, args)
        q_hat = agent_prm.shaped_targets(trajectories, q_hat, values, args)
    dataset = agent_prm.build_prm_dataset(trajectories, agent_prm.normalize_targets(q_hat), args.history_window,
                                          args.history_reasons)
    print(f"check 5: {len(trajectories)} rollouts from {len(files)} file(s), {len(dataset)} (s, a) rows, each PRM "
          f"trained for {args.prm_epochs:g} epoch(s)")
    for target, rows in (("Q̂ (Eq. 1)", dataset), ("admissible (control)", admissible_targets(dataset, trajectories))):
        common.set_seed(args.seed)
        m = agent_prm.train_prm(agent, rows, args, desc=f"PRM on {target}")
        # Bradley-Terry logits are not calibrated to Q̂ (no soft-BCE constant to compare with): its held-out
        # same-state pair accuracy (chance 0.5) says more
        fit = (f"held-out same-state pair accuracy {m.get('prm_heldout_pair_acc', float('nan')):.3f} of "
               f"{m.get('prm_heldout_pairs', 0)} pairs" if args.prm_loss == "bt" else
               f"held-out loss {m.get('prm_heldout_loss', float('nan')):.3f} (mean-target constant "
               f"{m.get('prm_heldout_loss_constant', float('nan')):.3f})")
        print(f"PRM trained on {target}: {fit}")
        for log, recs in records.items():
            print("  " + format_grounding(log, grounding(rescore_mixed_steps(agent, args, recs))))


def first_admissible(actions: Sequence[str | None], admissible: Sequence[str]) -> int:
    """Check 6's pick among N candidates: the first whose action the game admits (0 when none does), i.e. the
    argmax of the indicator 1[a admissible] with ties broken by sampling order."""
    allowed = set(admissible)
    return next((k for k, action in enumerate(actions) if action in allowed), 0)


def admissible_bon_policy(agent: common.AgentModel, args: agent_prm.Args, n: int) -> envs.Policy:
    """BoN(π0, 1[admissible]): N samples of π0 per turn at the Best-of-N temperature, play `first_admissible`."""

    def policy(prompts: list[list[dict[str, str]]], live_envs: list[envs.TextEnv]) -> list[str]:
        samples = sample_candidates(agent, args, prompts, n, args.bon_temperature)  # [B][N]
        picks = [first_admissible([envs.parse_response(s.text).action for s in group], env.admissible_commands)
                 for env, group in zip(live_envs, samples)]
        return [group[k].text for group, k in zip(samples, picks)]

    return policy


def admissible_bon_main(run: Path, ns: Sequence[int]) -> None:
    """Check 6 on the run's validation split; rows are cached in <run>/admissible_bon/evals.json."""
    args, agent = load_run(run)
    args.eval_splits = args.eval_splits[:1]
    out = common.RunDir("admissible_bon", args.env, args.seed, str(run / "admissible_bon"), args)
    for n in ns:
        common.set_seed(args.seed)
        common.evaluate_row(agent, out, args, f"BoN(π0,admissible) N={n}", policy=admissible_bon_policy(agent, args, n))


class Stage3State(NamedTuple):
    messages: list[dict]  # the prompt, as Stage 3 builds it
    admissible: list[str]  # the game's admissible actions there
    expert_action: str | None  # the household expert's action there (stage3_states(..., expert=True))


def expert_action_at(traj: envs.Trajectory, t: int, args: agent_prm.Args, split: str,
                     seed_of: dict[str, int]) -> str:
    """The household expert's action at step t of a saved episode: its game (seed_of: envs.game_seeds of the
    split) replayed to s_t (envs.replay), then asked."""
    if traj.game_id not in seed_of:
        common.fail(f"{traj.game_id} is not one of the run's {split} games: no expert to replay it")
    game = envs.make(args.env, split, seed_of[traj.game_id], max_steps=args.max_steps)
    envs.replay(game, traj, t)
    return game.expert_action()[1]


def stage3_states(run: Path, args: agent_prm.Args, expert: bool = False) -> list[Stage3State]:
    """The run's Stage-3 prompt states s ~ D_1 (agent_prm.dpo_prompt_states of its Stage-1 trajectories), each with
    its admissible actions and, with `expert`, the household expert's action (its game replayed to the state:
    envs.replay)."""
    records = [json.loads(line) for line in (run / "iter1" / "rollouts.jsonl").read_text().splitlines() if line.strip()]
    trajectories, first_steps = inverse_prm.learner_trajectories(records)
    where = {}  # state (its messages' JSON) -> the first (trajectory, step) that reached it
    for traj, t0 in zip(trajectories, first_steps):
        for t in range(t0, len(traj.steps)):
            messages = envs.trajectory_messages(traj, t, args.history_window, history_reasons=args.history_reasons)
            where.setdefault(json.dumps(messages), (traj, t))
    seed_of = envs.game_seeds(args.env, "train", range(args.first_task, args.first_task + max(args.train_tasks,
                              getattr(args, "demos", 0))), max_steps=args.max_steps) if expert else {}
    states = agent_prm.dpo_prompt_states(trajectories, args.history_window, args.history_reasons, first_steps)
    firsts = [where[json.dumps(m)] for m in states]  # [(trajectory, step)], one per state
    return [Stage3State(m, traj.admissible_at(t), expert_action_at(traj, t, args, "train", seed_of) if expert else None)
            for m, (traj, t) in zip(states, firsts)]


def dpo_pair_census(pairs: Sequence[tuple[str, str, list[str]]]) -> dict:
    """Check 7's tally of (chosen response, rejected response, admissible actions at the state) pairs."""
    verbs = collections.Counter((action_verb(c) or "(none)", action_verb(r) or "(none)") for c, r, _ in pairs)
    admissible = collections.Counter((envs.parse_response(c).action in ok, envs.parse_response(r).action in ok)
                                     for c, r, ok in pairs)
    return {"pairs": len(pairs), "verbs": verbs.most_common(),
            "admissible_over_inadmissible": admissible[(True, False)],
            "inadmissible_over_admissible": admissible[(False, True)]}


def some_states(states: Sequence[Stage3State], n: int, seed: int) -> list[Stage3State]:
    """n of the Stage-3 states, drawn without replacement (the same n for the same seed)."""
    states = list(states)
    random.Random(seed).shuffle(states)
    return states[:n]


def dpo_pairs_at(agent: common.AgentModel, args: agent_prm.Args, states: Sequence[Stage3State], score) -> dict:
    """Check 7's census: the pairs `score(prompts, samples) -> Q` (the PRM, or check 9's indicator) makes of π0's
    two samples at these states (T = --dpo-temperature; pairs by agent_prm.dpo_pair, as in Stage 3)."""
    messages = [state.messages for state in states]
    samples = sample_candidates(agent, args, messages, 2, args.dpo_temperature)
    pairs = []
    for state, group, q in zip(states, samples, score(messages, samples)):
        pair = agent_prm.dpo_pair(group, q, args.dpo_margin)
        if pair is not None:
            pairs.append((pair[0].text, pair[1].text, state.admissible))
    return {"states": len(states), **dpo_pair_census(pairs)}


def format_dpo_pairs(r: dict) -> str:
    return (f"{r['pairs']} pairs at {r['states']} states | admissible chosen over inadmissible "
            f"{r['admissible_over_inadmissible']}, the reverse {r['inadmissible_over_admissible']} | (chosen, rejected) "
            "command words: " + ", ".join(f"{c} > {w}: {k}" for (c, w), k in r["verbs"]))


def dpo_pairs_main(run: Path, n_states: int, margin: float | None = None) -> None:
    """Check 7: the pairs the run's PRM makes of π0's two samples at its Stage-3 prompt states (margin: a δ in
    place of the run's --dpo-margin)."""
    args, agent = load_run(run)
    if margin is not None:
        args.dpo_margin = margin
    load_prm(agent, run)
    r = dpo_pairs_at(agent, args, some_states(stage3_states(run, args), n_states, args.seed),
                     lambda m, s: agent_prm.score_samples(agent, m, s, args.invalid_penalty, args.batch_size))
    print(f"DPO pairs of {run} (T = {args.dpo_temperature}, δ = {args.dpo_margin}): {format_dpo_pairs(r)}")


ORACLES = {"admissible": "1[admissible]", "expert": "1[the expert's action]"}  # check 9's indicators, by name


def indicator_scores(good_actions: dict[str, set[str]], invalid_penalty: float):
    """Check 9's Q(s, a) for agent_prm.online_dpo: 1 if the sampled action is one of the state's good actions (the
    admissible ones, or the expert's), else 0; a response without a usable ACTION scores -penalty, as
    agent_prm.score_samples scores it. States are keyed by their messages' JSON."""

    def score(messages: list[list[dict]], samples: list[list[common.Sample]]) -> list[list[float]]:
        return [[(1.0 if envs.parse_response(s.text).action in good_actions[json.dumps(m)] else 0.0)
                 if agent_prm.is_valid_sample(s) else -invalid_penalty for s in group]
                for m, group in zip(messages, samples)]

    return score


def good_action_rates(agent: common.AgentModel, args: agent_prm.Args, states: Sequence[Stage3State],
                      good: dict[str, set[str]]) -> dict:
    """Check 9: how often the "policy" adapter's two samples per state (at --dpo-temperature, as Stage 3 draws
    them) take a good action of the oracle, an admissible one, and each command word."""
    samples = sample_candidates(agent, args, [state.messages for state in states], 2, args.dpo_temperature)
    texts = [(s.text, state) for state, group in zip(states, samples) for s in group]
    actions = [(envs.parse_response(text).action, state) for text, state in texts]
    verbs = collections.Counter(action_verb(text) or "(none)" for text, _ in texts)
    return {"samples": len(actions),
            "good": sum(a in good[json.dumps(state.messages)] for a, state in actions) / len(actions),
            "admissible": sum(a in state.admissible for a, state in actions) / len(actions),
            "verbs": {verb: k / len(actions) for verb, k in verbs.most_common()}}


def expert_actions_along(episodes: Sequence[envs.Trajectory], args: agent_prm.Args, split: str) -> list[list[str]]:
    """The household expert's action at every step of these evaluation episodes (each state replayed in its game)."""
    seed_of = envs.game_seeds(args.env, split, range(args.eval_games), max_steps=args.max_steps)
    return [[expert_action_at(traj, t, args, split, seed_of) for t in range(len(traj.steps))] for traj in episodes]


def own_episode_rates(episodes: Sequence[envs.Trajectory], experts: Sequence[Sequence[str]]) -> dict:
    """Check 9, along a policy's own evaluation episodes: how often its action is the one the household expert
    would take in that state (experts: expert_actions_along the episodes), and how often it repeats its previous
    action."""
    steps = sum(len(traj.steps) for traj in episodes)
    expert = sum(step.action == e for traj, row in zip(episodes, experts) for step, e in zip(traj.steps, row))
    repeats = sum(step.action == traj.steps[t - 1].action for traj in episodes for t, step in enumerate(traj.steps)
                  if t > 0)
    return {"steps": steps, "expert_action": expert / max(1, steps), "repeats_previous": repeats / max(1, steps)}


def expert_rate_at(agent: common.AgentModel, args: agent_prm.Args, probes: Sequence[tuple[list[dict], str]]) -> float:
    """Check 9: how often the "policy" adapter's two samples per state, at the evaluation temperature, take the
    expert's action at these (prompt, expert action) states."""
    samples = sample_candidates(agent, args, [m for m, _ in probes], 2, args.eval_temperature)
    hits = [envs.parse_response(s.text).action == e for (_, e), group in zip(probes, samples) for s in group]
    return sum(hits) / max(1, len(hits))


def format_rates(r: dict) -> str:
    return (f"good {r['good']:.3f}, admissible {r['admissible']:.3f}, command words "
            + ", ".join(f"{verb} {share:.2f}" for verb, share in list(r["verbs"].items())[:4]))


def oracle_dpo_main(run: Path, oracle: str, dpo_steps: int | None, dpo_prompts: int | None,
                    dpo_beta: float | None = None, census_states: int = 400) -> None:
    """Check 9: the run's Stage 3 (its --dpo-steps, --dpo-prompts and --dpo-beta, or these) with Q = the `oracle`
    indicator, then π1 on the run's validation split, in <run>/oracle_dpo_<oracle>_<steps>x<prompts>[_beta<β>]/
    (policy adapter, metrics.jsonl, evals.json: re-running skips what is done). Also: check 7's census of the
    indicator's pairs and π0's and π1's good-action rates at census_states Stage-3 states; how often each takes
    the expert's action at census_states states of π0's evaluation episodes, and along its own episodes."""
    args, agent = load_run(run)
    if args.reset_50_50:
        common.fail(f"{run} ran Stage 3 with --reset-50-50; check 9 draws states from its rollouts only")
    args.dpo_steps, args.dpo_prompts = dpo_steps or args.dpo_steps, dpo_prompts or args.dpo_prompts
    beta = f"_beta{dpo_beta:g}" if dpo_beta is not None and dpo_beta != args.dpo_beta else ""
    args.dpo_beta = dpo_beta or args.dpo_beta
    args.eval_splits = args.eval_splits[:1]
    states = stage3_states(run, args, expert=oracle == "expert")
    good = {json.dumps(state.messages): set(state.admissible) if oracle == "admissible" else {state.expert_action}
            for state in states}
    score, label = indicator_scores(good, args.invalid_penalty), ORACLES[oracle]
    folder = run / f"oracle_dpo_{oracle}_{args.dpo_steps}x{args.dpo_prompts}{beta}"
    out = common.RunDir("oracle_dpo", args.env, args.seed, str(folder), args)
    probes = some_states(states, census_states, args.seed)  # what Stage 3 is fed there, and what it changes
    if not (out.path / "pairs_census.json").exists():  # check 7's census of the oracle's pairs of π0's samples
        out.write_json("pairs_census.json", dpo_pairs_at(agent, args, probes, score))
    split = args.eval_splits[0]
    theirs = json.loads((run / "evals.json").read_text()) if (run / "evals.json").exists() else {}
    pi0_log = run / "evals" / f"{common.slug('π0')}__{split}.jsonl"
    pi0_episodes = [envs.Trajectory.from_json(json.loads(line)) for line in pi0_log.open()] if pi0_log.exists() and \
        theirs.get("π0", {}).get(split, {}).get("episodes") == args.eval_games else []  # the run's π0, same games
    pi0_experts = expert_actions_along(pi0_episodes, args, split)
    pi0_states = some_states([(envs.trajectory_messages(traj, t, args.history_window,
                                                        history_reasons=args.history_reasons), e)
                              for traj, row in zip(pi0_episodes, pi0_experts) for t, e in enumerate(row)],
                             census_states, args.seed)  # does the gain carry over to the eval games?
    rates = out.read_json("rates.json") if (out.path / "rates.json").exists() else {}  # π0's before Stage 3
    if pi0_states and "π0 at eval states" not in rates:
        common.set_seed(args.seed)
        rates["π0 at eval states"] = expert_rate_at(agent, args, pi0_states)
    if "π0" not in rates:
        common.set_seed(args.seed)
        rates["π0"] = good_action_rates(agent, args, probes, good)
    out.write_json("rates.json", rates)
    if out.done("stage3"):
        agent.load_role("policy", out.path / "policy")
    else:
        agent.add_role("reference", copy_from="policy")  # π0, frozen: the KL anchor of Eq. 3
        common.set_seed(args.seed)
        with prm_replaced_by(score):  # the indicator in place of the PRM
            metrics = agent_prm.online_dpo(agent, [state.messages for state in states], [], args,
                                           f"check 9: online DPO vs {label}", run=out, iteration=1)
        agent.save_role("policy", out.path / "policy")
        out.write_json("dpo_metrics.json", metrics)
        out.mark_done("stage3")
    if "π1" not in rates:
        common.set_seed(args.seed)
        rates["π1"] = good_action_rates(agent, args, probes, good)
    if pi0_states and "π1 at eval states" not in rates:
        common.set_seed(args.seed)
        rates["π1 at eval states"] = expert_rate_at(agent, args, pi0_states)
    out.write_json("rates.json", rates)
    print(f"check 9, the pairs {label} makes of π0's two samples: {format_dpo_pairs(out.read_json('pairs_census.json'))}")
    for name in ("π0", "π1"):
        print(f"check 9, {name}'s samples at these {len(probes)} states (2 each, T = {args.dpo_temperature}): "
              f"{format_rates(rates[name])}")
    if pi0_states:
        print(f"check 9, at {len(pi0_states)} states of π0's own {split} episodes (2 samples each, T = "
              f"{args.eval_temperature}): the expert's action π0 {rates['π0 at eval states']:.3f}, π1 "
              f"{rates['π1 at eval states']:.3f}")
    metrics = out.read_json("dpo_metrics.json")
    print(f"check 9 on {run}: {args.dpo_steps} DPO batches of {args.dpo_prompts} prompts (β = {args.dpo_beta:g}) "
          f"against {label} at {len(states)} Stage-3 states: {metrics['dpo_steps']} updates "
          f"({metrics['dpo_steps_without_pairs']} batches without a pair), last loss "
          f"{metrics.get('dpo_loss', float('nan')):.3f}")
    common.set_seed(args.seed)
    row = common.evaluate_row(agent, out, args, f"π1 (DPO vs {label})")
    print(f"{split}: π1 against {label} {row[split]['success']:.1f}% | "
          + " | ".join(f"{name} {theirs[name][split]['success']:.1f}%" for name in ("π0", "π1")
                       if split in theirs.get(name, {})))
    # the same policies on the states they reach themselves (their evaluation episodes), not on π0's
    pi1_log = out.path / "evals" / f"{common.slug(f'π1 (DPO vs {label})')}__{split}.jsonl"
    pi1_episodes = [envs.Trajectory.from_json(json.loads(line)) for line in pi1_log.open()]
    episodes = {"π0": (pi0_episodes, pi0_experts),
                "π1 (this check)": (pi1_episodes, expert_actions_along(pi1_episodes, args, split))}
    for name, (trajectories, experts) in episodes.items():
        if trajectories:
            r = own_episode_rates(trajectories, experts)
            print(f"check 9, {name} along its own {split} episodes: the expert's action {r['expert_action']:.3f}, "
                  f"repeats its previous action {r['repeats_previous']:.3f} ({r['steps']} steps)")


def format_pick_rate(r: dict) -> str:
    return (f"T={r['temperature']}, N={r['N']}, {r['states']} states: random sample {r['random_sample']:.3f} | "
            f"PRM argmax {r['prm_argmax']:.3f} | PRM argmin {r['prm_argmin']:.3f} | action-blind PRM "
            f"{r['blind_prm']:.3f} | expert action scored above another {r['expert_pair_acc']:.3f} of "
            f"{r['expert_pairs']} pairs (blind: 0.5)")


def synthetic_games(args: agent_prm.Args | inverse_prm.Args, games: int) -> list[envs.TextEnv]:
    """Train games far past any the runs use (from 100,000 on): the synthetic D of check 2."""
    return [envs.make(args.env, "train", 100_000 + s, max_steps=args.max_steps) for s in range(games)]


def learnability(agent: common.AgentModel, args: agent_prm.Args, games: int) -> dict:
    trajectories = envs.rollout(synthetic_games(args, games), envs.expert_policy, args.history_window)
    rng, dataset = random.Random(0), []
    for t in trajectories:
        for k, step in enumerate(t.steps):
            others = [a for a in step.admissible if a != step.action]
            if not others:
                continue
            messages = envs.trajectory_messages(t, k, args.history_window, history_reasons=args.history_reasons)
            key = f"{t.game_id}|{k}"
            for action, target in ((step.action, 1.0), (rng.choice(others), 0.0)):
                dataset.append(agent_prm.PRMExample(messages, f"REASON: {step.reason}\nACTION: {action}", target,
                                                    key, action, t.game_id))
    metrics = agent_prm.train_prm(agent, dataset, args, desc="synthetic PRM")
    return {"examples": len(dataset), **metrics}


def inverse_learnability(agent: common.AgentModel, args: inverse_prm.Args, games: int, epsilon: float) -> dict:
    """Eq. 9 on a synthetic D: D+ = the expert's transitions, D- = an ε-expert's on the same games."""
    rng = random.Random(0)

    def epsilon_expert(prompts: list[list[dict[str, str]]], live: list[envs.TextEnv]) -> list[str]:
        out = []
        for env in live:
            reason, action = env.expert_action()
            others = [a for a in env.admissible_commands if a != action]
            out.append(envs.format_response(reason, rng.choice(others) if others and rng.random() < epsilon
                                            else action))
        return out

    positives = inverse_prm.transitions_from(
        envs.rollout(synthetic_games(args, games), envs.expert_policy, args.history_window),
        1.0, 0, args.history_window, args.history_reasons)
    negatives = inverse_prm.transitions_from(
        envs.rollout(synthetic_games(args, games), epsilon_expert, args.history_window),
        0.0, 1, args.history_window, args.history_reasons)
    inverse_prm.relabel_with_policy(agent, [*positives, *negatives], args)  # a' ~ π0(·|s'), Alg. 2 line 4
    metrics = inverse_prm.train_inverse_prm(agent, positives, negatives, args, desc="synthetic InversePRM")
    return {"positives": len(positives), "negatives": len(negatives), **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="+", help="an agent_prm.py or inverse_prm.py run folder past Stage 2 (uses π0 "
                        "and iter1/prm); with --oracle-q, several runs that share π0 (their PRMs are compared)")
    parser.add_argument("--games", type=int, default=40, help="eval games whose expert states are probed")
    parser.add_argument("--n", type=int, default=8, help="samples of π0 per state")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 0.7], help="sampling temperatures")
    parser.add_argument("--learnability", action="store_true", help="also run check 2 (trains a PRM: minutes)")
    parser.add_argument("--learn-games", type=int, default=60, help="expert games of the synthetic D")
    parser.add_argument("--prm-epochs", type=float, help="checks 2 and 5: train the fresh PRMs for this many epochs "
                        "(default: the run's --prm-epochs)")
    parser.add_argument("--epsilon", type=float, default=0.5, help="InversePRM check 2: how often the ε-expert of "
                        "D- takes a random other admissible action")
    parser.add_argument("--oracle-q", type=int, default=0, metavar="K", help="check 3: the true Q^π0 of π0's "
                        "samples by K Monte-Carlo rollouts each (slow: ~K x 2.5 rollouts per state), then what the "
                        "PRM's Best-of-N pick is worth under it; 0: off")
    parser.add_argument("--grounding", action="store_true", help="only check 4, read from the run's Best-of-N "
                        "evaluation logs (<run>/evals/BoN*.jsonl): no model is loaded")
    parser.add_argument("--grounding-on", nargs="+", metavar="RUN", help="only check 4, on these other runs' "
                        "Best-of-N logs, their candidates re-scored by this run's PRM (loads the model: minutes)")
    parser.add_argument("--oracle-cache", help="check 3: JSON file that keeps the samples and their Q^π0 (computed "
                        "once, reused when it exists; the runs then only differ in their PRM)")
    parser.add_argument("--retrain", nargs="*", metavar="ROLLOUTS", help="only check 5: fresh PRMs on Q̂ and on "
                        "the admissibility control, from the run's iter1/rollouts.jsonl or the Stage-1 rollout files "
                        "given, judged by check 4 on the run's Best-of-N logs (AgentPRM runs; trains: minutes)")
    parser.add_argument("--admissible-bon", type=int, nargs="+", metavar="N", help="only check 6: play the run's "
                        "validation games with Best-of-N whose PRM is the admissibility indicator, for each N (π0 "
                        "only; ~5 minutes per N = 4 on one core)")
    parser.add_argument("--dpo-pairs", type=int, metavar="S", help="only check 7: the pairs the run's PRM makes of "
                        "π0's two samples at S of the run's Stage-3 prompt states (minutes); with --oracle-dpo: "
                        "the states of check 9's census of the indicator's pairs (default 400)")
    parser.add_argument("--dpo-margin", type=float, help="check 7: this δ in place of the run's --dpo-margin")
    parser.add_argument("--oracle-dpo", choices=sorted(ORACLES), help="only check 9: the run's Stage 3 (online DPO "
                        "from π0) against an oracle indicator, 1[admissible] or 1[the expert's action], then π1 on "
                        "its validation split (minutes)")
    parser.add_argument("--dpo-steps", type=int, help="check 9: this many DPO steps in place of the run's --dpo-steps")
    parser.add_argument("--dpo-prompts", type=int, help="check 9: this many prompt states per DPO step in place of the "
                        "run's --dpo-prompts")
    parser.add_argument("--dpo-beta", type=float, help="check 9: this β (the KL weight of Eq. 3) in place of the run's "
                        "--dpo-beta")
    cli = parser.parse_args()
    runs = [Path(r) for r in cli.run]
    if cli.oracle_dpo:
        if any(n is not None and n < 1 for n in (cli.dpo_steps, cli.dpo_prompts, cli.dpo_pairs)):
            common.fail("--dpo-steps, --dpo-prompts and --dpo-pairs take a number >= 1")
        if cli.dpo_beta is not None and cli.dpo_beta <= 0:
            common.fail("--dpo-beta takes a number > 0")
        for run in runs:
            if not (run / "args.json").exists():
                common.fail(f"{run} is not a run folder (no args.json)")
            if not (run / "iter1" / "rollouts.jsonl").exists():
                common.fail(f"{run} has no Stage-1 rollouts (iter1/rollouts.jsonl): run the script past Stage 1")
        for run in runs:
            oracle_dpo_main(run, cli.oracle_dpo, cli.dpo_steps, cli.dpo_prompts, cli.dpo_beta, cli.dpo_pairs or 400)
        return
    if cli.admissible_bon:
        if any(n < 1 for n in cli.admissible_bon):
            common.fail("--admissible-bon takes N >= 1")
        for run in runs:
            if not (run / "args.json").exists():
                common.fail(f"{run} is not a run folder (no args.json)")
        for run in runs:
            admissible_bon_main(run, cli.admissible_bon)
        return
    for run in runs:
        if not (run / "iter1" / "prm").exists():
            common.fail(f"{run} has no iter1/prm (run the script to the end of Stage 2 first)")
    if cli.grounding:
        return grounding_main(runs)
    if cli.grounding_on:
        if len(runs) > 1:
            common.fail("--grounding-on scores with one run's PRM")
        return grounding_on_main(runs[0], [Path(r) for r in cli.grounding_on])
    if cli.dpo_pairs is not None:
        if cli.dpo_pairs < 1:
            common.fail("--dpo-pairs takes S >= 1")
        for run in runs:
            dpo_pairs_main(run, cli.dpo_pairs, cli.dpo_margin)
        return
    if cli.retrain is not None:
        if len(runs) > 1:
            common.fail("--retrain takes one run (give more rollout files after --retrain for more data)")
        return retrain_main(runs[0], cli.retrain, cli.prm_epochs)
    if cli.oracle_q:
        return oracle_main(runs, cli)
    if len(runs) > 1:
        common.fail("several runs are only compared by --oracle-q")
    run = runs[0]
    args, agent = load_run(run, cli.prm_epochs)
    common.set_seed(args.seed)
    if "household" != args.env:
        common.fail("the diagnostics use the household expert; this run is on " + args.env)
    load_prm(agent, run)
    for t in cli.temperatures:
        print("pick rate of the expert's action, " + format_pick_rate(pick_rate(agent, args, cli.games, cli.n, t)))
    if cli.learnability and is_inverse_run(run):
        r = inverse_learnability(agent, args, cli.learn_games, cli.epsilon)
        print(f"learnability: a fresh InversePRM on {r['positives']} expert vs {r['negatives']} ε-expert transitions "
              f"(ε = {cli.epsilon}): held-out accuracy {r.get('prm_heldout_acc', float('nan')):.3f} (expert "
              f"{r.get('prm_heldout_acc_expert', float('nan')):.3f}, ε-expert "
              f"{r.get('prm_heldout_acc_learner', float('nan')):.3f}); check 1 with it:")
        for t in cli.temperatures:
            print("  pick rate, " + format_pick_rate(pick_rate(agent, args, cli.games, cli.n, t)))
    elif cli.learnability:
        r = learnability(agent, args, cli.learn_games)
        print(f"learnability: a fresh PRM on {r['examples']} synthetic examples, held-out same-state pair accuracy "
              f"{r['prm_heldout_pair_acc']:.3f} on {r['prm_heldout_pairs']} pairs (chance 0.5)")


def grounding_main(runs: list[Path]) -> None:
    """Check 4 for every Best-of-N log of every run."""
    for run in runs:
        for log, records in bon_logs(run).items():
            print(format_grounding(log, grounding(records)))


def grounding_on_main(run: Path, others: list[Path]) -> None:
    """Check 4 on other runs' Best-of-N logs, their candidates re-scored by this run's PRM."""
    logs = {log: records for other in others for log, records in bon_logs(other).items()}
    args, agent = load_run(run)
    load_prm(agent, run)
    for log, records in logs.items():
        print(format_grounding(log, grounding(rescore_mixed_steps(agent, args, records))))


def format_grounding(log: Path, r: dict) -> str:
    if not r["states"]:
        return f"grounding {log}: no step whose candidates mix admissible and inadmissible actions: nothing to judge"
    return (f"grounding {log}: {r['states']} steps with admissible and inadmissible candidates | admissible pick: "
            f"PRM argmax {r['prm_argmax']:.3f}, random candidate {r['random_candidate']:.3f}, action-blind "
            f"{r['blind_prm']:.3f} | admissible scored above inadmissible {r['admissible_above']:.3f} of "
            f"{r['pairs']} pairs, {r['same_verb_admissible_above']:.3f} of the {r['same_verb_pairs']} with one "
            f"command word (blind: 0.5)")


def oracle_main(runs: list[Path], cli: argparse.Namespace) -> None:
    """Check 3: sample π0 once at the first --temperatures value, estimate Q^π0 once, score with every run's PRM."""
    pi0 = {json.dumps({k: json.loads((run / "args.json").read_text()).get(k) for k in ("model", "policy", "sft_demos",
                                                                                        "env", "gamma")})
           for run in runs}
    if len(pi0) > 1:
        common.fail("--oracle-q compares runs that share π0, env and γ; these differ: " + " | ".join(sorted(pi0)))
    args, agent = load_run(runs[0])
    cache = Path(cli.oracle_cache) if cli.oracle_cache else None
    temperature = cli.temperatures[0]
    probes = probe_states(args, cli.games)
    messages = probe_messages(args, probes)
    if cache and cache.exists():
        saved = json.loads(cache.read_text())
        asked = {"games": cli.games, "n": cli.n, "temperature": temperature, "rollouts": cli.oracle_q}
        if any(saved.get(k) != v for k, v in asked.items()):
            common.fail(f"{cache} was made with {({k: saved.get(k) for k in asked})}, not {asked}: "
                        f"pass the same flags or another --oracle-cache")
        samples = [[common.Sample(**x) for x in group] for group in saved["samples"]]
        q = saved["q"]
        print(f"oracle: {len(q)} states and their Q^π0 from {cache}")
    else:
        common.set_seed(0)
        samples = sample_candidates(agent, args, messages, cli.n, temperature)
        q = oracle_q(agent, args, probes, samples, cli.oracle_q)
        if cache:
            cache.write_text(json.dumps({"games": cli.games, "n": cli.n, "temperature": temperature, "rollouts": cli.oracle_q,
                                         "samples": [[dataclasses.asdict(x) for x in g] for g in samples], "q": q}))
    # Is the expert's action (what check 1 counts) also the better action under π0's own continuation?
    expert_vs_other = [(_mean(g[t.steps[k].action]), _mean([_mean(v) for a, v in g.items() if a != t.steps[k].action]))
                       for (_, t, k), g in zip(probes, q) if t.steps[k].action in g and len(g) > 1]
    if expert_vs_other:
        print(f"Q^π0 of the expert's action {_mean([e for e, _ in expert_vs_other]):.3f} vs the other sampled actions "
              f"{_mean([o for _, o in expert_vs_other]):.3f} ({len(expert_vs_other)} states where both were sampled; "
              f"higher in {sum(e > o for e, o in expert_vs_other)}, lower in {sum(e < o for e, o in expert_vs_other)}); "
              f"states where every sampled action has the same Q^π0: "
              f"{sum(len({_mean(v) for v in g.values()}) <= 1 for g in q)} of {len(q)}")
    print(f"check 3 — value under the true Q^π0 ({cli.oracle_q} rollouts per action) of the sample each rule plays, "
          f"T={temperature}, N={cli.n}:")
    for run in runs:
        load_prm(agent, run)
        scores = agent_prm.score_samples(agent, messages, samples, args.invalid_penalty, args.batch_size)
        r = against_oracle(samples, scores, q)
        print(f"  {run}: {r['states']} states | random sample (π0) {r['random_sample']:.3f} | PRM argmax "
              f"{r['prm_argmax']:.3f} | action-blind {r['blind_prm']:.3f} | oracle argmax {r['oracle_argmax']:.3f} "
              f"| PRM orders pairs like Q^π0 {r['pair_agreement']:.3f} of {r['pairs']} (blind: 0.5)")


if __name__ == "__main__":
    main()
