"""Smoke test: `python action_prm.py --quick` end to end (tiny model, CPU), and its command-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import envs

ROOT = Path(__file__).resolve().parent.parent


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, str(ROOT / "action_prm.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_quick_run_writes_every_output(tmp_path):
    out = tmp_path / "tmp"
    result = _run("--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ["args.json", "metrics.jsonl", "summary.json", "demonstrations.jsonl", "heldout.json",
                 "demonstrations_with_thoughts.jsonl", "iter1/thought_groups.jsonl", "iter1/policy/adapter_config.json",
                 "sft_actions/adapter_config.json", "sft_reasons/adapter_config.json",
                 "sft_inferred/adapter_config.json"]:
        assert (out / name).exists(), name
    # the product: the same demonstrations, every action kept, thoughts filled in; readable by envs.load_trajectories
    given = envs.load_trajectories(out / "demonstrations.jsonl")
    inferred = envs.load_trajectories(out / "demonstrations_with_thoughts.jsonl")
    assert [[s.action for s in d.steps] for d in inferred] == [[s.action for s in d.steps] for d in given]
    assert all(not s.reason for d in given for s in d.steps)  # the algorithm never saw the expert's reasons
    assert any(s.reason for d in inferred for s in d.steps)
    summary = json.loads((out / "summary.json").read_text())
    assert {"Expert", "π0", "SFT actions only", "SFT expert reasons", "Action-PRM π1",
            "SFT inferred thoughts"} <= set(summary["rows"])
    assert {"π0", "Action-PRM π1", "SFT inferred thoughts"} <= set(summary["heldout_likelihood"])
    assert Path(summary["policy_adapter"]).is_dir()
    stages = {json.loads(line).get("stage") for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert {"iter1/e_step", "iter1/m_step", "heldout", "eval"} <= stages
    assert "Held-out action log-likelihood" in result.stdout


def test_help_and_bad_input(tmp_path):
    assert _run("--help", timeout=120).returncode == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for args, message in [(["--demos-file", str(empty)], "no trajectories"),
                          (["--demos-file", str(tmp_path / "missing.jsonl")], "no such file"),
                          (["--group-size", "1"], "group-size >= 2")]:
        bad = _run(*args, "--out", str(tmp_path / "run"), timeout=120)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
