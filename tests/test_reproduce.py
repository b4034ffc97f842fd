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


def _pi0_run(tmp_path):
    pi0 = tmp_path / "pi0"
    pi0.mkdir()
    (pi0 / "args.json").write_text(json.dumps({"first_task": 2000}))
    return pi0


def test_sizes_default_to_the_hour_budget_and_full_takes_the_larger_ones(tmp_path):
    pi0 = _pi0_run(tmp_path)
    hour = reproduce.seed_commands(1, reproduce.parse_args(["--out", str(tmp_path)]), pi0)
    full = reproduce.seed_commands(1, reproduce.parse_args(["--out", str(tmp_path), "--full", "--eval-games", "40"]), pi0)

    def flag(cmd, name):
        return cmd[cmd.index(name) + 1]

    assert flag(hour["inverse_prm"], "--demos") == "64" and flag(full["inverse_prm"], "--demos") == "200"
    assert flag(hour["inverse_prm"], "--train-tasks") == "24" and flag(full["inverse_prm"], "--train-tasks") == "64"
    assert flag(hour["action_prm"], "--demos") == "16" and flag(full["action_prm"], "--heldout-demos") == "16"
    assert flag(hour["agent_prm"], "--train-tasks") == "16" and flag(full["agent_prm"], "--train-tasks") == "32"
    assert flag(hour["agent_prm"], "--eval-games") == "20" and flag(full["agent_prm"], "--eval-games") == "40"
    for cmds in (hour, full):  # every script starts from the shared π0, after its cloning games
        for script in ("agent_prm", "inverse_prm", "action_prm"):
            assert flag(cmds[script], "--model") == str(pi0 / "pi0_base")
            assert flag(cmds[script], "--sft-demos") == "0" and flag(cmds[script], "--first-task") == "2000"
    assert "--no-history-reasons" in hour["action_prm"] and flag(hour["agent_prm"], "--iterations") == "2"
    assert reproduce.parse_args(["--full"]).sft_epochs == 3.0 and reproduce.parse_args([]).sft_epochs == 1.5
    quick = reproduce.seed_commands(1, reproduce.parse_args(["--out", str(tmp_path), "--quick"]), pi0)
    assert "--quick" in quick["inverse_prm"] and "--demos" not in quick["inverse_prm"]


def test_jobs_run_every_script_of_every_seed_and_each_curve_after_its_agent_prm_run(tmp_path, monkeypatch):
    import time

    pi0 = _pi0_run(tmp_path)
    for jobs in (1, 2, 4):  # 4: a free worker reaches the curves while the AgentPRM runs still go
        events = []

        def fake_run_script(cmd, log_path, threads):
            job = (log_path.parent.name, log_path.stem)
            events.append(("start", job))
            time.sleep(0.3 if job[1] == "agent_prm" else 0.0)
            events.append(("end", job))

        monkeypatch.setattr(reproduce, "run_script", fake_run_script)
        args = reproduce.parse_args(["--out", str(tmp_path), "--jobs", str(jobs)])
        reproduce.run_seeds(args, pi0, threads=1)  # jobs=1 would hang if a curve waited on a queued run
        ended = [job for what, job in events if what == "end"]
        assert sorted(ended) == sorted((f"s{s}", step) for s in (1, 2, 3) for step in reproduce.STEPS)
        for s in (1, 2, 3):
            assert events.index(("start", (f"s{s}", "bon_curve"))) > events.index(("end", (f"s{s}", "agent_prm")))


def test_results_name_run_folders_inside_the_repository_relative_to_it(tmp_path):
    assert reproduce.shown(ROOT / "runs" / "reproduce") == "runs/reproduce"
    assert reproduce.shown(tmp_path) == str(tmp_path)  # outside the repository: as given
    markdown = reproduce.aggregate(reproduce.parse_args(["--out", str(ROOT / "runs" / "no-such-run"), "--seeds", "1"]))
    assert "read from the run folders under `runs/no-such-run`." in markdown


