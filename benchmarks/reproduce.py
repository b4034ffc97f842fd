"""Reproduce the papers' findings on the built-in household game with the tiny model, on a CPU.

What it runs: π0 once (behaviour cloning of the tiny model on the expert, all cores), then for every seed, all
starting from that π0 (each script a job; `--jobs` jobs side by side, each with cores/jobs threads):
  1. agent_prm.py   --iterations 2   (π1, π2, BoN(π_i, Q_j) with N = 4)
  2. inverse_prm.py --iterations 1   with the SFT baseline on the same demonstrations (Table 2)
  3. action_prm.py                   with its two SFT baselines and held-out likelihoods
  4. the N-scaling curve of Fig. 2b: BoN(π0, Q0) for N in --bon-n on the validation split (N = 1 is π0
     sampled at the Best-of-N temperature, no PRM); it waits for that seed's AgentPRM run
Then it aggregates mean ± std over seeds into benchmarks/results.md (Table-1/Table-2-shaped) and draws
benchmarks/results.png (success vs N and vs iteration; needs matplotlib, skipped without it). The tables of
`--env household-compact --recipe paper` (results_household-compact_paper.md) are the README's results: their
summary is written into README.md between the `<!-- results:begin -->` / `<!-- results:end -->` markers (success %
of every row, the Best-of-N curves, the held-out likelihoods; made from that file alone, see readme_summary).

Sizes: the defaults fit about an hour on 2 cores (π0 cloned for 1.5 epochs, 20 games per evaluation split,
AgentPRM's Stage 1 on 16 games, InversePRM on 64 demonstrations and 24 rollout games, Action-PRM on 16
demonstrations). --full takes the sizes of the earlier, several-hour tables (3 epochs, 30 games, the scripts'
default demonstrations and rollouts).

--recipe paper runs every script at its official recipe (each script's `--recipe paper`) on --env (the compact
preset, `household-compact`, is the one the recipes fit on 2 cores): π0 cloned on 2,000 expert games for 2 epochs,
100 games per evaluation split, and two rungs of benchmarks/oracle_ladder.py per seed (ladder_bon: BoN(π0, Q^μ) for
N in --bon-n; ladder_dpo: Stage 3 against Q^μ at the AgentPRM run's settings). One seed is about 5 hours of one
core (seed 1, one thread per job: AgentPRM 127 minutes, InversePRM 101, Action-PRM ~50, the curve 9, ladder_bon 6),
so it runs in parts (`--seeds S --only STEP ...`, any number of sessions): after each job its small result files
(args.json, summary.json, evals.json, ladder.json) are copied to --parts (benchmarks/parts/<env>_paper), which is
committed, and the tables are made from there, so `--no-run` re-makes them from a clean checkout.

Every script resumes from its run folder, so an interrupted reproduce.py picks up where it stopped.

    python benchmarks/reproduce.py                 # 3 seeds, everything: about an hour on 2 cores
    python benchmarks/reproduce.py --full          # the same at the larger sizes: several hours
    python benchmarks/reproduce.py --quick         # every script's --quick, 1 seed: checks the pipeline
    python benchmarks/reproduce.py --env household-compact --recipe paper --seeds 1   # one seed's part
    python benchmarks/reproduce.py --env household-compact --recipe paper --no-run    # tables from the parts
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


STEPS = ["agent_prm", "inverse_prm", "action_prm", "bon_curve"]
# the size flags that are one script's flag: reproduce.py's flag -> (script, its flag)
SCRIPT_SIZES = {"--agent-train-tasks": ("agent_prm", "--train-tasks"), "--inverse-demos": ("inverse_prm", "--demos"),
                "--inverse-train-tasks": ("inverse_prm", "--train-tasks"), "--action-demos": ("action_prm", "--demos"),
                "--action-heldout-demos": ("action_prm", "--heldout-demos")}
LADDER_STEPS = ["ladder_bon", "ladder_dpo"]  # --recipe paper only: the oracle ladder's two rungs per seed
# What --recipe paper sets beside each script's own `--recipe paper` (flag -> value; a size flag given wins):
# π0 as the compact preset's runs of docs/findings.md (2,000 × 2: π0 in the paper's 40-70% regime), 100 games per
# evaluation split (the issue's ≥ 100; one evaluation of 100 games moves by about ±5 points).
RECIPE_SIZES = {"--sft-epochs": 2.0, "--eval-games": 100}
KEPT_FILES = {"args.json", "summary.json", "evals.json", "ladder.json"}  # what --parts keeps of a run folder
# The tables README.md's results block is made from: the official recipes on the compact preset, where the recipes
# fit on 2 cores (the hour's default sizes are 1/100 of the recipes' data and show nothing either way).
README_RESULTS = ROOT / "benchmarks" / "results_household-compact_paper.md"
EVERY_SEED = "Every seed"  # the section of results.md with each seed's numbers; not copied into README.md
# (flag, default: about an hour on 2 cores, --full: the earlier tables' size, what it sets). The full values
# are the scripts' own defaults, except --eval-games (the scripts': 50).
SIZES = [
    ("--sft-epochs", 1.5, 3.0, "behaviour-cloning epochs of the shared π0 on 2,000 expert games"),
    ("--eval-games", 20, 30, "games per evaluation split, every script"),
    ("--agent-train-tasks", 16, 32, "games AgentPRM rolls out in Stage 1, 4 times each (--train-tasks)"),
    ("--inverse-demos", 64, 200, "InversePRM's expert demonstrations (D+) and its SFT baseline's (--demos)"),
    ("--inverse-train-tasks", 24, 64, "games InversePRM's π0 rolls out for D- (--train-tasks)"),
    ("--action-demos", 16, 48, "Action-PRM's action-only demonstrations (--demos)"),
    ("--action-heldout-demos", 8, 16, "Action-PRM's held-out demonstrations of the likelihood table (--heldout-demos)"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds (every script runs once per seed)")
    p.add_argument("--jobs", type=int, default=2, help="scripts run side by side (a job is one script of one "
                   "seed; each gets cores/jobs threads)")
    p.add_argument("--bon-n", type=int, nargs="+", default=[1, 2, 4, 8, 16],
                   help="N values of the Best-of-N curve BoN(π0, Q0) (Fig. 2b)")
    p.add_argument("--iterations", type=int, default=2, help="AgentPRM iterations")
    p.add_argument("--env", default="household", help="environment of every script (household-compact: the compact "
                   "preset the recipes fit on)")
    p.add_argument("--recipe", choices=["paper"], help="every script at its official recipe (`--recipe paper`), "
                   "π0 cloned for 2 epochs, 100 games per split, the oracle ladder's rungs; the size flags below are "
                   "not passed unless given")
    p.add_argument("--parts", help="folder the small result files of every finished job are copied to, and the "
                   "tables read from (default with --recipe: benchmarks/parts/<env>_<recipe>; else none: --out)")
    sizes = p.add_argument_group("sizes", "the defaults fit about an hour on 2 cores; with --full, each takes "
                                 "the value its help names after '--full:'")
    for flag, hour, full, what in SIZES:
        sizes.add_argument(flag, type=type(hour), help=f"{what} (default {hour}; --full: {full})")
    p.add_argument("--full", action="store_true", help="the larger sizes of the earlier tables (several hours on "
                   "2 cores) for every size flag not given")
    p.add_argument("--quick", action="store_true", help="every script with --quick and one seed: a pipeline check")
    p.add_argument("--out", help="folder of the per-seed run folders (default: runs/reproduce, with --recipe "
                   "runs/reproduce_<env>_<recipe>)")
    p.add_argument("--results", help="the Markdown tables written (default: benchmarks/results.md, with --recipe "
                   "benchmarks/results_<env>_<recipe>.md; README.md's results block comes from "
                   f"{shown(README_RESULTS)} only)")
    p.add_argument("--only", nargs="+", choices=STEPS + LADDER_STEPS, help="run only these steps of each seed's "
                   "pipeline (default: all; the ladder's with --recipe only); the rest is still aggregated if present")
    p.add_argument("--no-bon-rows", action="store_true", help="AgentPRM and InversePRM without their Best-of-N "
                   "rows (--bon-n 0): each costs ~N policy evaluations; the curve step still runs BoN")
    p.add_argument("--no-run", action="store_true", help="only aggregate the run folders already in --out "
                   "(with --parts: the parts there)")
    p.add_argument("--no-readme", action="store_true", help="do not copy the tables into README.md (only "
                   f"{README_RESULTS.name} is copied)")
    p.add_argument("--bon-curve", metavar="RUN", help=argparse.SUPPRESS)  # internal: one BoN curve, in a subprocess
    args = p.parse_args(argv)
    args.given_sizes = [flag for flag, *_ in SIZES if getattr(args, flag[2:].replace("-", "_")) is not None]
    for flag, hour, full, _ in SIZES:
        name = flag[2:].replace("-", "_")
        if getattr(args, name) is None:
            setattr(args, name, RECIPE_SIZES.get(flag, hour) if args.recipe else full if args.full else hour)
    if args.recipe and (args.full or args.quick):
        p.error("--recipe paper sets its own sizes: not with --full or --quick")
    if args.only is None:
        args.only = STEPS + LADDER_STEPS if args.recipe else STEPS
    elif not args.recipe and set(args.only) & set(LADDER_STEPS):
        p.error("the ladder steps run with --recipe paper only")
    tag = f"_{args.env}_{args.recipe}" if args.recipe else ""
    args.out = args.out or str(ROOT / "runs" / f"reproduce{tag}")
    args.results = args.results or str(ROOT / "benchmarks" / f"results{tag}.md")
    if args.parts is None and args.recipe:
        args.parts = str(ROOT / "benchmarks" / "parts" / tag[1:])
    if args.quick and argv is not None and "--seeds" not in argv:
        args.seeds = args.seeds[:1]
    args.command = " ".join(["python benchmarks/reproduce.py", *(argv or [])])
    return args


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Running the scripts
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


# glibc's malloc returns a freed block of more than 128 KB (a KV cache, a batch of activations) to the OS and
# maps fresh zeroed pages for the next one. The scripts allocate such blocks at every decoding step, and on the
# VMs we measure on, generation runs 1.2-1.3x faster when these two settings keep freed memory in the process
# (benchmarks/speed.py --only allocator prints the ratio). Other allocators ignore them; a value already in
# the environment wins.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def run_script(cmd: list[str], log_path: Path, threads: int) -> None:
    """One algorithm script as a subprocess; its output goes to log_path (tail printed if it fails)."""
    env = {**MALLOC_ENV, **os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {result.returncode}); end of {log_path}:\n{tail}")
    print(f"  done in {(time.time() - t0) / 60:5.1f} min: {' '.join(cmd[1:3])} ... ({log_path})", flush=True)


def clone_pi0(args: argparse.Namespace) -> Path:
    """π0, once for all seeds: behaviour cloning of the tiny model (agent_prm.py with 0 iterations clones it,
    evaluates it and stops). Every seed's algorithms start from this same π0, as in the paper where π0 is one
    given SFT policy; the seeds vary the rollouts, the PRMs and the policy updates."""
    pi0_run = Path(args.out) / "pi0"
    sizes = ["--quick"] if args.quick else ["--eval-games", str(args.eval_games), "--sft-epochs", str(args.sft_epochs)]
    run_script([sys.executable, "agent_prm.py", "--env", args.env, "--seed", "0", "--iterations", "0", "--out",
                str(pi0_run), *sizes], Path(args.out) / "pi0.log", os.cpu_count() or 1)
    keep(args, pi0_run)
    return pi0_run


def keep(args: argparse.Namespace, run: Path) -> None:
    """With --parts: copy the small result files of a finished run folder (the KEPT_FILES at any depth in it) to
    the same place under --parts, where the tables are read from. They are committed, so the paths they hold are
    made relative to the repository root (no machine's absolute paths)."""
    if not args.parts:
        return
    for f in run.rglob("*.json"):
        if f.name in KEPT_FILES:
            target = Path(args.parts) / f.relative_to(Path(args.out))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.read_text().replace(f"{ROOT}/", ""))


