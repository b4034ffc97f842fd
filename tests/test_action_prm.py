"""The math and the plumbing of Action-PRM on hand-computed examples and a tiny random model."""

import copy
import json
import math

import pytest
import torch

import action_prm
import common
import envs


def _logp(probs):
    return torch.tensor([[math.log(p) for p in probs]], dtype=torch.float64)


def _rewards(logp, method, **kwargs):
    return action_prm.thought_rewards(logp, torch.full_like(logp, 4.0), method, **kwargs)


# ── rewards (Eq. 4, 6, 8) ────────────────────────────────────────────────────────────────────────────────

def test_em_weights_equal_the_normalised_likelihoods():
    p = [0.02, 0.05, 0.03]  # p(x | s, z_g) for G = 3 thoughts
    r_bar = _rewards(_logp(p), "em")
    assert r_bar[0].tolist() == pytest.approx([0.2, 0.5, 0.3])  # Eq. 6 by hand: p_g / Σ p = p_g / 0.1
    assert r_bar.sum().item() == pytest.approx(1.0)
    assert _rewards(_logp(p), "prob")[0].tolist() == pytest.approx(p)  # Eq. 4 as it is
    # length normalisation (official code): exp(mean log p) over the 4 action tokens = p^(1/4)
    assert _rewards(_logp(p), "prob", length_normalize=True)[0].tolist() == pytest.approx([q ** 0.25 for q in p])
    roots = [q ** 0.25 for q in p]
    assert _rewards(_logp(p), "em", length_normalize=True)[0].tolist() == pytest.approx([q / sum(roots) for q in roots])


def test_rewards_are_finite_when_every_likelihood_underflows():
    logp = torch.tensor([[-1000.0, -1001.0, -1002.0]], dtype=torch.float64)  # exp() of these is 0.0 in float64
    expected = torch.softmax(torch.tensor([0.0, -1.0, -2.0], dtype=torch.float64), 0)
    for method in action_prm.REWARDS:
        for grpo_std in (False, True):
            r = _rewards(logp, method, grpo_std=grpo_std)
            assert torch.isfinite(r).all(), (method, grpo_std)
    assert torch.allclose(_rewards(logp, "em")[0], expected)  # not 0/0: the weights of [0, -1, -2]
    assert _rewards(logp, "prob").abs().sum() == 0  # p itself underflows: no signal, but no NaN (counted)
    # (r̃ - mean) / std is scale free, so it is computed exactly even here
    shifted = _rewards(torch.tensor([[0.0, -1.0, -2.0]], dtype=torch.float64), "grpo", grpo_std=True)
    assert torch.allclose(_rewards(logp, "grpo", grpo_std=True), shifted)
    # float32 log-probs of -1000 (what the scorer returns) too
    assert torch.isfinite(_rewards(logp.float(), "em")).all()


def test_grpo_rewards_sum_to_zero_and_skip_unusable_thoughts():
    torch.manual_seed(0)
    logp = -torch.rand(5, 8, dtype=torch.float64) * 5
    for grpo_std in (False, True):
        r = _rewards(logp, "grpo", grpo_std=grpo_std)
        assert torch.allclose(r.sum(-1), torch.zeros(5, dtype=torch.float64), atol=1e-9)
        assert (r.argmax(-1) == logp.argmax(-1)).all()
    r = _rewards(_logp([0.5, 0.25, 0.25]), "grpo")
    assert r[0].tolist() == pytest.approx([0.5 - 1 / 3, 0.25 - 1 / 3, 0.25 - 1 / 3])
    # a thought with a bad token boundary (-inf) gets 0 and is not part of the group's mean
    logp = torch.tensor([[math.log(0.5), math.log(0.25), -math.inf]], dtype=torch.float64)
    assert _rewards(logp, "grpo")[0].tolist() == pytest.approx([0.125, -0.125, 0.0])
    assert _rewards(logp, "em")[0].tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    none_usable = torch.full((1, 3), -math.inf, dtype=torch.float64)
    for method in action_prm.REWARDS:
        assert (_rewards(none_usable, method) == 0).all()


