"""benchmarks/reproduce.py: the aggregation over seeds (the runs themselves are the scripts' smoke tests)."""

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import reproduce  # noqa: E402


def _summary(success, actions, per_type):
    return {"success": success, "actions": actions, "per_type": per_type}


def test_mean_and_sample_std():
    assert reproduce.mean_std([10.0, 20.0, 30.0]) == (20.0, 10.0)
    assert reproduce.cell([10.0, 20.0, 30.0]) == "20.0 ± 10.0"
    assert reproduce.cell([7.0]) == "7.0" and reproduce.cell([]) == "–"


def test_results_table_reads_every_seed(tmp_path):
    for seed, (s0, s1) in {1: (10.0, 30.0), 2: (20.0, 40.0)}.items():
        run = tmp_path / f"s{seed}" / "agent_prm"
        run.mkdir(parents=True)
        rows = {"π0": {"eval_in_distribution": _summary(s0, 25.0, {"pick_and_place": s0})},
                "π1": {"eval_in_distribution": _summary(s1, 20.0, {"pick_and_place": s1})}}
        (run / "summary.json").write_text(json.dumps({"rows": rows}))
        (run / "bon_curve").mkdir()
        (run / "bon_curve" / "summary.json").write_text(json.dumps(
            {"curve": {"1": _summary(s0, 25.0, {}), "4": _summary(s1, 20.0, {})}}))
    (tmp_path / "pi0").mkdir()  # the shared π0's run: how it was cloned is stated above the tables
    (tmp_path / "pi0" / "args.json").write_text(json.dumps({"model": "tiny", "sft_demos": 2000, "sft_epochs": 3.0}))
    args = reproduce.parse_args(["--out", str(tmp_path), "--seeds", "1", "2"])
    markdown = reproduce.aggregate(args)
    assert "the `tiny` model cloned on 2000 expert games for 3 epoch(s)" in markdown
    std = math.sqrt(50.0)  # sample std of {10, 20} and of {30, 40}
    assert f"| π0 | 2 | 15.0 ± {std:.1f} | 25.0 ± 0.0 | 15 ± 7 |" in markdown
    assert f"| π1 | 2 | 35.0 ± {std:.1f} | 20.0 ± 0.0 | 35 ± 7 |" in markdown
    assert f"| success % | 15.0 ± {std:.1f} | 35.0 ± {std:.1f} |" in markdown


def test_heldout_likelihood_table_averages_seeds(tmp_path):
    for seed, marginal in {1: -1.5, 2: -1.3}.items():
        run = tmp_path / f"s{seed}" / "action_prm"
        run.mkdir(parents=True)
        likelihood = {"π0": {"no_thought": -30.0, "inferred": -0.9, "marginal": -1.6, "steps": 159},
                      "Action-PRM π1": {"no_thought": -29.0, "inferred": -0.7, "marginal": marginal, "steps": 159}}
        (run / "summary.json").write_text(json.dumps({"rows": {}, "heldout_likelihood": likelihood}))
    markdown = reproduce.aggregate(reproduce.parse_args(["--out", str(tmp_path), "--seeds", "1", "2"]))
    assert "(159 steps of expert games" in markdown
    assert "| model | no thought | inferred z* | marginal | expert reason |" in markdown
    std = math.sqrt(0.02)  # sample std of {-1.5, -1.3}
    assert f"| Action-PRM π1 | -29.000 ± 0.000 | -0.700 ± 0.000 | -1.400 ± {std:.3f} | – |" in markdown
