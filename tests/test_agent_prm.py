"""The math of AgentPRM (Algorithm 1) on hand-computed examples."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

import agent_prm
import common
import envs


def _traj(game, actions, won, gamma_unused=None):
    """A trajectory whose last step wins (reward 1) iff `won`."""
    steps = []
    for k, a in enumerate(actions):
        last = k == len(actions) - 1
        steps.append(envs.Step(observation=f"o{k}", admissible=[], response=f"ACTION: {a}", reason="",
                               action=a, next_observation=f"o{k + 1}", reward=1.0 if (won and last) else 0.0,
                               done=last))
    return envs.Trajectory(env="household", split="train", game_id=game, task_type="pick_and_place", task="t",
                           steps=steps, won=won)


def test_reward_to_go_is_discounted_from_each_step_not_from_the_start():
    assert agent_prm.reward_to_go([0, 0, 1], 0.9) == pytest.approx([0.81, 0.9, 1.0])
    assert agent_prm.reward_to_go([0, 0, 0], 0.9) == [0, 0, 0]
    assert agent_prm.reward_to_go([1, 0, 1], 0.5) == pytest.approx([1.25, 0.5, 1.0])
    assert agent_prm.reward_to_go([], 0.9) == []


def test_q_targets_average_over_revisits():
    gamma = 0.9
    trajectories = [
        _traj("g", ["a", "b", "c"], won=True),   # returns 0.81, 0.9, 1
        _traj("g", ["a", "b", "d"], won=False),  # returns 0, 0, 0
        _traj("g", ["a", "x"], won=True),        # returns 0.9, 1
        _traj("h", ["a"], won=False),            # another game: a different state
    ]
    q_hat, visits = agent_prm.estimate_q_targets(trajectories, gamma)
    keys = agent_prm.state_action_keys
    s0a = keys(trajectories[0])[0]
    assert keys(trajectories[1])[0] == s0a == keys(trajectories[2])[0]
    assert q_hat[s0a] == pytest.approx((0.81 + 0 + 0.9) / 3) and visits[s0a] == 3
    s1b = keys(trajectories[0])[1]
    assert q_hat[s1b] == pytest.approx((0.9 + 0) / 2) and visits[s1b] == 2
    assert q_hat[keys(trajectories[0])[2]] == pytest.approx(1.0)  # (s2, c): won
    assert q_hat[keys(trajectories[1])[2]] == 0.0  # (s2, d): failed episode
    assert q_hat[keys(trajectories[2])[1]] == pytest.approx(1.0)
    assert q_hat[keys(trajectories[3])[0]] == 0.0 and keys(trajectories[3])[0] != s0a


def test_state_key_is_the_history_of_environment_actions_not_the_reason():
    a = _traj("g", ["go to x", "open x"], won=False)
    b = _traj("g", ["go to x", "open x"], won=False)
    b.steps[0].response = "REASON: something else\nACTION: go to x"
    assert agent_prm.state_action_keys(a) == agent_prm.state_action_keys(b)
    c = _traj("g", ["go to y", "open x"], won=False)
    assert agent_prm.state_action_keys(a)[1][0] != agent_prm.state_action_keys(c)[1][0]
    d = _traj("g", ["go to x"], won=False)
    d.steps[0].action = None  # an unparsable response
    assert agent_prm.state_action_keys(d)[0][1] == agent_prm.INVALID_ACTION_KEY


def test_household_fingerprint_is_the_markov_state():
    env = envs.make("household", "train", 3)
    env.reset()
    start = env.state_fingerprint()
    env.step("dance")  # "Nothing happens."
    assert env.state_fingerprint() == start
    first, second = env.receptacles[0], env.receptacles[1]
    env.step(f"go to {first}")
    there = env.state_fingerprint()
    assert there != start
    env.step(f"go to {second}")
    env.step(f"go to {first}")  # the same place by another route, more steps later
    assert env.state_fingerprint() == there
    steps = envs.rollout([envs.make("household", "train", 3)], envs.expert_policy)[0].steps
    assert all(s.state_id for s in steps) and len({s.state_id for s in steps}) == len(steps)  # the expert progresses


def test_normalize_targets_and_the_all_equal_case():
    assert agent_prm.normalize_targets({1: 0.2, 2: 0.6, 3: 1.0}) == pytest.approx({1: 0.0, 2: 0.5, 3: 1.0})
    with pytest.warns(UserWarning, match="every rollout failed"):
        assert agent_prm.normalize_targets({1: 0.0, 2: 0.0}) == {1: 0.0, 2: 0.0}  # no division by zero
    with pytest.warns(UserWarning, match="every rollout succeeded"):
        assert agent_prm.normalize_targets({1: 1.0, 2: 1.0}) == {1: 1.0, 2: 1.0}
    with pytest.raises(common.UserError, match="no rollouts"):
        agent_prm.normalize_targets({})


def test_prm_dataset_has_one_row_per_state_action_pair():
    trajectories = [_traj("g", ["a", "b"], won=True), _traj("g", ["a", "c"], won=False)]
    q_hat, _ = agent_prm.estimate_q_targets(trajectories, 1.0)
    dataset = agent_prm.build_prm_dataset(trajectories, q_hat, history_window=2)
    assert sorted((e.action, e.target) for e in dataset) == [("a", 0.5), ("b", 1.0), ("c", 0.0)]
    assert all("Task: t\nCurrent observation: " in e.messages[1]["content"] for e in dataset)


def test_soft_bce_matches_eq_2_by_hand():
    logits = torch.tensor([0.0, 2.0, -1.0])
    q = torch.tensor([0.3, 1.0, 0.0])
    p = torch.sigmoid(logits)
    by_hand = -(q * p.log() + (1 - q) * (1 - p).log()).mean()
    assert agent_prm.soft_bce_loss(logits, q).item() == pytest.approx(by_hand.item(), rel=1e-6)
    # the minimum over the logit is at σ(logit) = Q̂ (a soft label, not a class)
    x = torch.tensor([0.0], requires_grad=True)
    for _ in range(500):
        loss = agent_prm.soft_bce_loss(x, torch.tensor([0.3]))
        (grad,) = torch.autograd.grad(loss, x)
        x = (x - 1.0 * grad).detach().requires_grad_(True)
    assert torch.sigmoid(x).item() == pytest.approx(0.3, abs=1e-3)


def test_bradley_terry_loss_and_pairs():
    assert agent_prm.bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(
        math.log(1 + math.exp(-2.0)))
    ex = lambda s, a, q: agent_prm.PRMExample([], "", q, s, a, "g")  # noqa: E731
    data = [ex("s", "a", 0.9), ex("s", "b", 0.88), ex("s", "c", 0.1), ex("t", "d", 1.0)]
    pairs = {(c.action, r.action) for c, r in agent_prm.preference_pairs(data, margin=0.03)}
    assert pairs == {("a", "c"), ("b", "c")}  # 0.9 vs 0.88 is within δ; "d" has no same-state partner


def test_dpo_loss_value_sign_and_gradient_direction():
    zero = torch.zeros(1)
    loss, _ = agent_prm.dpo_loss(zero, zero, zero, zero, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    pc = torch.tensor([-5.0], requires_grad=True)
    pr = torch.tensor([-5.0], requires_grad=True)
    loss, metrics = agent_prm.dpo_loss(pc, pr, torch.tensor([-6.0]), torch.tensor([-4.0]), beta=0.5)
    # implicit rewards: 0.5*(−5+6)=0.5 for chosen, 0.5*(−5+4)=−0.5 for rejected -> −log σ(1)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)))
    assert metrics["reward_acc"] == 1.0
    loss.backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises log π(chosen) and lowers log π(rejected)


def test_dpo_pair_orders_by_q_and_drops_ties_and_gaps_below_the_margin():
    a, b = common.Sample("ACTION: look", [1, 2], True), common.Sample("ACTION: inventory", [3], True)
    assert agent_prm.dpo_pair([a, b], [0.2, 0.7]) == (b, a, pytest.approx(0.5))  # chosen, rejected, gap
    assert agent_prm.dpo_pair([a, b], [0.75, 0.25], margin=0.5) == (a, b, 0.5)  # gap = δ is kept
    assert agent_prm.dpo_pair([a, b], [0.7, 0.25], margin=0.5) is None  # 0.45 < δ: a tie
    assert agent_prm.dpo_pair([a, b], [0.4, 0.4]) is None  # equal scores: no preference
    assert agent_prm.dpo_pair([a, common.Sample("REASON: x\nACTION: look", [1, 2], True)], [0.9, 0.1]) is None
    broken = common.Sample("no action", [4], True)  # scored -invalid_penalty: any valid response beats it
    assert agent_prm.dpo_pair([broken, a], [-1.0, 0.0], margin=0.5) == (a, broken, pytest.approx(1.0))
    with pytest.raises(common.UserError, match="dpo-margin"):
        agent_prm.Args(dpo_margin=-0.1)


def test_dpo_pair_of_k_samples_is_the_highest_against_the_lowest_q():
    a, b, c = (common.Sample(f"ACTION: {w}", [k], True) for k, w in enumerate(["look", "inventory", "wait"]))
    assert agent_prm.dpo_pair([a, b, c], [0.5, 0.9, 0.1]) == (b, c, pytest.approx(0.8))
    assert agent_prm.dpo_pair([a, b, c, a], [0.3, 0.3, 0.3, 0.3]) is None  # all tie
    assert agent_prm.dpo_pair([a, b, c], [0.6, 0.6, 0.2]) == (a, c, pytest.approx(0.4))  # the first of equal maxima
    with pytest.raises(common.UserError, match="dpo-samples"):
        agent_prm.Args(dpo_samples=1)


def test_shaping_eq_13():
    assert agent_prm.reference_advantage(reward=0.0, v_s=0.4, v_next=0.6, gamma=0.5) == pytest.approx(-0.1)
    assert agent_prm.reference_advantage(reward=1.0, v_s=0.8, v_next=0.0, gamma=0.9) == pytest.approx(0.2)
    assert agent_prm.shape_target(0.6, advantage=0.2, alpha=0.0) == pytest.approx(0.6)  # α = 0: plain PRM
    assert agent_prm.shape_target(0.6, advantage=0.2, alpha=1.0) == pytest.approx(0.6)  # (0.2 + 1) / 2
    assert agent_prm.shape_target(0.2, advantage=-1.0, alpha=0.5) == pytest.approx(0.1)


def test_shaped_targets_apply_eq_13_at_every_step_with_the_values_given():
    seed, gamma = 2003, 0.9
    game = envs.make("household", "train", seed, max_steps=30)
    expert = envs.rollout([game], envs.expert_policy)[0]
    wasted_first = envs.rollout([envs.make("household", "train", seed, max_steps=30)],
                                lambda prompts, games: ["ACTION: go to shelf 99"] if not games[0].steps else
                                envs.expert_policy(prompts, games))[0]
    L = len(expert.steps)
    assert expert.won and wasted_first.won and len(wasted_first.steps) == L + 1
    # V^μ(s_t) of a μ that plays like the expert: a wasted turn leaves the state (and the plan) as it was, one
    # action fewer left; from s_t, t ≥ 1, L - t more actions, paid 1 on the last: γ^(L-t); 0 after the end
    v_wasted = [gamma ** (L - 1)] + [gamma ** (L - t) for t in range(1, L + 1)] + [0.0]
    # Eq. 13 with α = 1: the targets are (A^μ + 1) / 2; the wasted turn's A^μ = γ V(s) - V(s) < 0, the expert's 0
    args = agent_prm.Args(gamma=gamma, shaping_alpha=1.0)
    q_hat, _ = agent_prm.estimate_q_targets([wasted_first], gamma)
    shaped = agent_prm.shaped_targets([wasted_first], q_hat, [v_wasted], args)
    keys = agent_prm.state_action_keys(wasted_first)
    assert shaped[keys[0]] == pytest.approx((gamma * gamma ** (L - 1) - gamma ** (L - 1) + 1) / 2)
    assert all(shaped[k] == pytest.approx(0.5) for k in keys[1:])  # every expert action: A^μ = 0


def test_best_of_n_picks_the_highest_q_and_penalises_unparsable_responses():
    good = common.Sample("REASON: r\nACTION: look", [1, 2], True)
    broken = common.Sample("I think I will look", [3], True)
    cut = common.Sample("REASON: a very long", [4], False)
    assert [agent_prm.is_valid_sample(s) for s in (good, broken, cut)] == [True, False, False]
    assert common.best_of_n([["a", "b", "c"]], [[0.2, 0.9, 0.9]]) == ["b"]  # ties: first sampled


def test_args_validation():
    with pytest.raises(common.UserError, match="gamma"):
        agent_prm.Args(gamma=0.0)
    with pytest.raises(common.UserError, match="shaping-alpha"):
        agent_prm.Args(shaping_alpha=1.5)
    quick = agent_prm.Args(quick=True)
    assert quick.train_tasks <= 6 and quick.dpo_steps <= 4
    # --bon-n 0 means no Best-of-N rows; a pretrained model's --quick shrinks further than the tiny one's
    assert agent_prm.Args(bon_n=[0]).bon_n == [] and agent_prm.Args(bon_n=[0, 4]).bon_n == [4]
    with pytest.raises(common.UserError, match="bon-n"):
        agent_prm.Args(bon_n=[-1])
    real = agent_prm.Args(quick=True, model="smollm2-135m")
    assert real.sft_demos <= 2 and real.eval_games <= 2 and real.train_tasks <= 3 and real.max_steps == 30
    assert real.prm_epochs < quick.prm_epochs  # a PRM step on full prompts takes minutes for a real model on CPU


def test_prm_reports_the_mean_target_constant_beside_its_heldout_loss(tiny_folder):
    """The mean-target constant (what a PRM that learned nothing from (s, a) scores) is reported beside the
    PRM's held-out loss."""
    torch.manual_seed(0)
    agent = common.build_agent_model(str(tiny_folder), common.resolve_runtime("cpu"), quantize=False, lora_r=4,
                                     lora_alpha=8, max_length=1024)
    trajs = [_traj(f"g{k}", ["look", "inventory", "look"], won=k % 2 == 0) for k in range(8)]
    q_targets = agent_prm.normalize_targets(agent_prm.estimate_q_targets(trajs, 0.9)[0])
    dataset = agent_prm.build_prm_dataset(trajs, q_targets, history_window=2)
    args = agent_prm.Args(prm_epochs=6.0, prm_lr=0.05, prm_batch_size=4, prm_holdout=0.15, batch_size=8, seed=0)
    metrics = agent_prm.train_prm(agent, dataset, args, desc="test")
    train, held_out = common.split_by_game(dataset, args.prm_holdout, args.seed)
    p = sum(e.target for e in train) / len(train)
    by_hand = -sum(e.target * math.log(p) + (1 - e.target) * math.log(1 - p) for e in held_out) / len(held_out)
    assert metrics["prm_heldout_loss_constant"] == pytest.approx(by_hand, rel=1e-5)


