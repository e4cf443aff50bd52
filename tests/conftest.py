"""Shared fixtures: tiny REAL models and tokenizers built in-process (no network, no cached downloads).

- ``word_tokenizer(kind)``: a WordLevel tokenizer over :data:`VOCAB` wrapped in ``PreTrainedTokenizerFast``.
  ``"bert"`` adds ``<s> ... </s>`` (CLS/SEP), ``"llama"`` adds a BOS only (like Llama's tokenizer).
- ``tiny_bert_dir`` / ``tiny_llama_dir``: ``BertForSequenceClassification`` / ``LlamaForSequenceClassification``
  with one output, saved with their tokenizer, so ``load_reward_model(path)`` works on them.
- ``$XLRM_CACHE`` points at a per-session temporary directory, so nothing touches ``~/.cache/xlrm``
  (the one real-backbone test opts back into the default cache to avoid re-converting the backbone).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
WORDS = (["User", "Assistant", "user", "assistant", ":", ".", "?", "!", ",", "good", "bad", "great", "awful"]
         + [f"w{i}" for i in range(48)])
VOCAB = SPECIALS + WORDS  # ids: <pad>=0 <unk>=1 <s>=2 </s>=3

# A tiny chat template: BOS once, then "role : content </s>" per turn (the special tokens are added tokens,
# so the tokenizer finds them again in the rendered text).
CHAT_TEMPLATE = ("<s>{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def word_tokenizer(kind: str = "bert", *, pad: bool = True, chat_template: str | None = None):
    """A real fast tokenizer over :data:`VOCAB`. ``kind``: ``"bert"`` (<s> A </s>) or ``"llama"`` (<s> A)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    single = "<s> $A </s>" if kind == "bert" else "<s> $A"
    tk.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<s>", 2), ("</s>", 3)])
    kw = dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    if kind == "bert":
        kw.update(cls_token="<s>", sep_token="</s>")
    if pad:
        kw["pad_token"] = "<pad>"
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, model_max_length=128, **kw)
    if chat_template:
        tok.chat_template = chat_template
    return tok


def eos_only_tokenizer(*, eos: bool = True, chat_template: str | None = None):
    """Like :func:`word_tokenizer` ("llama") but declaring no pad and no unk token, and with no pad-like token in
    its vocabulary (``<pad>`` is ``<blank>`` here): Llama 3's tokenizers have only BOS and EOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = ["<blank>" if v == "<pad>" else v for v in VOCAB]
    tk = Tokenizer(models.WordLevel({v: i for i, v in enumerate(vocab)}))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"bos_token": "<s>", "eos_token": "</s>"} if eos else {}
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, model_max_length=128, **special)
    if chat_template:
        tok.chat_template = chat_template
    return tok


def tiny_bert(seed: int = 0, vocab_size: int = len(VOCAB)):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1, pad_token_id=0,
                     initializer_range=0.2)  # the default 0.02 gives rewards that all agree to ~1e-5
    return BertForSequenceClassification(cfg).eval()


def tiny_llama(seed: int = 0, pad_token_id: int | None = 0):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    # a larger init range than the default 0.02 makes scores differ clearly between positions, so reading the
    # score at the wrong token would show as a large error, not one lost in the 1e-4 tolerance
    cfg = LlamaConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128, num_labels=1,
                      pad_token_id=pad_token_id, bos_token_id=2, eos_token_id=3, initializer_range=0.2)
    return LlamaForSequenceClassification(cfg).eval()


def save_model(path: Path, model, tok) -> Path:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine oversubscribed OpenMP
    threads made the toy training test 15x slower (48 s vs 3 s). ``OMP_NUM_THREADS`` set by the user wins."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session", autouse=True)
def _xlrm_cache(tmp_path_factory):
    """Point ``$XLRM_CACHE`` at a fresh directory for the whole session (trained models land there)."""
    old = os.environ.get("XLRM_CACHE")
    os.environ["XLRM_CACHE"] = str(tmp_path_factory.mktemp("xlrm_cache"))
    yield Path(os.environ["XLRM_CACHE"])
    if old is None:
        os.environ.pop("XLRM_CACHE", None)
    else:
        os.environ["XLRM_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("tiny_bert"), tiny_bert(), word_tokenizer("bert"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("tiny_llama"), tiny_llama(), word_tokenizer("llama"))


def make_pairs(rows: list[dict]):
    """A canonical-schema ``datasets.Dataset`` from short dicts (prompt as a string is fine)."""
    import datasets

    from xlrm_lib.data import FEATURES

    if not rows:
        return datasets.Dataset.from_dict({k: [] for k in FEATURES}, features=FEATURES)
    out = []
    for i, r in enumerate(rows):
        prompt = r.get("prompt", "w0 w1 ?")
        out.append({"id": r.get("id", f"p{i}"), "lang": r.get("lang", "en"), "category": r.get("category", "chat"),
                    "subset": r.get("subset", "toy"),
                    "prompt": [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt,
                    "chosen": r["chosen"], "rejected": r["rejected"], "meta": "{}"})
    return datasets.Dataset.from_list(out, features=FEATURES)


def hub_dataset(cache: Path, repo_id: str, sha: str, configs: dict) -> None:
    """A dataset repo in the hub cache's layout (snapshots/<sha>/, README with `configs:`), as `hf download` leaves
    it; ``configs``: config -> rows of its test split."""
    import pandas as pd

    snap = cache / f"datasets--{repo_id.replace('/', '--')}" / "snapshots" / sha
    readme = ["---", "configs:"]
    for config, rows in configs.items():
        (snap / config).mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(snap / config / "test-00000-of-00001.parquet", index=False)
        readme += [f"- config_name: {config}", "  data_files:", "  - split: test", f"    path: {config}/test-*"]
    (snap / "README.md").write_text("\n".join([*readme, "---", ""]))
