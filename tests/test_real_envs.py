"""The real engines behind the registry (real_envs.py): ALFWorld and TextWorld (optional; their tests skip without).

ALFWorld's games come from a download that needs the internet, so the project ships six small ALFWorld problems
of its own (tests/data/alfworld: an initial-state PDDL and a traj_data.json per task type) and turns them into
playable games with the installed alfworld package, the way ALFWorld builds its own games (alfworld-generate,
with the PDDL domain and grammar the package ships). TextWorld games are generated from seeds.

    python -m pytest -q -s tests/test_real_envs.py     # -s shows the success tables and step speeds
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import envs
import real_envs

ROOT = Path(__file__).resolve().parent.parent
ALFWORLD_PROBLEMS = ROOT / "tests" / "data" / "alfworld" / "json_2.1.1"
HAVE_ALFWORLD = importlib.util.find_spec("alfworld") is not None  # find_spec does not import (no side effects)
HAVE_TEXTWORLD = importlib.util.find_spec("textworld") is not None
needs_alfworld = pytest.mark.skipif(not HAVE_ALFWORLD, reason="ALFWorld is not installed "
                                    "(pip install -r requirements-envs.txt)")
needs_textworld = pytest.mark.skipif(not HAVE_TEXTWORLD, reason="TextWorld is not installed "
                                     "(pip install -r requirements-envs.txt)")
# The task types of the shipped problems in each split (tests/data/alfworld/json_2.1.1/<ALFWorld's split folder>).
SHIPPED_TASK_TYPES = {"train": {"pick_clean_then_place", "pick_heat_then_place"},
                      "eval_in_distribution": {"look_at_obj_in_light", "pick_and_place"},
                      "eval_out_of_distribution": {"pick_cool_then_place", "pick_two_obj_and_place"}}


# ── fixtures: game data built once per test session ──────────────────────────────────────────────────


@pytest.fixture(scope="session")
def alfworld_data(tmp_path_factory) -> str:
    """$ALFWORLD_DATA-style folder with json_2.1.1/{train,valid_seen,valid_unseen}/.../game.tw-pddl, made from the
    shipped problems by the installed alfworld-generate (~5 s). It picks the goal sentence's template with the
    global random module, so we seed it; it checks solvability with ALFWorld's PDDL planner (one plan per game,
    faster than playing its handcoded expert; the adapter still plays the handcoded expert)."""
    if not HAVE_ALFWORLD:
        pytest.skip("ALFWorld is not installed (pip install -r requirements-envs.txt)")
    data = tmp_path_factory.mktemp("alfworld_data")
    script = (shutil.which("alfworld-generate", path=str(Path(sys.executable).parent))
              or shutil.which("alfworld-generate"))
    assert script, "the alfworld package is installed but its alfworld-generate script is not on PATH"
    package_data = Path(importlib.util.find_spec("alfworld").origin).parent / "data"
    seeded_run = ("import random, runpy, sys; random.seed(0); sys.argv = sys.argv[1:]; "
                  "runpy.run_path(sys.argv[0], run_name='__main__')")
    command = [sys.executable, "-c", seeded_run, script,
               "--data_path", str(ALFWORLD_PROBLEMS), "--save_path", str(data / "json_2.1.1"),
               "--domain", str(package_data / "alfred.pddl"), "--grammar", str(package_data / "alfred.twl2"),
               "--expert_type", "planner",
               "--end", "1000"]  # its default end index (-1) would skip the last problem
    start = time.time()
    result = subprocess.run(command, env={**os.environ, "ALFWORLD_DATA": str(data)}, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"alfworld-generate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    games = sorted((data / "json_2.1.1").rglob("game.tw-pddl"))
    assert len(games) == 6 and all(json.loads(g.read_text())["solvable"] for g in games), result.stderr[-3000:]
    print(f"\n[alfworld-generate: 6 shipped problems -> playable games in {time.time() - start:.1f} s]")
    return str(data)


@pytest.fixture(scope="session")
def textworld_cache(tmp_path_factory) -> str:
    if not HAVE_TEXTWORLD:
        pytest.skip("TextWorld is not installed (pip install -r requirements-envs.txt)")
    return str(tmp_path_factory.mktemp("textworld_cache"))


# The TextWorld games the tests play: two cooking games (train foods, and the held-out "test" foods of the
# out-of-distribution split) and one custom quest.
TEXTWORLD_GAMES = [("train", 0, {}), ("eval_out_of_distribution", 0, {}),
                   ("eval_in_distribution", 0, {"kind": "quest"})]


def _success(trajectories) -> str:
    return f"{sum(t.won for t in trajectories)}/{len(trajectories)}"


def _random_rollouts(game_envs, episodes: int):
    """`episodes` random-agent episodes in each env (the same envs, reset each time: no engine reloads)."""
    runs = [envs.rollout(game_envs, envs.make_random_policy(seed=k)) for k in range(episodes)]
    return [[run[i] for run in runs] for i in range(len(game_envs))]


# ── importing envs stays light ────────────────────────────────────────────────────────────────────────


def test_importing_envs_does_not_import_the_engines():
    code = ("import sys, envs; loaded = [m for m in sys.modules if m.split('.')[0] in "
            "('alfworld', 'textworld', 'real_envs')]; "
            "assert not loaded, loaded; assert {'alfworld', 'textworld'} <= set(envs.ENV_REGISTRY)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_registry_entries_of_the_real_engines_act_like_their_classes():
    # the scripts ask the registry entry whether demonstrations exist (hasattr(entry, "expert_action")) and how long
    # an episode is (default_max_steps): the lazy entries answer as the adapter classes do, without the engines
    code = ("import sys, envs\n"
            "for name in ('alfworld', 'textworld'):\n"
            "    assert hasattr(envs.ENV_REGISTRY[name], 'expert_action') and envs.default_max_steps(name) == 30\n"
            "assert 'real_envs' in sys.modules\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('alfworld', 'textworld')]")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    assert envs.ENV_REGISTRY["alfworld"].resolve() is real_envs.AlfworldEnv
    assert envs.ENV_REGISTRY["textworld"].resolve() is real_envs.TextWorldEnv
    assert issubclass(real_envs.AlfworldEnv, real_envs.EngineEnv)
    assert issubclass(real_envs.TextWorldEnv, real_envs.EngineEnv)


# ── ALFWorld ──────────────────────────────────────────────────────────────────────────────────────────


@needs_alfworld
def test_alfworld_expert_wins_every_shipped_game_and_random_agent_mostly_loses(alfworld_data):
    print(f"\n{'split':<26}{'task type':<24}{'task':<36}{'expert':>8}{'random':>8}")
    random_trajectories, steps, seconds = [], 0, 0.0
    for split in envs.SPLITS:
        games = real_envs.alfworld_games(split, alfworld_data)
        assert {g.task_type for g in games} == SHIPPED_TASK_TYPES[split]
        game_envs = envs.make_envs("alfworld", split, len(games), data_path=alfworld_data)
        start = time.time()
        experts = envs.rollout(game_envs, envs.expert_policy)
        randoms = _random_rollouts(game_envs, episodes=1)  # ~90 ms a step: the engine is the cost
        seconds += time.time() - start
        steps += sum(t.num_actions for t in experts) + sum(t.num_actions for r in randoms for t in r)
        for env, expert, rand in zip(game_envs, experts, randoms):
            print(f"{split:<26}{env.task_type:<24}{env.task:<36}{expert.num_actions:>5} st{_success(rand):>8}")
            assert expert.won, f"the expert lost {env.game_id}: {[s.action for s in expert.steps]}"
            assert expert.num_actions <= 30 and expert.steps[-1].reward == 1.0
            assert sum(s.reward for s in expert.steps) == 1.0
            assert env.engine_errors == 0
        random_trajectories += [t for r in randoms for t in r]
    print(f"random agent: {_success(random_trajectories)} won; {1000 * seconds / steps:.0f} ms per step "
          f"(engine + expert bookkeeping, resets included)")
    assert sum(t.won for t in random_trajectories) / len(random_trajectories) < 0.5


@needs_alfworld
def test_alfworld_speaks_the_protocol(alfworld_data):
    argv, alfworld_data_env = list(sys.argv), os.environ.get("ALFWORLD_DATA")
    games = real_envs.alfworld_games("eval_in_distribution", alfworld_data)
    seed = next(i for i, g in enumerate(games) if g.task_type == "pick_and_place")
    env = envs.make("alfworld", "eval_in_distribution", seed, data_path=alfworld_data)
    assert env.game_id == "alfworld/valid_seen/pick_and_place_simple-CellPhone-None-Bed-301/trial_T0001"
    assert env.task in ("put a cellphone in bed.", "put some cellphone on bed.")  # ALFWorld's two templates

    obs, info = env.reset()
    assert obs.startswith("You are in the middle of a room. Looking quickly around you, you see a bed 1, ")
    assert obs.endswith(f"\n\nYour task is to: {env.task}") and "Welcome" not in obs
    assert info == {"won": False, "invalid": False, "task_type": "pick_and_place", "game_id": env.game_id}
    assert "go to drawer 1" in env.admissible_commands

    obs, reward, done, info = env.step("Dance with the fridge")
    assert (obs, reward, done, info["invalid"], env.steps) == (envs.NOTHING_HAPPENS, 0.0, False, True, 1)
    for command in ["go to drawer 1", "open drawer 1", "take cellphone 1 from drawer 1", "go to bed 1"]:
        obs, reward, done, info = env.step(command)
        assert not info["invalid"] and reward == 0.0 and not done, (command, obs)
    assert "move cellphone 1 to bed 1" in env.admissible_commands
    # the household game's (and ALFWorld 0.3's) spelling of ALFWorld 0.4's 'move X to Y' is accepted too
    obs, reward, done, info = env.step("put cellphone 1 in/on bed 1")
    assert obs == "You move the cellphone 1 to the bed 1."
    assert (reward, done, info["won"], env.won, env.steps) == (1.0, True, True, True, 6)
    assert env.admissible_commands == [] and env.step("look")[0] == envs.EPISODE_OVER

    env.reset()  # the same engine, a fresh episode
    assert (env.steps, env.won, env.done) == (0, False, False)
    short = envs.make("alfworld", "eval_in_distribution", seed, data_path=alfworld_data, max_steps=3)
    short.reset()
    assert [short.step("look")[2] for _ in range(3)] == [False, False, True] and not short.won

    # ALFWorld's planner parses PDDL with sys.argv overwritten and `import alfworld` sets $ALFWORLD_DATA: undone
    assert sys.argv == argv and os.environ.get("ALFWORLD_DATA") == alfworld_data_env


@needs_alfworld
def test_alfworld_expert_is_reproducible_and_recovers_from_detours(alfworld_data):
    split = "eval_out_of_distribution"
    seed = next(i for i, g in enumerate(real_envs.alfworld_games(split, alfworld_data))
                if g.task_type == "pick_two_obj_and_place")
    a, b = (envs.make("alfworld", split, seed, data_path=alfworld_data) for _ in range(2))
    first, second = envs.rollout([a, b], envs.expert_policy)
    assert [s.response for s in first.steps] == [s.response for s in second.steps]
    assert first.won and first.steps[0].reason == "First I look around the room."
    # pick_two needs the expert to track that it put the first soap bar down (ALFWorld 0.4.2's expert does not
    # understand its own 'move' command; the adapter tells it 'put')
    assert sum(s.action.startswith("move soapbar") for s in first.steps) == 2
    # after a random detour the expert (or, where it lost track, the planner) still wins
    a.reset()
    for k, action in enumerate(["go to cabinet 1", "open cabinet 1", "take spraybottle 1 from cabinet 1",
                                "go to towelholder 1"]):
        a.step(action)
    while not a.done:
        a.step(a.expert_action()[1])
    assert a.won, a.observation


@needs_alfworld
def test_alfworld_engine_error_is_nothing_happens_and_does_not_stop_the_batch(alfworld_data, monkeypatch):
    broken, healthy = (envs.make("alfworld", "train", 0, data_path=alfworld_data) for _ in range(2))
    broken.reset()

    def explode(command):
        raise RuntimeError("the engine fell over")

    monkeypatch.setattr(broken._engine, "step", explode)  # an instance attribute: only this env's engine
    obs, reward, done, info = broken.step("look")
    assert (obs, reward, done, info["invalid"]) == (envs.NOTHING_HAPPENS, 0.0, False, True)
    assert info["engine_error"] == "RuntimeError: the engine fell over" and broken.engine_errors == 1
    bad, good = envs.rollout([broken, healthy], envs.expert_policy)
    assert good.won and not bad.won and bad.num_actions == 30
    assert broken.engine_errors == 1 + 30 and all(s.next_observation == envs.NOTHING_HAPPENS for s in bad.steps)


def _fake_game(root: Path, relative: str, task_type: str, solvable: bool = True) -> None:
    """A listing-only stand-in for a game folder: what alfworld_games() reads (no engine involved)."""
    folder = root / "json_2.1.1" / relative
    folder.mkdir(parents=True)
    (folder / "traj_data.json").write_text(json.dumps({"task_type": task_type}))
    grammar = '"task": [{"rhs": "Your task is to: put a mug in cabinet."}]'
    (folder / "game.tw-pddl").write_text(json.dumps({"solvable": solvable, "grammar": grammar}))


def test_alfworld_listing_follows_alfworlds_own_filter(tmp_path):
    _fake_game(tmp_path, "valid_unseen/pick_and_place_simple-Mug-None-Cabinet-1/trial_b", "pick_and_place_simple")
    _fake_game(tmp_path, "valid_unseen/pick_and_place_simple-Mug-None-Cabinet-1/trial_a", "pick_and_place_simple")
    _fake_game(tmp_path, "valid_unseen/pick_heat_then_place_in_recep-Mug-None-Cabinet-1/t",
               "pick_heat_then_place_in_recep", solvable=False)
    _fake_game(tmp_path, "valid_unseen/pick_and_place_with_movable_recep-Mug-Cup-Cabinet-1/t",
               "pick_and_place_with_movable_recep")
    _fake_game(tmp_path, "valid_unseen/pick_clean_then_place_in_recep-AppleSliced-None-Fridge-1/t",
               "pick_clean_then_place_in_recep")
    games = real_envs.alfworld_games("eval_out_of_distribution", str(tmp_path))
    assert [g.game_id for g in games] == [
        "alfworld/valid_unseen/pick_and_place_simple-Mug-None-Cabinet-1/trial_a",
        "alfworld/valid_unseen/pick_and_place_simple-Mug-None-Cabinet-1/trial_b"]
    assert games[0].task == "put a mug in cabinet." and games[0].task_type == "pick_and_place"


def test_alfworld_without_data_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    for kwargs in ({}, {"data_path": str(tmp_path / "nowhere")}):
        with pytest.raises(ValueError) as error:
            envs.make("alfworld", "eval_out_of_distribution", 0, **kwargs)
        message = str(error.value)
        assert "\n" not in message and "alfworld-download" in message and "ALFWORLD_DATA" in message
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))  # pointing at a folder without games
    with pytest.raises(ValueError, match=f"{re.escape(str(tmp_path))} has no json_2.1.1"):
        envs.make("alfworld", "train", 0)
    (tmp_path / "json_2.1.1" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no solvable games under"):
        envs.make("alfworld", "train", 0)


def test_alfworld_seed_out_of_range_says_how_many_games_there_are(tmp_path):
    for trial in ("a", "b"):
        _fake_game(tmp_path, f"valid_seen/pick_and_place_simple-Mug-None-Cabinet-1/{trial}", "pick_and_place_simple")
    for seed in (2, -1):
        with pytest.raises(IndexError, match=r"\(valid_seen\) has 2 games: seed must be in 0\.\.1, got"):
            envs.make("alfworld", "eval_in_distribution", seed, data_path=str(tmp_path))


def test_missing_engine_packages_are_one_line_errors(monkeypatch, tmp_path):
    _fake_game(tmp_path, "train/pick_and_place_simple-Mug-None-Cabinet-1/a", "pick_and_place_simple")
    monkeypatch.setitem(sys.modules, "alfworld", None)  # makes `import alfworld` fail as if it were not installed
    monkeypatch.setitem(sys.modules, "textworld", None)
    for name, kwargs, pip in (("alfworld", {"data_path": str(tmp_path)}, "pip install alfworld==0.4.2"),
                              ("textworld", {"cache_dir": str(tmp_path)}, "pip install textworld==1.7.0")):
        with pytest.raises(ImportError) as error:
            envs.make(name, "train", 0, **kwargs)
        assert pip in str(error.value) and "\n" not in str(error.value)


# ── TextWorld ─────────────────────────────────────────────────────────────────────────────────────────


@needs_textworld
def test_textworld_expert_wins_every_game_and_random_agent_mostly_loses(textworld_cache):
    start = time.time()
    game_envs = [envs.make("textworld", split, seed, cache_dir=textworld_cache, **kw)
                 for split, seed, kw in TEXTWORLD_GAMES]
    generation = time.time() - start
    start = time.time()
    experts = envs.rollout(game_envs, envs.expert_policy)
    randoms = _random_rollouts(game_envs, episodes=5)
    seconds = time.time() - start
    steps = sum(t.num_actions for t in experts) + sum(t.num_actions for r in randoms for t in r)
    print(f"\n{'game':<72}{'expert':>8}{'random':>8}")
    for env, expert, rand in zip(game_envs, experts, randoms):
        print(f"{env.game_id:<72}{expert.num_actions:>5} st{_success(rand):>8}")
        assert expert.won and expert.steps[-1].reward == 1.0 and sum(s.reward for s in expert.steps) == 1.0
    random_trajectories = [t for r in randoms for t in r]
    print(f"random agent: {_success(random_trajectories)} won; generation {generation:.1f} s for "
          f"{len(game_envs)} games; {1000 * seconds / steps:.0f} ms per step")
    assert sum(t.won for t in random_trajectories) / len(random_trajectories) < 0.5


@needs_textworld
def test_textworld_text_is_clean_and_only_admissible_commands_reach_the_engine(textworld_cache):
    env = envs.make("textworld", "train", 0, cache_dir=textworld_cache)
    assert (env.task_type, env.game_id) == ("cooking", "textworld/cooking-recipe1+take1+go1+open/train/0")
    obs, info = env.reset()
    assert obs.startswith("-= Kitchen =-\n") and "$$" not in obs and "0/1" not in obs  # no banner, no status line
    assert obs.endswith(f"\n\nYour task is to: {env.task}") and "cook" in env.task
    assert not info["invalid"] and "look" in env.admissible_commands
    for command in ["dance wildly", "quit", "restart", ""]:  # not admissible: the engine never sees them
        obs, reward, done, info = env.step(command)
        assert (obs, reward, done, info["invalid"]) == (envs.NOTHING_HAPPENS, 0.0, False, True)
    obs, _, _, info = env.step("Look.")  # normalised like every command
    assert obs.startswith("-= Kitchen =-") and not obs.endswith(">") and not info["invalid"] and env.steps == 5
    while not env.done:
        obs, reward, done, info = env.step(env.expert_action()[1])
    assert env.won and reward == 1.0 and "RESTART" not in obs and "*** The End ***" in obs
    assert env.step("look")[0] == envs.EPISODE_OVER


@needs_textworld
def test_textworld_cooking_game_is_lost_by_eating_the_ingredient(textworld_cache):
    env = envs.make("textworld", "train", 0, cache_dir=textworld_cache)
    env.reset()
    walkthrough = list(env._walkthrough)
    take = next(k for k, command in enumerate(walkthrough) if command.startswith("take "))
    for command in walkthrough[:take + 1]:
        env.step(command)
    ingredient = re.match(r"take (.+) from ", walkthrough[take]).group(1)
    obs, reward, done, info = env.step(f"eat {ingredient}")
    assert (reward, done, info["lost"], info["won"], env.lost) == (0.0, True, True, False, True)
    assert "*** You lost! ***" in obs and env.admissible_commands == []


@needs_textworld
def test_textworld_same_seed_same_game_and_splits_are_disjoint(textworld_cache, tmp_path):
    def play(env):
        obs, _ = env.reset()
        return obs, env._walkthrough, env.admissible_commands

    again = envs.make("textworld", "train", 0, cache_dir=str(tmp_path))  # generated afresh elsewhere
    cached = envs.make("textworld", "train", 0, cache_dir=textworld_cache)
    assert again.game_id == cached.game_id and play(again) == play(cached)
    seeds = {}
    for split, seed, kw in TEXTWORLD_GAMES[:2] + [("eval_in_distribution", 0, {})]:
        env = envs.make("textworld", split, seed, cache_dir=textworld_cache, **kw)
        made = json.loads(Path(env.game_file).with_name("prm_agents.json").read_text())
        assert made["game_id"] == env.game_id and made["generator_seed"] % 3 == envs.SPLITS.index(split)
        seeds[split] = made["generator_seed"]
        assert Path(env.game_file).with_suffix(".json").is_file()  # TextWorld's game description, beside the .z8
    assert len(set(seeds.values())) == 3
    assert play(envs.make("textworld", "eval_in_distribution", 0, cache_dir=textworld_cache)) != play(cached)


@needs_textworld
def test_textworld_engine_error_is_nothing_happens(textworld_cache, monkeypatch):
    env = envs.make("textworld", "train", 0, cache_dir=textworld_cache)
    env.reset()

    def explode(command):
        raise OSError("the interpreter died")

    monkeypatch.setattr(env._engine, "step", explode)
    obs, reward, done, info = env.step("look")
    assert (obs, reward, done, info["invalid"], env.engine_errors) == (envs.NOTHING_HAPPENS, 0.0, False, True, 1)
    assert info["engine_error"] == "OSError: the interpreter died"


def test_textworld_options_are_checked_before_anything_is_generated(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown textworld kind"):
        envs.make("textworld", "train", 0, kind="dungeon", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown option.*nb_rooms.*cooking"):
        envs.make("textworld", "train", 0, nb_rooms=3, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="seed must be in"):
        envs.make("textworld", "train", -1, cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("PRM_AGENTS_CACHE", str(tmp_path))
    assert real_envs.textworld_cache_dir() == str(tmp_path / "textworld")


# ── all engines in one batch ──────────────────────────────────────────────────────────────────────────


@needs_alfworld
@needs_textworld
def test_one_rollout_batch_mixes_household_alfworld_and_textworld(alfworld_data, textworld_cache):
    batch = [envs.make("household", "train", 0),
             envs.make("alfworld", "train", 0, data_path=alfworld_data),
             envs.make("textworld", "train", 0, cache_dir=textworld_cache),
             envs.make("alfworld", "eval_out_of_distribution", 1, data_path=alfworld_data),
             envs.make("textworld", "eval_in_distribution", 0, kind="quest", cache_dir=textworld_cache)]
    trajectories = envs.rollout(batch, envs.expert_policy, history_window=3)
    assert [t.env for t in trajectories] == ["household", "alfworld", "textworld", "alfworld", "textworld"]
    assert all(t.won for t in trajectories)
    for traj in trajectories:
        first = traj.steps[0]
        assert "Your task is to:" not in first.observation and first.reason and first.admissible
        record = envs.Trajectory.from_json(json.loads(json.dumps(traj.to_json())))  # JSON round trip
        assert record == traj
        prompt = envs.trajectory_messages(traj, len(traj.steps) - 1, history_window=3)[-1]["content"]
        assert f"\n\nTask: {traj.task}\nCurrent observation: " in prompt and "Admissible actions: " in prompt
