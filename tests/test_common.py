"""Plumbing: log-prob scoring parity, generation, scalar heads, adapters, the training loop, the CLI."""

import contextlib
import dataclasses
import math
import warnings

import pytest
import torch

import common
import envs


def _pairs(codec, n=4):
    demos = envs.expert_demonstrations("household", "train", 3)
    examples = common.sft_examples(demos, 2)[:n]
    return [codec.prompt_ids(m) for m, _ in examples], [codec.response_ids(r) for _, r in examples]


def test_logprob_scoring_matches_model_loss(tiny):
    model, tokenizer, codec = tiny
    prompts, responses = _pairs(codec)
    with torch.no_grad():
        sums, counts = common.sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id, batch_size=3)
        for k, (p, r) in enumerate(zip(prompts, responses)):
            ids = torch.tensor([p + r])
            labels = torch.tensor([[-100] * len(p) + r])
            loss = model(input_ids=ids, labels=labels).loss  # mean NLL over the response tokens
            assert sums[k].item() == pytest.approx(-loss.item() * len(r), rel=1e-4, abs=1e-4)
            assert counts[k].item() == len(r)


def test_logprob_scoring_is_independent_of_batching_and_padding(tiny):
    model, tokenizer, codec = tiny
    prompts, responses = _pairs(codec, 5)
    with torch.no_grad():
        together, _ = common.sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id, batch_size=5)
        alone = torch.cat([common.sequence_logprobs(model, [p], [r], tokenizer.pad_token_id)[0]
                           for p, r in zip(prompts, responses)])
    assert torch.allclose(together, alone, atol=1e-4)


def test_logprob_scoring_has_gradients(tiny):
    model, tokenizer, codec = tiny
    prompts, responses = _pairs(codec, 2)
    sums, _ = common.sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id)
    sums.sum().backward()
    assert model.get_output_embeddings().weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_generation_left_padding_matches_one_at_a_time(tiny):
    model, tokenizer, codec = tiny
    demos = envs.expert_demonstrations("household", "train", 2)
    prompts = [m for m, _ in common.sft_examples(demos, 2)[:4]]
    batched = common.generate(model, codec, prompts, n=1, temperature=0.0, max_new_tokens=12, batch_size=4)
    for prompt, [sample] in zip(prompts, batched):
        [[alone]] = common.generate(model, codec, [prompt], n=1, temperature=0.0, max_new_tokens=12)
        assert alone.token_ids == sample.token_ids


def test_generation_returns_n_samples_and_stops_at_end_of_turn(tiny):
    model, tokenizer, codec = tiny
    prompts = [envs.build_messages("t", [], "o", ["look"], 2)] * 3
    torch.manual_seed(0)
    out = common.generate(model, codec, prompts, n=4, temperature=1.0, max_new_tokens=8, batch_size=8)
    assert [len(o) for o in out] == [4, 4, 4]
    for sample in (s for group in out for s in group):
        assert len(sample.token_ids) <= 8
        assert sample.finished == (sample.token_ids[-1] in codec.eot_ids)


def test_end_of_turn_token_comes_from_the_chat_template(tiny):
    _, tokenizer, codec = tiny
    assert tokenizer.convert_ids_to_tokens(codec.eot) == "<|im_end|>"
    assert codec.response_ids("ACTION: look")[-1] == codec.eot


def test_long_prompts_drop_the_oldest_history_first(tiny):
    _, tokenizer, _ = tiny
    codec = common.ChatCodec(tokenizer, max_length=200)
    history = [(f"You arrive at cabinet {i}. The cabinet {i} is closed.", f"go to cabinet {i}") for i in range(30)]
    messages = envs.build_messages("put a mug in cabinet.", history, "now", ["look"], history_window=30)
    with pytest.warns(UserWarning, match="dropping the oldest history turns"):
        ids = codec.prompt_ids(messages, max_new_tokens=50)
    assert len(ids) <= 150
    text = tokenizer.decode(ids)
    assert "cabinet 29" in text and "cabinet 0." not in text and "Current observation: now" in text


