"""xlrm_lib.formatting: exact strings of the plain template, truncation that keeps the end, chat templates,
and position ids under left/right padding."""

import pytest
import torch

from conftest import CHAT_TEMPLATE, word_tokenizer
from xlrm_lib.formatting import TextFormat, as_messages, encode, forward_kwargs, pad_batch, render

MULTI = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
         {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Capital of France?"}]


def test_plain_template_exact_string_multi_turn():
    assert render(None, MULTI, "Paris.", TextFormat("plain")) == (
        "System: Be brief.\n\nUser: Hi?\n\nAssistant: Hello.\n\nUser: Capital of France?\n\nAssistant: Paris.")


def test_plain_template_string_prompt():
    assert render(None, "Hi?", "Hello.", TextFormat("plain")) == "User: Hi?\n\nAssistant: Hello."
    assert as_messages("Hi?") == [{"role": "user", "content": "Hi?"}]


def test_render_refuses_unresolved_auto():
    with pytest.raises(ValueError, match="resolve"):
        render(None, "Hi?", "Hello.", TextFormat("auto"))


def test_auto_resolves_by_chat_template():
    assert TextFormat("auto").resolved(word_tokenizer("bert")).template == "plain"
    assert TextFormat("auto").resolved(word_tokenizer("llama", chat_template=CHAT_TEMPLATE)).template == "chat"
    assert TextFormat("plain").resolved(word_tokenizer("llama", chat_template=CHAT_TEMPLATE)).template == "plain"


@pytest.mark.parametrize("kw, match", [({"template": "jinja"}, "unknown template"),
                                       ({"truncation_side": "middle"}, "truncation_side"),
                                       ({"max_length": 4}, "max_length")])
def test_text_format_validates(kw, match):
    with pytest.raises(ValueError, match=match):
        TextFormat(**kw)


def test_text_format_save_load(tmp_path):
    assert TextFormat.load(tmp_path) is None
    TextFormat("plain", 64, "right").save(tmp_path)
    assert TextFormat.load(tmp_path) == TextFormat("plain", 64, "right")


# ids of the test vocabulary: <pad>=0 <unk>=1 <s>=2 </s>=3 User=4 Assistant=5 ... ':'=8; wN = 17 + N
def w(*ns):
    return [17 + n for n in ns]


def test_plain_encode_bert_no_truncation():
    tok = word_tokenizer("bert")
    [ids] = encode(tok, ["w1 w2"], ["w3"], TextFormat("plain", 32))
    # <s> User : w1 w2 Assistant : w3 </s>
    assert ids == [2, 4, 8, *w(1, 2), 5, 8, *w(3), 3]


def test_left_truncation_keeps_end_and_cls_sep():
    tok = word_tokenizer("bert")
    [ids] = encode(tok, ["w1 w2 w3 w4 w5 w6 w7 w8 w9"], ["w10 w11"], TextFormat("plain", 8, "left"))
    # budget 8 = <s> + 6 text tokens + </s>; the 6 LAST text tokens survive
    assert ids == [2, *w(8, 9), 5, 8, *w(10, 11), 3]
    assert tok.truncation_side == "right"  # the tokenizer's own setting is restored


def test_right_truncation_keeps_start():
    tok = word_tokenizer("bert")
    [ids] = encode(tok, ["w1 w2 w3 w4 w5 w6 w7 w8 w9"], ["w10 w11"], TextFormat("plain", 8, "right"))
    assert ids == [2, 4, 8, *w(1, 2, 3, 4), 3]


def test_left_truncation_keeps_bos_for_decoder_plain():
    tok = word_tokenizer("llama")  # adds a BOS only, like Llama's tokenizer
    [ids] = encode(tok, ["w1 w2 w3 w4 w5 w6 w7 w8 w9"], ["w10 w11"], TextFormat("plain", 8, "left"))
    # 15 text tokens; budget 8 = <s> + the last 7: w7 w8 w9 Assistant : w10 w11
    assert ids == [2, *w(7, 8, 9), 5, 8, *w(10, 11)]


def test_chat_template_exact_ids_and_string():
    tok = word_tokenizer("llama", chat_template=CHAT_TEMPLATE)
    text = render(tok, "w1 w2", "good", TextFormat("chat"))
    assert text == "<s>user : w1 w2 </s> assistant : good </s> "
    [ids] = encode(tok, ["w1 w2"], ["good"], TextFormat("auto", 32))
    # the template carries the BOS; no second BOS is added by the tokenizer
    assert ids == [2, 6, 8, *w(1, 2), 3, 7, 8, 13, 3]


def test_chat_template_left_truncation_keeps_bos_and_end():
    tok = word_tokenizer("llama", chat_template=CHAT_TEMPLATE)
    [ids] = encode(tok, ["w1 w2 w3 w4 w5 w6"], ["w7 w8"], TextFormat("chat", 8, "left"))
    # full: <s> user : w1..w6 </s> assistant : w7 w8 </s>  (16 ids) -> <s> + the last 7
    assert ids == [2, *w(6), 3, 7, 8, *w(7, 8), 3]
    [ids] = encode(tok, ["w1 w2 w3 w4 w5 w6"], ["w7 w8"], TextFormat("chat", 8, "right"))
    assert ids == [2, 6, 8, *w(1, 2, 3, 4, 5)]


def test_chat_template_multi_turn_prompt():
    tok = word_tokenizer("llama", chat_template=CHAT_TEMPLATE)
    prompt = [{"role": "user", "content": "w1"}, {"role": "assistant", "content": "w2"},
              {"role": "user", "content": "w3"}]
    assert render(tok, prompt, "w4", TextFormat("chat")) == (
        "<s>user : w1 </s> assistant : w2 </s> user : w3 </s> assistant : w4 </s> ")


def test_a_chat_template_that_reads_the_clock_renders_the_same_every_day(monkeypatch):
    # Llama 3.x's template writes "Today Date: ..." from strftime_now unless given date_string
    import datetime

    from transformers.utils import chat_template_utils

    from xlrm_lib import generate
    from xlrm_lib.formatting import TEMPLATE_VARS

    tok = word_tokenizer("llama", chat_template=(
        "{% if date_string is not defined %}{% set date_string = strftime_now('%d %b %Y') %}{% endif %}"
        "<s> system : w1 {{ date_string }} </s> " + CHAT_TEMPLATE.removeprefix("<s>")))
    texts = set()
    for day in (datetime.datetime(2025, 1, 2), datetime.datetime(2026, 11, 27)):
        class Clock(datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                return day

        monkeypatch.setattr(chat_template_utils, "datetime", Clock)  # what transformers' strftime_now reads
        texts.add(render(tok, "w2", "w3", TextFormat("chat")))
        texts.add(generate.policy_prompt(tok, "w2")[0].split("user")[0])
    assert len(texts) == 2  # one answer text, one policy prompt: neither depends on the day
    assert all(TEMPLATE_VARS["date_string"] in t for t in texts)


def test_pad_batch_right():
    b = pad_batch([[5, 6, 7], [8]], pad_token_id=0, padding_side="right")
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["position_ids"].tolist()[0] == [0, 1, 2]
    assert b["position_ids"].tolist()[1][0] == 0  # the real token is at position 0
    assert all(t.dtype == torch.long for t in b.values())


def test_pad_batch_left_positions_count_real_tokens():
    b = pad_batch([[5, 6, 7], [8, 9]], pad_token_id=1, padding_side="left")
    assert b["input_ids"].tolist() == [[5, 6, 7], [1, 8, 9]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]
    # the left-padded row sees positions 0, 1 on its real tokens: the same as unpadded
    assert b["position_ids"].tolist() == [[0, 1, 2], [0, 0, 1]]


def test_forward_kwargs_drops_position_ids_only_where_unsupported():
    batch = {"input_ids": 1, "attention_mask": 2, "position_ids": 3}

    class NoPos:
        def forward(self, input_ids=None, attention_mask=None):
            pass

    class WithPos:
        def forward(self, input_ids=None, attention_mask=None, position_ids=None):
            pass

    class Kw:
        def forward(self, input_ids=None, **kwargs):
            pass

    assert forward_kwargs(NoPos(), batch) == {"input_ids": 1, "attention_mask": 2}
    assert forward_kwargs(WithPos(), batch) is batch
    assert forward_kwargs(Kw(), batch) is batch


def test_roberta_family_encoders_number_their_own_positions():
    # XLM-R (multilingual-e5-base/large, bge-m3) counts positions from padding_idx + 1 = 2, from input_ids; 0-based
    # position ids moved every token onto another row of the position table
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from xlrm_lib.formatting import forward_kwargs, pad_batch

    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=130, num_labels=1, pad_token_id=1,
                           initializer_range=0.2)
    model = XLMRobertaForSequenceClassification(cfg).eval()
    seqs = [[0, 5, 6, 7, 8, 2], [0, 9, 10, 2]]
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([s])).logits[:, 0] for s in seqs])
        batch = pad_batch(seqs, pad_token_id=1, padding_side="right")  # an encoder's head reads the first token
        assert "position_ids" not in forward_kwargs(model, batch)
        torch.testing.assert_close(model(**forward_kwargs(model, batch)).logits[:, 0], alone)
    lora = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query"]))
    assert "position_ids" not in forward_kwargs(lora, batch)


# ----------------------------------------------------------------------------- added by mutation testing
def test_the_default_format_keeps_the_end_and_every_step_keeps_the_side_asked_for():
    from conftest import tiny_bert
    from xlrm_lib.formatting import fit_positions

    tok = word_tokenizer("bert")
    long = (["w1 w2 w3 w4 w5 w6 w7 w8 w9"], ["w10 w11"])
    # the documented rule: a format that names no side keeps the END (as test_left_truncation_keeps_end_and_cls_sep)
    assert TextFormat().truncation_side == "left"
    assert encode(tok, *long, TextFormat("plain", 8)) == [[2, *w(8, 9), 5, 8, *w(10, 11), 3]]
    # "auto" resolved for a tokenizer keeps a right side (the START: as test_right_truncation_keeps_start)
    assert TextFormat("auto", 8, "right").resolved(tok) == TextFormat("plain", 8, "right")
    assert encode(tok, *long, TextFormat("auto", 8, "right")) == [[2, 4, 8, *w(1, 2, 3, 4), 3]]
    # capped to the model's 128 positions, a format keeps its side
    assert fit_positions(TextFormat("plain", 1000, "right"), tiny_bert()) == TextFormat("plain", 128, "right")
