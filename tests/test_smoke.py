"""End-to-end smoke tests: every script's --help, --quick runs with the tiny model, and user errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["agent_prm.py", "inverse_prm.py", "action_prm.py"]


def run(script, *args, timeout=900):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


BENCHMARKS = ["benchmarks/speed.py", "benchmarks/reproduce.py", "benchmarks/prm_diagnostics.py", "benchmarks/memory.py",
              "benchmarks/oracle_ladder.py", "benchmarks/gpu_check.py"]


@pytest.mark.parametrize("script", SCRIPTS + ["envs.py", *BENCHMARKS])
def test_help_exits_zero(script):
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout


@pytest.mark.parametrize("script,args,message", [
    ("agent_prm.py", ["--model", "gpt-17"], "unknown model 'gpt-17'"),
    ("agent_prm.py", ["--env", "nope"], "unknown --env 'nope'"),
    ("agent_prm.py", ["--gamma", "1.5"], "--gamma must be in (0, 1]"),
    ("agent_prm.py", ["--policy", "/no/such/adapter", "--sft-demos", "1"], "no such folder"),
    ("agent_prm.py", ["--eval-splits", "test"], "unknown --eval-splits test"),
    ("agent_prm.py", ["--dpo-steps", "-3"], "--dpo-steps must be ≥ 0"),
    ("inverse_prm.py", ["--dpo-steps", "-3"], "--dpo-steps must be ≥ 0"),
    ("inverse_prm.py", ["--demos-file", "/no/such/file.jsonl"], "no such file"),
    ("inverse_prm.py", ["--gamma", "0"], "--gamma must be in (0, 1]"),
    ("inverse_prm.py", ["--rollout-resets", "2"], "--rollout-resets must be in [0, 1]"),
    ("inverse_prm.py", ["--rollout-resets", "1", "--demos", "3", "--train-tasks", "4"], "only 6 of the 8 have one"),
])
def test_user_errors_are_one_line_exit_2(script, args, message, tmp_path):
    result = run(script, *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize("script,args,message", [
    ("benchmarks/oracle_ladder.py", ["--relabel-prm", "-1"], "--relabel-prm ≥ 0"),
    ("benchmarks/oracle_ladder.py", ["--dpo-lr"], "has no iter1/rollouts.jsonl"),
    ("benchmarks/prm_diagnostics.py", ["--oracle-dpo", "expert", "--dpo-beta", "0"], "--dpo-beta takes a number > 0"),
])
def test_benchmark_user_errors_are_one_line_exit_2(script, args, message, tmp_path):
    result = run(script, str(tmp_path), *args, timeout=300)  # tmp_path: a folder that is no run
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_inverse_prm_rejects_bad_demonstration_files(tmp_path):
    cases = {"empty.jsonl": "", "garbage.jsonl": "not json\n",
             "noaction.jsonl": json.dumps({"task": "t", "steps": [{"observation": "o"}]}) + "\n",
             "otherenv.jsonl": json.dumps({"env": "alfworld", "task": "t",
                                           "steps": [{"observation": "o", "action": "look"}]}) + "\n"}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_text(content)
        out = tmp_path / f"run_{name}"
        result = run("inverse_prm.py", "--demos-file", str(path), "--out", str(out))
        assert result.returncode == 2 and "error: --demos-file" in result.stderr, (name, result.stderr[-1000:])
        assert not out.exists(), "nothing may be written for a bad input"


def _check_run_folder(out: Path):
    assert (out / "args.json").exists() and (out / "summary.json").exists()
    assert (out / "metrics.jsonl").read_text().strip()
    summary = json.loads((out / "summary.json").read_text())
    return summary


def test_agent_prm_quick(tmp_path):
    out = tmp_path / "agent_prm"
    result = run("agent_prm.py", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("π0", "π1", "BoN(π0,Q0)", "BoN(π1,Q0)"):
        assert row in result.stdout
    summary = _check_run_folder(out)
    assert {"π0", "π1", "BoN(π0,Q0)"} <= set(summary["rows"])
    assert (out / "iter1" / "prm" / "adapter_config.json").exists()
    assert (out / "iter1" / "policy" / "adapter_config.json").exists()
    bon = [json.loads(line) for line in (out / "evals" / "BoN_π0_Q0__eval_in_distribution.jsonl").open()]
    assert all("prm_q_candidates" in step for traj in bon for step in traj["steps"])
    # re-running with the same --out skips every finished stage; Q̂ and D are rebuilt from the saved rollouts
    again = run("agent_prm.py", "--quick", "--out", str(out), timeout=300)
    assert again.returncode == 0 and "(s,a) pairs" in again.stdout
    assert "rollouts of π0 [" not in again.stderr
    # check 3 of the PRM diagnostics (true Q^π0 by Monte-Carlo), computed once, then read from its cache
    cache = tmp_path / "oracle.json"
    oracle = [run("benchmarks/prm_diagnostics.py", str(out), str(out), "--games", "1", "--n", "2", "--temperatures",
                  "1.0", "--oracle-q", "1", "--oracle-cache", str(cache)) for _ in range(2)]
    assert all(o.returncode == 0 for o in oracle), oracle[0].stderr[-3000:]
    lines = [[line for line in o.stdout.splitlines() if "random sample (π0)" in line] for o in oracle]
    assert len(lines[0]) == 2 and lines[0] == lines[1] and "from " + str(cache) in oracle[1].stdout
    # check 4 reads the Best-of-N logs the run wrote (one line per log, no model loaded)
    check4 = run("benchmarks/prm_diagnostics.py", str(out), "--grounding")
    assert check4.returncode == 0, check4.stderr[-3000:]
    assert check4.stdout.count("grounding ") == len(list((out / "evals").glob("BoN*.jsonl"))) > 0
    # --grounding-on: the same logs, re-scored by the run's own PRM, are judged at the same steps
    rescored = run("benchmarks/prm_diagnostics.py", str(out), "--grounding-on", str(out))
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    judged = [[line.split(": ")[1].split(" with ")[0] for line in r.stdout.splitlines() if line.startswith("grounding ")]
              for r in (check4, rescored)]
    assert judged[0] == judged[1] and judged[0]
    # check 5 trains fresh PRMs on the run's rollouts (Q̂, then the admissibility control) and re-runs check 4
    check5 = run("benchmarks/prm_diagnostics.py", str(out), "--retrain", "--prm-epochs", "0.5")
    assert check5.returncode == 0, check5.stderr[-3000:]
    assert "each PRM trained for 0.5 epoch(s)" in check5.stdout
    assert check5.stdout.count("PRM trained on ") == 2
    assert check5.stdout.count("grounding ") == 2 * check4.stdout.count("grounding ")
    # check 6 plays the validation games with Best-of-N whose PRM is the admissibility indicator
    check6 = run("benchmarks/prm_diagnostics.py", str(out), "--admissible-bon", "2")
    assert check6.returncode == 0, check6.stderr[-3000:]
    assert "BoN(π0,admissible) N=2" in check6.stdout
    episodes = [json.loads(line) for line in
                (out / "admissible_bon" / "evals" / "BoN_π0_admissible__N_2__eval_in_distribution.jsonl").open()]
    assert episodes and all(traj["steps"] for traj in episodes)
    # check 9 runs the run's Stage 3 against the admissibility indicator, then plays π1 on the validation games
    check9 = run("benchmarks/prm_diagnostics.py", str(out), "--oracle-dpo", "expert", "--dpo-steps", "2",
                 "--dpo-pairs", "6")
    assert check9.returncode == 0, check9.stderr[-3000:]
    assert "2 DPO batches of 4 prompts (β = 0.1) against 1[the expert's action]" in check9.stdout
    assert "pairs at 6 states" in check9.stdout and "π1 against 1[the expert's action]" in check9.stdout
    assert "π0's samples at these 6 states" in check9.stdout and "π1's samples at these 6 states" in check9.stdout
    assert "π1 (this check) along its own eval_in_distribution episodes" in check9.stdout
    assert "at 6 states of π0's own eval_in_distribution episodes" in check9.stdout
    assert (out / "oracle_dpo_expert_2x4" / "policy" / "adapter_config.json").exists()


def test_inverse_prm_quick(tmp_path):
    out = tmp_path / "inverse_prm"
    result = run("inverse_prm.py", "--quick", "--rollout-resets", "0.5", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|D+| =" in result.stdout and "|D-| =" in result.stdout and "3 from expert states" in result.stdout
    rollouts = [json.loads(line) for line in (out / "iter1" / "rollouts.jsonl").open()]
    assert sorted(r["learner_from"] > 0 for r in rollouts) == [False] * 3 + [True] * 3
    summary = _check_run_folder(out)
    assert {"Expert", "SFT", "InversePRM π0", "InversePRM π1", "BoN(π0,Q0)"} <= set(summary["rows"])
    assert summary["rows"]["Expert"]["eval_in_distribution"]["success"] == 100.0
    for artifact in ("sft_baseline", "iter1/prm", "iter1/policy"):
        assert (out / artifact / "adapter_config.json").exists(), artifact
    transitions = [json.loads(line) for line in (out / "iter1" / "transitions.jsonl").open()]
    assert {t["label"] for t in transitions} == {0.0, 1.0}
    # D-: the learner's own steps only, not the expert prefix a reset replayed
    assert sum(t["label"] == 0.0 for t in transitions) == sum(len(r["steps"]) - r["learner_from"] for r in rollouts)
    # every non-terminal a' was relabelled by π0 (a sample may be empty text: an invalid action, still a')
    assert all(t["next_action"] is not None for t in transitions if t["next_state"] is not None)
    # resuming with other demonstrations (or another history window) would pair the saved a' with other s'
    demonstrations = (out / "demonstrations.jsonl").read_text()
    for flags, error in ((["--demos", "3"], "other demonstrations"), (["--history-window", "1"], "other transitions")):
        refused = run("inverse_prm.py", "--quick", "--out", str(out), *flags, timeout=300)
        assert refused.returncode == 2 and error in refused.stderr, refused.stderr[-3000:]
    assert (out / "demonstrations.jsonl").read_text() == demonstrations
    # the PRM diagnostics read an InversePRM run too (check 1 on Q1, check 2 on a synthetic ε-expert D-)
    diag = run("benchmarks/prm_diagnostics.py", str(out), "--games", "2", "--n", "2", "--temperatures", "1.0",
               "--learnability", "--learn-games", "2", "--prm-epochs", "0.5")
    assert diag.returncode == 0, diag.stderr[-3000:]
    assert "pick rate of the expert's action" in diag.stdout and "a fresh InversePRM on" in diag.stdout
    # check 7: the pairs Q1 makes of π0's two samples at the run's Stage-3 states
    check7 = run("benchmarks/prm_diagnostics.py", str(out), "--dpo-pairs", "6", "--dpo-margin", "0")
    assert check7.returncode == 0, check7.stderr[-3000:]
    assert "pairs at 6 states" in check7.stdout and "δ = 0.0" in check7.stdout