def test_scalar_head_reads_the_last_real_token(tiny):
    model, tokenizer, codec = tiny
    prompts, responses = _pairs(codec, 3)
    sequences = [p + r for p, r in zip(prompts, responses)]
    head = torch.nn.Linear(model.config.hidden_size, 1)
    with torch.no_grad():
        scores = common.scalar_scores(model, head, sequences, tokenizer.pad_token_id, batch_size=3)
        for k, seq in enumerate(sequences):
            hidden = model.model(input_ids=torch.tensor([seq])).last_hidden_state[0, -1]
            assert scores[k].item() == pytest.approx(head(hidden).item(), abs=1e-5)


def test_train_loop_stops_on_nan_and_keeps_the_last_good_weights():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    losses = iter([torch.tensor(1.0), torch.tensor(float("nan"))])

    def loss_fn(_):
        loss = next(losses)
        return (w * loss).sum() if torch.isfinite(loss) else loss + w.sum(), {"loss": float(loss)}

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = common.train_loop([w], [0, 1, 2], loss_fn, lr=0.1)
    assert result.stopped_on_nan and result.steps == 1
    after_one_step = w.item()
    assert after_one_step != 1.0 and math.isfinite(after_one_step)


def test_train_loop_skips_micro_batches_without_a_loss():
    """A None loss (nothing to learn from) makes no optimizer step: a zero-gradient AdamW step would still move
    the weight along its momentum."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    trace = []
    losses = iter([lambda: (w ** 2).sum(), None, None])

    def loss_fn(_):
        make = next(losses)
        return (make(), {}) if make else (None, {})

    result = common.train_loop([w], range(3), loss_fn, lr=0.1, on_step=lambda step, m: trace.append(w.item()))
    assert result.steps == 1 and trace == [w.item()] and w.item() == pytest.approx(0.9)  # Adam's first step: lr


def test_train_loop_accumulates_gradients_over_micro_batches():
    """grad_accum=2: one optimizer step on two micro-batches equals one step on their mean loss; a micro-batch
    without a loss adds no gradient, and a step whose micro-batches all had none makes no update."""
    xs = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0]), torch.tensor([0.5, 0.5]), torch.tensor([-2.0, 1.0])]

    def loss_of(w, x):
        return ((w * x).sum() - 1.0) ** 2

    w_accum, w_mean = (torch.nn.Parameter(torch.tensor([0.5, -0.5])) for _ in range(2))
    accumulated = common.train_loop([w_accum], xs, lambda x: (loss_of(w_accum, x), {}), lr=0.1, grad_accum=2)
    pairs = [xs[:2], xs[2:]]
    plain = common.train_loop([w_mean], pairs, lambda b: ((loss_of(w_mean, b[0]) + loss_of(w_mean, b[1])) / 2, {}),
                              lr=0.1)
    assert accumulated.steps == plain.steps == 2
    assert torch.allclose(w_accum, w_mean, atol=1e-6) and not torch.allclose(w_accum, torch.tensor([0.5, -0.5]))

    w = torch.nn.Parameter(torch.tensor([0.5, -0.5]))
    trace = []
    losses = [None, xs[0], None, None, xs[1], None]  # steps: (None, x0) -> update, (None, None) -> none, (x1, None)
    result = common.train_loop([w], losses, lambda x: (None, {}) if x is None else (loss_of(w, x), {"n": 1.0}),
                               lr=0.1, grad_accum=2, on_step=lambda step, m: trace.append(step))
    assert result.steps == 2 and trace == [1, 2]


def test_train_loop_learning_rate_schedules():
    """constant: the same lr every step; cosine (SFT, --prm-lr-schedule cosine): 5% warm-up, then decay to ~0."""
    for cosine in (False, True):
        w = torch.nn.Parameter(torch.tensor([1.0]))
        lrs = []
        common.train_loop([w], range(40), lambda _: ((w ** 2).sum(), {}), lr=0.1, total=40, cosine=cosine,
                          on_step=lambda step, m: lrs.append(m["lr"]))
        assert len(lrs) == 40
        if not cosine:
            assert lrs == [0.1] * 40
        else:  # 40 steps: 2 warm-up steps, then cosine; the lr of step s (0-based) is what the optimizer used
            assert lrs[0] == pytest.approx(0.05) and max(lrs) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 40)))
            assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 0.001


def test_agent_model_roles_share_one_base(tiny_folder, tmp_path):
    runtime = common.resolve_runtime("cpu")
    agent = common.build_agent_model(str(tiny_folder), runtime, quantize=False, lora_r=4, lora_alpha=8,
                                     max_length=1024)
    params = agent.trainable_parameters("policy")
    with torch.no_grad():
        for p in params:
            p.add_(0.01 * torch.randn_like(p))
    agent.add_role("reference", copy_from="policy")
    agent.add_role("prm", head=True)
    prompts, responses = _pairs(agent.codec, 2)
    pad = agent.tokenizer.pad_token_id
    with torch.no_grad():
        with agent.role("policy"):
            pol = common.sequence_logprobs(agent.peft, prompts, responses, pad)[0]
        with agent.role("reference"):
            ref = common.sequence_logprobs(agent.peft, prompts, responses, pad)[0]
        with agent.peft.disable_adapter():
            base = common.sequence_logprobs(agent.peft, prompts, responses, pad)[0]
    assert torch.allclose(pol, ref, atol=1e-5) and not torch.allclose(pol, base, atol=1e-5)
    # only the policy adapter is given to the optimizer
    names = {n for n, p in agent.peft.named_parameters() if any(p is q for q in params)}
    assert names and all(".policy." in n for n in names)
    # save and load a role with its head
    agent.save_role("prm", tmp_path / "prm")
    assert (tmp_path / "prm" / "adapter_config.json").exists() and (tmp_path / "prm" / "scalar_head.pt").exists()
    before = agent.heads["prm"].weight.detach().clone()
    agent.add_role("prm", head=True, fresh=True)
    agent.load_role("prm", tmp_path / "prm")
    assert torch.equal(agent.heads["prm"].weight, before)


def test_lora_folded_inference_equals_the_adapter_forward_and_leaves_the_model_as_it_was(tiny_folder, monkeypatch):
    runtime = common.resolve_runtime("cpu")
    agent = common.build_agent_model(str(tiny_folder), runtime, quantize=False, lora_r=4, lora_alpha=8,
                                     max_length=1024)
    with torch.no_grad():
        for p in agent.trainable_parameters("policy"):
            p.normal_(0.0, 0.1)  # B = 0 at init: make the adapter change the outputs
    agent.add_role("reference")  # a second (zero) adapter: only the active one may be folded in
    prompts, responses = _pairs(agent.codec, 3)
    pad = agent.tokenizer.pad_token_id
    with torch.enable_grad():  # with gradients lora_folded does nothing: PEFT's own W x + s·B(A x)
        unfolded = common.sequence_logprobs(agent.peft, prompts, responses, pad)[0]
        unfolded.sum().backward()
    policy_params = agent.trainable_parameters("policy")
    assert all(p.grad is not None for p in policy_params)  # A and B still get gradients
    agent.peft.zero_grad(set_to_none=True)
    unfolded = unfolded.detach()
    with torch.no_grad(), agent.peft.disable_adapter():
        base = common.sequence_logprobs(agent.peft, prompts, responses, pad)[0]
    policy_params[0].requires_grad_(False)  # a frozen LoRA matrix (PEFT's disable_adapter() would unfreeze it)
    before = {n: (p, p.detach().clone(), p.requires_grad) for n, p in agent.peft.named_parameters()}
    with torch.no_grad():
        folded = common.sequence_logprobs(agent.peft, prompts, responses, pad)[0]
        with common.lora_folded(agent.peft):  # nested: the inner calls see disabled adapters and fold nothing
            nested = common.sequence_logprobs(agent.peft, prompts, responses, pad)[0]
    assert torch.allclose(folded, unfolded, atol=1e-4) and torch.allclose(nested, unfolded, atol=1e-4)
    assert not torch.allclose(folded, base, atol=1e-2)  # the adapter was in the folded forward
    # the very same parameters, values and requires_grad flags as before (swapped back, not subtracted)
    after = dict(agent.peft.named_parameters())
    assert after.keys() == before.keys()
    for name, (p, value, flag) in before.items():
        assert after[name] is p and torch.equal(p, value) and p.requires_grad == flag, name
    # generation samples the same greedy tokens folded and unfolded
    messages = [m for m, _ in common.sft_examples(envs.expert_demonstrations("household", "train", 2), 2)[:3]]
    folded_tokens = [s[0].token_ids for s in common.generate(agent.peft, agent.codec, messages, temperature=0.0,
                                                               max_new_tokens=10)]
    monkeypatch.setattr(common, "lora_folded", lambda lm: contextlib.nullcontext())
    plain_tokens = [s[0].token_ids for s in common.generate(agent.peft, agent.codec, messages, temperature=0.0,
                                                              max_new_tokens=10)]
    assert folded_tokens == plain_tokens


def test_4bit_base_with_lora_trains_on_cpu(tiny_folder):
    pytest.importorskip("bitsandbytes")
    runtime = common.resolve_runtime("cpu")
    agent = common.build_agent_model(str(tiny_folder), runtime, quantize=True, lora_r=4, lora_alpha=8,
                                     max_length=1024)
    assert any("4bit" in type(m).__name__.lower() for m in agent.peft.modules())
    prompts, responses = _pairs(agent.codec, 2)
    params = agent.trainable_parameters("policy")
    sums, _ = common.sequence_logprobs(agent.peft, prompts, responses, agent.tokenizer.pad_token_id)
    (-sums.sum()).backward()
    assert all(p.grad is not None for p in params)
    # a 4-bit base is never folded into (that would need re-quantizing): the adapters stay on
    from peft.tuners.tuners_utils import BaseTunerLayer

    lora_layers = [m for m in agent.peft.modules() if isinstance(m, BaseTunerLayer)]
    with torch.no_grad(), common.lora_folded(agent.peft):
        assert lora_layers and not any(m.disable_adapters for m in lora_layers)


def test_unknown_model_and_bad_flags_are_user_errors():
    with pytest.raises(common.UserError, match="unknown model"):
        common.resolve_model_path("gpt-17")
    with pytest.raises(common.UserError, match="load-in-4bit"):
        common.quantize_flag("maybe", common.resolve_runtime("cpu"))
    with pytest.raises(common.UserError, match="dtype"):
        common.resolve_runtime("cpu", "fp8")


def test_every_flag_has_help():
    import action_prm
    import agent_prm
    import inverse_prm

    for module in (agent_prm, inverse_prm, action_prm):
        for f in dataclasses.fields(module.Args):
            assert f.metadata.get("help"), f"{module.__name__}.Args.{f.name} has no help string"


def test_no_algorithm_file_imports_another():
    """One file per algorithm (CleanRL style): agent_prm.py, inverse_prm.py and action_prm.py share only common.py
    and envs.py, never one another's code. Every import statement is parsed, those inside functions included."""
    import ast
    from pathlib import Path

    algorithms = {"agent_prm", "inverse_prm", "action_prm"}
    for name in sorted(algorithms):
        tree = ast.parse((Path(__file__).resolve().parent.parent / f"{name}.py").read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):  # `from x import y`, and `from . import y`
                imported |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                imported.add(str(node.args[0].value).split(".")[0])
        assert "common" in imported, f"{name}.py: no import statement found"  # the parse sees its imports
        assert not imported & (algorithms - {name}), f"{name}.py imports {sorted(imported & algorithms - {name})}"


