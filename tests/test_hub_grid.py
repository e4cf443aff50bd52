"""The paper's grid on hub ids, end to end, offline: params/paper.yaml shrunk onto a simulated local hub cache
(tests/hubsim.py: tiny random Qwen2 / Llama models, M-RewardBench, RewardBench and MP-86k in their real layouts),
as a GPU machine with internet has it after ``hf download``. Nothing else runs a hub-id grid in CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hubsim
from xlrm_lib import hub, runner

SPEC = {
    "run": "hubsim", "backbones": [hubsim.BACKBONE], "seeds": [42], "langs": ["en"], "eval_langs": ["en", "ko"],
    "pretrained": [{"name": "offsetbias-rm", "model": hubsim.JUDGE}],
    "train": {"data_source": hubsim.MP_86K, "split": "train", "limit": 8, "lr": 1.0e-4, "epochs": 1.0,
              "batch_size": 4, "max_length": 64},
    "evaluate": {"eval_source": hubsim.M_REWARDBENCH, "split": "test", "batch_size": 8, "max_length": 64},
    "probe": {"source": hubsim.M_REWARDBENCH, "split": "test", "max_items": 6, "max_length": 64},
    "align": {"policy": hubsim.BACKBONE, "policy_bf16": True, "source": hubsim.M_REWARDBENCH, "split": "test",
              "n": 2, "limit": 3, "max_new_tokens": 6, "judge": hubsim.JUDGE, "batch_size": 8},
    "report": {},
}


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """The simulated hub cache, for this process (huggingface_hub's and datasets' constants) and the kernels
    (their environment)."""
    import datasets
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    hubsim.build(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    hub.commit.cache_clear()
    yield cache
    hub.commit.cache_clear()


@pytest.mark.slow
def test_the_papers_grid_on_hub_ids_runs_offline_from_the_local_hub_cache(hub_cache, tmp_path):
    outputs = tmp_path / "outputs"
    summary = runner.run(dict(SPEC), outputs_dir=outputs, progress=False)
    assert summary["failed"] == 0, runner.format_summary(summary)
    run_dir = Path(summary["run_dir"])
    tag = "Qwen2.5-0.5B-Instruct-s42"
    assert {name: r["status"] for name, r in summary["cells"].items()} == {
        f"train/{tag}-en": "ok", f"evaluate/{tag}-en": "ok", "pretrained/offsetbias-rm": "ok", f"probe/{tag}": "ok",
        f"align/{tag}": "ok", "report": "ok"}
    # every notebook loaded (and records) the commit of each hub repository it read
    commits = {repo: hubsim.commit_of(repo) for repo in (hubsim.BACKBONE, hubsim.JUDGE, hubsim.M_REWARDBENCH,
                                                         hubsim.REWARDBENCH, hubsim.MP_86K)}
    read = lambda cell: json.loads((run_dir / cell / "metrics.json").read_text())["hub_commits"]  # noqa: E731
    assert read(f"train/{tag}-en") == {r: commits[r] for r in (hubsim.BACKBONE, hubsim.MP_86K)}
    assert read(f"evaluate/{tag}-en") == {r: commits[r] for r in (hubsim.BACKBONE, hubsim.M_REWARDBENCH,
                                                                   hubsim.REWARDBENCH)}
    assert read(f"align/{tag}") == {r: commits[r] for r in (hubsim.BACKBONE, hubsim.JUDGE, hubsim.M_REWARDBENCH,
                                                             hubsim.REWARDBENCH)}
    model_dir = json.loads((run_dir / "train" / f"{tag}-en" / "metrics.json").read_text())["model_dir"]
    card = json.loads((Path(model_dir) / "xlrm_card.json").read_text())
    assert card["backbone_revision"] == commits[hubsim.BACKBONE]  # the RM says which upload it was trained from
    assert json.loads((Path(model_dir) / "xlrm_format.json").read_text())["template"] == "chat"
    accuracy = (run_dir / "report" / "transfer_matrix.csv").read_text()
    assert "offsetbias-rm" in accuracy and "hub commits" in (run_dir / "report.html").read_text()
    # unchanged: nothing runs again; M-RewardBench re-cut upstream: what read it runs again, the training is kept
    again = runner.run(dict(SPEC), outputs_dir=outputs, progress=False)
    assert {r["status"] for r in again["cells"].values()} == {"skipped"}
    hubsim.put_m_rewardbench(hub_cache, cut=" (re-cut)")
    hub.commit.cache_clear()
    todo = runner.pending(runner.plan(runner.grid.with_outputs(dict(SPEC), outputs)), run_dir)
    assert todo == {f"train/{tag}-en": False, f"evaluate/{tag}-en": True, "pretrained/offsetbias-rm": True,
                    f"probe/{tag}": True, f"align/{tag}": True, "report": True}
