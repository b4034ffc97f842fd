"""Text environments for LLM agents, and the agent loop shared by every algorithm.

What is here (pure Python, no torch, so it can be read and tested on its own):

1. ``HouseholdEnv`` — a procedurally generated household game that speaks ALFWorld's language
   ("You arrive at cabinet 1. The cabinet 1 is closed.", "put mug 1 in/on cabinet 1", ...), with ALFWorld's
   six task types, sparse 0/1 outcome reward, admissible commands, and a non-privileged searching expert
   that writes a short REASON for every ACTION. ALFWorld's game files cannot be downloaded offline; this
   game can be generated anywhere, from a seed, in microseconds. ``make("household-compact", ...)`` is its
   compact preset (``CompactHouseholdEnv``: smaller rooms, fewer distractors, 15 actions per episode).
2. A registry: ``make(name, split, seed)`` and ``register(name, factory)`` for your own environments. It also
   holds the real engines ``make("alfworld", ...)`` (the paper's benchmark) and ``make("textworld", ...)``, whose
   adapters live in real_envs.py (optional packages, imported only when used; see requirements-envs.txt).
3. The agent loop: ``build_messages`` (the prompt), ``parse_response`` (REASON/ACTION → action),
   ``rollout`` (steps many episodes at once, calling the policy once per step with every live prompt),
   and the JSON-able ``Trajectory`` records that the algorithms consume.

    python envs.py --task-type pick_heat_then_place --seed 3      # play a game in the terminal
    python envs.py --expert --seed 3                               # watch the expert
    python envs.py --stats 500                                     # expert / random success per split
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import random
import re
import sys
from typing import Any, Callable, Iterable, Protocol, Sequence

# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# The household world: receptacles, objects, where objects usually are, which rooms have what
# ──────────────────────────────────────────────────────────────────────────────────────────────────────

TASK_TYPES = (
    "pick_and_place",
    "pick_clean_then_place",
    "pick_heat_then_place",
    "pick_cool_then_place",
    "look_at_obj_in_light",
    "pick_two_obj_and_place",
)
SPLITS = ("train", "eval_in_distribution", "eval_out_of_distribution")
NOTHING_HAPPENS = "Nothing happens."
EPISODE_OVER = "The episode is over."  # the answer to any action after the episode ended
OPENABLE = {"cabinet", "drawer", "fridge", "microwave", "safe"}
APPLIANCE = {"clean": "sinkbasin", "heat": "microwave", "cool": "fridge"}
LAMP_HOSTS = ("desk", "sidetable", "dresser")  # where a desklamp can stand (the expert's search prior)

# Receptacle type -> (min, max) instances, per room type. Rooms guarantee what their tasks need.
ROOMS: dict[str, dict[str, tuple[int, int]]] = {
    "kitchen": {
        "cabinet": (2, 4), "drawer": (1, 3), "countertop": (1, 2), "diningtable": (0, 1), "fridge": (1, 1),
        "microwave": (1, 1), "sinkbasin": (1, 1), "stoveburner": (1, 2), "coffeemachine": (0, 1),
        "toaster": (0, 1), "garbagecan": (1, 1), "shelf": (0, 1),
    },
    "livingroom": {
        "sofa": (1, 1), "armchair": (0, 1), "coffeetable": (1, 1), "sidetable": (1, 2), "tvstand": (0, 1),
        "drawer": (1, 2), "cabinet": (1, 2), "shelf": (1, 2), "garbagecan": (1, 1), "dresser": (0, 1),
    },
    "bedroom": {
        "bed": (1, 1), "desk": (0, 1), "dresser": (0, 1), "drawer": (1, 3), "shelf": (1, 2),
        "sidetable": (1, 2), "garbagecan": (1, 1), "safe": (0, 1), "armchair": (0, 1),
    },
    "bathroom": {
        "countertop": (1, 1), "sinkbasin": (1, 1), "cabinet": (1, 3), "drawer": (0, 2), "toilet": (1, 1),
        "towelholder": (0, 1), "handtowelholder": (0, 1), "shelf": (0, 1), "garbagecan": (1, 1),
        "bathtubbasin": (0, 1), "toiletpaperhanger": (1, 1),
    },
}

# The compact preset ("household-compact"): the same rooms with at most one of each kind of receptacle and fewer
# distractors, so episodes are short (the expert needs ~7 actions, at most 15 are allowed) and a CPU can run the
# official recipe's thousands of episodes (README, Environments).
COMPACT_ROOMS: dict[str, dict[str, tuple[int, int]]] = {
    "kitchen": {"cabinet": (1, 1), "drawer": (0, 1), "countertop": (1, 1), "fridge": (1, 1), "microwave": (1, 1),
                "sinkbasin": (1, 1), "diningtable": (0, 1), "stoveburner": (0, 1)},
    "livingroom": {"sofa": (1, 1), "coffeetable": (1, 1), "sidetable": (1, 1), "drawer": (0, 1), "shelf": (0, 1),
                   "cabinet": (0, 1)},
    "bedroom": {"bed": (1, 1), "desk": (0, 1), "drawer": (1, 1), "shelf": (0, 1), "sidetable": (1, 1),
                "dresser": (0, 1)},
    "bathroom": {"countertop": (1, 1), "sinkbasin": (1, 1), "cabinet": (1, 1), "toilet": (1, 1),
                 "towelholder": (0, 1), "garbagecan": (0, 1)},
}

# Where things usually are: object categories share a common-sense prior over receptacle types, most likely
# first (weights). This is what the expert searches by ("mugs are often in cabinets") and what a learner can
# pick up from demonstrations; sharing it per category keeps it learnable from a few hundred episodes.
CATEGORY_PRIORS: dict[str, tuple[tuple[str, int], ...]] = {
    "dishes": (("cabinet", 4), ("countertop", 2), ("diningtable", 2), ("shelf", 1), ("sinkbasin", 1)),
    "cookware": (("stoveburner", 4), ("countertop", 2), ("cabinet", 2)),
    "utensils": (("drawer", 4), ("countertop", 2), ("diningtable", 2), ("sinkbasin", 1)),
    "food": (("fridge", 4), ("countertop", 2), ("diningtable", 2), ("garbagecan", 1)),
    "toiletries": (("cabinet", 3), ("countertop", 2), ("shelf", 1), ("toilet", 1), ("bathtubbasin", 1)),
    "linens": (("towelholder", 3), ("handtowelholder", 3), ("cabinet", 1)),
    "small things": (("drawer", 3), ("desk", 2), ("sidetable", 2), ("dresser", 2), ("shelf", 1), ("safe", 1)),
    "decorations": (("shelf", 3), ("sidetable", 2), ("dresser", 2), ("coffeetable", 2), ("desk", 1)),
    "lounge things": (("sofa", 3), ("coffeetable", 2), ("armchair", 2), ("bed", 2), ("tvstand", 1)),
}
CATEGORIES: dict[str, tuple[str, ...]] = {
    "dishes": ("mug", "cup", "plate", "bowl"),
    "cookware": ("pan", "pot", "kettle"),
    "utensils": ("knife", "spoon", "fork", "spatula"),
    "food": ("apple", "potato", "tomato", "egg", "bread", "lettuce", "winebottle"),
    "toiletries": ("soapbar", "cloth", "spraybottle", "toiletpaper", "soapbottle", "candle"),
    "linens": ("towel", "handtowel"),
    "small things": ("keychain", "creditcard", "cd", "pen", "pencil", "watch", "cellphone"),
    "decorations": ("vase", "statue", "box", "alarmclock", "tissuebox", "book"),
    "lounge things": ("pillow", "remotecontrol", "laptop", "newspaper"),
}
PRIORS: dict[str, tuple[tuple[str, int], ...]] = {
    obj: CATEGORY_PRIORS[category] for category, objects in CATEGORIES.items() for obj in objects
}
CLEANABLE = {"mug", "cup", "plate", "bowl", "apple", "potato", "tomato", "egg", "lettuce", "pan", "pot", "kettle",
             "knife", "spoon", "fork", "spatula", "soapbar", "cloth"}
HEATABLE = {"mug", "cup", "plate", "bowl", "apple", "potato", "tomato", "egg", "bread"}
COOLABLE = {"mug", "cup", "plate", "bowl", "apple", "potato", "tomato", "egg", "bread", "lettuce", "pan", "pot",
            "winebottle"}
LOOKABLE = {"book", "cellphone", "keychain", "creditcard", "cd", "pen", "pencil", "alarmclock", "pillow",
            "remotecontrol", "watch", "laptop", "vase", "statue", "box", "newspaper", "tissuebox"}
# Places that only make sense for a few objects (nobody is asked to put an apple in the toaster).
SPECIAL_TARGETS = {"toaster": {"bread"}, "coffeemachine": {"mug", "cup"}, "stoveburner": {"pan", "pot", "kettle"},
                   "toiletpaperhanger": {"toiletpaper"}, "towelholder": {"towel"}, "handtowelholder": {"handtowel"}}


def is_held_out_pair(object_type: str, target: str) -> bool:
    """The out-of-distribution split uses (object, target) pairings that train never sees (~1 in 5)."""
    digest = hashlib.sha256(f"{object_type}|{target}".encode()).digest()
    return digest[0] % 5 == 0


_IRREGULAR_PLURALS = {"shelf": "shelves", "knife": "knives", "potato": "potatoes", "tomato": "tomatoes",
                      "box": "boxes", "watch": "watches", "bathtubbasin": "bathtubbasins"}


def _plural(word: str) -> str:
    return _IRREGULAR_PLURALS.get(word, word + "s")


def _a_list(names: Sequence[str]) -> str:
    """ALFWorld's list style: 'a mug 1', 'a mug 1, and a cup 2', 'a mug 1, a cup 2, and a fork 1'."""
    items = [f"a {n}" for n in names]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# HouseholdEnv: the game
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class _Obj:
    type: str
    location: str  # a receptacle name, or "agent" when held
    clean: bool = False
    hot: bool = False
    cool: bool = False
    takeable: bool = True