def test_returns_sum_the_future_along_the_kept_thoughts():
    step = torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.5, 0.5]], dtype=torch.float64)  # [T=3, G=2]
    kept = [0, 1, 0]
    returns = action_prm.discounted_returns(step, kept, gamma=1.0)
    assert returns[2].tolist() == pytest.approx([0.5, 0.5])
    assert returns[1].tolist() == pytest.approx([0.1 + 0.5, 0.9 + 0.5])
    assert returns[0].tolist() == pytest.approx([0.6 + 0.9 + 0.5, 0.4 + 0.9 + 0.5])
    half = action_prm.discounted_returns(step, kept, gamma=0.5)
    assert half[0].tolist() == pytest.approx([0.6 + 0.5 * (0.9 + 0.5 * 0.5), 0.4 + 0.5 * (0.9 + 0.5 * 0.5)])


def test_assign_rewards_per_method():
    def groups():
        return [action_prm.ThoughtGroup(0, t, [], ["a", "b"], [[1], [1]], [0, 0], lp, [2, 2], kept)
                for t, (lp, kept) in enumerate([([math.log(0.3), math.log(0.1)], 0), ([-1000.0, -1000.0], 0)])]

    em = groups()
    action_prm.assign_rewards(em, action_prm.Args(reward="em"))
    assert em[0].rewards == pytest.approx([0.75, 0.25]) and em[1].rewards == pytest.approx([0.5, 0.5])
    ret = groups()
    action_prm.assign_rewards(ret, action_prm.Args(reward="return"))
    assert ret[0].rewards == pytest.approx([0.75 + 0.5, 0.25 + 0.5])
    prob = groups()
    stats = action_prm.assign_rewards(prob, action_prm.Args(reward="prob"))
    assert stats["groups_without_signal"] == 1  # the underflowing step is counted, not NaN


@pytest.mark.parametrize("reward", ["em", "grpo", "return"])
def test_group_size_below_two_is_a_user_error_for_relative_rewards(reward):
    with pytest.raises(common.UserError, match="group-size >= 2"):
        action_prm.Args(reward=reward, group_size=1)
    assert action_prm.Args(reward="prob", group_size=1).group_size == 1


def test_args_defaults_and_quick():
    assert action_prm.Args().sft_demos == 2000 and action_prm.Args(model="smollm2-135m").sft_demos == 0
    quick = action_prm.Args(quick=True)
    assert quick.demos <= 8 and quick.group_size <= 4 and quick.iterations == 1 and quick.sft_demos <= 60
    with pytest.raises(common.UserError, match="sft-demos"):
        action_prm.Args(sft_demos=0)  # a random tiny model cannot write thoughts


def test_paper_recipe_presets_the_official_action_prm_flags():
    """--recipe paper: act-prm-tinker's numbers, and --iterations × the batches of one round ≈ their 1,000 batches on
    20 compact demonstrations; the README names every flag of the preset."""
    from pathlib import Path

    paper = common.parse_args(action_prm.Args, "", ["--recipe", "paper"])
    for name, (value, source) in action_prm.PAPER_RECIPE.items():
        assert getattr(paper, name) == value and source
    assert (paper.group_size, paper.m_batch_size, paper.m_lr, paper.lora_r, paper.reward) == (8, 16, 4e-5, 32, "em")
    steps = sum(len(d.steps) for d in envs.expert_demonstrations("household-compact", "train", paper.demos, start=2000))
    assert 900 <= paper.iterations * math.ceil(steps / paper.m_batch_size) <= 1100
    assert common.parse_args(action_prm.Args, "", ["--recipe", "paper", "--demos", "5"]).demos == 5
    assert common.parse_args(action_prm.Args, "", []).eval_every == 1  # no recipe: every round evaluated
    with pytest.raises(common.UserError, match="eval-every"):
        action_prm.Args(eval_every=0)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert all(f"`--{name.replace('_', '-')} {value}`" in readme for name, (value, _) in action_prm.PAPER_RECIPE.items())


# ── thoughts, actions, tokens ────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("text,thought,cut,own", [
    (" Mugs are often in cabinets.\nACTION: go to cabinet 1", "Mugs are often in cabinets.", True, "go to cabinet 1"),
    (" the drawer is closed", "the drawer is closed", False, None),
    (" swallowed it action: open drawer 1\nACTION: open drawer 2", "swallowed it", True, "open drawer 1"),
    ("\nACTION: look", "", True, "look"),
    ("  two\n lines  ", "two lines", False, None),
])
def test_split_thought_cuts_at_the_action_marker(text, thought, cut, own):
    assert action_prm.split_thought(text) == (thought, cut, own)


