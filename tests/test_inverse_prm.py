"""The math of InversePRM (Algorithm 2) on hand-computed examples."""

import contextlib
import math

import pytest
import torch

import common
import envs
import inverse_prm


def _traj(game, actions, won):
    steps = [envs.Step(observation=f"{game}-o{k}", admissible=[], response=f"ACTION: {a}", reason="", action=a,
                       next_observation=f"{game}-o{k + 1}", reward=float(won and k == len(actions) - 1),
                       done=k == len(actions) - 1) for k, a in enumerate(actions)]
    return envs.Trajectory(env="household", split="train", game_id=game, task_type="pick_and_place", task="t",
                           steps=steps, final_observation=f"{game}-o{len(actions)}", won=won)


def test_loss_on_a_hand_computed_two_transition_example():
    # D+: one non-terminal expert transition, Q(s,a)=2, Q(s',a')=1, γ=0.5 -> r = 2 - 0.5 = 1.5
    # D-: one TERMINAL learner transition, Q(s,a)=-1 -> r = -1 (no γ Q(s',a') term)
    q_sa, q_next = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 123.0])
    terminal = torch.tensor([False, True])
    r = inverse_prm.implied_reward(q_sa, q_next, terminal, gamma=0.5)
    assert r.tolist() == pytest.approx([1.5, -1.0])
    loss = inverse_prm.inverse_prm_loss(r, torch.tensor([1.0, 0.0]))
    by_hand = -math.log(1 / (1 + math.exp(-1.5))) - math.log(1 - 1 / (1 + math.exp(1.0)))
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_loss_pushes_expert_rewards_up_and_learner_rewards_down():
    r = torch.tensor([0.0, 0.0], requires_grad=True)
    inverse_prm.inverse_prm_loss(r, torch.tensor([1.0, 0.0])).backward()
    assert r.grad[0] < 0 < r.grad[1]  # descent raises the expert's r and lowers the learner's
    # γ flows into Q(s',a') with the opposite sign: a higher next-state value lowers r(s,a)
    q_sa = torch.tensor([1.0]); q_next = torch.tensor([1.0], requires_grad=True)
    inverse_prm.implied_reward(q_sa, q_next, torch.tensor([False]), 0.9).sum().backward()
    assert q_next.grad.item() == pytest.approx(-0.9)