def test_paper_recipe_presets_the_flags_not_given_on_the_command_line():
    fields = {f.name: f.default for f in dataclasses.fields(agent_prm.Args)}
    assert set(agent_prm.PAPER_RECIPE) <= set(fields)
    paper = common.parse_args(agent_prm.Args, "", ["--recipe", "paper"])
    for name, (value, source) in agent_prm.PAPER_RECIPE.items():
        assert getattr(paper, name) == value and source
    assert paper.rollouts_per_task * paper.train_tasks >= 5000 and paper.dpo_steps >= 400  # the floor
    assert (paper.dpo_prompts, paper.dpo_beta, paper.max_new_tokens) == (60, 0.03, 64)
    # a flag given explicitly wins, also when it equals the flag's own default (0.1)
    mine = common.parse_args(agent_prm.Args, "", ["--dpo-beta", "0.1", "--recipe", "paper", "--train-tasks", "10"])
    assert (mine.dpo_beta, mine.train_tasks, mine.dpo_steps) == (0.1, 10, 400) and fields["dpo_beta"] == 0.1
    assert common.parse_args(agent_prm.Args, "", ["--recipe", "paper", "--quick"]).dpo_steps <= 4  # --quick shrinks it
    assert agent_prm.Args(**common.recipe_flags(agent_prm.Args, "paper")).dpo_prompts == 60  # the same in Python
    assert common.parse_args(agent_prm.Args, "", []).dpo_steps == fields["dpo_steps"]  # no recipe: nothing changes
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert all(f"`--{name.replace('_', '-')} {value}`" in readme for name, (value, _) in agent_prm.PAPER_RECIPE.items())
    with pytest.raises(common.UserError, match="--dpo-steps must be ≥ 0"):
        agent_prm.Args(dpo_steps=-3)
    with pytest.raises(common.UserError, match="--prm-batch-size must be ≥ 1"):
        agent_prm.Args(prm_batch_size=0)


