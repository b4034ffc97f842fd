"""The household game, the registry and the agent loop (no torch needed)."""

import copy
import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

import envs

ROOT = Path(__file__).resolve().parent.parent


# ── the game ─────────────────────────────────────────────────────────────────────────────────────────

def test_same_seed_same_game_and_splits_differ():
    a, b = envs.make("household", "train", 7), envs.make("household", "train", 7)
    assert (a.task, a.receptacles, a.reset()[0]) == (b.task, b.receptacles, b.reset()[0])
    for action in ["go to " + a.receptacles[0], "look", "open " + a.receptacles[0]]:
        assert a.step(action) == b.step(action)
    c = envs.make("household", "eval_in_distribution", 7)
    assert (c.task, c.receptacles) != (a.task, a.receptacles)


def test_first_observation_speaks_alfworld():
    obs, info = envs.make("household", "train", 0).reset()
    assert obs.startswith("You are in the middle of a room. Looking quickly around you, you see a ")
    assert "\n\nYour task is to: " in obs
    assert info["won"] is False


@pytest.mark.parametrize("split", envs.SPLITS)
def test_expert_wins_every_game_and_random_agent_mostly_loses(split):
    expert = envs.success_table(split, 500, envs.expert_policy)
    rand = envs.success_table(split, 500, envs.make_random_policy(seed=1))
    print(f"\n{split}: task type: expert won/played | random won/played")
    for task_type in envs.TASK_TYPES:
        print(f"  {task_type:<24} {expert[task_type][0]:>3}/{expert[task_type][1]:<3} | "
              f"{rand[task_type][0]:>3}/{rand[task_type][1]}")
    assert set(expert) == set(envs.TASK_TYPES)  # all six task types present
    assert all(won == total for won, total in expert.values())
    random_success = sum(w for w, _ in rand.values()) / sum(n for _, n in rand.values())
    assert random_success < 0.15


def test_expert_is_quick_enough():
    trajectories = envs.rollout(envs.make_envs("household", "train", 60), envs.expert_policy)
    assert max(t.num_actions for t in trajectories) <= 30
    assert all(t.steps[-1].reward == 1.0 and sum(s.reward for s in t.steps) == 1.0 for t in trajectories)


def test_compact_preset_is_the_same_game_with_fewer_things_and_a_shorter_horizon():
    """household-compact: the same engine, tasks and expert; fewer receptacles and distractors, 15 actions."""
    env, same = envs.make("household-compact", "train", 7), envs.make("household-compact", "train", 7)
    assert (env.task, env.receptacles, env.game_id) == (same.task, same.receptacles, "household-compact/train/7")
    assert env.max_steps == envs.default_max_steps("household-compact") == 15
    assert envs.make("household", "train", 7).max_steps == envs.default_max_steps("household") == 30
    assert envs.make("household-compact", "train", 7, max_steps=20).max_steps == 20
    compact = envs.rollout(envs.make_envs("household-compact", "train", 120), envs.expert_policy)
    full = envs.rollout(envs.make_envs("household", "train", 120), envs.expert_policy)
    assert all(t.won for t in compact) and max(t.num_actions for t in compact) <= 15
    assert {t.task_type for t in compact} == set(envs.TASK_TYPES)
    mean = {name: sum(t.num_actions for t in ts) / len(ts) for name, ts in (("compact", compact), ("full", full))}
    assert mean["compact"] <= 7.5 and mean["compact"] < mean["full"]
    rooms = {name: [len(envs.make(name, "train", s).receptacles) for s in range(120)]
             for name in ("household-compact", "household")}
    assert max(rooms["household-compact"]) <= 8 < max(rooms["household"])
    assert sum(rooms["household-compact"]) < 0.5 * sum(rooms["household"])
    for split in envs.SPLITS:  # the splits keep their object/target pairings
        for seed in range(60):
            game = envs.make("household-compact", split, seed)
            assert envs.is_held_out_pair(game.object_type, game.target) == (split == "eval_out_of_distribution")


def test_out_of_distribution_split_holds_out_object_target_pairs():
    for split in envs.SPLITS:
        for seed in range(120):
            env = envs.make("household", split, seed)
            held_out = envs.is_held_out_pair(env.object_type, env.target)
            assert held_out == (split == "eval_out_of_distribution"), (split, seed, env.task)


