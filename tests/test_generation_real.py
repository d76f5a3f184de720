"""Generation on the real SmolLM2: the chat template path, and a generation task end to end."""

from __future__ import annotations

import pytest

from lmgauge.requests import GenerateRequest

pytestmark = pytest.mark.slow


def test_chat_template_is_explicit_per_model_and_request(smollm2):
    turns = (("user", "What is 2 + 2?"),)
    plain = GenerateRequest("What is 2 + 2?", max_new_tokens=4, messages=turns)
    saved = smollm2.chat_template
    try:
        smollm2.chat_template = False
        off = smollm2.generate([plain])[0]
        assert off.prompt is None  # the text was sent as it is
        smollm2.chat_template = True
        on, forced_off = smollm2.generate(
            [plain, GenerateRequest("What is 2 + 2?", max_new_tokens=4, messages=turns, chat=False)]
        )
    finally:
        smollm2.chat_template = saved
    assert on.prompt.startswith("<|im_start|>") and "<|im_start|>user\nWhat is 2 + 2?<|im_end|>" in on.prompt
    assert on.prompt.endswith("<|im_start|>assistant\n")
    assert forced_off.prompt is None and forced_off.text == off.text
    # a task asking for chat on a model configured without it
    chat_on = smollm2.generate([GenerateRequest("What is 2 + 2?", max_new_tokens=4, messages=turns, chat=True)])[0]
    assert chat_on.prompt == on.prompt and chat_on.text == on.text


def test_fewshot_as_multiturn_messages():
    import lmgauge.tasks  # noqa: F401
    from lmgauge.tasks.registry import build

    task = build("gsm8k_cot", fewshot_as_multiturn=True, chat=True)
    docs, _ = task.load()
    req = task.requests(docs[0], 0)[0]
    roles = [r for r, _ in req.messages]
    assert roles == ["user", "assistant"] * 8 + ["user"] and req.chat is True
    assert req.messages[1][1].endswith("The answer is 6.") and req.messages[-1][1] == f"Q: {docs[0]['question']}\nA:"
