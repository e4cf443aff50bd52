"""Generative judges: a causal LM asked which of two answers is better, usable wherever an RM's scores are.

:class:`PairwiseLMJudge` shows the LM a short fixed instruction, the question and two answers (in the
tokenizer's chat template if it has one, else the plain ``User: ...\\n\\nAssistant:`` format) and reads the
next-token log-probabilities of ``A`` and ``B``. LMs favour one position whatever the content, so every pair
is judged in both orders: where the two orders agree the log-odds are averaged, where they disagree (the verdict
follows the position) the pair is a tie, MT-Bench's conservative rule.

- ``compare(questions, x, y)`` -> those log-odds that x beats y (0: a tie), ``(n,)``; antisymmetric.
- ``score_pairs(pairs)`` -> the table of :func:`xlrm_lib.evaluate.score_pairs` (``reward_chosen`` = averaged
  log-odds for chosen, ``reward_rejected`` = for rejected = its negative), so RewardBench's rule (correct iff
  reward_chosen > reward_rejected; equal = tie) and the transfer matrix apply to generative judges unchanged.

>>> judge = PairwiseLMJudge(*load_policy("gemma3-270m"), name="gemma3-270m-judge")   # doctest: +SKIP
>>> accuracy_table(judge.score_pairs(load_pairs("embedded", langs=["ko"]), source="judge"))  # doctest: +SKIP
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import torch

from .arch import position_limit
from .evaluate import score_table
from .formatting import as_messages, chat_text, forward_kwargs, pad_batch

INSTRUCTION = ("Which answer to the question is better: more helpful, correct, harmless and on topic? "
               "Reply with one letter, A or B.")


def question_text(prompt) -> str:
    """The question a judge sees: the user turn, or the whole conversation when there are several turns.

    >>> question_text([{"role": "user", "content": "Hi?"}])
    'Hi?'
    """
    messages = as_messages(prompt)
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def judge_body(question: str, answer_a: str, answer_b: str, instruction: str = INSTRUCTION) -> str:
    """The user message of a pairwise judgement (before any chat template).

    >>> print(judge_body("Q?", "x", "y", instruction="Pick."))
    Pick.
    <BLANKLINE>
    [Question]
    Q?
    <BLANKLINE>
    [Answer A]
    x
    <BLANKLINE>
    [Answer B]
    y
    <BLANKLINE>
    Better answer (A or B):
    """
    return (f"{instruction}\n\n[Question]\n{question}\n\n[Answer A]\n{answer_a}\n\n[Answer B]\n{answer_b}\n\n"
            "Better answer (A or B):")


class PairwiseLMJudge:
    """Pairwise preference from a causal LM's next-token log-probabilities of ``A`` vs ``B``.

    Parameters
    ----------
    model, tokenizer : a causal LM and its tokenizer (e.g. from :func:`xlrm_lib.align.load_policy`); the
        tokenizer needs a pad token (or an EOS to pad with).
    name : what tables call this judge (``check_judge`` refuses it if it equals a compared RM's name).
    batch_size : prompts per forward pass (each pair costs two: both orders).
    max_answer_tokens, max_question_tokens : answers and the question are cut to this many tokens (the end is
        replaced by ``...``); a prompt still longer than a learned position table (GPT-2) is refused.
    """

    def __init__(self, model, tokenizer, *, name: str | None = None, instruction: str = INSTRUCTION,
                 batch_size: int = 8, max_answer_tokens: int = 384, max_question_tokens: int = 512):
        self.model, self.tokenizer = model, tokenizer
        if model is not None:
            model.eval()  # dropout would make verdicts differ from call to call
        self.name = name or getattr(model, "name_or_path", None) or "pairwise-lm-judge"
        self.instruction, self.batch_size, self.max_answer_tokens = instruction, int(batch_size), max_answer_tokens
        self.max_question_tokens = max_question_tokens
        self._labels = None

    # ---------------------------------------------------------------- prompt
    def render(self, question: str, answer_a: str, answer_b: str) -> tuple[str, bool]:
        """The judge's input text, and whether the tokenizer should add its special tokens (not for templates)."""
        body = judge_body(self._clip(question, self.max_question_tokens), self._clip(answer_a),
                          self._clip(answer_b), self.instruction)
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": body}]
            return chat_text(self.tokenizer, messages, generation_prompt=True), False
        return f"User: {body}\n\nAssistant:", True

    def _clip(self, text: str, n: int | None = None) -> str:
        n = self.max_answer_tokens if n is None else n
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= n:
            return text
        return self.tokenizer.decode(ids[:n]) + " ..."

    def label_ids(self) -> tuple[list[int], list[int]]:
        """Token ids that spell ``A`` and ``B`` as one token (with and without a leading space)."""
        if self._labels is None:
            found = []
            for label in ("A", "B"):
                ids = set()
                for text in (label, " " + label):
                    enc = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                    if len(enc) == 1 and self.tokenizer.decode(enc).strip() == label:
                        ids.add(enc[0])
                if not ids:
                    raise ValueError(f"the judge's tokenizer has no single token for {label!r}; a pairwise LM judge "
                                     "reads the next-token probability of 'A' vs 'B'")
                found.append(sorted(ids))
            if set(found[0]) & set(found[1]):
                raise ValueError(f"the tokenizer maps 'A' and 'B' to the same token(s) {found}")
            self._labels = (found[0], found[1])
        return self._labels

    # ---------------------------------------------------------------- scoring
    @torch.no_grad()
    def position_logodds(self, questions, first, second) -> np.ndarray:
        """``log P(A) - log P(B)`` for the next token, with ``first`` shown as A and ``second`` as B: ``(n,)``.

        Positive = the LM prefers the answer in position A. Variants of a label (``"A"``, ``" A"``) are pooled.
        """
        ids_a, ids_b = self.label_ids()
        rendered = [self.render(q, a, b) for q, a, b in zip(questions, first, second)]
        seqs = [self.tokenizer(t, add_special_tokens=s)["input_ids"] for t, s in rendered]
        limit, longest = position_limit(self.model), max(len(s) for s in seqs)
        if limit is not None and longest > limit:
            raise ValueError(f"a judge prompt has {longest} tokens; {type(self.model).__name__} takes {limit} "
                             "positions: lower max_answer_tokens / max_question_tokens")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the judge's tokenizer has no pad or EOS token to pad batches with; "
                             "set tokenizer.pad_token")
        device = next(self.model.parameters()).device
        extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {}
        order = np.argsort([len(s) for s in seqs], kind="stable")
        out = np.empty(len(seqs), dtype=np.float64)
        for start in range(0, len(seqs), self.batch_size):
            idx = order[start : start + self.batch_size]
            # left padding: the last column is every row's last real token (position ids count real tokens)
            batch = {k: v.to(device) for k, v in pad_batch([seqs[i] for i in idx], pad, "left").items()}
            logits = self.model(**forward_kwargs(self.model, batch), **extra).logits[:, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            lo = torch.logsumexp(logp[:, ids_a], -1) - torch.logsumexp(logp[:, ids_b], -1)
            out[idx] = lo.cpu().numpy()
        return out

    def compare(self, questions, answers_x, answers_y) -> np.ndarray:
        """Log-odds that x is better than y, averaged over both orders, ``(lo(x, y) - lo(y, x)) / 2``, where both
        orders agree; 0 (a tie) where they disagree, ``(n,)``.

        A verdict that flips with the answers' positions is position bias, not a preference (MT-Bench's
        conservative rule): a judge that picks position A in both orders ties, however its log-odds compare.
        """
        questions = [q if isinstance(q, str) else question_text(q) for q in questions]
        x, y = list(answers_x), list(answers_y)
        if not (len(questions) == len(x) == len(y)):
            raise ValueError(f"compare needs aligned lists, got {len(questions)}, {len(x)}, {len(y)}")
        if not questions:
            return np.zeros(0)
        n = len(questions)
        lo = np.asarray(self.position_logodds(questions * 2, x + y, y + x), dtype=np.float64)
        if not np.isfinite(lo).all():  # NaN signs never agree: it would pass for a position-bias tie
            bad = sorted({int(i) % n for i in np.flatnonzero(~np.isfinite(lo))})
            raise FloatingPointError(f"judge {self.name!r} gave non-finite log-odds for {len(bad)} comparison(s), "
                                     f"e.g. question {bad[0]}: {questions[bad[0]][:80]!r}: a broken checkpoint, or "
                                     "an overflow in bfloat16 (evaluate it with bf16: false)")
        xy, yx = lo[:n], -lo[n:]  # each order's log-odds that x is better
        return np.where(np.sign(xy) == np.sign(yx), (xy + yx) / 2, 0.0)

    def score_pairs(self, pairs, **labels) -> pd.DataFrame:
        """Judge every (chosen, rejected) pair: the table of :func:`xlrm_lib.evaluate.score_pairs`.

        ``reward_chosen`` = averaged log-odds for chosen, ``reward_rejected`` = its negative, so ``correct``
        iff the judge prefers chosen, ``tie`` iff it is indifferent, ``margin`` = twice the log-odds.
        """
        if len(pairs) == 0:
            raise ValueError("no pairs to judge")
        chosen, rejected = list(pairs["chosen"]), list(pairs["rejected"])
        d = self.compare([question_text(p) for p in pairs["prompt"]], chosen, rejected)
        n_chosen, n_rejected = ([len(ids) for ids in self.tokenizer(t, add_special_tokens=False)["input_ids"]]
                                for t in (chosen, rejected))
        return score_table(pairs, d, -d, n_chosen, n_rejected, **labels)


def load_judge(model, *, name: str | None = None, bf16: bool = False, batch_size: int = 8) -> PairwiseLMJudge:
    """A :class:`PairwiseLMJudge` over the causal LM ``model`` (packaged name, directory or hub id; see
    :func:`xlrm_lib.generate.load_policy`), in bfloat16 weights if ``bf16`` (half the memory), else float32."""
    from .generate import load_policy

    return PairwiseLMJudge(*load_policy(model, dtype="bfloat16" if bf16 else "float32"),
                           name=str(model) if name is None else name, batch_size=batch_size)