def test_closed_receptacles_hide_their_contents():
    env = next(e for e in envs.make_envs("household", "train", 30)
               if any(e.rtype[r] in envs.OPENABLE and e.contents[r] for r in e.receptacles))
    env.reset()
    closed = next(r for r in env.receptacles if env.rtype[r] in envs.OPENABLE and env.contents[r])
    obs, *_ = env.step(f"go to {closed}")
    assert obs == f"You arrive at {closed}. The {closed} is closed."
    assert not any(f"take {o}" in c for o in env.contents[closed] for c in env.admissible_commands)
    obs, *_ = env.step(f"open {closed}")
    assert all(o in obs for o in env.contents[closed])


def test_a_scripted_heat_task():
    env = envs.make("household", "train", 0, task_type="pick_heat_then_place")
    env.reset()
    obj = next(n for n, o in env.objects.items() if o.type == env.object_type)
    where = env.objects[obj].location
    env.step(f"go to {where}")
    if where not in env.is_open:
        env.step(f"open {where}")
    assert env.step(f"take {obj} from {where}")[0] == f"You pick up the {obj} from the {where}."
    target = next(r for r in env.receptacles if env.rtype[r] == env.target)
    env.step(f"go to {target}")
    if target not in env.is_open:
        env.step(f"open {target}")
    obs, reward, done, _ = env.step(f"put {obj} in {target}")
    assert reward == 0.0 and not done  # not hot yet: no reward
    env.step(f"take {obj} from {target}")
    env.step("go to microwave 1")
    assert env.step(f"heat {obj} with microwave 1")[0] == f"You heat the {obj} using the microwave 1."
    env.step(f"go to {target}")
    obs, reward, done, info = env.step(f"put {obj} in/on {target}")
    assert (reward, done, info["won"]) == (1.0, True, True)


@pytest.mark.parametrize("command", ["", " ", "\t\n", "x" * 10_000, "ügé ☃ 猫", "go to", "go to nowhere 9",
                                     "take", "put a in b", "heat", "ACTION: look", "look " * 50, "\x00", "use"])
def test_garbage_commands_do_nothing(command):
    env = envs.make("household", "train", 3)
    env.reset()
    before = (dict(env.contents), env.location)
    obs, reward, done, info = env.step(command)
    assert obs == envs.NOTHING_HAPPENS and reward == 0.0 and info["invalid"]
    assert (dict(env.contents), env.location) == before
    env.check_invariants()


def _commands_for(env, rng):
    words = ["go to", "open", "close", "take", "put", "clean", "heat", "cool", "use", "examine", "from", "with",
             "in", "on", "in/on", "look", "inventory"]
    names = env.receptacles + list(env.objects)
    pick = rng.random()
    if pick < 0.6 and env.admissible_commands:
        return rng.choice(env.admissible_commands)
    if pick < 0.9:
        return " ".join(rng.choice(words + names) for _ in range(rng.randint(1, 5)))
    return "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 40)))


def test_fuzz_invariants_every_task_type():
    rng = random.Random(0)
    n_steps = 0
    for task_type in envs.TASK_TYPES:
        for seed in range(25):
            env = envs.make("household", "train", seed, task_type=task_type, max_steps=60)
            env.reset()
            while not env.done:
                command = _commands_for(env, rng)
                closed_before = {r for r in env.receptacles if r not in env.is_open}
                obs, reward, done, info = env.step(command)
                n_steps += 1
                env.check_invariants()
                assert env.won == env._goal_holds()  # success exactly when the goal holds
                assert reward == (1.0 if info["won"] and reward else 0.0)
                for r in closed_before & {r for r in env.receptacles if r not in env.is_open}:
                    # a receptacle that stayed closed never shows what is inside
                    assert not obs.startswith(f"You arrive at {r}. The {r} is open")
                    if env.contents[r] and obs.startswith(f"You arrive at {r}."):
                        assert obs == f"You arrive at {r}. The {r} is closed."
    assert n_steps > 3000


def test_admissible_commands_all_do_something():
    rng = random.Random(1)
    for seed in range(30):
        env = envs.make("household", "train", seed)
        env.reset()
        while not env.done:
            for command in env.admissible_commands:
                probe = copy.deepcopy(env)
                assert probe.step(command)[0] != envs.NOTHING_HAPPENS, (seed, command)
            env.step(rng.choice(env.admissible_commands))