def test_run_dir_resume_and_atomic_files(tmp_path):
    @dataclasses.dataclass
    class A:
        x: int = 1

    run = common.RunDir("algo", "env", 0, str(tmp_path / "r"), A())
    assert not run.done("stage1")
    run.mark_done("stage1")
    run.log(step=1, loss=0.5)
    run.write_jsonl("d.jsonl", [{"a": 1}])
    again = common.RunDir("algo", "env", 0, str(tmp_path / "r"), A(x=2))
    assert again.done("stage1") and again.read_jsonl("d.jsonl") == [{"a": 1}]
    assert not list((tmp_path / "r").glob("*.tmp"))


def test_run_dir_stage_computes_once_then_loads(tmp_path):
    """run.stage: the first call computes, saves the result (and the adapter) and marks the stage done; a second
    call — a resumed run with the same folder — loads instead of computing, and returns the same saved numbers."""
    @dataclasses.dataclass
    class A:
        x: int = 1

    class Agent:  # what run.stage touches of an AgentModel
        def __init__(self):
            self.calls = []

        def save_role(self, role, path):
            self.calls.append(("save", role, path.name))
            path.mkdir(parents=True)

        def add_role(self, role, head=False, fresh=False):
            self.calls.append(("add", role, head, fresh))

        def load_role(self, role, path):
            self.calls.append(("load", role, path.name))

    computed = []

    def train():
        computed.append(1)
        return {"loss": 0.25}

    agent = Agent()
    run = common.RunDir("algo", "env", 0, str(tmp_path / "r"), A())
    stage2 = run.stage("iter1/stage2", train, save_as="iter1_metrics.json", adapter=(agent, "prm", "prm"), fresh=True)
    assert stage2 == {"loss": 0.25} and computed == [1] and agent.calls == [("save", "prm", "prm")]
    assert run.done("iter1/stage2") and run.read_json("iter1_metrics.json") == {"loss": 0.25}

    resumed = common.RunDir("algo", "env", 0, str(tmp_path / "r"), A())
    again = resumed.stage("iter1/stage2", train, save_as="iter1_metrics.json", adapter=(agent, "prm", "prm"),
                          fresh=True)
    assert again == stage2 and computed == [1]  # loaded, not recomputed
    assert agent.calls[1:] == [("add", "prm", False, True), ("load", "prm", "prm")]  # fresh: re-created, then loaded
    assert resumed.read_json("stages_done.json") == ["iter1/stage2"]  # the stage names old run folders have

    rollouts = resumed.stage("iter1/stage1", lambda: [{"a": 1}, {"a": 2}], save_as="rollouts.jsonl")  # records
    assert rollouts == [{"a": 1}, {"a": 2}] == resumed.stage("iter1/stage1", lambda: 1 / 0, save_as="rollouts.jsonl")
    assert resumed.stage("base", lambda: computed.append(2)) is None and resumed.done("base") and computed == [1, 2]
    assert resumed.stage("base", lambda: computed.append(3)) is None and computed == [1, 2]


