"""benchmarks/oracle_ladder.py: the exact Q^μ(s, a) = r + γ V^expert(s') on hand-checked states."""

import contextlib
import copy
import sys
import types
from pathlib import Path

import pytest
import torch

import agent_prm
import common
import envs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import oracle_ladder  # noqa: E402

GAMMA = 0.9


def _expert_episode(seed: int) -> envs.Trajectory:
    return envs.rollout([envs.make("household-compact", "train", seed)], envs.expert_policy)[0]


def _clumsy_episode(seed: int) -> envs.Trajectory:
    """The expert's episode with one impossible action at step 1 (a wasted turn)."""
    def clumsy(prompts, live_envs):
        return [envs.format_response("r", "take moon 1 from sky 1" if env.steps == 1 else env.expert_action()[1])
                for env in live_envs]

    return envs.rollout([envs.make("household-compact", "train", seed)], clumsy)[0]


def test_q_mu_is_the_discounted_return_of_the_expert_after_the_action():
    episode = _expert_episode(3)
    T = len(episode.steps)
    env = envs.make("household-compact", "train", 3)
    for t in range(T):
        envs.replay(env, episode, t)
        before = copy.deepcopy(env.__dict__)
        expert = episode.steps[t].action
        # the expert's own action: T - t - 1 more actions after it, then the reward 1
        assert oracle_ladder.oracle_q(env, expert, GAMMA) == pytest.approx(GAMMA ** (T - t - 1))
        # a wasted turn (nothing changes but the clock): the same plan one step later
        assert oracle_ladder.oracle_q(env, "inventory", GAMMA) == pytest.approx(GAMMA ** (T - t))
        assert env.__dict__ == before  # the state it was asked at is left as it was
    envs.replay(env, episode, T - 1)
    assert oracle_ladder.oracle_q(env, episode.steps[-1].action, GAMMA) == 1.0  # the winning action


def test_oracle_scores_penalise_unusable_responses_like_the_learned_prm():
    env = envs.make("household-compact", "train", 3)
    env.reset()
    expert = env.expert_action()[1]
    samples = [[common.Sample(f"REASON: r\nACTION: {expert}", [1], True), common.Sample("no action here", [2], True),
                common.Sample(f"REASON: cut\nACTION: {expert}", [3], False)]]
    q = oracle_ladder.oracle_scores([env], samples, GAMMA, invalid_penalty=1.0)
    assert q[0][0] == pytest.approx(oracle_ladder.oracle_q(env, expert, GAMMA)) and q[0][1:] == [-1.0, -1.0]


class _Agent:
    """What the checks touch of an AgentModel once common.generate and the scoring are replaced by the tests."""
    peft = None
    codec = types.SimpleNamespace(prompt_ids=lambda messages: [0])
    tokenizer = types.SimpleNamespace(pad_token_id=0)

    def role(self, name):
        return contextlib.nullcontext()


def test_stage3_oracle_scores_each_prompt_at_its_own_replayed_state():
    args = agent_prm.Args(env="household-compact", sft_demos=0, model="smollm2-135m", first_task=5, train_tasks=2,
                          gamma=GAMMA)
    episodes = [_expert_episode(5), _expert_episode(6)]
    states, score, _ = oracle_ladder.stage3_oracle(args, episodes)
    assert len(states) == sum(len(e.steps) for e in episodes)  # expert episodes never revisit a state
    for episode in episodes:
        T = len(episode.steps)
        for t, step in enumerate(episode.steps):
            prompt = envs.trajectory_messages(episode, t, args.history_window)
            sample = common.Sample(f"REASON: r\nACTION: {step.action}", [1], True)
            assert score([prompt], [[sample]]) == [[pytest.approx(GAMMA ** (T - t - 1))]]