# ── API misuse: clear errors ─────────────────────────────────────────────────────────────────────────

def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        envs.make("nope")
    with pytest.raises(ValueError, match="unknown split"):
        envs.make("household", split="test")
    with pytest.raises(TypeError, match="seed must be an int"):
        envs.make("household", seed="3")
    with pytest.raises(TypeError, match="seed must be an int"):
        envs.make("household", seed=1.5)
    with pytest.raises(ValueError, match="unknown task type"):
        envs.make("household", task_type="juggle")


def test_register_your_own_environment():
    class Counter:
        env_name, task, task_type, max_steps = "counter", "say done.", "count", 3

        def __init__(self, split, seed):
            self.game_id = f"counter/{split}/{seed}"

        def reset(self):
            self.won, self.n = False, 0
            return "Say done.", {}

        def step(self, action):
            self.n += 1
            self.won = action == "done"
            return ("ok" if self.won else "no"), float(self.won), self.won or self.n >= 3, {"won": self.won}

        @property
        def admissible_commands(self):
            return ["done", "wait"]

    envs.register("counter", Counter)
    try:
        trajectories = envs.rollout([envs.make("counter", seed=1)], lambda p, e: ["REASON: x\nACTION: done"])
        assert trajectories[0].won and trajectories[0].game_id == "counter/train/1"
    finally:
        del envs.ENV_REGISTRY["counter"]


# ── the agent loop ───────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("text,reason,action", [
    ("REASON: find the mug\nACTION: go to cabinet 1", "find the mug", "go to cabinet 1"),
    ("reason:   find it \n action :  Go To Cabinet 1. ", "find it", "go to cabinet 1"),
    ("ACTION: open drawer 2", "", "open drawer 2"),
    ("Sure! REASON: because\nACTION: take mug 1 from cabinet 1\nI hope this helps.", "because",
     "take mug 1 from cabinet 1"),
    ("REASON: I will go now.", "I will go now.", None),
    ("ACTION:   \n", "", None),
    ("", "", None),
    ("REASON: a\nb\nACTION: look", "a b", "look"),
])
def test_parse_response(text, reason, action):
    parsed = envs.parse_response(text)
    assert (parsed.reason, parsed.action) == (reason, action)


def test_prompt_window_and_real_actions_in_history():
    history = [(f"obs {i}", f"go to cabinet {i}") for i in range(8)]
    messages = envs.build_messages("put a mug in cabinet.", history, "now", ["look", "inventory"], history_window=3)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "History (last 3 of 8 turns)" in user and "obs 4" not in user and "obs 5" in user
    assert "Action: go to cabinet 7" in user and "Current observation: now" in user
    assert user.endswith("Admissible actions: look, inventory")
    assert "Task: put a mug in cabinet." in user
    assert "REASON:" in messages[0]["content"] and "ACTION:" in messages[0]["content"]
    steered = envs.build_messages("t", [], "o", [], 3, extra_instructions=envs.STEERED_EXPLORATION_PROMPT)
    assert "Try to explore possible strategies" in steered[0]["content"]


def test_rollout_batches_live_episodes_and_counts_invalid_actions():
    calls = []

    def policy(prompts, live_envs):
        calls.append(len(prompts))
        return ["no action here" if len(calls) == 1 else envs.expert_policy(prompts, [e])[0] for e in live_envs]

    trajectories = envs.rollout(envs.make_envs("household", "train", 5), policy)
    assert calls[0] == 5 and calls == sorted(calls, reverse=True)  # one call per step, live episodes only
    assert all(t.num_invalid == 1 and t.steps[0].action is None for t in trajectories)
    assert all(t.steps[0].next_observation == envs.NOTHING_HAPPENS for t in trajectories)
    assert all(t.won for t in trajectories)
    # the recorded prompt can be rebuilt for any step, and it matches what the policy saw
    t = trajectories[0]
    assert "Action: <invalid>" in envs.trajectory_messages(t, 1, 5)[1]["content"]
    with pytest.raises(ValueError, match="returned 0 responses for 5 prompts"):
        envs.rollout(envs.make_envs("household", "train", 5), lambda p, e: [])