def test_prefix_shared_scoring_equals_plain_scoring(tiny):
    model, tokenizer, codec = tiny
    pad = tokenizer.pad_token_id
    prompts, responses = _pairs(codec, 3)
    groups = [[responses[(k + j) % 3][: 5 + 3 * j] for j in range(4)] for k in range(3)]  # G = 4, uneven lengths
    head = torch.nn.Linear(model.config.hidden_size, 1)
    with torch.no_grad():
        shared, counts = common.continuation_logprobs(model, prompts, groups, pad, prompts_per_batch=2)
        plain, plain_counts = common.sequence_logprobs(model, [p for p in prompts for _ in range(4)],
                                                       [c for g in groups for c in g], pad)
        assert torch.allclose(shared.flatten(), plain, atol=1e-4) and torch.equal(counts.flatten(), plain_counts)
        shared_scores = common.continuation_scores(model, head, prompts, groups, pad, prompts_per_batch=3)
        plain_scores = common.scalar_scores(model, head, [p + c for p, g in zip(prompts, groups) for c in g], pad)
        assert torch.allclose(shared_scores.flatten(), plain_scores, atol=1e-4)
    # gradients flow through the shared prefix too
    shared, _ = common.continuation_logprobs(model, prompts[:1], groups[:1], pad)
    shared.sum().backward()
    assert model.get_output_embeddings().weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_prefix_shared_sampling_matches_plain_generation(tiny):
    """n samples per prompt reuse one prefill; greedy samples must equal the one-at-a-time greedy output."""
    model, tokenizer, codec = tiny
    demos = envs.expert_demonstrations("household", "train", 2)
    prompts = [m for m, _ in common.sft_examples(demos, 2)[:3]]
    shared = common.generate(model, codec, prompts, n=3, temperature=0.0, max_new_tokens=10, batch_size=9)
    for prompt, group in zip(prompts, shared):
        [[alone]] = common.generate(model, codec, [prompt], n=1, temperature=0.0, max_new_tokens=10)
        assert all(s.token_ids == alone.token_ids for s in group)


