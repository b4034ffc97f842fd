"""Speed benchmarks: each section prints ratios or rates measured side by side in one run.

    python benchmarks/speed.py            # every section
    python benchmarks/speed.py --only env # one section
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envs  # noqa: E402


def bench_env(n_games: int = 200, seed: int = 0) -> None:
    """Single-threaded environment steps per second, with and without listing admissible commands each step."""
    games = envs.make_envs("household", "train", n_games)
    rng = random.Random(seed)
    for with_admissible in (False, True):
        steps, start = 0, time.perf_counter()
        for env in games:
            env.reset()
            commands = env.admissible_commands
            while not env.done:
                env.step(rng.choice(commands))
                steps += 1
                if with_admissible:
                    commands = env.admissible_commands
        elapsed = time.perf_counter() - start
        label = "random admissible agent, admissible list recomputed every step" if with_admissible \
            else "steps only (commands from the first state)"
        print(f"env: {steps / elapsed:>10,.0f} steps/s   {label}  ({steps} steps)")
    start = time.perf_counter()
    envs.make_envs("household", "eval_in_distribution", n_games)
    print(f"env: {n_games / (time.perf_counter() - start):>10,.0f} games/s generated (each verified by the expert)")


SECTIONS = {"env": bench_env}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    args = parser.parse_args()
    for name in args.only or SECTIONS:
        SECTIONS[name]()


if __name__ == "__main__":
    main()
