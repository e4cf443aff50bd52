"""A local Hugging Face hub cache as a machine with internet leaves it after ``hf download``, for the hub ids of
``params/paper.yaml`` (shrunk): tiny random models of the real architectures and small datasets in the real
layouts, so the hub-id code paths run end to end offline (``HF_HUB_OFFLINE=1``).

Layout (huggingface_hub's): ``<hub>/{models,datasets}--ORG--NAME/{blobs/<sha256>, refs/main,
snapshots/<commit>/<file> -> ../../blobs/<sha256>}``. Commits are fixed per repository (and ``cut``), so a
rebuild gives the same layout and a re-cut gives a new commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

BACKBONE = "Qwen/Qwen2.5-0.5B-Instruct"  # also the policy: a causal LM (its RM gets a fresh score head)
JUDGE = "NCSOFT/Llama-3-OffsetBias-RM-8B"  # a reward model as it is on the hub: Llama with a 1-output head
M_REWARDBENCH = "CohereLabsCommunity/multilingual-reward-bench"
REWARDBENCH = "allenai/reward-bench"
MP_86K = "iqwiki-kor/MP-86k"

QWEN_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
TOPICS = ["tea", "rain", "maps", "bread", "music", "bridges", "stars", "rivers"]
ASK = {"en": "What is {t}?", "ko": "{t}은 무엇입니까?"}
FLORES = {"ko": "kor_Hang"}
CATEGORIES = [("Chat", "alpacaeval-easy"), ("Chat Hard", "llmbar-natural"), ("Safety", "refusals-dangerous"),
              ("Reasoning", "math-prm")]


def commit_of(repo_id: str, cut: str = "") -> str:
    return hashlib.sha1(f"hubsim:{repo_id}:{cut}".encode()).hexdigest()


def put_repo(hub: Path, repo_type: str, repo_id: str, staging: Path, commit: str) -> Path:
    """``staging``'s files as blobs with snapshot links, and ``refs/main`` (no newline, as huggingface_hub writes)."""
    repo = hub / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in staging.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(f, blob)
        link = snap / f.relative_to(staging)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs" / "main").write_text(commit)
    return snap


def bench_rows(lang: str, cut: str = "") -> list[dict]:
    """Parallel items (the same ids in every language), M-RewardBench's columns (RewardBench's for English)."""
    rows = []
    for i, topic in enumerate(TOPICS):
        category, subset = CATEGORIES[i % 4]
        rows.append({"id": 100 + i, "prompt": ASK[lang].format(t=topic),
                     "chosen": f"A careful answer about {topic} ({lang}, {i}){cut}.", "rejected": f"No. {topic} {i}.",
                     "chosen_model": "gpt-4", "rejected_model": "llama-2",
                     **({"subset": subset} if lang == "en" else
                        {"source": subset, "language": FLORES[lang], "category": category})})
    return rows


def _tokenizer(texts: list[str], out: Path):
    """A byte-level BPE tokenizer trained on ``texts`` with Qwen's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  chat_template=QWEN_TEMPLATE, model_max_length=32768)
    tok.save_pretrained(out)
    return tok


def _models(tok, tmp: Path, hub: Path) -> None:
    import torch
    from transformers import (GenerationConfig, LlamaConfig, LlamaForSequenceClassification, Qwen2Config,
                              Qwen2ForCausalLM)

    shape = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    lm = Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True)).to(torch.bfloat16)  # as the hub has it
    lm.save_pretrained(tmp / "lm")
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=True,
                     temperature=0.7, top_p=0.8).save_pretrained(tmp / "lm")
    tok.save_pretrained(tmp / "lm")
    put_repo(hub, "model", BACKBONE, tmp / "lm", commit_of(BACKBONE))
    torch.manual_seed(1)
    rm = LlamaForSequenceClassification(LlamaConfig(**shape, num_labels=1))
    with torch.no_grad():
        rm.score.weight.normal_(0, 0.5)  # a "trained" head
    rm.save_pretrained(tmp / "rm")
    tok.save_pretrained(tmp / "rm")
    put_repo(hub, "model", JUDGE, tmp / "rm", commit_of(JUDGE))


def _parquet(rows: list[dict], path: Path) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)


def _readme(path: Path, configs: dict) -> None:
    """README.md with a ``configs:`` block: config -> {split: path pattern}."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [line for split, pattern in splits.items() for line in (f"  - split: {split}", f"    path: {pattern}")]
    path.write_text("\n".join([*lines, "---", "# simulated", ""]), encoding="utf-8")


def put_m_rewardbench(hub: Path, cut: str = "") -> str:
    """M-RewardBench (one config per FLORES code, split test) at the commit of ``cut``; returns the commit."""
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        for lang, code in FLORES.items():
            _parquet(bench_rows(lang, cut), stage / code / "test-00000-of-00001.parquet")
        _readme(stage / "README.md", {code: {"test": f"{code}/test-*"} for code in FLORES.values()})
        commit = commit_of(M_REWARDBENCH, cut)
        put_repo(hub, "dataset", M_REWARDBENCH, stage, commit)
    return commit


def build(hub: Path) -> None:
    """The whole simulated cache under ``hub`` (a few seconds)."""
    hub.mkdir(parents=True, exist_ok=True)
    train = []
    for i in range(24):
        q = f"Tell me about {TOPICS[i % len(TOPICS)]} ({i})."
        train.append({"prompt": q, "chosen": [{"role": "user", "content": q},
                                              {"role": "assistant", "content": f"Here is a helpful answer ({i})."}],
                      "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": "No."}]})
    texts = [json.dumps(r, ensure_ascii=False) for r in train + bench_rows("en") + bench_rows("ko")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _models(_tokenizer(texts, tmp / "tok"), tmp, hub)
        _parquet(bench_rows("en"), tmp / "rb" / "data" / "filtered-00000-of-00001.parquet")
        _parquet(bench_rows("en"), tmp / "rb" / "data" / "raw-00000-of-00001.parquet")
        _readme(tmp / "rb" / "README.md", {"default": {"raw": "data/raw-*", "filtered": "data/filtered-*"}})
        put_repo(hub, "dataset", REWARDBENCH, tmp / "rb", commit_of(REWARDBENCH))
        _parquet(train, tmp / "mp" / "data" / "train-00000-of-00001.parquet")
        _readme(tmp / "mp" / "README.md", {"default": {"train": "data/train-*"}})
        put_repo(hub, "dataset", MP_86K, tmp / "mp", commit_of(MP_86K))
    put_m_rewardbench(hub)