@pytest.mark.parametrize("thought", ["Mugs are often in cabinets.", "", "REASON: twice", "odd: colons; here"])
def test_responses_round_trip_through_the_parser(thought):
    head, full = action_prm.response_texts(thought, "go to cabinet 1")
    assert full == envs.format_response(thought, "go to cabinet 1") and full.startswith(head)
    parsed = envs.parse_response(full)
    assert parsed.action == "go to cabinet 1"


def test_token_boundary_check_catches_a_bad_boundary(tiny):
    assert action_prm.action_token_start([5, 6], [5, 6, 7, 2]) == 2
    assert action_prm.action_token_start([5, 6], [5, 8, 7, 2]) is None  # merged across the boundary
    assert action_prm.action_token_start([5, 6], [5, 6]) is None  # no action tokens at all
    _, tokenizer, codec = tiny
    ids, start = action_prm.encode_thought_action(codec, "Mugs are often in cabinets.", "go to cabinet 1")
    assert ids == codec.response_ids("REASON: Mugs are often in cabinets.\nACTION: go to cabinet 1")
    assert tokenizer.decode(ids[start:-1]) == " go to cabinet 1" and ids[-1] == codec.eot

    class MergingTokenizer:  # greedy longest match; ": go" is one token that spans the "ACTION:" | " go" boundary
        vocab = {": go": 1, ":": 2, "go": 3, " ": 4}

        def __call__(self, text, add_special_tokens=False):
            ids, k = [], 0
            while k < len(text):
                piece = next((p for p in sorted(self.vocab, key=len, reverse=True) if text.startswith(p, k)), None)
                ids.append(self.vocab[piece] if piece else 100 + ord(text[k]))
                k += len(piece) if piece else 1
            return {"input_ids": ids}

    class Codec:
        tokenizer = MergingTokenizer()

        def response_ids(self, text):
            return self.tokenizer(text)["input_ids"] + [0]

    assert action_prm.encode_thought_action(Codec(), "z", "look")[1] is not None  # ":" | " " "l" ...
    assert action_prm.encode_thought_action(Codec(), "z", "go")[1] is None  # ":" | " go" became ": go": caught


def test_scoring_splits_thought_and_action_exactly(tiny):
    model, tokenizer, codec = tiny
    pad = tokenizer.pad_token_id
    demos = envs.expert_demonstrations("household", "train", 2)
    prompts = [codec.prompt_ids(envs.trajectory_messages(d, 1, 2)) for d in demos]
    thoughts = [["Mugs are often in cabinets.", "", "the fridge 1 is closed; I open it"]] * 2
    actions = [d.steps[1].action for d in demos]
    encoded = [[action_prm.encode_thought_action(codec, z, x) for z in zs] for zs, x in zip(thoughts, actions)]
    responses = [[ids for ids, _ in row] for row in encoded]
    starts = [[s for _, s in row] for row in encoded]
    with torch.no_grad():
        thought_lp, action_lp, n_action = action_prm.thought_action_logprobs(model, prompts, responses, starts, pad, 1)
        full, _ = common.sequence_logprobs(model, [p for p in prompts for _ in range(3)],
                                           [r for row in responses for r in row], pad)
        heads = [p + r[:s] for p, row, srow in zip(prompts, responses, starts) for r, s in zip(row, srow)]
        tails = [r[s:] for row, srow in zip(responses, starts) for r, s in zip(row, srow)]
        action_only, counts = common.sequence_logprobs(model, heads, tails, pad)
    assert torch.allclose((thought_lp + action_lp).flatten(), full, atol=1e-4)  # log p(z, x | s)
    assert torch.allclose(action_lp.flatten(), action_only, atol=1e-4)  # log p(x | s, z): action tokens only
    assert torch.equal(n_action.flatten(), counts)


# ── the M-step (Eq. 7) ───────────────────────────────────────────────────────────────────────────────────