def test_readme_block_summarises_results_between_the_markers(tmp_path, monkeypatch):
    for seed, (s0, s1) in {1: (10.0, 30.0), 2: (20.0, 40.0)}.items():
        run = tmp_path / f"s{seed}" / "agent_prm"
        run.mkdir(parents=True)
        rows = {"π0": {"eval_in_distribution": _summary(s0, 25.0, {}), "eval_out_of_distribution": _summary(s1, 20.0, {})},
                "π1": {"eval_in_distribution": _summary(s1, 20.0, {})}}
        (run / "summary.json").write_text(json.dumps({"rows": rows}))
        (run / "bon_curve").mkdir()
        (run / "bon_curve" / "summary.json").write_text(json.dumps({"curve": {"1": _summary(s0, 25.0, {})}}))
        action = tmp_path / f"s{seed}" / "action_prm"
        action.mkdir(parents=True)
        (action / "summary.json").write_text(json.dumps(
            {"rows": {"Action-PRM π1": {"eval_in_distribution": _summary(s1, 20.0, {})}},
             "heldout_likelihood": {"π0": {"inferred": -0.5 * seed, "steps": 57}}}))
    markdown = reproduce.aggregate(reproduce.parse_args(["--out", str(tmp_path), "--seeds", "1", "2"]))
    std = math.sqrt(50.0)
    # what the mean ± std are made of, seed by seed, in results.md only
    assert "| AgentPRM | π0 | 10.0 / 30.0 | 20.0 / 40.0 |" in markdown and "|  | π1 | 30.0 / – | 40.0 / – |" in markdown
    assert "| Best-of-N curve | BoN(π0,Q0) N=1 | 10.0 | 20.0 |" in markdown
    block = reproduce.readme_summary(markdown, has_plot=True, results="benchmarks/r.md")
    assert "Every seed" not in block and "10.0 / 30.0" not in block
    assert "[`benchmarks/r.md`](benchmarks/r.md) has every table" in block
    assert "| algorithm | row | eval_in_distribution | eval_out_of_distribution |" in block
    assert f"| AgentPRM | π0 | 15.0 ± {std:.1f} | 35.0 ± {std:.1f} |" in block
    assert f"|  | π1 | 35.0 ± {std:.1f} | – |" in block  # no out-of-distribution row
    assert "| method |" not in block  # the #actions and per-task-type tables stay in results.md
    assert "**Best-of-N scaling, BoN(π0, Q0) on eval_in_distribution (Fig. 2b shape).** N = 1 is" in block
    assert f"| success % | 15.0 ± {std:.1f} |" in block
    assert f"| Action-PRM | Action-PRM π1 | 35.0 ± {std:.1f} | – |" in block
    assert "**Action-PRM.** Held-out action log-likelihood" in block and "| π0 | – | -0.750 ± 0.354 |" in block
    assert block.endswith("![success vs N and vs iteration](benchmarks/r.png)")

    monkeypatch.setattr(reproduce, "ROOT", tmp_path)  # update_readme rewrites ROOT/README.md between the markers
    (tmp_path / "README.md").write_text("# top\n\n<!-- results:begin -->\nold\n<!-- results:end -->\n\n## next\n")
    reproduce.update_readme(markdown, has_plot=True, results="benchmarks/r.md")
    assert (tmp_path / "README.md").read_text() == \
        f"# top\n\n<!-- results:begin -->\n{block}\n<!-- results:end -->\n\n## next\n"


def test_the_committed_readme_block_is_made_from_the_committed_results():
    """What reproduce.py writes into README.md depends on the committed recipe tables alone."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- results:begin -->\n", 1)[1].split("\n<!-- results:end -->", 1)[0]
    results = reproduce.README_RESULTS
    assert block == reproduce.readme_summary(results.read_text(), has_plot=results.with_suffix(".png").exists(),
                                             results=reproduce.shown(results))


def test_only_the_recipe_tables_go_into_the_readme(tmp_path, monkeypatch):
    """The hour's default tables (results.md) are written but not copied into README.md; README_RESULTS is."""
    copied = []
    monkeypatch.setattr(reproduce, "update_readme", lambda markdown, has_plot, results: copied.append(results))
    monkeypatch.setattr(reproduce, "plot", lambda args, png: False)
    reproduce.main(["--no-run", "--out", str(tmp_path), "--results", str(tmp_path / "results.md")])
    assert copied == [] and (tmp_path / "results.md").exists()
    monkeypatch.setattr(reproduce, "README_RESULTS", tmp_path / "recipe.md")
    reproduce.main(["--no-run", "--out", str(tmp_path), "--results", str(tmp_path / "recipe.md")])
    assert copied == [str(tmp_path / "recipe.md")]


