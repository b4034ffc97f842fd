"""benchmarks/prm_diagnostics.py: the bookkeeping of checks 3, 4 and 5 on hand-made examples (the end-to-end run of every
check is in tests/test_smoke.py)."""

import contextlib
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import agent_prm  # noqa: E402
import common  # noqa: E402
import envs  # noqa: E402
import prm_diagnostics  # noqa: E402


def _sample(action: str, reason: str = "r") -> common.Sample:
    return common.Sample(f"REASON: {reason}\nACTION: {action}", [1], True)


def test_against_oracle_values_each_choice_rule_under_q_pi0():
    # state 1: three samples, two of them the same response; the PRM prefers b, Q^π0 prefers a
    # state 2: an invalid sample (never played), the PRM and Q^π0 agree on c over d
    samples = [[_sample("a"), _sample("a"), _sample("b")],
               [common.Sample("no action", [2], True), _sample("c"), _sample("d")]]
    prm_scores = [[0.1, 0.1, 0.9], [-1.0, 0.7, 0.2]]
    returns = [{"a": [1.0, 0.2], "b": [0.3, 0.3]}, {"c": [0.0, 1.0], "d": [0.2, 0.0]}]  # Q: a .6 b .3 c .5 d .1
    r = prm_diagnostics.against_oracle(samples, prm_scores, returns)
    assert r["states"] == 2
    assert r["random_sample"] == pytest.approx(((0.6 + 0.6 + 0.3) / 3 + (0.5 + 0.1) / 2) / 2)
    assert r["prm_argmax"] == pytest.approx((0.3 + 0.5) / 2)
    assert r["blind_prm"] == pytest.approx(((0.6 + 0.3) / 2 + (0.5 + 0.1) / 2) / 2)  # uniform over distinct texts
    # cross-fitted oracle: picks by the first rollout (a: 1.0 > 0.3; d: 0.2 > 0.0), valued by the second
    assert r["oracle_argmax"] == pytest.approx((0.2 + 0.0) / 2)
    # pairs with different Q: (a,b) twice — both ordered against Q^π0 — and (c,d) ordered like it
    assert r["pairs"] == 3 and r["pair_agreement"] == pytest.approx(1 / 3)