def seed_commands(seed: int, args: argparse.Namespace, pi0_run: Path) -> dict[str, list[str]]:
    """{step: command} of one seed's pipeline, for the steps in --only."""
    py, base = sys.executable, Path(args.out) / f"s{seed}"
    pi0_args = json.loads((pi0_run / "args.json").read_text())
    # π0 = the cloned tiny model, no further cloning; algorithm games start after π0's cloning games
    shared = ["--env", args.env, "--seed", str(seed), "--model", str(pi0_run / "pi0_base"), "--sft-demos", "0",
              "--first-task", str(pi0_args["first_task"])]
    sizes: dict[str, list[str]] = {"agent_prm": [], "inverse_prm": [], "action_prm": []}
    for flag, (script, own_flag) in SCRIPT_SIZES.items():  # with --recipe, only the sizes given
        if not args.recipe or flag in args.given_sizes:
            sizes[script] += [own_flag, str(getattr(args, flag[2:].replace("-", "_")))]
    # π0 was cloned on prompts whose history shows environment actions only (agent_prm's default); Action-PRM
    # by default carries its inferred thoughts in the history, which this π0 never saw, so it runs without.
    always = {"agent_prm": ["--iterations", str(args.iterations)], "inverse_prm": [],
              "action_prm": ["--no-history-reasons"]}
    if args.recipe:  # each script's own recipe
        always = {script: ["--recipe", args.recipe, *flags] for script, flags in always.items()}
        always["agent_prm"] += ["--bon-n", "4"]  # BoN(π_i, Q) rows at N = 4; the curve step has every N of π0's
    commands = {}
    for script in ("agent_prm", "inverse_prm", "action_prm"):
        own = ["--quick"] if args.quick else ["--eval-games", str(args.eval_games), *sizes[script]]
        own += ["--bon-n", "0"] if args.no_bon_rows and script != "action_prm" else []
        commands[script] = [py, f"{script}.py", *shared, *always[script], "--out", str(base / script), *own]
    # The N curve reuses π0 and Q0 of the AgentPRM run (a separate process, so its thread count is set alike).
    commands["bon_curve"] = [py, str(Path(__file__).resolve()), "--bon-curve", str(base / "agent_prm"), "--bon-n",
                             *[str(n) for n in args.bon_n], *(["--quick"] if args.quick else [])]
    # The oracle ladder on the AgentPRM run: BoN(π0, Q^μ) on the validation split; Stage 3 against Q^μ at the
    # run's own Stage-3 settings (--dpo-lr without a value: the run's learning rate), on every split.
    ladder = [py, str(ROOT / "benchmarks" / "oracle_ladder.py"), str(base / "agent_prm"), "--eval-games",
              str(args.eval_games)]
    commands["ladder_bon"] = [*ladder, "--bon-n", *[str(n) for n in args.bon_n], "--eval-splits",
                              "eval_in_distribution", "--out", str(base / "ladder_bon")]
    commands["ladder_dpo"] = [*ladder, "--bon-n", "0", "--dpo-lr", "--out", str(base / "ladder_dpo")]
    return {step: cmd for step, cmd in commands.items() if step in args.only}