def test_prm_check_counts_the_pairs_the_prm_orders_as_q_mu_does(monkeypatch):
    """At each state π0's two samples are Q^μ's best admissible action and a wasted turn on an action that is not in
    the admissible list, so Q^μ always prefers the first. A PRM that agrees with Q^μ orders every pair the same way;
    one that negates it reverses every pair. π0's log-likelihood here prefers the wasted turn everywhere."""
    args = agent_prm.Args(env="household-compact", sft_demos=0, model="smollm2-135m", first_task=5, train_tasks=2,
                          gamma=GAMMA, seed=0)
    states, score, env_at = oracle_ladder.stage3_oracle(args, [_expert_episode(5), _expert_episode(6)])

    def q_mu(prompt, action):
        return score([prompt], [[common.Sample(f"ACTION: {action}", [0], True)]])[0][0]

    def fake_generate(lm, codec, prompts, n, **kwargs):  # [S][2]: the best admissible action, then a wasted turn
        admissible = [m[-1]["content"].split("Admissible actions: ")[1].split(", ") for m in prompts]
        return [[common.Sample(f"ACTION: {max(ok, key=lambda a: q_mu(m, a))}", [1], True),
                 common.Sample("ACTION: take moon 1 from sky 1", [2], True)] for m, ok in zip(prompts, admissible)]

    monkeypatch.setattr(common, "generate", fake_generate)
    monkeypatch.setattr(common, "continuation_logprobs", lambda lm, prompts, continuations, pad_id:
                        (torch.tensor([[-2.0, -1.0]] * len(prompts)), None))  # [S, 2]: the wasted turn is likelier
    for sign, key in ((1, "same_order"), (-1, "reversed")):
        monkeypatch.setattr(agent_prm, "score_samples", lambda agent, prompts, samples, *rest, sign=sign:
                            [[sign * q for q in row] for row in score(prompts, samples)])
        counts = oracle_ladder.prm_against_oracle(_Agent(), args, states, score, n_states=8, env_at=env_at)
        assert counts["states"] == 8 and counts["separated"] == 8 and counts[key] == 8 and counts["prm_tie"] == 0
        assert counts["same_dpo_pair"] == (8 if sign == 1 else 0) and counts["dpo_pairs_oracle"] == 8
        assert counts["logp_same"] == 0 and counts["logp_reversed"] == 8
        assert counts["admissibility_differs"] == counts["q_mu_prefers_admissible"] == 8
        assert counts["prm_prefers_admissible"] == (8 if sign == 1 else 0) and counts["logp_prefers_admissible"] == 0
        # every pair of the PRM's is kept at δ 0 and judged by Q^μ; larger margins keep fewer of them
        kept = counts["by_margin"]
        assert kept["0.0"] == {"pairs": 8, "oracle_agrees": 8 if sign == 1 else 0, "oracle_ties": 0,
                               "oracle_reverses": 0 if sign == 1 else 8}
        pairs = [kept[str(d)]["pairs"] for d in oracle_ladder.CHECK_MARGINS]
        assert pairs == sorted(pairs, reverse=True) and pairs[-1] < 8


def test_target_check_orders_stage1_pairs_by_q_hat_and_by_the_prm_against_q_mu(monkeypatch):
    """Game 5 played by the expert and with a wasted turn at step 1: the two episodes share the state at t = 1, where
    one took the expert's action (Q̂ = γ^(T-2), the return of the expert's episode from there) and the other an
    impossible one (Q̂ = γ^(T-1): one turn later). Q^μ prefers the expert's; so does Q̂. A PRM that scores the
    impossible action higher reverses the pair and does not fit Q̂; one that scores it lower does both."""
    args = agent_prm.Args(env="household-compact", sft_demos=0, model="smollm2-135m", first_task=5, train_tasks=1,
                          gamma=GAMMA)
    episodes = [_expert_episode(5), _clumsy_episode(5)]
    q_hat, _ = agent_prm.estimate_q_targets(episodes, GAMMA)
    T = len(episodes[0].steps)
    state = agent_prm.state_action_keys(episodes[0])[1][0]
    assert q_hat[(state, episodes[0].steps[1].action)] == pytest.approx(GAMMA ** (T - 2))
    assert q_hat[(state, "take moon 1 from sky 1")] == pytest.approx(GAMMA ** (T - 1))
    for sign, agrees in ((-1, 1), (1, 0)):  # the PRM's logit: sign * [the response names the moon]
        monkeypatch.setattr(agent_prm, "prm_logits", lambda agent, messages, responses, batch_size, sign=sign:
                            torch.tensor([sign * float("moon" in r) for r in responses]))
        counts = oracle_ladder.targets_against_oracle(None, args, episodes)
        assert counts["held_out"] == {}  # one game: nothing held out (common.split_by_game)
        assert counts["train"] == {"states": 1, "separated": 1, "q_hat_separated": 1, "q_hat_same": 1,
                                   "q0_fits_q_hat": agrees, "q0_same" if agrees else "q0_reversed": 1}