def test_static_kv_cache_samples_what_the_default_cache_samples(tiny):
    """One sample per prompt decodes into a preallocated static cache; with the same seed it must draw the same
    tokens as the default (growing) cache, sampled and greedy, over left-padded prompts of different lengths."""
    model, tokenizer, codec = tiny
    demos = envs.expert_demonstrations("household", "train", 2)
    ids = [codec.prompt_ids(envs.trajectory_messages(d, t, 2)) for d in demos for t in (0, 3)]
    assert len({len(p) for p in ids}) > 1
    for temperature in (0.0, 1.0):
        out = {}
        for static in (True, False):
            torch.manual_seed(0)
            out[static] = [g[0].token_ids for g in common.generate_from_ids(
                model, codec, ids, n=1, temperature=temperature, max_new_tokens=12, batch_size=4, static_cache=static)]
        assert out[True] == out[False]


def test_prefill_shared_gives_the_next_token_logits_of_the_full_prompt(tiny):
    """The KV cache of left-padded prompts minus their last token, repeated n times: feeding the last token on top
    of it gives the logits of the whole prompt, for every copy (positions count real tokens only)."""
    model, tokenizer, codec = tiny
    demos = envs.expert_demonstrations("household", "train", 2)
    prompts = [codec.prompt_ids(envs.trajectory_messages(d, t, 2)) for d in demos for t in (0, 3)]
    assert len({len(p) for p in prompts}) > 1  # different lengths: left padding is exercised
    ids, mask = common._pad(prompts, tokenizer.pad_token_id, left=True, device=torch.device("cpu"))  # [4, P]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    n = 3
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]  # [4, V]
        cache = common._prefill_shared(model, ids, mask, n)
        shared = model(input_ids=ids[:, -1:].repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0),
                       position_ids=positions[:, -1:].repeat_interleave(n, 0), past_key_values=cache).logits[:, -1]
    assert torch.allclose(shared, plain.repeat_interleave(n, 0), atol=1e-4)