def test_rollout_max_actions_cuts_each_episode_after_that_many_policy_actions():
    """max_actions=n: n actions of the policy after a resumed prefix, then the episode is cut as max_steps would
    cut it (not done, not won; the state after the last action is kept as the current state)."""
    env = envs.make("household", "train", 3)
    [full] = envs.rollout([env], envs.expert_policy)
    k = 2
    partial = envs.replay(env, full, k)
    [cut] = envs.rollout([env], envs.expert_policy, resume=[partial], max_actions=1)
    assert cut.steps == full.steps[:k + 1] and not cut.won
    assert cut.final_observation == full.steps[k].next_observation
    [two] = envs.rollout([envs.make("household", "train", 3)], envs.expert_policy, max_actions=2)
    assert two.steps == full.steps[:2]
    with pytest.raises(ValueError, match="max_actions must be at least 1"):
        envs.rollout([env], envs.expert_policy, max_actions=0)


def test_rollout_resumes_a_partial_trajectory_where_it_stopped():
    """resume=: envs stepped through the first k steps by hand, then continued, give the same episode as one
    rollout from the start (the expert is deterministic); a finished trajectory is left as it is."""
    [full] = envs.rollout([envs.make("household", "train", 3)], envs.expert_policy)
    k = 3
    env = envs.make("household", "train", 3)
    env.reset()
    for step in full.steps[:k]:
        env.step(step.action)
    partial = dataclasses.replace(full, steps=full.steps[:k], final_observation=full.steps[k].observation,
                                  final_admissible=full.steps[k].admissible, won=False)
    [resumed] = envs.rollout([env], envs.expert_policy, resume=[partial])
    fresh = envs.make("household", "train", 3)
    assert envs.rollout([fresh], envs.expert_policy, resume=[envs.begin(fresh)]) == [full]  # rollout's own start
    assert resumed == full and len(partial.steps) == k  # the input is not modified
    done_env = envs.make("household", "train", 3)
    assert envs.rollout([done_env], lambda p, e: 1 / 0, resume=[full]) == [full]  # nothing left to play
    with pytest.raises(ValueError, match="resume has 1 trajectories for 2 envs"):
        envs.rollout(envs.make_envs("household", "train", 2), envs.expert_policy, resume=[partial])


def test_replay_resets_a_game_to_a_state_of_a_trajectory():
    """replay(env, traj, t): the env is at s_t of the trajectory (same observation and admissible list), the
    partial trajectory holds its first t steps, and the expert finishes from there as it did; another game, or a
    trajectory the game does not reproduce, is an error."""
    [full] = envs.rollout([envs.make("household", "train", 3)], envs.expert_policy)
    for t in (0, 2, len(full.steps) - 1):
        env = envs.make("household", "train", 3)
        partial = envs.replay(env, full, t)
        assert partial.steps == full.steps[:t] and not partial.won
        assert (partial.final_observation, partial.final_admissible) == (full.observation_at(t), full.admissible_at(t))
        assert list(env.admissible_commands) == full.admissible_at(t)
        assert envs.rollout([env], envs.expert_policy, resume=[partial]) == [full]
    with pytest.raises(ValueError, match="cannot replay a trajectory of household/train/3"):
        envs.replay(envs.make("household", "train", 4), full, 1)
    edited = copy.deepcopy(full)
    edited.steps[1].next_observation = "something else"
    with pytest.raises(ValueError, match="step 1"):
        envs.replay(envs.make("household", "train", 3), edited, 3)


def test_trajectory_from_json_reads_evaluation_logs_with_extra_keys():
    """Evaluation logs add the Best-of-N candidates and their PRM scores to each step (and may add fields to the
    record): from_json reads the trajectory and leaves the extras out."""
    [traj] = envs.rollout([envs.make("household", "train", 3)], envs.expert_policy)
    record = json.loads(json.dumps(traj.to_json()))
    record["note"] = "extra"
    for step in record["steps"]:
        step.update(candidates=[step["response"]] * 2, prm_q_candidates=[0.5, 0.5])
    assert envs.Trajectory.from_json(record) == traj


def test_trajectory_messages_match_what_the_policy_saw():
    seen = []

    def policy(prompts, live_envs):
        seen.append(prompts[0])
        return envs.expert_policy(prompts, live_envs)

    [traj] = envs.rollout([envs.make("household", "train", 2)], policy, history_window=2)
    for t, prompt in enumerate(seen):
        assert envs.trajectory_messages(traj, t, history_window=2) == prompt


