"""Optional LLM query writer over any OpenAI-compatible chat endpoint (plain HTTP, stdlib only).

Never needed by tests or the default pipeline; importing it opens no connection. It rewrites an
offline query in a person's own words while the gold answer stays the one the offline generator
derived (the LLM only changes wording, so gold stays verifiable). Family becomes ``llm:<family>``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence

from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue, Query
from ffr_lib.segment.fragments import render_span

PROMPT = (
    "You write search questions a person would type to find part of their own chat history.\n"
    "Rewrite the request below as one natural question or phrase. Use your own words: do not "
    "copy words from the chat lines, name things by what they are (categories, paraphrases). "
    "Keep the meaning exactly; do not add details. Answer with the rewritten query only.\n\n"
    "Chat lines the query is about:\n{context}\n\nRequest: {query}"
)


class LLMConfig(BaseModel):
    base_url: str = Field(description="e.g. http://localhost:8000/v1")
    model: str
    api_key: str | None = None
    temperature: float = 0.7
    timeout_s: float = 60.0
    max_tokens: int = 64


def chat(config: LLMConfig, prompt: str) -> str:
    """One chat completion; returns the message text."""
    body = json.dumps(
        {
            "model": config.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(
        config.base_url.rstrip("/") + "/chat/completions", data=body, headers=headers
    )
    with urllib.request.urlopen(request, timeout=config.timeout_s) as response:  # noqa: S310
        payload = json.load(response)
    return str(payload["choices"][0]["message"]["content"]).strip()


def rewrite_queries(
    queries: Sequence[Query], dialogues: Sequence[Dialogue], config: LLMConfig
) -> list[Query]:
    """LLM-worded copies of ``queries`` (same gold). Negatives get the whole dialogue as context
    so the model cannot make them answerable by accident; an empty reply keeps the original."""
    by_id = {d.id: d for d in dialogues}
    out = []
    for q in queries:
        d = by_id[q.dialogue_id]
        owners = {d.images[j].utterance_index for j in q.gold_image_ids}
        ids = sorted(set(q.gold_utterance_ids) | owners)
        context = (
            "\n".join(render_span(d, i, i + 1) for i in ids)
            if ids
            else "(nothing in the chat answers it)"
        )
        text = chat(config, PROMPT.format(context=context, query=q.text)).strip().strip('"')
        out.append(
            q.model_copy(
                update={
                    "id": f"{q.id}-llm",
                    "text": text or q.text,
                    "family": f"llm:{q.family}",
                    "metadata": {**q.metadata, "original_text": q.text, "llm_model": config.model},
                }
            )
        )
    return out