_COMMAND_PATTERNS = [
    ("goto", re.compile(r"^go to (.+)$")),
    ("open", re.compile(r"^open (.+)$")),
    ("close", re.compile(r"^close (.+)$")),
    ("take", re.compile(r"^(?:take|pick up) (.+?) from (.+)$")),
    ("put", re.compile(r"^(?:put (.+?) (?:in/on|in|on|into|onto) (.+)|move (.+?) to (.+))$")),
    ("clean", re.compile(r"^clean (.+?) with (.+)$")),
    ("heat", re.compile(r"^heat (.+?) with (.+)$")),
    ("cool", re.compile(r"^cool (.+?) with (.+)$")),
    ("use", re.compile(r"^(?:use|toggle|turn on) (.+)$")),
    ("examine", re.compile(r"^(?:examine|x) (.+)$")),
    ("look", re.compile(r"^(?:look|l)$")),
    ("inventory", re.compile(r"^(?:inventory|inv|i)$")),
]
MAX_COMMAND_CHARS = 200  # longer input is garbage, not a command


def normalize_command(command: str) -> str:
    """Lower-case, collapse whitespace, drop a trailing period or quotes: 'Go  to Cabinet 1.' -> 'go to cabinet 1'."""
    command = " ".join(str(command).split()).lower()
    return command.strip(" .'\"`")