def test_online_dpo_accumulates_micro_batches_into_steps_of_dpo_prompts(tiny_folder, tmp_path, monkeypatch):
    """--dpo-prompts 6 --dpo-micro-prompts 4: each optimizer step samples 6 states and scores them in 2
    micro-batches of 3; the logged pairs of a step are the pairs of both micro-batches; the reference stays."""
    torch.manual_seed(0)
    agent = common.build_agent_model(str(tiny_folder), common.resolve_runtime("cpu"), quantize=False, lora_r=4,
                                     lora_alpha=8, max_length=1024)
    agent.add_role("reference", copy_from="policy")
    reference = {k: v.clone() for k, v in agent.peft.state_dict().items() if ".reference." in k}
    demos = envs.expert_demonstrations("household", "train", 3)
    states = agent_prm.dpo_prompt_states(demos, history_window=2)
    calls = []

    def score(prompts, samples):  # the first sample always wins: every pair of distinct samples is a preference
        calls.append(len(prompts))
        return [[1.0, 0.0] for _ in prompts]

    args = agent_prm.Args(dpo_steps=2, dpo_prompts=6, dpo_micro_prompts=4, dpo_lr=1e-3, max_new_tokens=8,
                          batch_size=8, seed=0)
    run = common.RunDir("test", "household", 0, str(tmp_path / "run"), args)
    monkeypatch.setattr(agent_prm, "score_samples", lambda agent, prompts, samples, invalid_penalty, batch_size:
                        score(prompts, samples))
    metrics = agent_prm.online_dpo(agent, states, [], args, "test", run=run, iteration=1)
    assert calls == [3, 3, 3, 3] and metrics["dpo_steps"] == 2
    logged = [r for r in run.read_jsonl("metrics.jsonl") if r.get("stage") == "iter1/stage3"]
    assert [r["step"] for r in logged] == [1, 2] and all(1 <= r["pairs"] <= 6 for r in logged)
    assert all(torch.equal(v, agent.peft.state_dict()[k]) for k, v in reference.items())