def run_seeds(args: argparse.Namespace, pi0_run: Path, threads: int) -> None:
    """Every (seed, step) is one job of a pool of --jobs workers, so the cores stay busy until the last job
    (a pool of whole seed pipelines would leave a core idle while the third of 3 seeds runs alone). A seed's
    curve and ladder rungs wait for its AgentPRM run; they are queued last, so by the time a worker takes one,
    that run has started, and waiting cannot deadlock the pool."""
    commands = {s: seed_commands(s, args, pi0_run) for s in args.seeds}
    log = lambda s, step: Path(args.out) / f"s{s}" / f"{step}.log"  # noqa: E731

    def job(seed: int, step: str) -> None:
        run_script(commands[seed][step], log(seed, step), threads)
        keep(args, Path(args.out) / f"s{seed}" / ("agent_prm/bon_curve" if step == "bon_curve" else step))

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        agent_runs = {s: pool.submit(job, s, "agent_prm") for s, cmds in commands.items() if "agent_prm" in cmds}
        jobs = list(agent_runs.values())
        jobs += [pool.submit(job, s, step) for step in ("inverse_prm", "action_prm")
                 for s, cmds in commands.items() if step in cmds]

        def after_agent_run(seed: int, step: str) -> None:
            if seed in agent_runs:
                agent_runs[seed].result()  # re-raises its failure: no curve or ladder without that run
            job(seed, step)

        jobs += [pool.submit(after_agent_run, s, step) for step in ("bon_curve", *LADDER_STEPS)
                 for s, cmds in commands.items() if step in cmds]
        for future in jobs:
            future.result()  # re-raises a failed script's error