def test_relabel_prm_rows_are_the_distinct_usable_actions_with_their_q_mu(monkeypatch):
    """--relabel-prm's training set: at each state, π0's samples (here the expert's action twice, a wasted turn and a
    response without an action) give one row per distinct usable action, with Q^μ as its target."""
    args = agent_prm.Args(env="household-compact", sft_demos=0, model="smollm2-135m", first_task=5, train_tasks=1,
                          gamma=GAMMA)
    episode = _expert_episode(5)
    states, score, env_at = oracle_ladder.stage3_oracle(args, [episode])
    expert_at = {envs.trajectory_messages(episode, t, args.history_window)[-1]["content"]: step.action
                 for t, step in enumerate(episode.steps)}

    def fake_generate(lm, codec, prompts, n, **kwargs):  # [S][4]
        return [[common.Sample(f"REASON: {k}\nACTION: {expert_at[m[-1]['content']]}", [1], True) for k in "ab"] +
                [common.Sample("REASON: c\nACTION: inventory", [2], True), common.Sample("no action", [3], True)]
                for m in prompts]

    monkeypatch.setattr(common, "generate", fake_generate)
    rows = oracle_ladder.oracle_prm_dataset(_Agent(), args, states, score, env_at, k=4)
    T = len(episode.steps)
    assert len(rows) == 2 * T and {r.game_id for r in rows} == {episode.game_id}
    for t in range(T):
        expert, wasted = rows[2 * t], rows[2 * t + 1]
        assert expert.messages == wasted.messages == states[t] and expert.state_key == wasted.state_key
        assert expert.action == episode.steps[t].action and expert.response == f"REASON: a\nACTION: {expert.action}"
        assert expert.target == pytest.approx(GAMMA ** (T - t - 1)) and wasted.action == "inventory"
        assert wasted.target == pytest.approx(GAMMA ** (T - t))


def test_admissible_scores_are_one_for_listed_actions_zero_for_others_and_minus_penalty_without_an_action():
    env = envs.make("household-compact", "train", 3)
    env.reset()
    listed = env.admissible_commands[2]
    samples = [[common.Sample(f"REASON: r\nACTION: {listed}", [1], True),
                common.Sample("REASON: r\nACTION: take moon 1 from sky 1", [2], True),
                common.Sample("no action", [3], True), common.Sample(f"ACTION: {listed}", [4], False)]]  # cut short
    assert oracle_ladder.admissible_scores([env], samples, invalid_penalty=2.0) == [[1.0, 0.0, -2.0, -2.0]]