def test_m_step_gradient_raises_the_best_thoughts_logprob(tiny):
    model, tokenizer, codec = tiny
    model = copy.deepcopy(model)  # the session fixture stays untouched
    pad = tokenizer.pad_token_id
    demo = envs.expert_demonstrations("household", "train", 1)[0]
    prompt = [codec.prompt_ids(envs.trajectory_messages(demo, 0, 2))]
    action = demo.steps[0].action
    thoughts = ["Mugs are often in cabinets.", "the toilet 1 is closed", "look around first"]
    encoded = [action_prm.encode_thought_action(codec, z, action) for z in thoughts]
    responses, starts = [[ids for ids, _ in encoded]], [[s for _, s in encoded]]

    def logp():
        t, a, _ = action_prm.thought_action_logprobs(model, prompt, responses, starts, pad)
        return t + a  # [1, G] log p(z, x | s)

    for method in ("em", "grpo"):
        rewards = action_prm.thought_rewards(torch.tensor([[-1.0, -3.0, -5.0]]), torch.full((1, 3), 5.0), method)
        before = logp().detach()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(3):
            optimizer.zero_grad()
            action_prm.m_step_loss(logp(), rewards.float(), 20.0).backward()
            optimizer.step()
        change = (logp().detach() - before)[0]
        assert change[0] > 0, method  # the thought that best explains the action becomes more likely
        assert change[0] > change[2], method  # ... more than the one that explains it worst
        if method == "grpo":
            assert change[2] < 0  # a negative advantage pushes the worst thought down


# ── the E-step with an AgentModel ───────────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def agent(tiny_folder):
    runtime = common.resolve_runtime("cpu")
    return common.build_agent_model(str(tiny_folder), runtime, quantize=False, lora_r=4, lora_alpha=8,
                                    max_length=1024)


def test_e_step_keeps_the_best_thought_and_carries_it_into_the_next_state(agent):
    torch.manual_seed(0)
    args = action_prm.Args(group_size=3, max_new_tokens=12, batch_size=6)
    demos = [envs.strip_reasons(d) for d in envs.expert_demonstrations("household", "train", 2)]
    demos[1].steps = demos[1].steps[:3]  # uneven lengths: the live demonstrations shrink
    inferred, groups, stats = action_prm.e_step(agent, demos, args, desc="test")
    assert len(groups) == stats["steps"] == sum(len(d.steps) for d in demos)
    assert stats["thoughts"] == 3 * len(groups) and stats["bad_token_boundary"] == 0
    for grp in groups:
        assert len(grp.thoughts) == len(grp.action_logp) == 3
        assert grp.kept == max(range(3), key=lambda g: grp.action_logp[g])
        step = inferred[grp.demo].steps[grp.t]
        assert step.reason == grp.thoughts[grp.kept] and step.action == demos[grp.demo].steps[grp.t].action
        assert envs.parse_response(step.response).action == step.action
        if grp.t > 0 and inferred[grp.demo].steps[grp.t - 1].reason:
            # s_t contains z*_{t-1}: the history shows the kept thought of the previous step
            assert f"Reason: {inferred[grp.demo].steps[grp.t - 1].reason}" in agent.tokenizer.decode(grp.prompt_ids)
    # and the stored score is log p(x | s, z*) of the filled-in demonstration
    again = action_prm.action_logp_given_thoughts(agent, inferred, args)
    kept = [grp.action_logp[grp.kept] for grp in sorted(groups, key=lambda g: (g.demo, g.t))]
    assert again == pytest.approx(kept, abs=1e-4)
    action_prm.assign_rewards(groups, args)
    assert all(sum(grp.rewards) == pytest.approx(1.0) for grp in groups)  # em weights


def test_sample_thoughts_returns_g_per_prompt(agent):
    demos = envs.expert_demonstrations("household", "train", 1)
    prompts = [agent.codec.prompt_ids(envs.trajectory_messages(demos[0], t, 2)) for t in range(3)]
    greedy = action_prm.sample_thoughts(agent.peft, agent.codec, prompts, 4, 0.0, 8, batch_size=8)
    assert len(greedy) == 3 and all(len(row) == 4 for row in greedy)
    assert all(len({text for text, _ in row}) == 1 for row in greedy)  # temperature 0: G identical samples


def test_token_f1():
    assert common.token_f1("Mugs are often in cabinets", "mugs are often in cabinets.") == 1.0
    assert common.token_f1("mugs cabinets", "mugs are in cabinets") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert common.token_f1("", "x") == 0.0 and common.token_f1("a", "b") == 0.0


