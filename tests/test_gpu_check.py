"""benchmarks/gpu_check.py: what runs without a GPU — the Llama-3.2-3B config, the report's fields, the no-CUDA
exit, and the 3B part's stage code on a small config on the CPU (the GPU numbers themselves need a GPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import memory  # noqa: E402


def test_llama_3b_config_is_llama_3_2_3b_instruct():
    from transformers import LlamaConfig

    config = gpu_check.llama_3b_config()
    expected = {"hidden_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 24, "num_key_value_heads": 8,
                "intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": True}
    assert {k: config[k] for k in expected} == expected
    built = LlamaConfig(**config)
    theta = (getattr(built, "rope_parameters", None) or {}).get("rope_theta", getattr(built, "rope_theta", None))
    assert theta == 500000.0
    # 3,212,749,824: the published "3.21B"; memory.py's arithmetic for the same shape must agree to the parameter
    n = gpu_check.param_count(config)
    assert n == 3_212_749_824
    assert gpu_check.shape_of(config) == memory.LLAMA_3_2_3B
    assert memory.LLAMA_3_2_3B.total_params() == n


def test_estimates_follow_the_shapes():
    shape, s = memory.LLAMA_3_2_3B, gpu_check.Shapes()
    e = gpu_check.estimates(shape, s)
    assert set(e) == {"build_bf16", "load_nf4", "rollouts", "prm_step", "dpo_step", "m_step"}
    base = memory.estimate(shape)
    assert e["load_nf4"] == pytest.approx(base["base_4bit"] + base["four_adapters"])
    assert e["build_bf16"] == pytest.approx(3_212_749_824 * 2 / memory.GiB)
    assert e["load_nf4"] < e["rollouts"] < e["prm_step"]  # KV cache of 8 sequences < training activations
    longer = gpu_check.estimates(shape, gpu_check.Shapes(prompt_tokens=4000))
    assert longer["prm_step"] > e["prm_step"] and longer["load_nf4"] == e["load_nf4"]


def test_report_from_fake_stage_results_has_the_documented_fields():
    stage = gpu_check.stage_record("prm_step", "AgentPRM", "8 sequences", 12.34, 1000, 4.0, 9.876, 11.0, 8.5, None)
    assert tuple(stage) == gpu_check.STAGE_FIELDS
    assert stage["tokens_per_s"] == 250.0 and stage["peak_gib"] == 9.88 and stage["seconds"] == 12.3
    load = gpu_check.stage_record("load_nf4", "-", "", 30.0, 0, 0.0, 2.5, 3.0, 2.4, None)
    assert load["tokens_per_s"] is None
    oom = gpu_check.stage_record("dpo_step", "AgentPRM", "", 1.0, 0, 0.0, 20.0, 22.0, 15.0, "OutOfMemoryError: x")
    quick = dict(zip(gpu_check.QUICK_RUN_FIELDS, ("agent_prm", "nf4", "python agent_prm.py --quick", 0, False, 61.0,
                                                 {"rows": {}}, None)))
    env = dict.fromkeys(gpu_check.ENVIRONMENT_FIELDS, "x")
    report = gpu_check.build_report(True, env, [quick], [load, stage, oom], 100.04)
    assert tuple(report) == gpu_check.REPORT_FIELDS
    assert report["max_peak_gib"] == 20.0 and report["total_s"] == 100.0
    json.dumps(report)  # the report is plain JSON
    table = gpu_check.format_table(report)
    assert "| prm_step: AgentPRM | 8 sequences | 9.88 | 8.5 | 250.0 | 12.3 |" in table
    assert "OutOfMemoryError" in table and "agent_prm.py --quick, nf4 | 0 | 61.0" in table


def test_without_cuda_one_line_and_exit_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "benchmarks" / "gpu_check.py")
    done = subprocess.run([sys.executable, script, "--out", str(tmp_path / "report.json")], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1 and "no CUDA" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert tuple(report) == gpu_check.REPORT_FIELDS and report["cuda"] is False and report["stages"] == []
    assert tuple(report["environment"]) == gpu_check.ENVIRONMENT_FIELDS and report["environment"]["torch"]
    helped = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and "--prompt-tokens" in helped.stdout and "--quick-timeout" in helped.stdout


@pytest.mark.parametrize("quantize,dtype", [(False, "fp32"), (True, "bf16")], ids=["fp32", "nf4-bf16"])
def test_stages_run_on_cpu_with_a_small_config(tmp_path, quantize, dtype):
    """The 3B part's code (checkpoint, the project's loader, every stage) on a small model with the real vocabulary."""
    import common
    import envs

    config = {**gpu_check.llama_3b_config(), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}
    tokenizer = common.build_tiny_tokenizer([envs.SYSTEM_PROMPT, envs.STEERED_EXPLORATION_PROMPT])
    runtime = common.resolve_runtime("cpu", dtype)  # nf4-bf16: the GPU path's quantization and dtypes
    gpu_check.build_checkpoint(str(tmp_path), config, tokenizer, runtime.device, runtime.dtype)
    agent = gpu_check.load_agent(str(tmp_path), runtime, quantize, lora_r=4)
    assert sorted(agent.adapters) == ["policy", "prm", "reference", "value"]
    assert agent.peft.get_base_model().config.vocab_size == 128256 > len(tokenizer)
    s = gpu_check.Shapes(prompt_tokens=40, response_tokens=6, gen_prompts=2, train_seqs=2, dpo_prompts=2,
                         m_states=2, group_size=2, train_steps=2, lora_r=4)
    stages = gpu_check.run_stages(agent, s, dict.fromkeys(["rollouts", "prm_step", "dpo_step", "m_step"], 1.0))
    assert [st["stage"] for st in stages] == ["rollouts", "prm_step", "dpo_step", "m_step"]
    assert [st["error"] for st in stages] == [None] * 4
    assert all(st["tokens_per_s"] > 0 and st["peak_gib"] is None for st in stages)  # no CUDA: no peak
    assert stages[1]["tokens"] == 2 * (40 + 6)  # one step timed: the first is warm-up


def test_quick_runs_record_exit_code_summary_and_timeout(tmp_path, monkeypatch):
    """The --quick runner on stand-in scripts (the real ones need CUDA): the numbers come from summary.json."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "ok.py").write_text(
        "import json, pathlib, sys\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\nout.mkdir()\n"
        "(out / 'summary.json').write_text(json.dumps({'argv': sys.argv[1:]}))\n")
    (scripts / "bad.py").write_text("import sys\nprint('error: boom')\nsys.exit(3)\n")
    (scripts / "slow.py").write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setattr(gpu_check, "ROOT", scripts)
    runs = tmp_path / "runs"
    runs.mkdir()
    ok = gpu_check.quick_run("ok", "nf4", runs, timeout=60, threads=1)
    assert tuple(ok) == gpu_check.QUICK_RUN_FIELDS
    assert ok["returncode"] == 0 and not ok["timed_out"] and ok["log_tail"] is None
    assert ok["summary"]["argv"][:7] == ["--quick", "--device", "cuda", "--dtype", "bf16", "--load-in-4bit", "on"]
    bad = gpu_check.quick_run("bad", "bf16", runs, timeout=60, threads=1)
    assert bad["returncode"] == 3 and bad["summary"] is None and "error: boom" in bad["log_tail"]
    slow = gpu_check.quick_run("slow", "bf16", runs, timeout=1, threads=1)
    assert slow["timed_out"] and slow["returncode"] is None and slow["wall_s"] < 30


