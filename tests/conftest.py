"""Shared fixtures: a tiny Llama with a locally trained tokenizer (no downloads), and a private cache dir."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Converted models and generated games go to a per-session folder, never the user's cache."""
    os.environ.setdefault("PRM_AGENTS_CACHE", str(tmp_path_factory.mktemp("prm_agents_cache")))


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer, codec) — a random ~0.2M-parameter Llama; deterministic."""
    import torch

    import common
    import envs

    torch.manual_seed(0)
    demos = envs.expert_demonstrations("household", "train", 20)
    tokenizer = common.build_tiny_tokenizer(common.tiny_corpus(demos, 2))
    model = common.build_tiny_model(tokenizer, hidden_size=64, layers=2, heads=2, max_positions=1024)
    model.eval()
    return model, tokenizer, common.ChatCodec(tokenizer, 1024)


@pytest.fixture(scope="session")
def tiny_folder(tiny, tmp_path_factory):
    """The tiny model saved as a checkpoint folder (what `--model <path>` loads, 4-bit or not)."""
    model, tokenizer, _ = tiny
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