def test_grounding_counts_admissible_picks_at_mixed_steps_only():
    admissible = ["go to desk 1", "take pen 1 from desk 1"]
    response = lambda action: f"REASON: r\nACTION: {action}"  # noqa: E731
    steps = [
        # mixed: the PRM prefers the inadmissible candidate; two of four candidates admissible (one text twice)
        {"admissible": admissible, "prm_q_candidates": [0.2, 0.2, 0.9, 0.1],
         "candidates": [response("go to desk 1"), response("go to desk 1"), response("go to shelf 9"),
                        "no action here"]},
        # mixed: the PRM prefers the admissible one
        {"admissible": admissible, "prm_q_candidates": [0.3, 0.8],
         "candidates": [response("take watch 1 from desk 1"), response("take pen 1 from desk 1")]},
        # all admissible, and a step without Best-of-N candidates: neither counts
        {"admissible": admissible, "prm_q_candidates": [0.1, 0.2], "candidates": [response("go to desk 1")] * 2},
        {"admissible": admissible},
    ]
    r = prm_diagnostics.grounding([{"steps": steps}])
    assert r["states"] == 2
    assert r["prm_argmax"] == pytest.approx((0 + 1) / 2)
    assert r["random_candidate"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert r["blind_prm"] == pytest.approx((1 / 3 + 1 / 2) / 2)  # distinct texts: 3 in the first step
    # admissible-inadmissible pairs: step 1 has 2 x 2 (0.2 vs 0.9: below; 0.2 vs 0.1: above), step 2 has 1 (above)
    assert r["pairs"] == 5 and r["admissible_above"] == pytest.approx(3 / 5)
    # same command word only: (go to desk 1, go to shelf 9) twice, below; (take pen, take watch), above
    assert r["same_verb_pairs"] == 3 and r["same_verb_admissible_above"] == pytest.approx(1 / 3)


def _trajectory(actions, admissible, responses=None):
    steps = [envs.Step(observation=f"o{k}", admissible=admissible, response=(responses or {}).get(k, f"ACTION: {a}"),
                       reason="", action=a, next_observation=f"o{k + 1}", reward=0.0, done=False)
             for k, a in enumerate(actions)]
    return envs.Trajectory(env="household", split="train", game_id="g", task_type="pick_and_place", task="t",
                           steps=steps, final_observation="end")


def test_admissible_targets_relabel_each_row_by_admissibility():
    traj = _trajectory(["go to desk 1", "take watch 1 from desk 1", None], ["go to desk 1", "look"])
    q_hat, _ = agent_prm.estimate_q_targets([traj], 0.95)
    dataset = agent_prm.build_prm_dataset([traj], {k: 0.5 for k in q_hat}, history_window=2)
    rows = prm_diagnostics.admissible_targets(dataset, [traj])
    assert [r.target for r in rows] == [1.0, 0.0, 0.0]  # admissible, hallucinated, no parsable ACTION
    assert [r.response for r in rows] == [r.response for r in dataset]


class _FakeAgent:
    """Just enough of common.AgentModel for rescore_mixed_steps (prm_logits is patched)."""

    @contextlib.contextmanager
    def role(self, name):
        assert name == "prm"
        yield self


def test_rescore_mixed_steps_scores_only_the_steps_check_4_reads(monkeypatch):
    scored = []

    def fake_logits(agent, messages, responses, batch_size):
        scored.extend(responses)
        return torch.tensor([len(r) / 10 for r in responses])  # a score that tells the candidates apart

    monkeypatch.setattr(prm_diagnostics.agent_prm, "prm_logits", fake_logits)
    admissible = ["go to desk 1", "look"]
    record = _trajectory(["go to desk 1", "look", "look"], admissible).to_json()
    mixed = ["ACTION: go to desk 1", "ACTION: go to shelf 9 now"]
    record["steps"][0].update(candidates=mixed, prm_q_candidates=[0.9, 0.1])
    record["steps"][1].update(candidates=["ACTION: look", "ACTION: look"], prm_q_candidates=[0.5, 0.5])  # not mixed
    args = agent_prm.Args(quick=True)
    out = prm_diagnostics.rescore_mixed_steps(_FakeAgent(), args, [record])
    assert scored == mixed  # only the mixed step's candidates are scored
    q = out[0]["steps"][0]["prm_q_candidates"]
    assert q == pytest.approx(torch.sigmoid(torch.tensor([2.0, 2.5])).tolist())
    assert out[0]["steps"][1]["prm_q_candidates"] is None and out[0]["steps"][2]["prm_q_candidates"] is None
    assert record["steps"][0]["prm_q_candidates"] == [0.9, 0.1]  # the input records are left as they were
    r = prm_diagnostics.grounding(out)
    assert r["states"] == 1 and r["prm_argmax"] == 0.0 and r["admissible_above"] == 0.0


def test_dpo_pair_census_counts_command_words_and_admissibility_of_chosen_and_rejected():
    ok = ["go to desk 1", "take pen 1 from desk 1"]
    pairs = [("ACTION: go to desk 1", "ACTION: take watch 1 from desk 1", ok),  # admissible over inadmissible
             ("ACTION: go to desk 1", "ACTION: take pen 1 from desk 1", ok),  # both admissible
             ("ACTION: take cup 1 from desk 1", "ACTION: go to desk 1", ok),  # the reverse
             ("ACTION: go to desk 1", "no action", ok)]
    r = prm_diagnostics.dpo_pair_census(pairs)
    assert r["pairs"] == 4 and r["verbs"] == [(("go", "take"), 2), (("take", "go"), 1), (("go", "(none)"), 1)]
    assert r["admissible_over_inadmissible"] == 2 and r["inadmissible_over_admissible"] == 1
    assert prm_diagnostics.action_verb("REASON: x\nACTION: open drawer 1") == "open"
    assert prm_diagnostics.action_verb("no action") is None


def test_first_admissible_is_the_indicator_argmax_with_ties_in_sampling_order():
    admissible = ["go to desk 1", "take pen 1 from desk 1", "look"]
    assert prm_diagnostics.first_admissible(["go to shelf 9", "look", "go to desk 1"], admissible) == 1
    assert prm_diagnostics.first_admissible(["go to desk 1", "look"], admissible) == 0  # π0's own first sample
    assert prm_diagnostics.first_admissible([None, "take pen 1 from desk 1"], admissible) == 1  # no ACTION: skipped
    assert prm_diagnostics.first_admissible(["go to shelf 9", None], admissible) == 0  # none admissible: sample 0


def test_admissible_bon_plays_only_admissible_candidates_when_one_exists(monkeypatch):
    """Check 6's policy with canned samples: at every turn it answers with the first sample whose action the game
    admits, and with the first sample when none is admissible."""
    game = envs.make("household", "eval_in_distribution", 0)
    game.reset()
    inadmissible = _sample("go to shelf 99")
    admissible = _sample(game.admissible_commands[-1])
    canned = [[inadmissible, admissible, inadmissible], [inadmissible, inadmissible, inadmissible]]
    monkeypatch.setattr(prm_diagnostics, "sample_candidates", lambda agent, args, prompts, n, t: [canned.pop(0)])
    policy = prm_diagnostics.admissible_bon_policy(None, agent_prm.Args(), 3)
    assert policy([[]], [game]) == [admissible.text]
    assert policy([[]], [game]) == [inadmissible.text]


def test_indicator_scores_are_check_9s_q_and_make_the_good_sample_the_chosen_one():
    """Check 9's Q for online DPO: 1 / 0 by the state's good actions, -penalty without an ACTION (as
    agent_prm.score_samples); agent_prm.dpo_pair then chooses the good sample and drops ties."""
    import json

    state_a = [{"role": "user", "content": "at desk"}]
    state_b = [{"role": "user", "content": "at shelf"}]
    score = prm_diagnostics.indicator_scores({json.dumps(state_a): {"go to desk 1", "look"},
                                              json.dumps(state_b): {"go to shelf 1"}}, invalid_penalty=1.0)
    no_action = common.Sample("REASON: hm", [2], True)
    samples = [[_sample(a) for a in pair] for pair in (("go to shelf 9", "look"), ("go to shelf 1",),
                                                       ("go to desk 1", "look"))]
    samples[1].append(no_action)
    for k, sample in enumerate(sum(samples, [])):
        sample.token_ids = [k]  # distinct responses (dpo_pair drops identical ones)
    scores = score([state_a, state_b, state_a], samples)
    assert scores == [[0.0, 1.0], [1.0, -1.0], [1.0, 1.0]]
    chosen, rejected, gap = agent_prm.dpo_pair(samples[0], scores[0])
    assert (chosen.text, rejected.text, gap) == (samples[0][1].text, samples[0][0].text, 1.0)
    assert agent_prm.dpo_pair(samples[2], scores[2]) is None  # both good: a tie, no preference
    with pytest.raises(KeyError):  # a state that is not one of the run's Stage-3 states
        score([[{"role": "user", "content": "elsewhere"}]], [[_sample("look"), _sample("look")]])


def test_prm_replaced_by_puts_the_score_in_place_of_agent_prms_scorer_and_restores_it():
    """Stage 3 against an oracle (check 9, oracle_ladder): inside the context, agent_prm.score_samples (what
    agent_prm.online_dpo scores its samples with) is the given score; outside, the PRM's scorer again."""
    learned = agent_prm.score_samples
    messages, samples = [[{"role": "user", "content": "s"}]], [[_sample("look"), _sample("go to desk 1")]]
    with prm_diagnostics.prm_replaced_by(lambda m, s: [[float(len(x.text)) for x in group] for group in s]):
        assert agent_prm.score_samples(None, messages, samples, 1.0, 8) == [[len(x.text) for x in samples[0]]]
        assert agent_prm.score_samples(agent=None, messages=messages, samples=samples, invalid_penalty=1.0,
                                       batch_size=8) == [[len(x.text) for x in samples[0]]]
    assert agent_prm.score_samples is learned


def test_good_action_rates_count_the_oracles_good_actions_admissible_ones_and_command_words(monkeypatch):
    """Check 9's before/after measure on canned samples: shares of all samples (2 per state)."""
    import json

    states = [prm_diagnostics.Stage3State([{"role": "user", "content": "a"}], ["go to desk 1", "take pen 1 from desk 1"],
                                          "take pen 1 from desk 1"),
              prm_diagnostics.Stage3State([{"role": "user", "content": "b"}], ["go to shelf 1"], "go to shelf 1")]
    canned = [[_sample("take pen 1 from desk 1"), _sample("go to shelf 9")],
              [_sample("go to shelf 1"), common.Sample("REASON: no action", [3], True)]]
    monkeypatch.setattr(prm_diagnostics, "sample_candidates", lambda agent, args, prompts, n, t: canned)
    good = {json.dumps(state.messages): {state.expert_action} for state in states}
    r = prm_diagnostics.good_action_rates(None, agent_prm.Args(), states, good)
    assert r == {"samples": 4, "good": 0.5, "admissible": 0.5, "verbs": {"go": 0.5, "take": 0.25, "(none)": 0.25}}


def test_stage3_states_carry_the_admissible_list_and_the_experts_action_of_each_state(tmp_path):
    """Check 9's oracles read, at each distinct Stage-3 state, the game's admissible actions and the action the
    household expert takes there (its game replayed to the state), here on rollouts of a random agent."""
    args = agent_prm.Args(first_task=0, train_tasks=2, sft_demos=0, model="m")
    games = [envs.make("household", "train", seed) for seed in range(2)]
    trajectories = envs.rollout(games, envs.make_random_policy(0), args.history_window, max_actions=4)
    (tmp_path / "iter1").mkdir()
    envs.save_jsonl(str(tmp_path / "iter1" / "rollouts.jsonl"), trajectories)
    states = prm_diagnostics.stage3_states(tmp_path, args, expert=True)
    assert len(states) == sum(len(t.steps) for t in trajectories)  # a random agent's histories never repeat
    for traj in trajectories:
        for t in range(len(traj.steps)):
            state = states[[s.messages for s in states].index(envs.trajectory_messages(traj, t, args.history_window))]
            game = envs.make("household", "train", int(traj.game_id != trajectories[0].game_id))
            envs.replay(game, traj, t)
            assert state.admissible == traj.admissible_at(t) == game.admissible_commands
            assert state.expert_action == game.expert_action()[1] and state.expert_action in state.admissible


def test_admissible_bon_refuses_a_folder_that_is_not_a_run(tmp_path):
    import subprocess

    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prm_diagnostics.py"), str(tmp_path),
                             "--admissible-bon", "4"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "is not a run folder" in result.stderr and "Traceback" not in result.stderr