class HouseholdEnv:
    """One household game. ``HouseholdEnv(split, seed)`` always builds the same game on any machine.

    API (the protocol every environment in the registry follows, see ``TextEnv``):
        obs, info = env.reset()
        obs, reward, done, info = env.step("go to cabinet 1")
        env.admissible_commands, env.won, env.task, env.task_type, env.game_id
        reason, action = env.expert_action()
    """

    env_name = "household"
    default_max_steps = 30  # the paper's episode length
    rooms = ROOMS  # receptacle counts per room type
    distractors = (4, 10)  # (min, max) objects placed besides the task's

    def __init__(self, split: str = "train", seed: int = 0, task_type: str | None = None,
                 max_steps: int | None = None):
        max_steps = self.default_max_steps if max_steps is None else max_steps
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
        if task_type is not None and task_type not in TASK_TYPES:
            raise ValueError(f"unknown task type {task_type!r}; choose one of {', '.join(TASK_TYPES)}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        self.split, self.seed, self.max_steps = split, seed, max_steps
        self.game_id = f"{self.env_name}/{split}/{seed}" + (f"/{task_type}" if task_type else "")
        self._generate(task_type or TASK_TYPES[seed % len(TASK_TYPES)])

    # ── generation ──────────────────────────────────────────────────────────────────────────────────
    def _generate(self, task_type: str) -> None:
        """Sample layouts until the expert solves the game within max_steps (deterministic: seeded retries)."""
        for attempt in range(1000):
            rng = random.Random(f"{self.env_name}|{self.split}|{self.seed}|{task_type}|{attempt}")
            if self._sample_game(rng, task_type):
                self.reset()
                if self._expert_solves():
                    return
        # never seen with max_steps=30; a much smaller max_steps rules out the layouts that need a longer search
        raise ValueError(f"no layout of {self.game_id} that the expert solves within max_steps={self.max_steps} "
                         f"(1000 tried): use a larger max_steps")

    def _sample_game(self, rng: random.Random, task_type: str) -> bool:
        self.task_type = task_type
        need = {"pick_clean_then_place": "sinkbasin", "pick_heat_then_place": "microwave",
                "pick_cool_then_place": "fridge"}.get(task_type)
        rooms = [r for r in self.rooms if need is None or need in self.rooms[r]]
        if task_type == "look_at_obj_in_light":
            rooms = ["livingroom", "bedroom"]
        room = rng.choice(rooms)
        counts = {rt: rng.randint(lo, hi) for rt, (lo, hi) in self.rooms[room].items()}
        if task_type == "look_at_obj_in_light" and not any(counts.get(h, 0) for h in LAMP_HOSTS):
            counts["sidetable"] = 1
        self.receptacles = [f"{rt} {i}" for rt, n in counts.items() for i in range(1, n + 1)]
        self.rtype = {r: r.rsplit(" ", 1)[0] for r in self.receptacles}
        present = {rt for rt, n in counts.items() if n > 0}

        def spawn_types(obj_type: str, exclude: str | None = None) -> list[tuple[str, int]]:
            # an object only appears in rooms that have one of its two most likely places (no bread in bedrooms)
            if not any(rt in present for rt, _ in PRIORS[obj_type][:2]):
                return []
            return [(rt, w) for rt, w in PRIORS[obj_type] if rt in present and rt != exclude]

        # (object, target) candidates for this task in this room, restricted to the split's pairings
        property_set = {"pick_clean_then_place": CLEANABLE, "pick_heat_then_place": HEATABLE,
                        "pick_cool_then_place": COOLABLE, "look_at_obj_in_light": LOOKABLE}.get(task_type)
        candidates = []
        for obj_type in sorted(PRIORS):
            if property_set is not None and obj_type not in property_set:
                continue
            if task_type == "look_at_obj_in_light":
                targets = ["desklamp"]
            else:
                targets = [rt for rt in sorted(present)
                           if obj_type in SPECIAL_TARGETS.get(rt, {obj_type})
                           and rt != APPLIANCE.get(task_type.split("_")[1], "")]
            for target in targets:
                if not spawn_types(obj_type, exclude=target):
                    continue
                if is_held_out_pair(obj_type, target) == (self.split == "eval_out_of_distribution"):
                    candidates.append((obj_type, target))
        if not candidates:
            return False
        self.object_type, self.target = rng.choice(candidates)

        # objects: the task object(s), then distractors, each in a receptacle its prior allows
        self.objects: dict[str, _Obj] = {}
        self.contents: dict[str, list[str]] = {r: [] for r in self.receptacles}
        type_counts: dict[str, int] = {}

        def place(obj_type: str, exclude: str | None, takeable: bool = True, where: list[tuple[str, int]] | None = None):
            options = where or spawn_types(obj_type, exclude)
            rt = rng.choices([o[0] for o in options], weights=[o[1] for o in options])[0]
            recep = rng.choice([r for r in self.receptacles if self.rtype[r] == rt])
            type_counts[obj_type] = type_counts.get(obj_type, 0) + 1
            name = f"{obj_type} {type_counts[obj_type]}"
            self.objects[name] = _Obj(obj_type, recep, takeable=takeable)
            self.contents[recep].append(name)

        target_exclude = None if task_type == "look_at_obj_in_light" else self.target
        n_task_objects = rng.randint(2, 3) if task_type == "pick_two_obj_and_place" else rng.randint(1, 2)
        for _ in range(n_task_objects):
            place(self.object_type, target_exclude)
        if task_type == "look_at_obj_in_light":
            hosts = [(h, 1) for h in LAMP_HOSTS if h in present]
            place("desklamp", None, takeable=False, where=hosts)
        room_objects = sorted(o for o in PRIORS if o != self.object_type and spawn_types(o))
        for _ in range(rng.randint(*self.distractors)):
            place(rng.choice(room_objects), None)
        for names in self.contents.values():
            rng.shuffle(names)
        self._initially_open = {r for r in self.receptacles if self.rtype[r] not in OPENABLE}
        self._start_objects = {n: dataclasses.replace(o) for n, o in self.objects.items()}
        self._start_contents = {r: list(names) for r, names in self.contents.items()}
        self.task = self._task_text(rng)
        return True

    def _task_text(self, rng: random.Random) -> str:
        o, t = self.object_type, self.target
        templates = {
            "pick_and_place": [f"put a {o} in {t}.", f"put some {o} on {t}."],
            "pick_clean_then_place": [f"put a clean {o} in {t}.", f"clean some {o} and put it in {t}."],
            "pick_heat_then_place": [f"put a hot {o} in {t}.", f"heat some {o} and put it in {t}."],
            "pick_cool_then_place": [f"put a cool {o} in {t}.", f"cool some {o} and put it in {t}."],
            "look_at_obj_in_light": [f"look at {o} under the {t}.", f"examine the {o} with the {t}."],
            "pick_two_obj_and_place": [f"put two {o} in {t}.", f"find two {o} and put them in {t}."],
        }[self.task_type]
        return rng.choice(templates)

    def _expert_solves(self) -> bool:
        while not self.done:
            self.step(self.expert_action()[1])
        return self.won

    # ── the protocol ───────────────────────────────────────────────────────────────────────────────
    def reset(self) -> tuple[str, dict[str, Any]]:
        self.objects = {n: dataclasses.replace(o) for n, o in self._start_objects.items()}
        self.contents = {r: list(names) for r, names in self._start_contents.items()}
        self.is_open = set(self._initially_open)
        self.location: str | None = None
        self.lamp_on = False
        self.known: dict[str, tuple[str, ...]] = {}  # receptacle -> contents the agent has SEEN there
        self.steps, self.done, self.won = 0, False, False
        self.observation = (f"You are in the middle of a room. Looking quickly around you, you see "
                            f"{_a_list(self.receptacles)}.\n\nYour task is to: {self.task}")
        return self.observation, self._info(invalid=False)

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self.done:
            return EPISODE_OVER, 0.0, True, self._info(invalid=True)
        command = normalize_command(action) if len(str(action)) <= MAX_COMMAND_CHARS else ""
        feedback = self._execute(command)
        invalid = feedback is None
        self.observation = NOTHING_HAPPENS if invalid else feedback
        self.steps += 1
        reward = 0.0
        if not invalid and self._goal_holds():
            self.won, reward = True, 1.0
        self.done = self.won or self.steps >= self.max_steps
        return self.observation, reward, self.done, self._info(invalid=invalid)

    def _info(self, invalid: bool) -> dict[str, Any]:
        return {"won": self.won, "invalid": invalid, "task_type": self.task_type, "game_id": self.game_id}

    # ── rules ──────────────────────────────────────────────────────────────────────────────────────
    def _accessible(self, recep: str) -> bool:
        return recep in self.is_open

    def _visible_here(self) -> list[str]:
        if self.location is None or not self._accessible(self.location):
            return []
        return self.contents[self.location]

    def _held(self) -> str | None:
        return next((n for n, o in self.objects.items() if o.location == "agent"), None)

    def _describe(self, recep: str) -> str:
        """What the agent sees of an accessible receptacle; also records it in the agent's memory."""
        self.known[recep] = tuple(self.contents[recep])
        seen = _a_list(self.contents[recep]) or "nothing"
        if self.rtype[recep] in OPENABLE:
            return f"The {recep} is open. In it, you see {seen}."
        return f"On the {recep}, you see {seen}."

    def _execute(self, command: str) -> str | None:
        """Apply a normalised command. Returns the feedback text, or None for 'Nothing happens.'"""
        for verb, pattern in _COMMAND_PATTERNS:
            match = pattern.match(command)
            if match:
                args = [g for g in match.groups() if g is not None]
                return getattr(self, f"_do_{verb}")(*args)
        return None

    def _do_goto(self, recep: str) -> str | None:
        if recep not in self.rtype or recep == self.location:
            return None
        self.location = recep
        if not self._accessible(recep):
            return f"You arrive at {recep}. The {recep} is closed."
        return f"You arrive at {recep}. {self._describe(recep)}"

    def _do_open(self, recep: str) -> str | None:
        if recep != self.location or self.rtype[recep] not in OPENABLE or recep in self.is_open:
            return None
        self.is_open.add(recep)
        return f"You open the {recep}. {self._describe(recep)}"

    def _do_close(self, recep: str) -> str | None:
        if recep != self.location or self.rtype[recep] not in OPENABLE or recep not in self.is_open:
            return None
        self.is_open.discard(recep)
        return f"You close the {recep}."

    def _do_take(self, obj: str, recep: str) -> str | None:
        if recep != self.location or obj not in self._visible_here() or not self.objects[obj].takeable:
            return None
        if self._held() is not None:
            return None  # one object at a time, as in ALFWorld
        self.contents[recep].remove(obj)
        self.objects[obj].location = "agent"
        self.known[recep] = tuple(self.contents[recep])
        return f"You pick up the {obj} from the {recep}."

    def _do_put(self, obj: str, recep: str) -> str | None:
        if obj != self._held() or recep != self.location or not self._accessible(recep):
            return None
        self.objects[obj].location = recep
        self.contents[recep].append(obj)
        self.known[recep] = tuple(self.contents[recep])
        return f"You put the {obj} in/on the {recep}."

    def _transform(self, verb: str, obj: str, recep: str) -> str | None:
        if obj != self._held() or recep != self.location or self.rtype.get(recep) != APPLIANCE[verb]:
            return None
        o = self.objects[obj]
        if verb == "clean":
            o.clean = True
        elif verb == "heat":
            o.hot, o.cool = True, False
        else:
            o.cool, o.hot = True, False
        return f"You {verb} the {obj} using the {recep}."

    def _do_clean(self, obj: str, recep: str) -> str | None:
        return self._transform("clean", obj, recep)

    def _do_heat(self, obj: str, recep: str) -> str | None:
        return self._transform("heat", obj, recep)

    def _do_cool(self, obj: str, recep: str) -> str | None:
        return self._transform("cool", obj, recep)

    def _do_use(self, lamp: str) -> str | None:
        if lamp not in self._visible_here() or self.objects[lamp].type != "desklamp":
            return None
        self.lamp_on = True
        return f"You turn on the {lamp}."

    def _do_examine(self, thing: str) -> str | None:
        if thing == self.location and self._accessible(thing):
            return self._describe(thing)
        if thing == self.location:
            return f"The {thing} is closed."
        if thing in self._visible_here() or thing == self._held():
            o = self.objects[thing]
            states = [s for s, on in (("clean", o.clean), ("hot", o.hot), ("cool", o.cool)) if on]
            return f"This is a {' and '.join(states) + ' ' if states else 'normal '}{thing}."
        return None

    def _do_look(self) -> str:
        if self.location is None:
            return f"You are in the middle of a room. Looking quickly around you, you see {_a_list(self.receptacles)}."
        return f"You are facing the {self.location}. Next to it, you see nothing."

    def _do_inventory(self) -> str:
        held = self._held()
        return f"You are carrying: a {held}." if held else "You are not carrying anything."

    def _goal_holds(self) -> bool:
        o_type, target = self.object_type, self.target
        if self.task_type == "look_at_obj_in_light":
            held = self._held()
            lamp_here = any(self.objects[n].type == "desklamp" for n in self._visible_here())
            return bool(held and self.objects[held].type == o_type and self.lamp_on and lamp_here)
        flag = {"pick_clean_then_place": "clean", "pick_heat_then_place": "hot", "pick_cool_then_place": "cool"}
        need = 2 if self.task_type == "pick_two_obj_and_place" else 1
        for recep, names in self.contents.items():
            if self.rtype[recep] != target:
                continue
            good = [n for n in names if self.objects[n].type == o_type
                    and (self.task_type not in flag or getattr(self.objects[n], flag[self.task_type]))]
            if len(good) >= need:
                return True
        return False

    @property
    def admissible_commands(self) -> list[str]:
        """Commands that do something in this state, in ALFWorld's phrasing."""
        here, held = self.location, self._held()
        commands = ["look", "inventory"] + [f"go to {r}" for r in self.receptacles if r != here]
        if here is not None:
            if self.rtype[here] in OPENABLE:
                commands.append(f"close {here}" if here in self.is_open else f"open {here}")
            if self._accessible(here):
                commands.append(f"examine {here}")
                for name in self.contents[here]:
                    if self.objects[name].type == "desklamp":
                        commands.append(f"use {name}")
                    elif held is None:
                        commands.append(f"take {name} from {here}")
                if held is not None:
                    commands.append(f"put {held} in/on {here}")
            if held is not None:
                for verb, appliance in APPLIANCE.items():
                    if self.rtype[here] == appliance:
                        commands.append(f"{verb} {held} with {here}")
        if held is not None:
            commands.append(f"examine {held}")
        return commands

    def state_fingerprint(self) -> str:
        """A hash of the game's Markov state: where the agent is, where every object is (and in what order
        each receptacle lists them), their clean/hot/cool flags, which receptacles are open, the lamp.

        Two histories that lead to the same fingerprint continue identically under the same actions, so a
        Monte-Carlo estimate of Q(s, a) may pool their returns. Left out:
        the step counter (the horizon) and what the agent has seen, which only the expert reads."""
        state = (self.location, sorted((n, o.location, o.clean, o.hot, o.cool) for n, o in self.objects.items()),
                 sorted(self.contents.items()), sorted(self.is_open), self.lamp_on)
        return hashlib.sha1(repr(state).encode()).hexdigest()[:16]

    # ── invariants (used by the fuzz tests) ───────────────────────────────────────────────────────
    def check_invariants(self) -> None:
        placed = [n for names in self.contents.values() for n in names]
        held = [n for n, o in self.objects.items() if o.location == "agent"]
        assert sorted(placed + held) == sorted(self.objects), "an object was duplicated or lost"
        assert len(held) <= 1, "holding more than one object"
        for recep, names in self.contents.items():
            for n in names:
                assert self.objects[n].location == recep, f"{n} is in {recep} but thinks it is elsewhere"
        assert not self.won or self._goal_holds(), "won although the goal does not hold"

    def resample_unseen(self, rng: random.Random) -> "HouseholdEnv":
        """A copy of the game in which the objects inside receptacles the agent has not looked into are placed anew,
        each by its prior (as the generator placed it), among those receptacles. What the agent has seen stays
        true; only what it cannot know moves. A value averaged over such copies is the value of what the agent
        has observed, not of where the unseen objects happen to be (benchmarks/oracle_ladder.py --hidden-worlds)."""
        world = copy.deepcopy(self)
        unexplored = [r for r in world.receptacles if r not in world.known]
        hidden = [n for r in unexplored for n in world.contents[r]]
        for name in hidden:
            obj = world.objects[name]
            prior = [(h, 1) for h in LAMP_HOSTS] if obj.type == "desklamp" else PRIORS[obj.type]
            exclude = world.target if obj.type == world.object_type and world.task_type != "look_at_obj_in_light" else None
            weight = {rt: w for rt, w in prior if rt != exclude}
            options = [r for r in unexplored if weight.get(world.rtype[r], 0) > 0]
            if not options:  # nowhere else it could be: it stays
                continue
            world.contents[obj.location].remove(name)
            # the generator draws a receptacle type by its weight, then one of that type's receptacles uniformly
            per_recep = [weight[world.rtype[r]] / sum(world.rtype[x] == world.rtype[r] for x in world.receptacles)
                         for r in options]
            obj.location = rng.choices(options, weights=per_recep)[0]
            world.contents[obj.location].insert(rng.randrange(len(world.contents[obj.location]) + 1), name)
        return world

    # ── the expert ─────────────────────────────────────────────────────────────────────────────────
    def expert_action(self) -> tuple[str, str]:
        """A (REASON, ACTION) pair from a searching expert that uses only what the agent has observed.

        It knows the receptacles in the room (the first observation lists them), the common-sense prior of
        where objects are (PRIORS), and `self.known`: the contents of receptacles it has seen. It never reads
        the contents of a receptacle it has not opened or visited. It works from any state, so it can also
        relabel a learner's states.
        """
        o_type, held = self.object_type, self._held()
        here = self.location
        if self.task_type == "look_at_obj_in_light":
            if held and self.objects[held].type == o_type:
                return self._expert_find("desklamp", then_use=True)
            if held:
                return self._expert_drop(held)
            return self._expert_find(o_type)
        flag = {"pick_clean_then_place": "clean", "pick_heat_then_place": "heat",
                "pick_cool_then_place": "cool"}.get(self.task_type)
        done_state = {"clean": "clean", "heat": "hot", "cool": "cool"}
        target = self._expert_target()
        if held and self.objects[held].type == o_type and (target is None or self.objects[held].location != target):
            obj = self.objects[held]
            if flag and not getattr(obj, done_state[flag]):
                appliance = next(r for r in self.receptacles if self.rtype[r] == APPLIANCE[flag])
                if here != appliance:
                    return (f"Now I {flag} the {held}; the {appliance} can do that.", f"go to {appliance}")
                return (f"I {flag} the {held} with the {appliance}.", f"{flag} {held} with {appliance}")
            adjective = {"clean": "clean ", "heat": "hot ", "cool": "cool "}.get(flag or "", "")
            if here != target:
                return (f"The {held} is {adjective.strip() or 'in my hands'}; I bring it to {target}.",
                        f"go to {target}")
            if not self._accessible(target):
                return (f"The {target} is closed; I open it to put the {held} inside.", f"open {target}")
            return (f"I put the {adjective}{held} in/on the {target}.", f"put {held} in/on {target}")
        if held:
            return self._expert_drop(held)
        exclude = set(self.contents[target]) if target else set()
        return self._expert_find(o_type, exclude=exclude)

    def _expert_target(self) -> str | None:
        """Which instance of the target type to fill: one already holding our objects (seen), else the first."""
        instances = [r for r in self.receptacles if self.rtype[r] == self.target]
        for r in instances:
            if any(self.objects[n].type == self.object_type for n in self.known.get(r, ())):
                return r
        return instances[0] if instances else None

    def _expert_drop(self, held: str) -> tuple[str, str]:
        here = self.location
        if here is not None and self._accessible(here):
            return (f"I do not need the {held}; I put it down here.", f"put {held} in/on {here}")
        if here is not None:
            return (f"I do not need the {held}; I open the {here} to put it down.", f"open {here}")
        first = self.receptacles[0]
        return (f"I do not need the {held}; I go to {first} to put it down.", f"go to {first}")

    def _expert_find(self, o_type: str, then_use: bool = False, exclude: set[str] = frozenset()) -> tuple[str, str]:
        """Go to a place where a seen `o_type` is, else search unexplored receptacles in prior order."""
        here = self.location
        for recep in self._search_order(o_type):
            seen = [n for n in self.known.get(recep, ()) if self.objects[n].type == o_type and n not in exclude]
            if not seen:
                continue
            if here != recep:
                return (f"I saw a {seen[0]} in/on the {recep}; I go there.", f"go to {recep}")
            if not self._accessible(recep):
                return (f"The {recep} is closed; I open it to get the {seen[0]}.", f"open {recep}")
            if then_use:
                return (f"I turn on the {seen[0]} to look at the {self._held()} under it.", f"use {seen[0]}")
            return (f"There is a {seen[0]} here; I take it.", f"take {seen[0]} from {recep}")
        for recep in self._search_order(o_type):
            if recep in self.known:
                continue
            if here == recep:  # we are here and have not seen inside: it must be closed
                return (f"The {recep} is closed; I open it to look for a {o_type}.", f"open {recep}")
            first = self._search_order(o_type)[0]
            kind = self.rtype[recep]
            how_often = "often" if kind == self.rtype[first] else "sometimes"
            return (f"{_plural(o_type).capitalize()} are {how_often} in/on {_plural(kind)}; "
                    f"{recep} is unexplored.", f"go to {recep}")
        return (f"I have looked everywhere for a {o_type}; I look around again.", "look")

    def _search_order(self, o_type: str) -> list[str]:
        """Receptacles ordered by the prior (most likely type first, then instance number), then the rest."""
        prior = [(h, 1) for h in LAMP_HOSTS] if o_type == "desklamp" else list(PRIORS[o_type])
        rank = {rt: i for i, (rt, _) in enumerate(sorted(prior, key=lambda p: -p[1]))}
        return sorted(self.receptacles, key=lambda r: (rank.get(self.rtype[r], len(rank)), self.receptacles.index(r)))


class CompactHouseholdEnv(HouseholdEnv):
    """The household game's compact preset: the same engine, commands, six task types and expert, in rooms with
    at most one receptacle of each kind (COMPACT_ROOMS), 1-3 distractors, and 15 actions per episode."""

    env_name = "household-compact"
    default_max_steps = 15
    rooms = COMPACT_ROOMS
    distractors = (1, 3)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Registry
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


class TextEnv(Protocol):
    """What the agent loop needs from an environment. Register a class that has these with ``register``.

    reset() -> (observation, info); step(action) -> (observation, reward, done, info);
    admissible_commands: list[str] (may be empty if the engine has none); won: bool;
    task: str (the goal, e.g. "put a clean mug in cabinet."); task_type: str; game_id: str (unique, stable:
    the same id must mean the same game, because Q-targets are keyed on it); max_steps: int;
    expert_action() -> (reason, action), optional, for demonstrations.
    state_fingerprint() -> str, optional: a hash of the game's Markov state, recorded in every Step
    (for diagnostics that pool visits of one Markov state).
    """

    game_id: str
    task: str
    task_type: str
    max_steps: int
    won: bool

    def reset(self) -> tuple[str, dict[str, Any]]: ...

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]: ...

    @property
    def admissible_commands(self) -> list[str]: ...


