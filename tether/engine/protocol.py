"""The records that cross tether's boundaries: an action, a step, a whole run's trace."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ANSWER",
    "CHARS_PER_TOKEN",
    "Action",
    "AnswerSource",
    "Mode",
    "Restriction",
    "Step",
    "StepTiming",
    "StopReason",
    "TokenCounts",
    "Trace",
]

ANSWER = "answer"  # the built-in final command
CHARS_PER_TOKEN = 8  # a step's text is cut at this many characters per token of its budget: a server may
# ignore `max_tokens`, and the validator's work grows with the text


class Action(BaseModel):
    """One parsed step: the model's thought and the command it chose, with that command's input."""

    model_config = ConfigDict(frozen=True)

    thought: str
    command: str
    input: str

    def to_text(self) -> str:
        """The exact step text the grammar produces for this action (the inverse of parsing)."""
        return f"Thought: {self.thought}\n{self.command}: {self.input}\n"

    @property
    def is_answer(self) -> bool:
        return self.command == ANSWER


class StopReason(str, Enum):
    """Why a run ended. A forced answer keeps the reason that forced it."""

    ANSWER = "answer"  # the model chose to answer
    STEP_LIMIT = "step_limit"  # the last allowed step admitted only `answer:`
    LOOP = "loop"  # repeated actions narrowed the grammar to `answer:` (or, unconstrained, ended it)
    TIME_LIMIT = "time_limit"  # the run's wall-clock budget ran out
    CONTEXT_LIMIT = "context_limit"  # the transcript outgrew the model's context window
    BACKEND_ERROR = "backend_error"  # the model server failed past its retries (the step's error says how)


class Mode(str, Enum):
    CONSTRAINED = "constrained"  # the step grammar drives the decoder
    FREE = "free"  # no grammar; the validator alone judges each step (the baseline)
    CLOSED_BOOK = "closed-book"  # no tools: one reasoning pass, then a grammar-constrained `answer:` line


class AnswerSource(str, Enum):
    """Which path produced a run's answer."""

    AGENT = "agent"  # the model chose `answer:`
    FORCED = "forced"  # the grammar admitted only `answer:` (the step limit, or a loop)
    FALLBACK = "fallback"  # a closed-book reasoning pass over the question and the run's observations
    CLOSED_BOOK = "closed_book"  # closed-book mode: the model answered with no tools


class Restriction(str, Enum):
    """Which commands the grammar admitted for a step."""

    ALL = "all"
    TOOLS_ONLY_FIRST_STEP = "tools_only_first_step"  # one of the first `Limits.act_first` steps
    ANSWER_ONLY_LAST_STEP = "answer_only_last_step"
    ANSWER_ONLY_LOOP = "answer_only_loop"


class TokenCounts(BaseModel):
    """A step's token counts: the backend fills them in while it streams, the Step keeps them."""

    prompt: int = 0  # tokens in the prompt the step was decoded from
    prompt_evaluated: int = 0  # of those, tokens the model evaluated (the rest came from its cache)
    sampled: int = 0  # tokens the decoder sampled for the step
    forced: int = 0  # tokens appended because the grammar allowed nothing else
    full_masks: int = 0  # sampled tokens the grammar refused (the full-vocabulary mask was computed)


class StepTiming(BaseModel):
    decode_s: float = 0.0
    tool_s: float = 0.0


class Step(BaseModel):
    """One Thought + command, what became of it, and what it cost."""

    index: int
    raw_text: str
    action: Action | None = None  # None when the text failed validation
    error: str | None = None  # why the text or the tool failed, if it did
    observation: str | None = None  # None for the final `answer:` step
    restriction: Restriction = Restriction.ALL
    loop: Literal["repeat", "cycle"] | None = None  # repeated an earlier action; the tool was not re-run
    truncated: bool = False  # cut by the per-step token budget; a cut command is not run
    tokens: TokenCounts = Field(default_factory=TokenCounts)
    timing: StepTiming = Field(default_factory=StepTiming)

    @property
    def valid(self) -> bool:
        return self.action is not None


class Trace(BaseModel):
    """A whole run: JSON-serialisable, so runs can be stored, diffed and scored."""

    question: str
    model: str
    mode: Mode
    steps: list[Step] = Field(default_factory=list)
    answer: str | None = None
    # The answer as a value of the agent's `output_type` (None without one, or when the answer did not validate)
    output: Any = None
    answer_source: AnswerSource | None = None  # None when there is no answer
    stop_reason: StopReason | None = None
    elapsed_s: float = 0.0
    # Constrained, yet a step failed validation for a reason other than the token budget: the backend
    # (a server) ignored the grammar. Such steps were handled as in free mode: an error observation each.
    grammar_ignored: bool = False
    # What the agent's retriever found for the run's prompts to read (empty without one), and why
    # it found nothing where it failed.
    passages: list[str] = Field(default_factory=list)
    passages_error: str | None = None

    @property
    def valid_steps(self) -> int:
        return sum(step.valid for step in self.steps)

    @property
    def parse_failures(self) -> int:
        return len(self.steps) - self.valid_steps
