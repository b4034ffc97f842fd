"""Adapters for the real text-game engines behind ``envs.make``: ALFWorld (the paper's benchmark) and TextWorld.

    make("alfworld", split, seed)    ALFWorld's own text engine on the games of
                                      $ALFWORLD_DATA/json_2.1.1/{train,valid_seen,valid_unseen}
    make("textworld", split, seed)   a TextWorld game generated offline from the seed (cooking or quest)

Both engines are optional packages: `pip install -r requirements-envs.txt` after requirements.txt (4-8 minutes,
needs a C/C++ compiler), and for ALFWorld the games once, with internet: `alfworld-download && export
ALFWORLD_DATA=~/.cache/alfworld`. envs.py registers both names with factories that import this module only when
such an environment is built, and this module imports an engine only then too, so `import envs` stays
dependency-free. Both adapters share one base class, ``EngineEnv``, and speak the household game's protocol: the
first observation ends with "\\n\\nYour task is to: <task>", an action the engine cannot do answers "Nothing
happens." (info["invalid"]), the reward is 1.0 on the step that wins, and an episode ends when it is won (or
lost, in TextWorld) or after max_steps actions. An exception inside an engine's step is answered the same way,
counted in `env.engine_errors`, and never ends a batch of rollouts.

    python -c "import envs; print(envs.make('textworld', 'train', seed=3).reset()[0])"   # a generated game
    python agent_prm.py --env textworld --quick                                           # train on such games
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import random
import re
import sys
import tempfile
import warnings
from typing import Any, Callable, Sequence

from envs import EPISODE_OVER, MAX_COMMAND_CHARS, NOTHING_HAPPENS, SPLITS, normalize_command

ALFWORLD_PIP = "alfworld==0.4.2"
TEXTWORLD_PIP = "textworld==1.7.0"


def _import_optional(module: str, env_name: str, pip_spec: str) -> Any:
    """Import an optional engine, or fail with one line that names the pip command."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        # Only "the package itself is missing" gets the short message; a broken dependency keeps its traceback.
        if e.name is None or e.name.split(".")[0] != module.split(".")[0]:
            raise
        raise ImportError(f"make({env_name!r}) needs the optional package {pip_spec.split('==')[0]}: "
                          f"pip install {pip_spec}  (or: pip install -r requirements-envs.txt)") from None