ENV_REGISTRY: dict[str, Callable[..., TextEnv]] = {}


def register(name: str, factory: Callable[..., TextEnv]) -> None:
    """Make ``make(name, split, seed, **kwargs)`` call ``factory(split=split, seed=seed, **kwargs)``.

    Example:
        class MyEnv:                      # reset / step / admissible_commands / won / task / task_type / game_id
            ...
        envs.register("my_env", MyEnv)
        python agent_prm.py --env my_env  # (import your module first, e.g. from a small launcher script)
    """
    if not callable(factory):
        raise TypeError("factory must be callable (a class or a function)")
    ENV_REGISTRY[name] = factory


def make(name: str, split: str = "train", seed: int = 0, **kwargs: Any) -> TextEnv:
    """Build game number ``seed`` of ``split`` of the registered environment ``name``."""
    if name not in ENV_REGISTRY:
        raise ValueError(f"unknown environment {name!r}; registered: {', '.join(sorted(ENV_REGISTRY))}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    return ENV_REGISTRY[name](split=split, seed=seed, **kwargs)


def default_max_steps(name: str) -> int:
    """The episode length an environment is meant to be played with (its factory's `default_max_steps`, else 30)."""
    return getattr(ENV_REGISTRY.get(name), "default_max_steps", 30)


register("household", HouseholdEnv)
register("household-compact", CompactHouseholdEnv)


# The real engines, ALFWorld and TextWorld, are adapted in real_envs.py. Their entries import it (and it imports
# the optional engine) only when such an environment is built or asked about, so `import envs` stays light and
# real_envs can import envs for the protocol's pieces without a cycle.


class _RealEnvFactory:
    """A registry entry for an adapter class of real_envs.py that imports the module only when first used."""

    def __init__(self, class_name: str):
        self.class_name = class_name

    def resolve(self) -> Callable[..., TextEnv]:
        """The adapter class itself (importing real_envs, not yet the engine)."""
        import real_envs  # here, not at the top: real_envs imports envs

        return getattr(real_envs, self.class_name)

    def __call__(self, *args: Any, **kwargs: Any) -> TextEnv:
        """Build the environment, as the class itself would."""
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        """Class attributes (e.g. hasattr(entry, "expert_action"), default_max_steps) are the adapter class's."""
        if name.startswith("_") or name == "class_name":  # internals (and copy/pickle probes) stay our own
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        """Names the class without importing it."""
        return f"<lazy real_envs.{self.class_name}>"


register("alfworld", _RealEnvFactory("AlfworldEnv"))
register("textworld", _RealEnvFactory("TextWorldEnv"))


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# The agent loop: prompt, response parsing, trajectories, batched rollouts
# ──────────────────────────────────────────────────────────────────────────────────────────────────────

SYSTEM_PROMPT = (
    "You are a household agent. Given the task, recent history, observation and admissible actions, reply:\n"
    "REASON: <why, in one sentence>\n"
    "ACTION: <one admissible action>"
)
# Listing 1 of the AgentPRM paper (Sec. 4.1, steered exploration): added only when sampling in Stage 3.
STEERED_EXPLORATION_PROMPT = (
    "Use the following strategy for generating actions:\n"
    "* In your REASON, try to come up with a strategy for how you want to solve the task. This strategy could "
    "be a hypothesis of where the object might be based on your history of observations. Then base your "
    "ACTION on the REASON.\n"
    "* Try to explore possible strategies"
)
INVALID_ACTION = "<invalid>"  # what the history shows when a response had no usable ACTION


@dataclasses.dataclass
class Step:
    """One turn: the state s_t (observation + admissible list; the history lives in the trajectory), the
    policy's raw response, the parsed action, and what the environment returned."""

    observation: str
    admissible: list[str]
    response: str
    reason: str
    action: str | None  # None when the response had no usable ACTION (an invalid action, counted)
    next_observation: str
    reward: float
    done: bool
    # The environment's fingerprint of its Markov state before the step, if it has one (HouseholdEnv does:
    # state_fingerprint); None otherwise.
    state_id: str | None = None


@dataclasses.dataclass
class Trajectory:
    env: str
    split: str
    game_id: str
    task_type: str
    task: str
    steps: list[Step] = dataclasses.field(default_factory=list)
    final_observation: str = ""  # the observation of the state after the last step
    final_admissible: list[str] = dataclasses.field(default_factory=list)
    won: bool = False

    @property
    def num_actions(self) -> int:
        return len(self.steps)

    @property
    def num_invalid(self) -> int:
        return sum(s.action is None for s in self.steps)

    def observation_at(self, t: int) -> str:
        return self.steps[t].observation if t < len(self.steps) else self.final_observation

    def admissible_at(self, t: int) -> list[str]:
        return self.steps[t].admissible if t < len(self.steps) else self.final_admissible

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "Trajectory":
        # Keys a Trajectory / Step does not have are left out, e.g. the Best-of-N candidates and their PRM
        # scores that evaluation logs add to each step.
        fields = {f.name for f in dataclasses.fields(cls)}
        step_fields = {f.name for f in dataclasses.fields(Step)}
        data = {k: v for k, v in record.items() if k in fields}
        data["steps"] = [Step(**{k: v for k, v in s.items() if k in step_fields}) for s in record.get("steps", [])]
        return cls(**data)


def format_response(reason: str, action: str) -> str:
    """The policy's output format. An empty reason gives an action-only response."""
    return f"REASON: {reason}\nACTION: {action}" if reason else f"ACTION: {action}"


_ACTION_RE = re.compile(r"action\s*[:：]\s*([^\n]*)", re.IGNORECASE)
_REASON_RE = re.compile(r"reason\s*[:：]\s*(.*?)(?=\n?\s*action\s*[:：]|$)", re.IGNORECASE | re.DOTALL)


@dataclasses.dataclass
class ParsedResponse:
    reason: str
    action: str | None


def parse_response(text: str) -> ParsedResponse:
    """REASON/ACTION text -> (reason, action). Tolerant of case, spacing, a missing REASON and extra text
    after the action line; a response without a non-empty ACTION gives action=None (an invalid action)."""
    text = str(text)
    action_match = _ACTION_RE.search(text)
    action = normalize_command(action_match.group(1)) if action_match else ""
    reason_match = _REASON_RE.search(text)
    reason = " ".join(reason_match.group(1).split()) if reason_match else ""
    return ParsedResponse(reason=reason, action=action or None)


def build_messages(task: str, history: Sequence[tuple[str, ...]], observation: str, admissible: Sequence[str],
                   history_window: int, extra_instructions: str | None = None) -> list[dict[str, str]]:
    """The chat prompt for state s_t: system rules, then one user turn with the task, the last
    `history_window` turns of the history, the current observation and the admissible actions.

    History items are (observation, action) or (observation, reason, action); a non-empty reason is shown
    on its own line. The history holds the actions the agent really took (the official code put
    observations there)."""
    system = SYSTEM_PROMPT + ("\n" + extra_instructions if extra_instructions else "")
    lines = []
    shown = list(history)[-history_window:] if history_window > 0 else []
    if shown:
        lines.append(f"History (last {len(shown)} of {len(history)} turns):")
        for turn in shown:
            lines.append(f"Observation: {turn[0]}")
            if len(turn) == 3 and turn[1]:
                lines.append(f"Reason: {turn[1]}")
            lines.append(f"Action: {turn[-1]}")
        lines.append("")
    # The task sits right before the current observation: next to where the decision is made (small models
    # learn the task/observation comparison much faster when the two are close).
    lines.append(f"Task: {task}")
    lines.append(f"Current observation: {observation}")
    if admissible:
        lines.append("")
        lines.append("Admissible actions: " + ", ".join(admissible))
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


def with_extra_instructions(messages: list[dict[str, str]], extra: str) -> list[dict[str, str]]:
    """The same prompt with `extra` appended to the system rules (e.g. steered exploration, Listing 1)."""
    return [{**messages[0], "content": messages[0]["content"] + "\n" + extra}] + list(messages[1:])


def drop_oldest_turn(messages: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """The same prompt with the oldest history turn removed (None if there is no history left).
    Used when a prompt is too long for the model's context."""
    lines = messages[-1]["content"].split("\n")
    if not lines or not lines[0].startswith("History ("):
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith("Observation: ")]
    # the blank line before "Task:" ends the history (observations themselves may contain blank lines)
    end_of_history = max(i for i, line in enumerate(lines) if line.startswith("Task: ")) - 1
    first = starts[0]
    end = starts[1] if len(starts) > 1 else end_of_history
    if len(starts) == 1:  # the history section becomes empty: drop its header and the blank line too
        lines = lines[end_of_history + 1:]
    else:
        del lines[first:end]
        total = re.search(r"of (\d+) turns", lines[0])
        lines[0] = f"History (last {len(starts) - 1} of {total.group(1) if total else '?'} turns):"
    return messages[:-1] + [{**messages[-1], "content": "\n".join(lines)}]


def trajectory_messages(traj: Trajectory, t: int, history_window: int, extra_instructions: str | None = None,
                        history_reasons: bool = False) -> list[dict[str, str]]:
    """The prompt the policy saw (or would see) at step t of a trajectory; t == len(steps) is the state
    after the last step. Every algorithm — and the rollout runner — builds prompts through this function.
    history_reasons=True also shows the agent's past REASONs (the state then includes its past thoughts)."""
    history = [(s.observation, s.reason if history_reasons else "", s.action or INVALID_ACTION)
               for s in traj.steps[:t]]
    return build_messages(traj.task, history, traj.observation_at(t), traj.admissible_at(t),
                          history_window, extra_instructions)


def _strip_task(observation: str) -> str:
    """The first observation ends with 'Your task is to: ...'; the prompt shows the task on its own line."""
    return observation.split("\n\nYour task is to:")[0].strip()


Policy = Callable[[list[list[dict[str, str]]], list[TextEnv]], list[str]]
"""A policy maps the prompts of all live episodes (and the envs, which only non-learned policies such as the
expert or a random agent may look at) to one response string each."""


def begin(env: TextEnv) -> Trajectory:
    """Reset ``env`` and return the empty trajectory of its first state (what rollout() starts from)."""
    obs, _ = env.reset()
    return Trajectory(env=getattr(env, "env_name", type(env).__name__), split=getattr(env, "split", ""),
                      game_id=env.game_id, task_type=env.task_type, task=env.task,
                      final_observation=_strip_task(obs), final_admissible=list(env.admissible_commands))


def replay(env: TextEnv, traj: Trajectory, t: int) -> Trajectory:
    """Reset ``env`` to the state s_t of ``traj`` (a game of this env): step it through the trajectory's first t
    actions and return those t steps as a partial trajectory that rollout(..., resume=...) continues. A reset
    distribution (Sec. 4.1 of the AgentPRM paper) starts the learner at states of expert demonstrations this way.
    The games are deterministic; a replay whose observations differ from the trajectory's is an error."""
    if env.game_id != traj.game_id:
        raise ValueError(f"cannot replay a trajectory of {traj.game_id} in {env.game_id}")
    if not 0 <= t <= len(traj.steps):
        raise ValueError(f"cannot replay {t} steps of a trajectory with {len(traj.steps)}")
    begin(env)
    for k, step in enumerate(traj.steps[:t]):
        obs, _, done, _ = env.step(step.action or "")
        if obs != step.next_observation or (done and k < t - 1):
            raise ValueError(f"replaying {traj.game_id}: step {k} ({step.action!r}) gave {obs!r}, the trajectory "
                             f"has {step.next_observation!r}")
    return dataclasses.replace(traj, steps=list(traj.steps[:t]), final_observation=traj.observation_at(t),
                               final_admissible=list(env.admissible_commands), won=False)


def rollout(envs: Sequence[TextEnv], policy: Policy, history_window: int = 2, progress: bool = False,
            desc: str = "rollout", history_reasons: bool = False,
            resume: Sequence[Trajectory] | None = None, max_actions: int | None = None) -> list[Trajectory]:
    """Play one episode in every env at once. Each step, ``policy`` is called ONCE with the prompts of all
    live episodes (so an LLM policy can batch them). Returns one Trajectory per env, in order.

    While an episode runs, its trajectory's final_observation / final_admissible hold the CURRENT state, so
    the prompt is trajectory_messages(traj, len(traj.steps)) — the same function the algorithms use later.
    resume: partial trajectories whose envs were already stepped through them (e.g. to estimate Q(s, a) by
    Monte-Carlo from a mid-episode state): they are continued, not reset; the envs must match them.
    max_actions: stop each episode after this many actions of ``policy`` (not counting a resumed prefix), as
    max_steps would cut it: not done, not won. (The env's own max_steps cannot do this: a household layout is
    drawn so that the expert solves it within max_steps.)"""
    if max_actions is not None and max_actions < 1:
        raise ValueError(f"max_actions must be at least 1, got {max_actions}")
    trajectories = []
    if resume is not None:
        if len(resume) != len(envs):
            raise ValueError(f"resume has {len(resume)} trajectories for {len(envs)} envs")
        trajectories = [dataclasses.replace(t, steps=list(t.steps)) for t in resume]
    else:
        trajectories = [begin(env) for env in envs]
    live = [i for i, t in enumerate(trajectories) if not (t.steps and t.steps[-1].done)]
    cut_at = [len(t.steps) + (max_actions if max_actions is not None else float("inf")) for t in trajectories]
    bar = _progress(total=len(envs), desc=desc, enabled=progress)
    while live:
        prompts = [trajectory_messages(trajectories[i], len(trajectories[i].steps), history_window,
                                       history_reasons=history_reasons) for i in live]
        responses = policy(prompts, [envs[i] for i in live])
        if len(responses) != len(live):
            raise ValueError(f"policy returned {len(responses)} responses for {len(live)} prompts")
        still_live = []
        for i, response in zip(live, responses):
            traj, parsed = trajectories[i], parse_response(response)
            fingerprint = getattr(envs[i], "state_fingerprint", None)
            state_id = fingerprint() if fingerprint is not None else None
            # An unusable response still costs a turn: the engine answers "Nothing happens."
            next_obs, reward, done, info = envs[i].step(parsed.action if parsed.action else "")
            traj.steps.append(Step(traj.final_observation, traj.final_admissible, response, parsed.reason,
                                   parsed.action, next_obs, float(reward), bool(done), state_id))
            traj.final_observation, traj.final_admissible = next_obs, list(envs[i].admissible_commands)
            if done:
                traj.won = bool(info.get("won", envs[i].won))
                bar.update(1)
            elif len(traj.steps) >= cut_at[i]:
                bar.update(1)
            else:
                still_live.append(i)
        live = still_live
    bar.close()
    return trajectories


def _progress(total: int, desc: str, enabled: bool):
    """tqdm if it is installed and wanted; envs.py itself depends on nothing."""
    if enabled:
        try:
            from tqdm.auto import tqdm
            return tqdm(total=total, desc=desc, leave=False)
        except ImportError:
            pass

    class _Silent:
        def update(self, n: int) -> None: ...

        def close(self) -> None: ...

    return _Silent()


def expert_policy(prompts: list[list[dict[str, str]]], envs: list[TextEnv]) -> list[str]:
    """The environment's expert as a Policy (REASON + ACTION)."""
    return [format_response(*env.expert_action()) for env in envs]


def make_random_policy(seed: int = 0) -> Policy:
    """A uniformly random admissible agent (the baseline every method must beat)."""
    rng = random.Random(seed)

    def policy(prompts: list[list[dict[str, str]]], envs: list[TextEnv]) -> list[str]:
        return [format_response("", rng.choice(env.admissible_commands or ["look"])) for env in envs]

    return policy


def make_envs(name: str, split: str, n: int, start: int = 0, **kwargs: Any) -> list[TextEnv]:
    """Games start, start+1, ..., start+n-1 of a split."""
    return [make(name, split=split, seed=start + i, **kwargs) for i in range(n)]


def game_seeds(name: str, split: str, seeds: Iterable[int], **kwargs: Any) -> dict[str, int]:
    """{game_id: seed} of the games these seeds build: how to rebuild the game of a saved trajectory."""
    return {make(name, split=split, seed=s, **kwargs).game_id: s for s in seeds}


def expert_demonstrations(name: str, split: str, n: int, start: int = 0, **kwargs: Any) -> list[Trajectory]:
    """Expert episodes on games start..start+n-1 (only the won ones are demonstrations; the household
    expert wins them all)."""
    return [t for t in rollout(make_envs(name, split, n, start, **kwargs), expert_policy) if t.won]


def strip_reasons(traj: Trajectory) -> Trajectory:
    """Action-only copy of a trajectory (a 'process log': what was done, not why)."""
    steps = [dataclasses.replace(s, reason="", response=format_response("", s.action or "")) for s in traj.steps]
    return dataclasses.replace(traj, steps=steps)


def save_jsonl(path: str, records: Sequence[Trajectory | dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json() if isinstance(r, Trajectory) else r) + "\n")


def load_trajectories(path: str) -> list[Trajectory]:
    """Read trajectories from JSONL. Minimal per line: {"task": ..., "steps": [{"observation": ..., "action": ...}]}.
    Missing fields get defaults; a step's response defaults to "REASON: <reason>\\nACTION: <action>"."""
    trajectories = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict) or "task" not in record or not isinstance(record.get("steps"), list):
                raise ValueError(f"{path}:{line_no}: expected an object with 'task' and a list of 'steps'")
            steps = []
            for k, s in enumerate(record["steps"]):
                if not isinstance(s, dict) or "observation" not in s:
                    raise ValueError(f"{path}:{line_no}: step {k} needs an 'observation'")
                action = s.get("action") or parse_response(s.get("response", "")).action
                if not action:
                    raise ValueError(f"{path}:{line_no}: step {k} has no ACTION")
                action = normalize_command(action)
                reason = s.get("reason", "") or parse_response(s.get("response", "")).reason
                steps.append(Step(observation=s["observation"], admissible=list(s.get("admissible", [])),
                                  response=s.get("response") or format_response(reason, action), reason=reason,
                                  action=action, next_observation=s.get("next_observation", ""),
                                  reward=float(s.get("reward", 0.0)), done=bool(s.get("done", False)),
                                  state_id=s.get("state_id")))
            for k in range(len(steps) - 1):
                if not steps[k].next_observation:
                    steps[k].next_observation = steps[k + 1].observation
            trajectories.append(Trajectory(
                env=record.get("env", ""), split=record.get("split", ""),
                game_id=record.get("game_id", f"{path}:{line_no}"), task_type=record.get("task_type", ""),
                task=record["task"], steps=steps, final_observation=record.get("final_observation", ""),
                final_admissible=list(record.get("final_admissible", [])), won=bool(record.get("won", True))))
    if not trajectories:
        raise ValueError(f"{path}: no trajectories in the file")
    return trajectories


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Command line: play, watch the expert, statistics, export demonstrations
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def success_table(split: str, n: int, policy: Policy, name: str = "household") -> dict[str, tuple[int, int]]:
    """task type -> (games won, games played) for n games of a split."""
    table: dict[str, tuple[int, int]] = {}
    for traj in rollout(make_envs(name, split, n), policy):
        won, total = table.get(traj.task_type, (0, 0))
        table[traj.task_type] = (won + traj.won, total + 1)
    return table


