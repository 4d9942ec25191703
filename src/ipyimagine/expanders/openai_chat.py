"""Expand an idea with an LLM over chat completions: OpenAI, or any compatible server (Ollama, llama.cpp, vLLM).

Chat completions is the one endpoint every such server offers. The user's words always come
first: a reply that does not start with them gets them put in front (small models drift). Only what all of them accept is
sent: `model`, `messages`, and `temperature` when the user set one (Ollama rejects `n`; newer
OpenAI models reject `max_tokens` and non-default temperatures). The reply is cleaned to one
paragraph; a refusal falls back to the idea as written, with a note.
"""

from __future__ import annotations

import hashlib
import re

from .. import openai_support
from ..request import Expansion
from .template import clean_idea

SYSTEM_PROMPT = """You write prompts for a text-to-image model.
Rewrite the user's idea as ONE paragraph of 30 to 70 words that covers, in this order:
content type (photograph, oil painting, 3d render, ...), description (the subject, setting and action),
style (technique, palette, mood) and composition (framing, lighting, level of detail).
Start with the user's own words for the subject, unchanged; keep every noun they used.
Reply with the prompt only: no preamble, no quotes, no lists, no markdown."""

REFUSALS = re.compile(r"^\s*(i('m| am)? (sorry|unable|can(no|')t|won't)|sorry\b|as an ai\b|i must decline)", re.IGNORECASE)


def clean_reply(text: str) -> str:
    """One paragraph from an LLM's reply: no reasoning, fences, quotes, labels, markdown or bullets."""
    text = re.sub(r"<think>.*?(</think>|$)", "", text, flags=re.DOTALL | re.IGNORECASE)
    text = re.sub(r"```\w*", "", text)
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(#+|[-*•]|\d+[.)])\s+", "", line)  # headings, bullets, numbers
        line = re.sub(r"^\s*\**\s*(image\s+)?prompt\s*\**\s*:\s*\**", "", line, flags=re.IGNORECASE)  # "Prompt:" labels
        line = line.replace("**", "").replace("__", "").strip()
        if line:
            lines.append(line)
    text = " ".join(lines).strip()
    while len(text) >= 2 and text[0] + text[-1] in ('""', "''", "“”", "‘’"):
        text = text[1:-1].strip()
    return text


class OpenAIChatExpander:
    name = "openai"
    settings = ("expander_model", "expander_temperature", "openai_base_url")

    def __init__(self, config=None):
        self.config = config

    def availability(self) -> str | None:
        return openai_support.why_not_available(self.config)

    def describe(self) -> str:
        return f"LLM over chat completions ({self.config.expander_model} by default); OpenAI or any compatible server via base URL"

    def expand(self, idea: str, *, style: str | None = None, variant: int = 0, base_url: str | None = None) -> Expansion:
        config = self.config
        base_url = openai_support.base_url_of(config, base_url)
        host = openai_support.host_of(base_url)
        timeout, retries = config.openai_timeout, config.openai_max_retries
        user = clean_idea(idea) + (f"\nStyle preset chosen by the user: {style}." if style else "")
        request = {
            "model": config.expander_model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        }
        if config.expander_temperature is not None:
            request["temperature"] = config.expander_temperature

        from .. import openai_models
        from ..errors import RequestError

        refused, shutdown_note = openai_models.lifecycle(
            config.expander_model, base_url, "chat model", "Imagine.expander_model", openai_support.is_openai(config, base_url)
        )
        if refused:
            raise RequestError(refused)
        client = openai_support.make_client(base_url, timeout, retries)
        try:
            import openai

            response = client.chat.completions.create(**request)
        except openai.OpenAIError as error:
            raise openai_support.explain(error, host, "prompt expansion", timeout, retries, base_url=base_url) from None

        details = {
            "base_url_host": host,
            "temperature": request.get("temperature"),
            "system_prompt_sha256": hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()[:12],
            "variant": variant,
        }
        choices = getattr(response, "choices", None)
        if isinstance(response, str) or not choices:
            from ..errors import BackendError

            raise BackendError(f"{host} did not answer like an OpenAI-compatible API (no choices in the reply); check the base URL: it usually ends in /v1.")
        usage = getattr(response, "usage", None)
        if usage is not None:
            details["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        reply = clean_reply(choices[0].message.content or "")
        finish = getattr(choices[0], "finish_reason", None)
        if finish == "content_filter" or not reply or REFUSALS.match(reply):
            why = "its content filter stopped the reply" if finish == "content_filter" else "it declined or said nothing usable"
            details["note"] = f"The expander ({config.expander_model}) did not expand the idea ({why}); the idea was rendered as written."
            details["note"] = " ".join(n for n in (shutdown_note, details["note"]) if n)
            return Expansion(prompt=clean_idea(idea), expander=self.name, model=config.expander_model, details=details)
        if shutdown_note:
            details["note"] = shutdown_note
        idea_line = clean_idea(idea)
        if not reply.lower().startswith(idea_line.lower()):  # the user's words come first, whatever the model did
            reply = f"{idea_line}, {reply[0].lower() + reply[1:] if reply[:1].isupper() and not reply[1:2].isupper() else reply}"
        return Expansion(prompt=reply, expander=self.name, model=config.expander_model, details=details)
