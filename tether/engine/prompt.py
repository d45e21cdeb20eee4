"""The prompt: instructions and the tool list generated from the registry, then the transcript.

The transcript is the same plain text in both styles: as a raw completion, or inside the assistant
turn of the model's chat template (`chat`, the default where the model has a template).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Literal, Protocol

from tether.engine.backends.base import Backend, Message
from tether.engine.grammar import ToolLike
from tether.engine.protocol import ANSWER, Step
from tether.errors import ConfigError
from tether.text import one_line

__all__ = ["PromptStyle", "examples_for", "open_turn", "render_prompt", "sanitise_observation", "step_transcript"]

PromptStyle = Literal["auto", "chat", "raw"]
MEASURED_STYLES: dict[str, PromptStyle] = {"qwen2": "raw", "llama": "chat"}
"""What `auto` picks per GGUF architecture (`Backend.architecture`), by measurement (tether eval, 10 SVAMP
+ 10 HotpotQA questions, constrained): Qwen2.5-Coder-0.5B answered 50% / 10% as a raw completion against
30% / 0% in its chat template; SmolLM2-135M (llama) 20% / 10% in its template against 0% / 0% raw. Other
architectures: chat."""
OBSERVATION_LIMIT = 600
EXAMPLE_LIMIT = 4
_PROMPTS = resources.files("tether.prompts")
_INSTRUCTIONS = _PROMPTS.joinpath("prompt.txt").read_text("utf-8")
_COMMAND = re.compile(r"^([a-z][a-z0-9_]*): ", re.MULTILINE)


def _load_examples(source: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """Each worked example of `examples.txt` and the commands it calls (all must be registered to show it)."""
    blocks = [b.strip("\n") for b in re.split(r"\n[ \t]*\n", source)]
    return tuple((b + "\n", frozenset(_COMMAND.findall(b)) - {ANSWER}) for b in blocks if b and not b.startswith("#"))


_EXAMPLES = _load_examples(_PROMPTS.joinpath("examples.txt").read_text("utf-8"))


class DescribedTool(ToolLike, Protocol):
    @property
    def description(self) -> str: ...

    @property
    def example(self) -> str: ...

    @property
    def arguments(self) -> str | None: ...


ARGUMENTS_LIMIT = 1200  # characters of a JSON tool's argument list in the prompt


def tool_list(tools: Iterable[DescribedTool]) -> str:
    """One line per tool: its description, a JSON input's arguments, and an example call."""
    return "\n".join(f"- {t.name}: {t.description}{_arguments(t)} Example: {t.name}: {t.example}" for t in tools)


def _arguments(t: DescribedTool) -> str:
    return f" Arguments: {one_line(t.arguments, ARGUMENTS_LIMIT)}." if t.arguments else ""


def examples_for(tools: Iterable[ToolLike], limit: int = EXAMPLE_LIMIT) -> list[str]:
    """The worked examples that call only these tools, in file order: a model copies what it is
    shown, so it must never be shown a command it cannot use."""
    names = {t.name for t in tools}
    return [text for text, commands in _EXAMPLES if commands <= names][:limit]


def sanitise_observation(text: str, limit: int = OBSERVATION_LIMIT) -> str:
    """One line of printable text, capped: tool output is data and can never forge a step."""
    return one_line(text, limit)


def step_transcript(step: Step) -> str:
    """How a finished step reads in the next prompt: its text, then its observation line."""
    text = step.action.to_text() if step.action else step.raw_text.rstrip("\n") + "\n"
    return text + (f"Observation: {step.observation}\n" if step.observation is not None else "")


def render_prompt(
    backend: Backend,
    question: str,
    steps: Sequence[Step],
    tools: Iterable[DescribedTool],
    style: PromptStyle = "auto",
    reading: str = "",
) -> str:
    """The full prompt for the next step; it always ends where a `Thought:` line may begin. `reading`
    (the passages found for the question, as `closed_book.reading_block` writes them) comes before the
    question."""
    tools = list(tools)
    examples = examples_for(tools)
    shown = "Examples:\n\n" + "\n".join(examples) if examples else ""
    system = _INSTRUCTIONS.format(tools=tool_list(tools), examples=shown).rstrip("\n")
    user = f"Question: {sanitise_observation(question, limit=2000)}"
    if reading:
        user = f"{reading}\n\n{user}"
    return open_turn(backend, system, user, style) + "".join(map(step_transcript, steps))


def open_turn(backend: Backend, system: str, user: str, style: PromptStyle = "auto") -> str:
    """The prompt text up to where the model writes: the assistant turn of its chat template after
    `system` and `user`, or the two as a raw completion, as `style` (or, for `auto`, the measurement) says."""
    opening = None
    chosen = MEASURED_STYLES.get(backend.architecture or "", "chat") if style == "auto" else style
    if chosen == "chat":
        opening = backend.format_chat([Message(role="system", content=system), Message(role="user", content=user)])
        if opening is None and style == "chat":
            raise ConfigError(f"model {backend.name} has no chat template; use prompt style 'raw'")
    return opening if opening is not None else f"{system}\n\n{user}\n"
