"""The simulator's chat template: how chat messages become one prompt string.

Called by `simulator.openai_api` for `/v1/chat/completions`. The rendered string is
both what the deterministic model is seeded with and what the prompt tokens count, so
usage.prompt_tokens is `count_tokens(render_chat(messages))`.

Rendering: each message becomes `<|ROLE|>\\nCONTENT\\n`, and `<|assistant|>\\n` follows
the last one (the generation prompt). Content given as a list of parts is the text
parts joined with "\\n". A `--chat-template` file is not applied (the simulator has no
Jinja); it is logged at start and reported by `/get_server_info`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTurn:
    role: str
    content: str


def render_chat(turns: Iterable[ChatTurn]) -> str:
    rendered = "".join(f"<|{turn.role}|>\n{turn.content}\n" for turn in turns)
    return f"{rendered}<|assistant|>\n"