def test_evaluate_row_adds_per_step_records_and_is_cached(tmp_path):
    """A policy that logs per-step records (as Best-of-N logs every candidate's PRM score) gets them written into
    the steps of the dumped episodes, in order; a second call with the same number of games is read from
    evals.json without playing again."""
    import contextlib
    import json

    @dataclasses.dataclass
    class EvalArgs:
        env: str = "household"
        eval_splits: tuple = ("eval_in_distribution",)
        eval_games: int = 3
        history_window: int = 2
        batch_size: int = 2
        history_reasons: bool = False
        max_steps: int = 30

    class NoAdapters:  # the expert needs no model
        @contextlib.contextmanager
        def role(self, name):
            yield

    args = EvalArgs()
    run = common.RunDir("test", "household", 0, str(tmp_path / "run"), args)
    calls = []

    def make_policy(split):
        calls.append(split)
        log = {}

        def policy(prompts, live_envs):
            for k, env in enumerate(live_envs):
                log.setdefault(env.game_id, []).append({"turn": len(log.get(env.game_id, [])), "prompt_row": k})
            return envs.expert_policy(prompts, live_envs)

        return policy, log

    row = common.evaluate_row(NoAdapters(), run, args, "Expert", make_policy=make_policy)
    assert row["eval_in_distribution"]["success"] == 100.0 and calls == ["eval_in_distribution"]
    episodes = [json.loads(line) for line in (run.path / "evals" / "Expert__eval_in_distribution.jsonl").open()]
    assert len(episodes) == 3
    for episode in episodes:
        assert [step["turn"] for step in episode["steps"]] == list(range(len(episode["steps"])))
    again = common.evaluate_row(NoAdapters(), run, args, "Expert", make_policy=make_policy)
    assert again == row and calls == ["eval_in_distribution"]  # cached: not played again
    args.eval_games = 4  # another number of games: evaluated anew
    assert common.evaluate_row(NoAdapters(), run, args, "Expert", make_policy=make_policy)[
        "eval_in_distribution"]["episodes"] == 4


def test_note_start_above_best_only_when_pi0_beats_the_chosen_policy(capsys):
    def row(success):
        return {"eval_in_distribution": {"success": success}}

    common.note_start_above_best([("π0", row(72.0)), ("π1", row(6.0))], "π0", "π1", "eval_in_distribution")
    assert "π0 (72.0%) scores above π1 (6.0%)" in capsys.readouterr().out
    common.note_start_above_best([("π0", row(6.0)), ("π1", row(72.0))], "π0", "π1", "eval_in_distribution")
    common.note_start_above_best([("π0", row(6.0)), ("π1", row(6.0))], "π0", "π1", "eval_in_distribution")
    common.note_start_above_best([("π0", row(72.0))], "π0", "π0", "eval_in_distribution")  # no π_i: π0 is returned
    assert capsys.readouterr().out == ""
