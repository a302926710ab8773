"""Turning a user request into the model's prompt text (chat template where there is one)."""

from __future__ import annotations


def render_prompt(tokenizer, text: str) -> str:
    """The prompt string for a user message, ending where the model's answer begins.

    Uses the tokenizer's chat template (as a single user turn, with the generation prompt);
    models without one get the plain text followed by a newline.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text + "\n"