# ── bad input ────────────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("content,message", [
    ("", "no trajectories"),
    ("{not json\n", "not valid JSON"),
    ('{"task": "t", "steps": [{"observation": "o", "action": ""}]}\n', "step 0 has no ACTION"),
    ('{"task": "t", "steps": []}\n', "no trajectory has any steps"),
    ('{"task": "t", "steps": [{"observation": "o", "action": "look"}]}\n', "not enough to hold out"),
])
def test_bad_process_logs_are_user_errors(tmp_path, content, message):
    path = tmp_path / "log.jsonl"
    path.write_text(content)
    with pytest.raises(common.UserError, match=message):
        action_prm.load_demonstrations(action_prm.Args(demos_file=str(path), heldout_demos=1))


def test_a_minimal_process_log_loads(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"task": "put a mug in cabinet.", "steps": [
        {"observation": f"o{k}", "action": "go to cabinet 1", "reason": "hidden"}]}) + "\n" for k in range(3)))
    train, heldout = action_prm.load_demonstrations(action_prm.Args(demos_file=str(path), heldout_demos=1))
    assert len(train) == 2 and len(heldout) == 1 and train[0].steps[0].reason == "hidden"
    assert envs.strip_reasons(train[0]).steps[0].response == "ACTION: go to cabinet 1"


def test_prefix_shared_thought_sampling_equals_plain_generation(agent):
    """Greedy thoughts sampled with the shared KV cache (common.generate_from_ids) equal plain generation of
    prompt + "REASON:", one prompt at a time on the PEFT-wrapped model."""
    from transformers import GenerationConfig

    demos = envs.expert_demonstrations("household", "train", 2)
    prompts = [agent.codec.prompt_ids(envs.trajectory_messages(d, t, 2)) for d in demos for t in (0, 3)]
    assert len({len(p) for p in prompts}) > 1  # different lengths: left padding is exercised
    shared = action_prm.sample_thoughts(agent.peft, agent.codec, prompts, 2, 0.0, 10, batch_size=8)
    prefix = agent.tokenizer(action_prm.THOUGHT_PREFIX, add_special_tokens=False)["input_ids"]
    for prompt, row in zip(prompts, shared):
        ids = torch.tensor([prompt + prefix])
        config = GenerationConfig(max_new_tokens=10, do_sample=False, eos_token_id=agent.codec.eot_ids,
                                  pad_token_id=agent.tokenizer.pad_token_id)
        plain = agent.peft.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
        tokens = plain[0, ids.shape[1]:].tolist()
        cut = next((k for k, t in enumerate(tokens) if t in agent.codec.eot_ids), len(tokens))
        assert row == [(agent.tokenizer.decode(tokens[:cut], skip_special_tokens=True), cut < len(tokens))] * 2


def test_log_mean_exp_is_the_marginal_estimate():
    assert action_prm.log_mean_exp([math.log(0.2), math.log(0.4)]) == pytest.approx(math.log(0.3))
    assert action_prm.log_mean_exp([-1000.0, -1000.0]) == pytest.approx(-1000.0)  # no underflow


def test_qlora_gradients_survive_a_generation_pass_on_cpu(tiny_folder):
    """The E-step generates (eval mode) before the M-step trains: with a 4-bit base on CPU, bitsandbytes would then
    switch to an inference kernel without a backward and silently zero the gradients below the last layer."""
    pytest.importorskip("bitsandbytes")
    demos = envs.expert_demonstrations("household", "train", 1)

    def first_layer_grad(generate_first):
        torch.manual_seed(0)
        agent = common.build_agent_model(str(tiny_folder), common.resolve_runtime("cpu"), quantize=True, lora_r=4,
                                         lora_alpha=8, max_length=1024)
        with torch.no_grad():
            for n, p in agent.peft.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        prompt = agent.codec.prompt_ids(envs.trajectory_messages(demos[0], 0, 2))
        if generate_first:
            action_prm.sample_thoughts(agent.peft, agent.codec, [prompt], 2, 1.0, 4, batch_size=2)
        ids, start = action_prm.encode_thought_action(agent.codec, "z", demos[0].steps[0].action)
        t, a, _ = action_prm.thought_action_logprobs(agent.peft, [prompt], [[ids]], [[start]],
                                                      agent.tokenizer.pad_token_id)
        (-(t + a).sum()).backward()
        return next(p.grad.norm().item() for n, p in agent.peft.named_parameters()
                    if "layers.0." in n and "lora_A" in n and ".policy." in n)

    assert first_layer_grad(True) == pytest.approx(first_layer_grad(False), rel=1e-4)