def test_main_with_cuda_writes_the_report_and_fails_on_a_failed_stage(tmp_path, monkeypatch):
    """main's flow on a (pretended) GPU machine, the two parts replaced by fakes: table, report, exit code."""
    quick = dict(zip(gpu_check.QUICK_RUN_FIELDS, ("agent_prm", "bf16", "python agent_prm.py --quick", 0, False, 50.0,
                                                 {"rows": {}}, None)))
    oom = gpu_check.stage_record("dpo_step", "AgentPRM", "8 prompts", 3.0, 0, 0.0, 30.5, 31.0, 7.1,
                                 "OutOfMemoryError: CUDA out of memory")
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check.torch.cuda, "get_device_name", lambda *_: "Fake GPU")
    monkeypatch.setattr(gpu_check, "environment", lambda: dict.fromkeys(gpu_check.ENVIRONMENT_FIELDS, "x"))
    monkeypatch.setattr(gpu_check, "quick_part", lambda *_: [quick])
    monkeypatch.setattr(gpu_check, "three_b_part", lambda *_: [oom])
    out = tmp_path / "report.json"
    assert gpu_check.main(["--out", str(out)]) == 1  # a failed stage fails the check
    report = json.loads(out.read_text())
    assert report["cuda"] is True and report["quick_runs"] == [quick] and report["stages"] == [oom]
    assert report["max_peak_gib"] == 30.5
    monkeypatch.setattr(gpu_check, "three_b_part", lambda *_: [{**oom, "error": None}])
    assert gpu_check.main(["--out", str(out), "--parts", "quick", "3b"]) == 0