def bon_curve(run_path: Path, ns: list[int], quick: bool) -> None:
    """BoN(π0, Q0) for every N on the validation split, evaluated with the AgentPRM run's own settings."""
    import agent_prm
    import common
    from prm_diagnostics import load_run  # the same loading of a run's settings and π0

    args, agent = load_run(run_path)
    args.eval_splits = args.eval_splits[:1]
    agent.add_role("prm", head=True, fresh=True)
    agent.load_role("prm", run_path / "iter1" / "prm")
    curve_run = common.RunDir("bon_curve", args.env, args.seed, str(run_path / "bon_curve"), args)
    curve = {}
    for n in ns:
        name = common.paper_name(0, 0, n)
        curve[n] = agent_prm.evaluate_row(agent, curve_run, args, name, n)[args.eval_splits[0]]
    curve_run.write_json("summary.json", {"split": args.eval_splits[0], "curve": {str(n): s for n, s in curve.items()}})


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Aggregation over seeds
# ──────────────────────────────────────────────────────────────────────────────────────────────────────


def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0)


def cell(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def rows_of(seed_dirs: list[Path], algo: str) -> dict[str, dict[str, list[dict]]]:
    """{row name: {split: [summary per seed]}} from every seed's <algo>/summary.json."""
    rows: dict[str, dict[str, list[dict]]] = {}
    for d in seed_dirs:
        f = d / algo / "summary.json"
        if f.exists():
            finished = json.loads(f.read_text())["rows"]
        elif (d / algo / "evals.json").exists():  # a run still going (or stopped): the rows evaluated so far
            finished = json.loads((d / algo / "evals.json").read_text())
        else:
            continue
        for name, row in finished.items():
            for split, summary in row.items():
                rows.setdefault(name, {}).setdefault(split, []).append(summary)
    return rows


def curve_points(seed_dirs: list[Path]) -> dict[int, list[float]]:
    """{N: [ID success of BoN(π0, Q0) per seed]} from the curve step and from the AgentPRM runs' own
    BoN(π0,Q0) rows (the same quantity: π0 and Q0 of that seed, the validation split)."""
    curves: dict[int, list[float]] = {}
    for d in seed_dirs:
        points: dict[int, float] = {}
        run = d / "agent_prm"
        if (run / "args.json").exists():
            bon_n = json.loads((run / "args.json").read_text()).get("bon_n", [])
            for name, row in rows_of([d], "agent_prm").items():
                if name.startswith("BoN(π0,Q0)") and "eval_in_distribution" in row:
                    n = int(name.split("N=")[1]) if "N=" in name else (bon_n[0] if len(bon_n) == 1 else None)
                    if n is not None:
                        points[n] = row["eval_in_distribution"][0]["success"]
        f = run / "bon_curve" / "summary.json"
        if f.exists():
            points.update({int(n): s["success"] for n, s in json.loads(f.read_text())["curve"].items()})
        for n, success in points.items():
            curves.setdefault(n, []).append(success)
    return curves


def heldout_likelihood(seed_dir: Path) -> dict[str, dict]:
    """{model: its held-out likelihood metrics} of one seed's Action-PRM run ({} when it has not finished)."""
    f = seed_dir / "action_prm" / "summary.json"
    return json.loads(f.read_text()).get("heldout_likelihood", {}) if f.exists() else {}


def ladder_rows(seed_dirs: list[Path], named_by: list[Path]) -> dict[str, dict[str, list[dict]]]:
    """rows_of the oracle ladder's two rungs. Both evaluate π0 again, each on its own samples: a row both steps
    write on any seed of named_by (π0) is named by its step, so neither replaces the other."""
    shared = set.intersection(*(set(rows_of(named_by, step)) for step in LADDER_STEPS))  # names both rungs write
    return {(f"{name} ({step})" if name in shared else name): by_split
            for step in LADDER_STEPS for name, by_split in rows_of(seed_dirs, step).items()}


def every_seed(seed_dirs: list[Path]) -> list[str]:
    """One table of what the mean ± std are made of: every row's success on each seed, in / out of distribution,
    the Best-of-N curve's points and Action-PRM's held-out marginal likelihood."""
    splits = ("eval_in_distribution", "eval_out_of_distribution")
    lines = [f"## {EVERY_SEED}", "", "Success %, in / out of distribution (–: not run); the curve in distribution; "
             "Action-PRM's held-out marginal log p(x | s) in nats per action.", "",
             "| algorithm | row | " + " | ".join(f"seed {d.name[1:]}" for d in seed_dirs) + " |",
             "|---|---|" + "---|" * len(seed_dirs)]

    def add(algorithm: str, per_seed: list[dict[str, str]]) -> None:
        names = list(dict.fromkeys(name for cells in per_seed for name in cells))
        lines.extend(f"| {algorithm if i == 0 else ''} | {name} | " + " | ".join(c.get(name, "–") for c in per_seed)
                     + " |" for i, name in enumerate(names))

    def success(rows: dict[str, dict[str, list[dict]]]) -> dict[str, str]:
        return {name: " / ".join(f"{by_split[sp][0]['success']:.1f}" if by_split.get(sp) else "–" for sp in splits)
                for name, by_split in rows.items()}

    add("AgentPRM", [success(rows_of([d], "agent_prm")) for d in seed_dirs])
    add("Best-of-N curve", [{f"BoN(π0,Q0) N={n}": f"{v[0]:.1f}" for n, v in sorted(curve_points([d]).items())}
                            for d in seed_dirs])
    add("Oracle ladder", [success(ladder_rows([d], seed_dirs)) for d in seed_dirs])
    add("InversePRM", [success(rows_of([d], "inverse_prm")) for d in seed_dirs])
    add("Action-PRM", [success(rows_of([d], "action_prm")) for d in seed_dirs])
    add("", [{f"{name}: marginal": f"{m['marginal']:.3f}" for name, m in heldout_likelihood(d).items()
               if "marginal" in m} for d in seed_dirs])
    return lines + [""]


def table(rows: dict[str, dict[str, list[dict]]], splits: list[str], task_types: list[str]) -> list[str]:
    short = {"pick_and_place": "pick", "pick_clean_then_place": "clean", "pick_heat_then_place": "heat",
             "pick_cool_then_place": "cool", "look_at_obj_in_light": "look", "pick_two_obj_and_place": "pick2"}
    lines = []
    for split in (sp for sp in splits if any(by_split.get(sp) for by_split in rows.values())):  # none: not run
        lines += [f"**{split}** (success %, mean ± std over seeds; #actions; success % per task type)", "",
                  "| method | seeds | success % | #actions | " + " | ".join(short.get(t, t) for t in task_types) + " |",
                  "|---|---|---|---|" + "---|" * len(task_types)]
        for name, by_split in rows.items():
            summaries = by_split.get(split, [])
            if not summaries:
                continue
            per_type = [cell([s["per_type"][t] for s in summaries if t in s["per_type"]], 0) for t in task_types]
            lines.append(f"| {name} | {len(summaries)} | {cell([s['success'] for s in summaries])} | "
                         f"{cell([s['actions'] for s in summaries])} | " + " | ".join(per_type) + " |")
        lines.append("")
    return lines


def shown(path: str | Path) -> str:
    """A path as results.md prints it: relative to the repository root when it lies inside it (committed files
    name no machine's absolute paths), else as given."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def seed_folders(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The folder the tables are read from, and its seed folders: --out's for --seeds, or with --parts every
    seed whose parts are there, whichever run made them."""
    folder = Path(args.parts or args.out)
    seeds = sorted(int(d.name[1:]) for d in folder.glob("s*") if d.name[1:].isdigit()) if args.parts else args.seeds
    return folder, [folder / f"s{s}" for s in seeds]


def aggregate(args: argparse.Namespace) -> str:
    import envs

    folder, seed_dirs = seed_folders(args)
    seeds = [int(d.name[1:]) for d in seed_dirs]
    splits = ["eval_in_distribution", "eval_out_of_distribution"]
    task_types = list(envs.TASK_TYPES)
    commands_file = folder / "commands.txt"
    commands = commands_file.read_text().split("\n") if commands_file.exists() else [args.command]
    commands = list(dict.fromkeys([*(c for c in commands if c), args.command]))  # in order, without repeats
    title = (f"# Results at the official recipes on `{args.env}` (tiny model, CPU)" if args.recipe else
             "# Results on the built-in household game (tiny model, CPU)")
    lines = [title, "",
             "Made by " + " then ".join(f"`{c}`" for c in commands) + f" (seeds {', '.join(map(str, seeds))}; "
             f"{os.cpu_count()} cores). Every number below is read from the run folders under `{shown(folder)}`"
             f"{' — QUICK sizes: a pipeline check, not a result' if args.quick else ''}.", ""]
    pi0_args = folder / "pi0" / "args.json"
    if pi0_args.exists():  # what every row starts from: the shared π0 and how it was cloned
        pi0 = json.loads(pi0_args.read_text())
        lines += [f"π0 (shared by every seed and algorithm): the `{pi0['model']}` model cloned on {pi0['sft_demos']} "
                  f"expert games for {pi0.get('sft_epochs', 1.0):g} epoch(s) (`{shown(pi0_args.parent)}/args.json`).", ""]
    lines += ["## AgentPRM (Table 1 shape)", "", "Q_j is the PRM trained on π_j's rollouts; BoN uses N = 4.", ""]
    lines += table(rows_of(seed_dirs, "agent_prm"), splits, task_types)

    curves = curve_points(seed_dirs)
    if curves:
        lines += ["## Best-of-N scaling, BoN(π0, Q0) on eval_in_distribution (Fig. 2b shape)", "",
                  "N = 1 is π0 sampled at the Best-of-N temperature without the PRM; every N evaluates π0 and Q0 "
                  "of the seed's AgentPRM run again (the curve step; a seed without it: the run's own BoN(π0,Q0) "
                  "rows).", "",
                  "| N | " + " | ".join(str(n) for n in sorted(curves)) + " |",
                  "|---|" + "---|" * len(curves),
                  "| success % | " + " | ".join(cell(curves[n]) for n in sorted(curves)) + " |", ""]

    ladder = ladder_rows(seed_dirs, seed_dirs)
    if ladder:
        lines += ["## Oracle ladder (Q^μ, on each seed's AgentPRM run)", "",
                  "Q^μ(s, a) = r + γ V^expert(s'), the household expert played on from s' (benchmarks/oracle_ladder.py): "
                  "Best-of-N with it, and Stage 3 against it at the run's own settings; π0 is evaluated again with "
                  "the ladder's samples.", ""]
        lines += table(ladder, splits, task_types)

    lines += ["## InversePRM (Table 2 shape)", "", "All rows start from the same π0 as AgentPRM; SFT is π0 fine-tuned "
              "on the same demonstrations InversePRM learns from. As in the paper's Fig. 5, Q_j is the PRM trained "
              "on π_j's rollouts (Alg. 2 calls it Q_{j+1}).", ""]
    lines += table(rows_of(seed_dirs, "inverse_prm"), splits, task_types)
    action_rows = rows_of(seed_dirs, "action_prm")
    lines += ["## Action-PRM", ""] + (table(action_rows, splits, task_types) if action_rows else ["Not run.", ""])
    likelihood: dict[str, dict[str, list[float]]] = {}
    for d in seed_dirs:
        for name, metrics in heldout_likelihood(d).items():
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    likelihood.setdefault(name, {}).setdefault(k, []).append(float(v))
    if likelihood:
        # the columns of action_prm.py's own table, in its order (log p in nats per held-out action)
        columns = [("no_thought", "no thought"), ("inferred", "inferred z*"), ("marginal", "marginal"),
                   ("expert_reasons", "expert reason"), ("thought_f1", "thought F1"),
                   ("own_action_matches", "own action = x")]
        steps = sorted({int(v) for m in likelihood.values() for v in m.get("steps", [])})
        lines += [f"Held-out action log-likelihood log p(x | s, ·), nats per action ({', '.join(map(str, steps))} "
                  f"steps of expert games never trained on; higher is better); thought F1: word overlap of the "
                  f"inferred thoughts with the hidden expert reasons; own action = x: how often the policy's own "
                  f"ACTION after its thought is the observed one:", "",
                  "| model | " + " | ".join(title for _, title in columns) + " |", "|---|" + "---|" * len(columns)]
        lines += [f"| {name} | " + " | ".join(cell(m.get(k, []), 3) for k, _ in columns) + " |"
                  for name, m in likelihood.items()]
        lines.append("")
    if len(seed_dirs) > 1:
        lines += every_seed(seed_dirs)
    return "\n".join(lines)


def plot(args: argparse.Namespace, png: Path) -> bool:
    """success vs N (BoN(π0,Q0)) and vs AgentPRM iteration; False when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib); the table is written anyway")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, seed_dirs = seed_folders(args)
    fig, (ax_n, ax_i) = plt.subplots(1, 2, figsize=(9, 3.5))
    oracle = {int(name.split("N=")[1]): [s["success"] for s in row.get("eval_in_distribution", [])]
              for name, row in rows_of(seed_dirs, "ladder_bon").items() if name.startswith("BoN(π0,Q^μ) N=")}
    for label, curves in (("Q0 (learned)", curve_points(seed_dirs)), ("Q^μ (exact, the oracle ladder)", oracle)):
        ns = sorted(n for n in curves if curves[n])
        if ns:
            means, stds = zip(*(mean_std(curves[n]) for n in ns))
            ax_n.errorbar(ns, means, yerr=stds, marker="o", capsize=3, label=label)
            ax_n.set_xscale("log", base=2)
            ax_n.set_xticks(ns, [str(n) for n in ns])
    ax_n.set(xlabel="N (Best-of-N)", ylabel="success % (eval_in_distribution)", title="BoN(π0, Q)")
    if oracle:
        ax_n.legend(fontsize=8)
    rows = rows_of(seed_dirs, "agent_prm")
    policies = sorted((n for n in rows if n.startswith("π")), key=lambda n: int(n[1:]))
    for split in ("eval_in_distribution", "eval_out_of_distribution"):
        points = [mean_std([s["success"] for s in rows[p].get(split, [])]) for p in policies if rows[p].get(split)]
        if points:
            ax_i.errorbar(range(len(points)), [m for m, _ in points], yerr=[s for _, s in points], marker="o",
                          capsize=3, label=split)
    ax_i.set(xlabel="AgentPRM iteration i (policy π_i)", ylabel="success %", title="AgentPRM π_i",
             xticks=range(len(policies)))
    ax_i.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    return True


def readme_summary(markdown: str, has_plot: bool, results: str) -> str:
    """The README's results block, made from the Markdown of `results` (a path from the repository root) alone,
    so the committed block can be checked against the committed file: its header lines; one table of every row's
    success % per split (the #actions and per-task-type columns stay in the file); every other table (the Best-of-N
    curve, the held-out likelihoods) with its section's title and note, but not the EVERY_SEED section; the plot."""
    intro: list[str] = []
    sections: dict[str, dict] = {}  # title -> {"success": {row: {split: cell}}, "notes": [...], "other": [...]}
    section = split = None
    for line in markdown.strip().split("\n")[2:]:  # [2:]: the file's own title
        if line.startswith("## "):
            section, split = line[3:], None
            sections[section] = {"success": {}, "notes": [], "other": []}
        elif section == EVERY_SEED:  # results.md only
            continue
        elif section is None:
            intro.append(line)
        elif line.startswith("**") and "** (success %" in line:  # a table() of success rows follows
            split = line[2:].split("**")[0]
        elif split and line.startswith("| "):  # columns: method, seeds, success %, ...
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] != "method":
                sections[section]["success"].setdefault(cells[0], {})[split] = cells[2]
        elif line.strip() and not line.startswith("|--"):
            split, sec = None, sections[section]
            # a note above the section's success tables joins the summary's note; anything after them, or any
            # other table, is copied with its section's title
            (sec["other"] if line.startswith("|") or sec["other"] or sec["success"] else sec["notes"]).append(line)
        elif sections[section]["other"]:
            sections[section]["other"].append(line)
    splits = list(dict.fromkeys(sp for sec in sections.values() for row in sec["success"].values() for sp in row))
    notes = " ".join(note for sec in sections.values() if sec["success"] for note in sec["notes"])
    lines = [" ".join(line for line in intro if line.strip()), "",
             f"Success % (mean ± std over seeds) of every row; [`{results}`]({results}) has "
             f"every table, with the number of actions and the success per task type. {notes}".strip(), "",
             "| algorithm | row | " + " | ".join(splits) + " |", "|---|---|" + "---|" * len(splits)]
    for title, sec in sections.items():
        for i, (name, by_split) in enumerate(sec["success"].items()):
            lines.append(f"| {title.split(' (')[0] if i == 0 else ''} | {name} | "
                         + " | ".join(by_split.get(sp, "–") for sp in splits) + " |")
    for title, sec in sections.items():
        if sec["other"]:
            body = "\n".join(sec["other"]).strip().split("\n")
            note = body.pop(0) if sec["success"] and not body[0].startswith("|") else " ".join(sec["notes"])
            lines += ["", f"**{title}.** {note}".strip(), "", "\n".join(body).strip()]
    if has_plot:
        lines += ["", f"![success vs N and vs iteration]({Path(results).with_suffix('.png')})"]
    return "\n".join(lines).strip()