def test_relabel_prm_admissible_targets_are_one_for_listed_actions_and_zero_for_the_rest(monkeypatch):
    """--relabel-target admissible: the same rows, labelled 1 when the action is in the prompt's admissible list
    (the expert's) and 0 when it is not (a moon in the sky), without asking Q^μ."""
    args = agent_prm.Args(env="household-compact", sft_demos=0, model="smollm2-135m", first_task=5, train_tasks=1,
                          gamma=GAMMA)
    episode = _expert_episode(5)
    states, _, env_at = oracle_ladder.stage3_oracle(args, [episode])
    expert_at = {envs.trajectory_messages(episode, t, args.history_window)[-1]["content"]: step.action
                 for t, step in enumerate(episode.steps)}

    def fake_generate(lm, codec, prompts, n, **kwargs):  # [S][3]
        return [[common.Sample(f"ACTION: {expert_at[m[-1]['content']]}", [1], True),
                 common.Sample("ACTION: take moon 1 from sky 1", [2], True), common.Sample("no action", [3], True)]
                for m in prompts]

    def no_oracle(prompts, samples):
        raise AssertionError("admissible targets need no Q^μ")

    monkeypatch.setattr(common, "generate", fake_generate)
    rows = oracle_ladder.oracle_prm_dataset(_Agent(), args, states, no_oracle, env_at, k=3, target="admissible")
    expected = [row for step in episode.steps for row in ((step.action, 1.0), ("take moon 1 from sky 1", 0.0))]
    assert [(r.action, r.target) for r in rows] == expected


def test_hidden_worlds_value_an_action_by_its_mean_over_copies_with_the_unseen_objects_moved():
    env = envs.make("household-compact", "train", 3)
    env.reset()
    assert oracle_ladder.hidden_worlds(env, 0) == [env]  # 0: the true game, which sees where everything is
    worlds = oracle_ladder.hidden_worlds(env, 6)
    again = oracle_ladder.hidden_worlds(env, 6)
    assert [w.contents for w in worlds] == [w.contents for w in again]  # seeded by the state: reproducible
    samples = [[common.Sample(f"REASON: r\nACTION: {a}", [1], True) for a in env.admissible_commands[:4]]]
    q = oracle_ladder.oracle_scores([env], samples, GAMMA, invalid_penalty=1.0, worlds=6)
    for s, value in zip(samples[0], q[0]):
        action = envs.parse_response(s.text).action
        assert value == pytest.approx(sum(oracle_ladder.oracle_q(w, action, GAMMA) for w in worlds) / 6)


def test_deviation_census_counts_the_actions_that_are_not_the_experts_by_kind():
    args = agent_prm.Args(env="household-compact", sft_demos=0, model="smollm2-135m", eval_games=2, gamma=GAMMA)
    expert_games = envs.rollout([envs.make("household-compact", "eval_in_distribution", s) for s in range(2)],
                                envs.expert_policy)
    c = oracle_ladder.deviation_census(expert_games, args, "eval_in_distribution", worlds=0)
    assert c["won"]["episodes"] == 2 and c["won"]["not_expert"] == 0 and c["lost"]["episodes"] == 0
    assert c["states"] == sum(len(t.steps) for t in expert_games)

    def stubborn(prompts, live_envs):  # the expert's first action, then one the game cannot do, for ever
        return [envs.format_response("r", env.expert_action()[1] if env.steps == 0 else "take moon 1 from sky 1")
                for env in live_envs]

    lost = envs.rollout([envs.make("household-compact", "eval_in_distribution", 0, max_steps=4)], stubborn)
    args.max_steps, args.eval_games = 4, 1
    c = oracle_ladder.deviation_census(lost, args, "eval_in_distribution", worlds=0)
    assert c["lost"] == {"episodes": 1, "actions": 4, "not_expert": 3, "not_expert_inadmissible": 3}


def test_stage3_oracle_can_keep_only_the_states_where_an_inadmissible_action_was_taken():
    args = agent_prm.Args(env="household-compact", sft_demos=0, model="smollm2-135m", first_task=5, train_tasks=1,
                          gamma=GAMMA)
    episodes = [_clumsy_episode(5)]
    everything = oracle_ladder.stage3_oracle(args, episodes)[0]
    only, score, _ = oracle_ladder.stage3_oracle(args, episodes, inadmissible_only=True)
    assert len(everything) == len(episodes[0].steps) and len(only) == 1
    assert only[0] == envs.trajectory_messages(episodes[0], 1, args.history_window)
    expert_here = episodes[0].steps[2].action  # after the wasted turn the state is the same: the expert's action
    q = score(only, [[common.Sample(f"REASON: r\nACTION: {expert_here}", [1], True),
                      common.Sample("REASON: r\nACTION: take moon 1 from sky 1", [2], True)]])
    assert q[0][0] > q[0][1]  # Q^μ prefers the expert's action to the impossible one


