"""Batched greedy generation from prompt texts."""

from __future__ import annotations

from typing import Sequence


def generate(model, tokenizer, prompts: Sequence[str], device, max_new_tokens: int,
             batch_size: int = 8) -> list[str]:
    """Greedy continuations of ``prompts`` (already chat-formatted), decoded without specials.

    Prompts are left-padded in batches and never cut here: the prompt builder fits the retrieved
    items within ``max_prompt_tokens`` and never cuts the query (``runners.prompts``).
    """
    import torch

    outputs: list[str] = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.no_grad():
                out = model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                    temperature=None, top_p=None, top_k=None,
                )
            new = out[:, enc["input_ids"].shape[1]:]
            outputs.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return outputs