def update_readme(markdown: str, has_plot: bool, results: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin not in text or end not in text:
        print(f"README.md has no {begin} ... {end} markers: not updated")
        return
    head, rest = text.split(begin, 1)
    readme.write_text(head + begin + "\n" + readme_summary(markdown, has_plot, results) + "\n" + end +
                      rest.split(end, 1)[1])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.bon_curve:
        bon_curve(Path(args.bon_curve), args.bon_n, args.quick)
        return
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    print(f"reproduce: seeds {args.seeds}, {args.jobs} jobs at a time with {threads} thread(s) each; runs in {args.out}")
    if not args.no_run:
        for folder in dict.fromkeys(f for f in (args.out, args.parts) if f):
            Path(folder).mkdir(parents=True, exist_ok=True)
            with open(Path(folder) / "commands.txt", "a") as log:  # results.md lists every command that ran
                log.write(args.command + "\n")
        t0 = time.time()
        run_seeds(args, clone_pi0(args), threads)
        print(f"reproduce: all runs done in {(time.time() - t0) / 60:.1f} min")
    markdown = aggregate(args)
    results = Path(args.results)
    results.write_text(markdown + "\n")
    has_plot = plot(args, results.with_suffix(".png"))
    if not args.no_readme and not args.quick and results.resolve() == README_RESULTS:
        update_readme(markdown, has_plot, shown(results))
    print(markdown)
    print(f"\nwrote {results}" + (f" and {results.with_suffix('.png')}" if has_plot else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