def test_each_expectation_is_averaged_over_its_own_side():
    r = torch.tensor([1.0, 1.0, 1.0, -2.0])
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0])  # 3 positives, 1 negative: the negative still counts half
    expected = -torch.nn.functional.logsigmoid(torch.tensor(1.0)) - torch.nn.functional.logsigmoid(torch.tensor(2.0))
    assert inverse_prm.inverse_prm_loss(r, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_transitions_terminal_only_on_success():
    won, timed_out = _traj("a", ["x", "y"], won=True), _traj("b", ["x", "y"], won=False)
    t_won = inverse_prm.transitions_from([won], 1.0, 0, history_window=2)
    t_cut = inverse_prm.transitions_from([timed_out], 0.0, 1, history_window=2)
    assert [t.next_state is None for t in t_won] == [False, True]  # the winning step ends the MDP
    assert [t.next_state is None for t in t_cut] == [False, False]  # a time-out does not: s' still has a future
    assert "b-o2" in t_cut[1].next_state[1]["content"]  # s' of the last step is the state after it


def test_relabelling_keeps_each_next_action_aligned_with_its_own_next_state():
    # Three trajectories, terminal transitions in the middle of the list: the official code's zip drifted here.
    trajectories = [_traj("A", ["a0", "a1"], True), _traj("B", ["b0", "b1", "b2"], True), _traj("C", ["c0", "c1"], False)]
    transitions = inverse_prm.transitions_from(trajectories, 0.0, 1, history_window=3)

    def sample(prompts):  # a "policy" whose answer names the state it was asked about
        return ["ACTION: next-of " + p[1]["content"].split("Current observation: ")[1].split("\n")[0] for p in prompts]

    inverse_prm.relabel_next_actions(transitions, sample)
    for tr in transitions:
        if tr.next_state is None:
            assert tr.next_action is None
        else:
            own = tr.next_state[1]["content"].split("Current observation: ")[1].split("\n")[0]
            assert tr.next_action == f"ACTION: next-of {own}"
    assert [t.next_action is None for t in transitions] == [False, True, False, False, True, False, False]


def test_negatives_aggregate_across_iterations():
    negatives = []
    for i, game in enumerate(["g1", "g2"], start=1):
        negatives += inverse_prm.transitions_from([_traj(game, ["x"], False)], 0.0, i, history_window=2)
    assert [(t.game_id, t.iteration) for t in negatives] == [("g1", 1), ("g2", 2)]


def test_balanced_batches_have_equal_sides():
    import random

    pos = inverse_prm.transitions_from([_traj("p", ["x"] * 3, True)], 1.0, 0, 2)
    neg = inverse_prm.transitions_from([_traj("n", ["y"] * 10, False)], 0.0, 1, 2)
    batches = inverse_prm.balanced_batches(pos, neg, batch_size=4, epochs=2, rng=random.Random(0))
    assert batches and all(sum(t.label for t in b) == len(b) / 2 for b in batches)
    assert all([t.label for t in b] == [1.0, 0.0] * (len(b) // 2) for b in batches)  # interleaved


def test_stage2_accumulates_micro_batches_of_batch_size_into_one_step_of_prm_batch_size(monkeypatch):
    """--prm-batch-size 8 with --batch-size 2: every optimizer step is 4 balanced micro-batches of 2 (one expert,
    one learner transition), and one epoch over the 8 expert transitions is 2 such steps."""
    pos = inverse_prm.transitions_from([_traj("p", ["x"] * 8, True)], 1.0, 0, 2)
    neg = inverse_prm.transitions_from([_traj("n", ["y"] * 12, False)], 0.0, 1, 2)
    seen = {}

    def train_loop(params, micro_batches, loss_fn, lr, grad_accum=1, total=None, **kwargs):
        seen.update(micro=list(micro_batches), accum=grad_accum, total=total)
        return common.TrainResult(0, {}, False)

    class Agent:
        def add_role(self, *args, **kwargs): ...

        def role(self, name):
            return contextlib.nullcontext()

        def trainable_parameters(self, name):
            return []

    monkeypatch.setattr(common, "train_loop", train_loop)
    args = inverse_prm.Args(prm_batch_size=8, batch_size=2, prm_epochs=1.0, prm_holdout=0.0)
    inverse_prm.train_inverse_prm(Agent(), pos, neg, args, "test")
    assert seen["accum"] == 4 and seen["total"] == len(seen["micro"]) == 8
    assert all(sorted(t.label for t in m) == [0.0, 1.0] for m in seen["micro"])
    assert sum(t.label for m in seen["micro"] for t in m) == 8  # one epoch over the smaller side, D+


def test_rollout_resets_start_the_learner_at_expert_states():
    """--rollout-resets 0.5: half of the rollouts replay the expert's demonstration of their game to a random
    step t >= 1; only the steps from t on are the learner's (D-, and the DPO prompt states); a rollout from the
    start keeps all its steps."""
    import random

    tasks = list(range(2000, 2004))
    demos = envs.expert_demonstrations("household", "train", 4, start=2000)
    args = inverse_prm.Args(rollout_resets=0.5, rollouts_per_task=2, batch_size=3)
    random_agent = envs.make_random_policy(0)
    trajs, first = inverse_prm.collect_learner_rollouts(random_agent, tasks, demos, args, random.Random(0), "test")
    assert len(trajs) == 8 and sum(t0 > 0 for t0 in first) == 4
    demo_of = {d.game_id: d for d in demos}
    for traj, t0 in zip(trajs, first):
        demo = demo_of[traj.game_id]
        assert 0 <= t0 < len(demo.steps) and traj.steps[:t0] == demo.steps[:t0]  # the replayed expert prefix
        if t0 == 0:
            assert traj.steps[0].observation == demo.steps[0].observation
    negatives = inverse_prm.transitions_from(trajs, 0.0, 1, 2, first_steps=first)
    assert len(negatives) == sum(len(t.steps) - t0 for t, t0 in zip(trajs, first))
    k = first.index(max(first))
    learner = [tr for tr in negatives if tr.game_id == trajs[k].game_id and tr.state == envs.trajectory_messages(
        trajs[k], first[k], 2)]
    assert learner and learner[0].action == trajs[k].steps[first[k]].response  # s*_t with the learner's action
    states = inverse_prm.dpo_prompt_states(trajs, 2, first_steps=first)
    assert envs.trajectory_messages(trajs[k], first[k] - 1, 2) not in states  # an expert prefix state is not
    # The same seed draws the same resets; without resets every rollout starts at the game's start.
    assert inverse_prm.collect_learner_rollouts(random_agent, tasks, demos, args, random.Random(0), "t")[1] == first
    assert inverse_prm.collect_learner_rollouts(random_agent, tasks, demos, inverse_prm.Args(rollouts_per_task=2),
                                                random.Random(0), "t")[1] == [0] * 8
    with pytest.raises(inverse_prm.common.UserError, match="only 2 of the 8 have one"):
        inverse_prm.collect_learner_rollouts(random_agent, tasks, demos[:1], args, random.Random(0), "t")
    with pytest.raises(inverse_prm.common.UserError, match="--rollout-resets must be in"):
        inverse_prm.Args(rollout_resets=1.5)


def test_stage3_flags_prompt_states_and_dpo_loss():
    """Stage 3's own pieces: its flag checks, the distinct prompt states s ~ D_i (a state is the game and the actions
    so far; unparsable actions are one action), and the DPO loss of Eq. 10."""
    for flags, message in [({"dpo_steps": -1}, "--dpo-steps must be ≥ 0"), ({"dpo_prompts": 0}, "--dpo-prompts"),
                           ({"dpo_micro_prompts": 0}, "--dpo-micro-prompts ≥ 1"),
                           ({"dpo_margin": -0.1}, "--dpo-margin must be ≥ 0, got -0.1")]:
        with pytest.raises(inverse_prm.common.UserError, match=message):
            inverse_prm.Args(**flags)
    a, b = _traj("g", ["x", None, "y"], False), _traj("g", ["x", None, "z", "w"], False)  # b shares a's first 3 states
    b.steps[1].response = "ACTION:"  # another unparsable response: the same state after it
    states = inverse_prm.dpo_prompt_states([a, b], 2)
    assert states == [envs.trajectory_messages(a, t, 2) for t in range(3)] + [envs.trajectory_messages(b, 3, 2)]
    assert inverse_prm.dpo_prompt_states([a, b], 2, first_steps=[2, 0]) == \
        [envs.trajectory_messages(a, 2, 2)] + [envs.trajectory_messages(b, t, 2) for t in (0, 1, 3)]
    # β = 1: the chosen response gains 1 nat over π_{i-1}, the rejected loses 1 -> -log σ(2)
    loss, metrics = inverse_prm.dpo_loss(torch.tensor([-2.0]), torch.tensor([-4.0]), torch.tensor([-3.0]),
                                         torch.tensor([-3.0]), 1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)))
    assert metrics["reward_margin"] == pytest.approx(2.0) and metrics["reward_acc"] == 1.0


def test_d_minus_needs_training_games():
    with pytest.raises(inverse_prm.common.UserError, match="D- would be empty"):
        inverse_prm.Args(train_tasks=0)


def test_paper_recipe_presets_the_official_inverse_prm_flags():
    import dataclasses
    from pathlib import Path

    fields = {f.name: f.default for f in dataclasses.fields(inverse_prm.Args)}
    assert set(inverse_prm.PAPER_RECIPE) <= set(fields)
    paper = common.parse_args(inverse_prm.Args, "", ["--recipe", "paper"])
    for name, (value, source) in inverse_prm.PAPER_RECIPE.items():
        assert getattr(paper, name) == value and source
    assert (paper.prm_batch_size, paper.prm_epochs, paper.gamma) == (384, 1.0, 0.95)  # the official Stage 2
    assert paper.demos >= 1000 and paper.train_tasks * paper.rollouts_per_task >= 1000  # D+, D- in the thousands
    mine = common.parse_args(inverse_prm.Args, "", ["--recipe", "paper", "--demos", "50"])
    assert (mine.demos, mine.prm_batch_size) == (50, 384)  # a flag given explicitly wins
    assert common.parse_args(inverse_prm.Args, "", []).prm_batch_size == fields["prm_batch_size"]
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert all(f"`--{name.replace('_', '-')} {value}`" in readme for name, (value, _) in inverse_prm.PAPER_RECIPE.items())