def test_demonstrations_jsonl_round_trip(tmp_path):
    demos = envs.expert_demonstrations("household", "train", 6)
    envs.save_jsonl(tmp_path / "with.jsonl", demos)
    envs.save_jsonl(tmp_path / "without.jsonl", [envs.strip_reasons(d) for d in demos])
    loaded = envs.load_trajectories(tmp_path / "with.jsonl")
    assert [t.to_json() for t in loaded] == [t.to_json() for t in demos]
    action_only = envs.load_trajectories(tmp_path / "without.jsonl")
    assert all(s.reason == "" and s.response.startswith("ACTION: ") for t in action_only for s in t.steps)
    assert [s.action for s in action_only[0].steps] == [s.action for s in demos[0].steps]
    # a user's minimal process log
    (tmp_path / "log.jsonl").write_text(json.dumps(
        {"task": "put a mug in cabinet.", "steps": [{"observation": "o1", "action": "go to cabinet 1"},
                                                    {"observation": "o2", "action": "open cabinet 1"}]}) + "\n")
    [log] = envs.load_trajectories(tmp_path / "log.jsonl")
    assert log.steps[0].next_observation == "o2" and log.steps[1].response == "ACTION: open cabinet 1"


@pytest.mark.parametrize("content,message", [
    ("", "no trajectories"),
    ("not json\n", "not valid JSON"),
    ('{"steps": []}\n', "expected an object with 'task'"),
    ('{"task": "t", "steps": [{"observation": "o"}]}\n', "step 0 has no ACTION"),
])
def test_bad_demonstration_files(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        envs.load_trajectories(path)


# ── command line ─────────────────────────────────────────────────────────────────────────────────────

def _run(*args, stdin=""):
    return subprocess.run([sys.executable, str(ROOT / "envs.py"), *args], input=stdin, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_cli_help_expert_and_play(tmp_path):
    assert _run("--help").returncode == 0
    watched = _run("--expert", "--seed", "3", "--task-type", "pick_cool_then_place")
    assert watched.returncode == 0 and "WON after" in watched.stdout
    played = _run("--seed", "3", stdin="look\ninventory\n")
    assert played.returncode == 0 and "You are not carrying anything." in played.stdout
    out = tmp_path / "demos.jsonl"
    exported = _run("--export-demos", "4", "--action-only", "--out", str(out))
    assert exported.returncode == 0 and len(out.read_text().splitlines()) == 4
    bad = _run("--seed", "x")
    assert bad.returncode == 2 and "invalid int value" in bad.stderr


def test_resample_unseen_moves_only_what_the_agent_has_not_seen_and_follows_the_priors():
    env = envs.make("household-compact", "train", 5)
    env.reset()
    for _ in range(3):  # the expert looks into a few receptacles first
        env.step(env.expert_action()[1])
    seen = set(env.known)
    assert seen and len(seen) < len(env.receptacles)
    moved = 0
    for i in range(50):
        world = env.resample_unseen(random.Random(i))
        world.check_invariants()
        for recep in seen:  # what the agent has looked into stays exactly as it is
            assert world.contents[recep] == env.contents[recep]
        assert world.observation == env.observation and world.known == env.known and world.steps == env.steps
        for name, obj in world.objects.items():
            if obj.location != env.objects[name].location:
                moved += 1
                assert obj.location not in seen and env.objects[name].location not in seen
                prior = dict(envs.PRIORS[obj.type]) if obj.type != "desklamp" else dict.fromkeys(envs.LAMP_HOSTS, 1)
                assert prior.get(world.rtype[obj.location], 0) > 0  # only where its prior lets it be
    assert moved > 0  # with 50 draws, something unseen moved
    assert env.resample_unseen(random.Random(7)).contents == env.resample_unseen(random.Random(7)).contents
    fresh = envs.make("household-compact", "train", 5)
    fresh.reset()  # nothing seen yet: every object may move, the game itself is untouched
    before = {n: o.location for n, o in fresh.objects.items()}
    fresh.resample_unseen(random.Random(0))
    assert {n: o.location for n, o in fresh.objects.items()} == before