def test_expert_relabelled_gives_the_experts_response_at_each_state_the_policy_visited():
    args = agent_prm.Args(env="household-compact", sft_demos=0, model="smollm2-135m", first_task=5, train_tasks=1,
                          gamma=GAMMA)
    episode = _clumsy_episode(5)
    expert = _expert_episode(5)
    states, _, env_at = oracle_ladder.stage3_oracle(args, [episode])
    examples = oracle_ladder.expert_relabelled(env_at, states)
    assert [m for m, _ in examples] == states
    # the clumsy step's state gets the expert's response (the same as at the next step: a wasted turn changes nothing)
    assert examples[1][1] == examples[2][1] == expert.steps[1].response
    assert examples[0][1] == expert.steps[0].response and examples[1][1] != episode.steps[1].response


def test_all_weights_trains_every_weight_of_a_copy_and_keeps_the_reference(tiny_folder, tmp_path, monkeypatch):
    """--policy-weights all: online DPO moves the copy's own weights (not a LoRA adapter), the agent's π0 (the
    reference) stays as it was, the first step's reference log-probs equal the policy's (both are π0), and the
    saved weights load back into a fresh copy that scores responses exactly as the trained one."""
    import torch

    torch.manual_seed(0)
    agent = common.build_agent_model(str(tiny_folder), common.resolve_runtime("cpu"), quantize=False, lora_r=4,
                                     lora_alpha=8, max_length=1024)
    before = {k: v.clone() for k, v in agent.peft.state_dict().items()}
    learner = oracle_ladder.AllWeights(agent)
    start = {k: v.clone() for k, v in learner.weights().items()}
    states = agent_prm.dpo_prompt_states(envs.expert_demonstrations("household", "train", 2), history_window=2)
    args = agent_prm.Args(dpo_steps=2, dpo_prompts=4, dpo_micro_prompts=4, dpo_lr=1e-3, max_new_tokens=8,
                          batch_size=8, seed=0)
    margins = []
    real_loss = agent_prm.dpo_loss

    def dpo_loss(pc, pr, rc, rr, beta):
        margins.append(((pc - rc).detach(), (pr - rr).detach()))
        return real_loss(pc, pr, rc, rr, beta)

    monkeypatch.setattr(agent_prm, "dpo_loss", dpo_loss)
    with oracle_ladder.prm_replaced_by(lambda prompts, samples: [[1.0, 0.0] for _ in prompts]):
        agent_prm.online_dpo(learner, states, [], args, "test")
    assert all(torch.equal(v, agent.peft.state_dict()[k]) for k, v in before.items())  # π0 as it was
    assert torch.allclose(margins[0][0], torch.zeros_like(margins[0][0]), atol=1e-5)  # step 1: policy = reference
    changed = [k for k, v in learner.weights().items() if not torch.equal(v, start[k])]
    assert any("embed_tokens" in k for k in changed) and any("mlp" in k for k in changed)
    assert all("lora_" not in k for k in learner.weights())

    learner.save_role("policy", tmp_path / "policy")
    again = oracle_ladder.AllWeights(agent)
    again.load_role("policy", tmp_path / "policy")
    prompts = [agent.codec.prompt_ids(states[0])]
    responses = [[agent.codec.response_ids(envs.format_response("r", "look"))]]
    with learner.role("policy"), torch.no_grad():
        trained, _ = common.continuation_logprobs(learner.peft, prompts, responses, agent.tokenizer.pad_token_id, 1)
    with again.role("policy"), torch.no_grad():
        loaded, _ = common.continuation_logprobs(again.peft, prompts, responses, agent.tokenizer.pad_token_id, 1)
    with again.role("reference"), torch.no_grad():
        reference, _ = common.continuation_logprobs(again.peft, prompts, responses, agent.tokenizer.pad_token_id, 1)
    assert torch.equal(trained, loaded) and not torch.allclose(trained, reference)