def test_recipe_runs_each_script_at_its_recipe_with_the_ladder_and_only_the_sizes_given(tmp_path):
    pi0 = _pi0_run(tmp_path)
    args = reproduce.parse_args(["--out", str(tmp_path), "--env", "household-compact", "--recipe", "paper",
                                 "--inverse-demos", "500"])
    assert args.eval_games == 100 and args.sft_epochs == 2.0 and args.only == reproduce.STEPS + reproduce.LADDER_STEPS
    assert args.parts.endswith("benchmarks/parts/household-compact_paper")
    assert args.results.endswith("benchmarks/results_household-compact_paper.md")
    cmds = reproduce.seed_commands(2, args, pi0)
    for script in ("agent_prm", "inverse_prm", "action_prm"):
        cmd = cmds[script]
        assert cmd[cmd.index("--recipe") + 1] == "paper" and cmd[cmd.index("--env") + 1] == "household-compact"
        assert cmd[cmd.index("--eval-games") + 1] == "100"
    assert "--train-tasks" not in cmds["agent_prm"] and "--train-tasks" not in cmds["inverse_prm"]
    assert cmds["inverse_prm"][cmds["inverse_prm"].index("--demos") + 1] == "500"  # given: passed on
    assert "--demos" not in cmds["action_prm"]
    assert cmds["ladder_bon"][2] == str(tmp_path / "s2" / "agent_prm") and "--dpo-lr" in cmds["ladder_dpo"]
    assert cmds["ladder_dpo"][cmds["ladder_dpo"].index("--out") + 1] == str(tmp_path / "s2" / "ladder_dpo")
    hour = reproduce.parse_args(["--out", str(tmp_path)])
    assert hour.parts is None and hour.only == reproduce.STEPS and hour.results.endswith("benchmarks/results.md")


def test_parts_keep_the_small_result_files_and_the_tables_are_read_from_them(tmp_path):
    out, parts = tmp_path / "runs", tmp_path / "parts"
    run = out / "s3" / "agent_prm"
    (run / "iter1" / "prm").mkdir(parents=True)
    rows = {"π0": {"eval_in_distribution": _summary(40.0, 9.0, {})}}
    (run / "summary.json").write_text(json.dumps({"rows": rows}))
    (run / "args.json").write_text(json.dumps({"out": str(reproduce.ROOT / "runs" / "x")}))  # committed: relative
    (run / "iter1" / "prm" / "adapter_config.json").write_text("{}")  # not a result file: stays behind
    (run / "rollouts.jsonl").write_text("{}\n")
    ladder_rows = {"ladder_bon": {"π0": 50.0, "BoN(π0,Q^μ) N=4": 80.0}, "ladder_dpo": {"π0": 55.0, "π1 vs Q^μ (x)": 60.0}}
    for step, successes in ladder_rows.items():  # both rungs evaluate π0 again, each with its own samples
        (out / "s3" / step).mkdir(parents=True)
        (out / "s3" / step / "evals.json").write_text(json.dumps(
            {name: {"eval_in_distribution": _summary(success, 7.0, {})} for name, success in successes.items()}))
    args = reproduce.parse_args(["--out", str(out), "--parts", str(parts), "--recipe", "paper", "--seeds", "1"])
    for folder in (run, out / "s3" / "ladder_bon", out / "s3" / "ladder_dpo"):
        reproduce.keep(args, folder)
    kept = sorted(str(f.relative_to(parts)) for f in parts.rglob("*") if f.is_file())
    assert kept == ["s3/agent_prm/args.json", "s3/agent_prm/summary.json", "s3/ladder_bon/evals.json",
                    "s3/ladder_dpo/evals.json"]
    assert json.loads((parts / "s3" / "agent_prm" / "args.json").read_text()) == {"out": "runs/x"}
    import shutil

    shutil.rmtree(out)  # a clean checkout: only the committed parts
    markdown = reproduce.aggregate(args)  # every seed in --parts, not --seeds
    assert "(seeds 3;" in markdown and "| π0 | 1 | 40.0 | 9.0 |" in markdown
    assert "## Oracle ladder (Q^μ, on each seed's AgentPRM run)" in markdown and "| BoN(π0,Q^μ) N=4 | 1 | 80.0 |" in markdown
    assert "| π0 (ladder_bon) | 1 | 50.0 |" in markdown and "| π0 (ladder_dpo) | 1 | 55.0 |" in markdown
    assert "| π1 vs Q^μ (x) | 1 | 60.0 |" in markdown


def test_recipe_refuses_the_hour_sizes_and_the_ladder_needs_the_recipe(capsys):
    import pytest

    for argv in (["--recipe", "paper", "--full"], ["--recipe", "paper", "--quick"], ["--only", "ladder_bon"]):
        with pytest.raises(SystemExit) as e:
            reproduce.parse_args(argv)
        assert e.value.code == 2, argv
    assert "run with --recipe paper only" in capsys.readouterr().err