def _tidy(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, no blank lines at either end."""
    lines = [line.rstrip() for line in str(text).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _plan_text(plan: Sequence[str], shown: int = 3) -> str:
    """The first `shown` commands of a plan as one phrase, for an expert's REASON."""
    return ", then ".join(plan[:shown]) + (", ..." if len(plan) > shown else "")


def _match_admissible(command: str, admissible: Sequence[str]) -> str | None:
    """The engine's own spelling of a (normalised) command, or None if it is not admissible."""
    return next((c for c in admissible if normalize_command(c) == command), None)


# ── the shared adapter ─────────────────────────────────────────────────────────────────────────────────


class EngineEnv:
    """What the two adapters share: argument checks, the episode's bookkeeping (steps, done, won, observation,
    engine_errors), the engine loaded lazily by the first reset(), the step (normalise the action, translate it
    into the engine's spelling, answer engine errors "Nothing happens.", reward the winning step, stop at
    max_steps), admissible commands, the info dict and close(). A subclass supplies the engine-specific parts:
    `_load_engine`, `_first_observation`, `_engine_command`, `_read_step`, and optionally the hooks below."""

    env_name: str
    # wraps every call into the engine (load, reset, step); ALFWorld's planner needs sys.argv guarded
    _guard: Callable[[], contextlib.AbstractContextManager] = staticmethod(contextlib.nullcontext)

    def __init__(self, split: str, seed: int, max_steps: int):
        self.split, self.seed, self.max_steps = split, seed, max_steps
        self.engine_errors = 0  # exceptions raised inside the engine's step (each answered "Nothing happens.")
        self.observation = ""
        self._engine: Any = None  # loaded by the first reset() (~0.5 s), so building a batch of envs is cheap
        self._state: Any = None   # the engine's last good game state
        self._begin_episode()

    @staticmethod
    def _check_seed(seed: Any) -> None:
        """A TypeError unless `seed` is an int (bool is not)."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")

    @staticmethod
    def _check_max_steps(max_steps: Any) -> None:
        """A ValueError unless `max_steps` is a positive int."""
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")

    # ── the protocol ───────────────────────────────────────────────────────────────────────────────
    def reset(self) -> tuple[str, dict[str, Any]]:
        """Start the episode afresh (loading the engine the first time): (first observation, info)."""
        with self._guard():
            if self._engine is None:
                self._engine = self._load_engine()
            self._state = self._engine.reset()
        self._begin_episode()
        self.observation = self._first_observation()
        return self.observation, self._info(invalid=False)

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        """Play one action: (observation, reward, done, info)."""
        self._require_reset("step")
        if self.done:
            return EPISODE_OVER, 0.0, True, self._info(invalid=True)
        command = normalize_command(action) if len(str(action)) <= MAX_COMMAND_CHARS else ""
        engine_command = self._engine_command(command)
        self.steps += 1
        reward, error = 0.0, None
        if engine_command is None:  # the adapter answers for the engine: it never sees the command
            self.observation, invalid = NOTHING_HAPPENS, True
        else:
            try:
                with self._guard():
                    state, _, _ = self._engine.step(engine_command)
            except Exception as e:  # one broken game must not end a batch of rollouts
                error = f"{type(e).__name__}: {e}"
                self.engine_errors += 1
                self.observation, invalid = NOTHING_HAPPENS, True
            else:
                self._state = state
                self.observation, invalid = self._read_step(engine_command, state)
                if state["won"] and not self.won:
                    self.won, reward = True, 1.0
        self.done = any(self._outcome().values()) or self.steps >= self.max_steps
        self._after_step(engine_command, invalid)
        return self.observation, reward, self.done, self._info(invalid, error)

    @property
    def admissible_commands(self) -> list[str]:
        """The engine's admissible commands, in its own spelling ([] before reset() and once the episode is over)."""
        if self._state is None or self.done:
            return []
        return list(self._state["admissible_commands"])

    def close(self) -> None:
        """Free the engine (reset() loads it again)."""
        if self._engine is not None:
            self._engine.close()
        self._engine, self._state = None, None

    # ── what a subclass supplies ───────────────────────────────────────────────────────────────────
    def _load_engine(self) -> Any:
        """Start the engine on `self.game_file` (called inside `_guard`)."""
        raise NotImplementedError

    def _first_observation(self) -> str:
        """The first observation, from `self._state` just after the engine's reset (and the adapter's own setup)."""
        raise NotImplementedError

    def _engine_command(self, command: str) -> str | None:
        """The engine's spelling of a normalised command, or None to answer "Nothing happens." without it."""
        raise NotImplementedError

    def _read_step(self, command: str, state: Any) -> tuple[str, bool]:
        """(observation, invalid) from the engine's new state after `command` (plus the adapter's bookkeeping)."""
        raise NotImplementedError

    def _after_step(self, command: str | None, invalid: bool) -> None:
        """Called at the end of every step that reached the engine or was answered for it; nothing by default."""

    def _begin_episode(self) -> None:
        """Zero the episode's counters and outcome flags (at construction and on every reset)."""
        self.steps, self.done, self.won = 0, False, False

    def _outcome(self) -> dict[str, bool]:
        """The outcome flags that end an episode, as they appear first in info: won (and lost where it exists)."""
        return {"won": self.won}

    # ── helpers ────────────────────────────────────────────────────────────────────────────────────
    def _require_reset(self, method: str) -> None:
        """A RuntimeError if no episode has started (the engine's state is read by every other call)."""
        if self._state is None:
            raise RuntimeError(f"call reset() before {method}()")

    def _info(self, invalid: bool, engine_error: str | None = None) -> dict[str, Any]:
        """The info dict of reset() and step()."""
        info = {**self._outcome(), "invalid": invalid, "task_type": self.task_type, "game_id": self.game_id}
        if engine_error is not None:
            info["engine_error"] = engine_error
        return info


# ── ALFWorld ────────────────────────────────────────────────────────────────────────────────────────────

# Our splits -> ALFWorld's folders. valid_unseen holds the paper's out-of-distribution games (unseen rooms).
ALFWORLD_SPLIT_DIRS = {"train": "train", "eval_in_distribution": "valid_seen",
                       "eval_out_of_distribution": "valid_unseen"}
# ALFWorld's task-type names (traj_data.json) -> ours (envs.TASK_TYPES). ALFWorld's loader skips every other type.
ALFWORLD_TASK_TYPES = {
    "pick_and_place_simple": "pick_and_place",
    "pick_clean_then_place_in_recep": "pick_clean_then_place",
    "pick_heat_then_place_in_recep": "pick_heat_then_place",
    "pick_cool_then_place_in_recep": "pick_cool_then_place",
    "look_at_obj_in_light": "look_at_obj_in_light",
    "pick_two_obj_and_place": "pick_two_obj_and_place",
}
ALFWORLD_BANNER = "-= Welcome to TextWorld, ALFRED! =-"
_ALFWORLD_DATA_HELP = ("get the games with `pip install alfworld==0.4.2 && alfworld-download` on a machine with "
                       "internet (they land in ~/.cache/alfworld), then set ALFWORLD_DATA to the folder that holds "
                       "json_2.1.1/ or pass data_path=...")
_PUT_COMMAND = re.compile(r"^put (.+?) (?:in/on|in|on|into|onto) (.+)$")  # household / ALFWorld <= 0.3 spelling
_MOVE_COMMAND = re.compile(r"^move (.+) to (.+)$")  # ALFWorld 0.4 spelling of the same action


@contextlib.contextmanager
def _keep_sys_argv():
    """fast_downward (the PDDL planner under ALFWorld) overwrites sys.argv each time it parses a problem, i.e. on
    every load and reset of an ALFWorld game; a caller's later argparse would then read the wrong arguments."""
    saved = list(sys.argv)
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _lend_random(module: Any, rng: random.Random):
    """Make `module.random` (the global random module, as the module imported it) be `rng` for a while."""
    saved = module.random
    module.random = rng
    try:
        yield
    finally:
        module.random = saved


def alfworld_data_root(data_path: str | None = None) -> str:
    """The folder holding json_2.1.1/: `data_path`, else $ALFWORLD_DATA. A one-line ValueError if there is none."""
    root = data_path if data_path is not None else os.environ.get("ALFWORLD_DATA")
    if not root:
        raise ValueError(f"ALFWorld game data not found: ALFWORLD_DATA is not set; {_ALFWORLD_DATA_HELP}")
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(os.path.join(root, "json_2.1.1")):
        raise ValueError(f"ALFWorld game data not found: {root} has no json_2.1.1/ folder; {_ALFWORLD_DATA_HELP}")
    return root


@dataclasses.dataclass(frozen=True)
class AlfworldGame:
    """One game of a split, as listed by alfworld_games()."""

    game_id: str    # "alfworld/valid_unseen/<task folder>/<trial>": the game's path under json_2.1.1/
    game_file: str  # .../game.tw-pddl: PDDL domain + problem + text grammar, as ALFWorld ships them
    task_type: str  # one of envs.TASK_TYPES
    task: str       # the goal sentence in the game's grammar ("put a cellphone in bed."); reset() confirms it


_ALFWORLD_GAMES: dict[tuple[str, str], list[AlfworldGame]] = {}


def alfworld_games(split: str, data_path: str | None = None) -> list[AlfworldGame]:
    """The solvable games of a split, sorted by path: make("alfworld", split, seed) plays element `seed`.

    The filter is ALFWorld's own (AlfredTWEnv.collect_game_files), so the counts match its papers (e.g. 134
    games in valid_unseen): a traj_data.json of one of the six task types next to a game.tw-pddl marked
    solvable, and no 'movable' or 'Sliced' in the path. Cached per process: the first call reads every game
    file of the split (seconds for the 3,553 train games)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = alfworld_data_root(data_path)
    if (root, split) in _ALFWORLD_GAMES:
        return _ALFWORLD_GAMES[(root, split)]
    base = os.path.join(root, "json_2.1.1")
    split_dir = os.path.join(base, ALFWORLD_SPLIT_DIRS[split])
    games = []
    for folder, _, files in os.walk(split_dir):
        relative = os.path.relpath(folder, base).replace(os.sep, "/")
        if "traj_data.json" not in files or "game.tw-pddl" not in files:
            continue
        if "movable" in relative or "Sliced" in relative:
            continue
        with open(os.path.join(folder, "traj_data.json"), encoding="utf-8") as f:
            task_type = ALFWORLD_TASK_TYPES.get(json.load(f).get("task_type"))
        if task_type is None:
            continue
        game_file = os.path.join(folder, "game.tw-pddl")
        with open(game_file, encoding="utf-8") as f:
            game = json.load(f)
        if not game.get("solvable"):
            continue
        # alfworld-generate wrote the goal sentence into the grammar ("Your task is to: put a mug in cabinet.")
        match = re.search(r"Your task is to: ([^\"\n]*)", game.get("grammar", ""))
        games.append(AlfworldGame(f"alfworld/{relative}", game_file, task_type, match.group(1) if match else ""))
    if not games:  # not cached: the games may be generated later in the same process
        raise ValueError(f"ALFWorld game data not found: no solvable games under {split_dir}; {_ALFWORLD_DATA_HELP}")
    games.sort(key=lambda g: g.game_id)
    _ALFWORLD_GAMES[(root, split)] = games
    return games


def _alfworld_modules(data_root: str) -> tuple[Any, Any, Any, Any]:
    """(textworld, AlfredDemangler, HandCodedTWAgent, the handcoded expert's module), imported on first use.

    `import alfworld` creates ~/.cache/alfworld and sets $ALFWORLD_DATA to it when the variable is unset
    (alfworld/info.py). We resolve the data folder ourselves, so during the import the variable points at our
    folder (no stray directory) and afterwards it is what it was before."""
    before = os.environ.get("ALFWORLD_DATA")
    os.environ["ALFWORLD_DATA"] = data_root
    try:
        _import_optional("alfworld", "alfworld", ALFWORLD_PIP)
        textworld = _import_optional("textworld", "alfworld", ALFWORLD_PIP)
        tw_env = importlib.import_module("alfworld.agents.environment.alfred_tw_env")
        expert = importlib.import_module("alfworld.agents.expert.handcoded_expert_tw")
        handcoded = importlib.import_module("alfworld.agents.expert.handcoded_expert")
    finally:
        if before is None:
            os.environ.pop("ALFWORLD_DATA", None)
        else:
            os.environ["ALFWORLD_DATA"] = before
    return textworld, tw_env.AlfredDemangler, expert.HandCodedTWAgent, handcoded


class AlfworldEnv(EngineEnv):
    """One ALFWorld game, played by ALFWorld's own text engine (TextWorld's PDDL backend with ALFWorld's domain
    and grammar), with ALFWorld's handcoded expert for demonstrations. Same protocol as HouseholdEnv.

        env = make("alfworld", "eval_out_of_distribution", seed=0)   # game 0 of valid_unseen
        obs, info = env.reset(); obs, reward, done, info = env.step("go to cabinet 1")

    Every action reaches the engine, which answers "Nothing happens." to anything not admissible. The engine's
    admissible commands spell putting as 'move X to Y' (ALFWorld 0.4); 'put X in/on Y' is accepted too.
    """

    env_name = "alfworld"
    _guard = staticmethod(_keep_sys_argv)  # the planner parses PDDL on every load, reset and step

    def __init__(self, split: str = "train", seed: int = 0, data_path: str | None = None, max_steps: int = 30):
        self._check_seed(seed)
        self._check_max_steps(max_steps)
        games = alfworld_games(split, data_path)  # ValueError (how to get the data) when there are none
        if not 0 <= seed < len(games):
            raise IndexError(f"alfworld split {split!r} ({ALFWORLD_SPLIT_DIRS[split]}) has {len(games)} games: "
                             f"seed must be in 0..{len(games) - 1}, got {seed}")
        self._data_root = alfworld_data_root(data_path)
        # a missing package fails here, at make(), not at the first reset
        self._textworld, self._demangler, self._expert_class, self._handcoded = _alfworld_modules(self._data_root)
        super().__init__(split, seed, max_steps)
        game = games[seed]
        self.game_id, self.game_file, self.task_type = game.game_id, game.game_file, game.task_type
        self.task = game.task

    def expert_action(self) -> tuple[str, str]:
        """(REASON, ACTION) from ALFWorld's handcoded expert, which searches the room the way the household expert
        does (it knows only what it has seen, plus priors of where objects are). When its proposal is not
        admissible (it can lose track after unexpected actions), the engine's PDDL planner gives the next step of
        a shortest plan from the true state instead (ALFWorld's 'planner' expert, which sees everything)."""
        self._require_reset("expert_action")
        admissible = self.admissible_commands
        proposal = self._expert_next
        if proposal is not None and proposal in admissible:
            return self._expert_reason(proposal), proposal
        plan = self._plan()
        if plan and plan[0] in admissible:
            return f"Following the plan: {_plan_text(plan)}.", plan[0]
        return "I look around.", "look"

    # ── the engine-specific parts ──────────────────────────────────────────────────────────────────
    def _load_engine(self) -> Any:
        """ALFWorld's engine with the state facts its expert reads and ALFWorld's object names."""
        # facts: the handcoded expert reads the true state's predicates (what it holds, what is hot, ...)
        infos = self._textworld.EnvInfos(won=True, admissible_commands=True, facts=True)
        # the demangler turns PDDL ids (Mug_bar__minus_01_dot_...) into ALFWorld's names ("mug 1")
        return self._textworld.start(self.game_file, infos, wrappers=[self._demangler(shuffle=False)])

    def _first_observation(self) -> str:
        """Start the handcoded expert; the intro without its banner, ending with the task."""
        # ALFWorld's handcoded expert: it reads the task parameters from the traj_data.json beside the game file
        # and the receptacles from the raw intro text (the one with the "Welcome" banner).
        self._expert = self._expert_class(max_steps=200)
        self._expert.reset(self.game_file)
        self._expert.observe(self._state["feedback"])
        self._expert_rng = random.Random(self.game_id)
        self._expert_next: str | None = "look"  # its first subgoal is always to look around (as in AlfredExpert)
        observation = _tidy(self._state["feedback"].replace(ALFWORLD_BANNER, ""))
        match = re.search(r"\n\nYour task is to: (.*)$", observation)
        if match:
            self.task = match.group(1).strip()
        return observation

    def _engine_command(self, command: str) -> str:
        """The engine's spelling of a command. ALFWorld 0.4 says 'move X to Y' where ALFWorld 0.3, most published
        ALFWorld prompts and the household game say 'put X in/on Y': both are accepted, so a policy trained on
        one runs on the other."""
        admissible = self._state["admissible_commands"]
        exact = _match_admissible(command, admissible)
        if exact is not None:
            return exact
        put = _PUT_COMMAND.match(command)
        if put:
            moved = _match_admissible(f"move {put.group(1)} to {put.group(2)}", admissible)
            if moved is not None:
                return moved
        return command  # not admissible: the engine answers "Nothing happens."

    def _read_step(self, command: str, state: Any) -> tuple[str, bool]:
        """The engine's text; "Nothing happens." is its answer to anything not admissible."""
        observation = _tidy(state["feedback"])
        return observation, observation == NOTHING_HAPPENS

    def _after_step(self, command: str | None, invalid: bool) -> None:
        """Let the expert see the step, unless the episode is over or the action changed nothing."""
        if not self.done and not invalid:  # an invalid action changed nothing, so the expert's next move stands
            self._advance_expert(command)

    # ── the expert ─────────────────────────────────────────────────────────────────────────────────
    def _advance_expert(self, command: str) -> None:
        """Tell ALFWorld's handcoded expert what was just done and ask it for its next action.

        The expert keeps its own beliefs (where it is, what it holds, where it saw what), updated from the last
        action and observation, so it must see every step, whoever chose the action. Two fixes around it:
        - ALFWorld 0.4.2's grammar says 'move X to Y' but the expert's tracker still waits for 'put': it never
          empties its hands, and its second put in a pick_two task names an object it no longer holds. We tell
          it the action in the old spelling.
        - it breaks ties with the global `random` module; we lend it a generator seeded by the game id, so that
          demonstrations are reproducible and the caller's random state is left alone."""
        told = _MOVE_COMMAND.sub(r"put \1 in/on \2", command)
        try:
            with _lend_random(self._handcoded, self._expert_rng):
                self._expert_next = self._expert.act(self._state, 0, self.won, told)
        except Exception:  # HandCodedAgentTimeout / HandCodedAgentFailed / its own bugs: the planner takes over
            self._expert_next = None

    def _expert_reason(self, action: str) -> str:
        """The REASON for the handcoded expert's action: its current subgoal."""
        if self.steps == 0 and action == "look":
            return "First I look around the room."
        policy = getattr(self._expert, "policy", None)
        try:
            subgoal = policy.subgoals[policy.subgoal_idx]
            goal = f"{subgoal['action']} {subgoal['param']}".strip()
        except (AttributeError, IndexError, KeyError, TypeError):
            return f"Following the plan: {action}."
        return f"My current subgoal is: {goal}. Next step: {action}."

    def _plan(self) -> list[str]:
        """A shortest winning plan from the current state, by the engine's planner ([] if there is none).
        TextWorld's PddlEnv computes its policy_commands the same way; we ask only when the handcoded expert has
        no admissible answer, because on full-size ALFWorld games a plan can take seconds."""
        try:
            with _keep_sys_argv():
                return list(self._engine._pddl_state.replan(self._engine._entity_infos))
        except Exception:  # no plan (or a planner failure) means no plan: the caller looks around instead
            return []


# ── TextWorld ───────────────────────────────────────────────────────────────────────────────────────────

# kind -> generator options and their defaults (small games: one room for cooking, four for quests).
TEXTWORLD_KINDS: dict[str, dict[str, Any]] = {
    # TextWorld's cooking challenge ("tw-cooking", the First TextWorld Problems games): read the cookbook, gather
    # `take` of the `recipe` ingredients over `go` rooms (1, 6, 9 or 12), open containers, cook, cut, then
    # prepare and eat the meal. Ingredients can be ruined (e.g. burnt), which loses the game.
    "cooking": {"recipe": 1, "take": 1, "go": 1, "open": True, "cook": False, "cut": False, "drop": False},
    # a custom quest from textworld.generator: a random world of `nb_rooms` rooms and `nb_objects` objects and
    # a chain of `quest_length` actions to perform ("go south, take the keycard, unlock the box").
    "quest": {"nb_rooms": 4, "nb_objects": 8, "quest_length": 4},
}
_TEXTWORLD_ATTEMPTS = 100  # generation retries per seed (a retry is rare; see TextWorldEnv._generate)
# TextWorld's cooking generator has food splits of its own: the out-of-distribution split uses its "test" foods
# (and unseen ways to prepare the training foods). Quests have no such split: only the seeds differ.
_COOKING_FOOD_SPLITS = {"train": "train", "eval_in_distribution": "train", "eval_out_of_distribution": "test"}
_TEXTWORLD_STATUS_LINE = re.compile(r"\s*>\s*(?:-=.*?=-\s*-?\d+/\d+)?\s*$")  # "\n\n>   -= Kitchen =-1/4"
_TEXTWORLD_RESTART = "Would you like to RESTART, RESTORE a saved game, QUIT or UNDO the last command?"
_BANNER_LINE = re.compile(r"^[\s$_|\\/<>()-]+$")  # a line of the ASCII-art banner


@contextlib.contextmanager
def _quiet_jericho():
    """TextWorld runs its .z8 games on jericho's interpreter, which warns that they are not among the games it
    knows ("not fully supported. Score, move, change detection will be disabled"); TextWorld tracks the score
    itself, so the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is not fully supported.*")
        yield


def textworld_cache_dir() -> str:
    """Where generated TextWorld games are kept: $PRM_AGENTS_CACHE/textworld, else ~/.cache/prm-agents/textworld."""
    root = os.environ.get("PRM_AGENTS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "prm-agents")
    return os.path.join(root, "textworld")


def _textworld_tag(kind: str, options: dict[str, Any]) -> str:
    """A readable name for the generator options, e.g. 'recipe1+take1+go1+open' (part of the game id)."""
    if kind == "quest":
        return f"rooms{options['nb_rooms']}+objects{options['nb_objects']}+length{options['quest_length']}"
    parts = []
    for key, value in options.items():
        if isinstance(value, bool):
            parts += [key] if value else []
        else:
            parts.append(f"{key}{value}")
    return "+".join(parts)


class TextWorldEnv(EngineEnv):
    """A TextWorld game generated offline from (split, seed) by TextWorld's own generators, then cached on disk
    (the .z8 story file with its .json beside it). Same protocol as HouseholdEnv.

        env = make("textworld", "train", seed=3)                             # a small cooking game
        env = make("textworld", "train", seed=3, kind="quest", quest_length=5)

    Splits get disjoint generator seeds (the split is the generator seed modulo 3), so no game is in two splits.
    The game id names the options too: the same id is the same game (for a given TextWorld version, pinned in
    requirements-envs.txt); prm_agents.json beside the game records how it was made. Only admissible commands
    reach the engine; anything else is answered "Nothing happens." as in ALFWorld (this also keeps parser
    meta-commands such as 'restart' or 'quit' away from it). The expert follows the game's walkthrough while the
    episode is on it, and TextWorld's winning policy from the current state once the episode has left it.
    """

    env_name = "textworld"

    def __init__(self, split: str = "train", seed: int = 0, kind: str = "cooking", max_steps: int = 30,
                 cache_dir: str | None = None, **options: Any):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self._check_seed(seed)
        if not 0 <= seed < 10_000_000:  # TextWorld's generator takes 32-bit seeds (see _generate)
            raise ValueError(f"seed must be in 0..9999999, got {seed}")
        self._check_max_steps(max_steps)
        if kind not in TEXTWORLD_KINDS:
            raise ValueError(f"unknown textworld kind {kind!r}; choose one of {', '.join(TEXTWORLD_KINDS)}")
        unknown = sorted(set(options) - set(TEXTWORLD_KINDS[kind]))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for textworld kind {kind!r}; "
                             f"choose from {', '.join(TEXTWORLD_KINDS[kind])}")
        super().__init__(split, seed, max_steps)
        self.kind, self.task_type = kind, kind
        self.options = {**TEXTWORLD_KINDS[kind], **options}
        tag = _textworld_tag(kind, self.options)
        self.game_id = f"textworld/{kind}-{tag}/{split}/{seed}"
        self.cache_dir = cache_dir or textworld_cache_dir()
        self.game_file = os.path.join(self.cache_dir, f"{kind}-{tag}", f"{split}-{seed}", "game.z8")
        self._textworld = _import_optional("textworld", "textworld", TEXTWORLD_PIP)
        if not os.path.isfile(self.game_file):
            self._generate()
        self.task = self._objective_from_json()  # reset() reads it from the engine too

    def expert_action(self) -> tuple[str, str]:
        """(REASON, ACTION): the walkthrough while the episode follows it (it reads the cookbook first, like a
        person would), else the first command of TextWorld's winning policy from the current state."""
        self._require_reset("expert_action")
        admissible = self.admissible_commands
        k = len(self._taken)
        if self._on_walkthrough and k < len(self._walkthrough) and self._walkthrough[k] in admissible:
            return (f"Following the walkthrough, step {k + 1} of {len(self._walkthrough)}: "
                    f"{self._walkthrough[k]}.", self._walkthrough[k])
        policy = list(self._state.get("policy_commands") or [])
        if policy and policy[0] in admissible:
            return f"The plan from here: {_plan_text(policy)}.", policy[0]
        return "I see no way to win from here; I look around.", "look"

    # ── generation ─────────────────────────────────────────────────────────────────────────────────
    def _generate(self) -> None:
        """Generate, compile and check the game (2-5 s) in a temporary folder, then move it into place, so that an
        interrupted or concurrent generation never leaves a half-written game in the cache.

        Some generated games cannot be won by their own walkthrough (e.g. two objects the Inform 7 parser cannot
        tell apart: "Which do you mean, the locker or the type 0 locker?"). Like the household game, generation
        then retries with the next seed, deterministically, so `seed` always gives the same playable game."""
        import textworld.challenges  # registers tw-cooking; part of the textworld package
        import textworld.generator

        tw = self._textworld
        game_dir = os.path.dirname(self.game_file)
        os.makedirs(os.path.dirname(game_dir), exist_ok=True)
        for attempt in range(_TEXTWORLD_ATTEMPTS):
            # disjoint across splits (the split is the seed modulo 3) and across (seed, attempt) pairs
            generator_seed = (self.seed * _TEXTWORLD_ATTEMPTS + attempt) * len(SPLITS) + SPLITS.index(self.split)
            with tempfile.TemporaryDirectory(dir=os.path.dirname(game_dir), prefix=".generating-") as tmp, \
                    _quiet_jericho():
                options = tw.GameOptions()
                options.seeds = generator_seed  # every random choice of the generator derives from it
                options.path = os.path.join(tmp, "game", "game.z8")
                options.force_recompile = True
                if self.kind == "cooking":
                    settings = {**self.options, "recipe_seed": 0, "split": _COOKING_FOOD_SPLITS[self.split]}
                    game = textworld.challenges.CHALLENGES["tw-cooking"][1](settings, options)
                else:
                    options.nb_rooms = self.options["nb_rooms"]
                    options.nb_objects = self.options["nb_objects"]
                    options.quest_length = self.options["quest_length"]
                    game = textworld.generator.make_game(options)
                game_file = textworld.generator.compile_game(game, options)  # game.z8 + game.json (+ game.ni)
                if not self._walkthrough_wins(game_file):
                    continue
                with open(os.path.join(tmp, "game", "prm_agents.json"), "w", encoding="utf-8") as f:
                    json.dump({"game_id": self.game_id, "generator_seed": generator_seed, "attempt": attempt,
                               "textworld": getattr(tw, "__version__", "?")}, f, indent=1)
                try:
                    os.rename(os.path.join(tmp, "game"), game_dir)
                except OSError:  # another process finished the same game first: theirs is identical
                    if not os.path.isfile(self.game_file):
                        raise
                return
        raise RuntimeError(f"could not generate a winnable game for {self.game_id} in {_TEXTWORLD_ATTEMPTS} tries")

    def _walkthrough_wins(self, game_file: str) -> bool:
        """Does the game's walkthrough, played through admissible commands only (as this class plays), win?"""
        with _quiet_jericho():
            engine = self._textworld.start(game_file, self._textworld.EnvInfos(admissible_commands=True, won=True,
                                                                              extras=["walkthrough"]))
        try:
            state = engine.reset()
            for command in state.get("extra.walkthrough") or []:
                if command not in state["admissible_commands"]:
                    return False
                state, _, _ = engine.step(command)
            return bool(state["won"])
        finally:
            engine.close()

    def _objective_from_json(self) -> str:
        """The objective from TextWorld's game description beside the .z8 ("" if it cannot be read)."""
        try:
            with open(os.path.splitext(self.game_file)[0] + ".json", encoding="utf-8") as f:
                return _tidy(json.load(f).get("objective", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    # ── the engine-specific parts ──────────────────────────────────────────────────────────────────
    def _load_engine(self) -> Any:
        """TextWorld's engine with the walkthrough and winning policy the expert follows."""
        infos = self._textworld.EnvInfos(admissible_commands=True, policy_commands=True, won=True, lost=True,
                                         objective=True, extras=["walkthrough"])
        with _quiet_jericho():
            return self._textworld.start(self.game_file, infos)

    def _first_observation(self) -> str:
        """Start following the walkthrough; the intro without banner and status line, ending with the task."""
        self.task = _tidy(self._state["objective"]) or self.task
        self._walkthrough = list(self._state.get("extra.walkthrough") or [])
        self._taken: list[str] = []  # commands the engine executed this episode (are we on the walkthrough?)
        self._on_walkthrough = True
        return f"{self._text(self._state['feedback'], intro=True)}\n\nYour task is to: {self.task}"

    def _engine_command(self, command: str) -> str | None:
        """The admissible command it names, else None: only admissible commands reach the engine."""
        return _match_admissible(command, self._state["admissible_commands"]) if command else None

    def _read_step(self, command: str, state: Any) -> tuple[str, bool]:
        """The engine's tidied text; note whether the episode still follows the walkthrough and whether it is lost."""
        self._follow(command)
        self.lost = bool(state["lost"])
        return self._text(state["feedback"]) or NOTHING_HAPPENS, False

    def _begin_episode(self) -> None:
        """Zero the counters; TextWorld games can also be lost."""
        super()._begin_episode()
        self.lost = False

    def _outcome(self) -> dict[str, bool]:
        """Won or lost: either ends the episode."""
        return {"won": self.won, "lost": self.lost}

    # ── helpers ────────────────────────────────────────────────────────────────────────────────────
    def _follow(self, command: str) -> None:
        """Record an executed command; leaving the walkthrough once is leaving it for the episode."""
        k = len(self._taken)
        if k >= len(self._walkthrough) or self._walkthrough[k] != command:
            self._on_walkthrough = False
        self._taken.append(command)

    def _text(self, feedback: str, intro: bool = False) -> str:
        """The engine's text without the trailing prompt/status line ('>  -= Kitchen =-1/4') and the end-of-game
        RESTART question; the intro also loses the ASCII-art banner and the objective (shown as the task)."""
        text = _TEXTWORLD_STATUS_LINE.sub("", str(feedback)).replace(_TEXTWORLD_RESTART, "")
        if intro:
            objective = str(self._state.get("objective") or "").strip()
            if objective and objective in text:
                text = text.split(objective, 1)[1]  # the banner comes before the objective
            else:
                text = "\n".join(line for line in text.split("\n") if not _BANNER_LINE.match(line))
        return _tidy(text)