def _print_stats(n: int, name: str = "household") -> None:
    print(f"{'split':<26}{'agent':<8}" + "".join(f"{t[:14]:>16}" for t in TASK_TYPES) + f"{'all':>10}")
    for split in SPLITS:
        for label, policy in (("expert", expert_policy), ("random", make_random_policy(0))):
            table = success_table(split, n, policy, name)
            cells = "".join(f"{table.get(t, (0, 0))[0]:>9}/{table.get(t, (0, 0))[1]:<6}" for t in TASK_TYPES)
            won, total = sum(v[0] for v in table.values()), sum(v[1] for v in table.values())
            print(f"{split:<26}{label:<8}{cells}{100 * won / total:>9.1f}%")


def _play(args: argparse.Namespace) -> None:
    env = make(args.env, split=args.split, seed=args.seed, task_type=args.task_type, max_steps=args.max_steps)
    obs, _ = env.reset()
    print(f"[{env.game_id}  {env.task_type}]\n{obs}")
    done = False
    while not done:
        if args.expert:
            reason, action = env.expert_action()
            print(f"\nREASON: {reason}\nACTION: {action}")
        else:
            print("\nAdmissible: " + ", ".join(env.admissible_commands))
            try:
                action = input("> ")
            except EOFError:
                return
        obs, reward, done, info = env.step(action)
        print(obs)
    print(f"\n{'WON' if env.won else 'LOST'} after {env.steps} actions.")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Play the household game, watch its expert, or print statistics.")
    parser.add_argument("--env", default="household", choices=["household", "household-compact"],
                        help="the full game or its compact preset (fewer receptacles and distractors, 15 actions)")
    parser.add_argument("--seed", type=int, default=0, help="game number within the split (same seed, same game)")
    parser.add_argument("--split", default="train", choices=SPLITS, help="which split the game comes from")
    parser.add_argument("--task-type", default=None, choices=TASK_TYPES,
                        help="force a task type (default: game number modulo 6 picks it)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="episode length limit (default: the game's own, household 30 as in the paper, compact 15)")
    parser.add_argument("--expert", action="store_true", help="watch the expert play instead of playing yourself")
    parser.add_argument("--stats", type=int, default=0, metavar="N",
                        help="print expert and random-agent success per task type on N games of every split")
    parser.add_argument("--export-demos", type=int, default=0, metavar="N",
                        help="write N expert demonstrations of --split to --out as JSONL")
    parser.add_argument("--out", default="demos.jsonl", help="output path for --export-demos")
    parser.add_argument("--action-only", action="store_true",
                        help="with --export-demos: drop the REASONs (action-only demonstrations / process logs)")
    args = parser.parse_args(argv)
    if args.stats:
        _print_stats(args.stats, args.env)
    elif args.export_demos:
        demos = expert_demonstrations(args.env, args.split, args.export_demos, max_steps=args.max_steps)
        save_jsonl(args.out, [strip_reasons(d) if args.action_only else d for d in demos])
        print(f"wrote {len(demos)} demonstrations to {args.out}")
    else:
        _play(args)


if __name__ == "__main__":
    main(sys.argv[1:])
