"""The event API: what an embedder (and the CLI's live view) sees of a run while it happens."""

from __future__ import annotations

from dataclasses import dataclass

from tether.engine.protocol import Action, Restriction, Step, Trace

__all__ = ["ActionParsed", "Event", "ObservationMade", "RunFinished", "StepFailed", "StepStarted", "TextDelta"]


@dataclass(frozen=True)
class StepStarted:
    index: int
    restriction: Restriction


@dataclass(frozen=True)
class TextDelta:
    """A piece of the step text as the model produces it."""

    index: int
    text: str


@dataclass(frozen=True)
class ActionParsed:
    index: int
    action: Action


@dataclass(frozen=True)
class StepFailed:
    """The step's text failed validation (only without the grammar, or from a server that ignores it)."""

    index: int
    error: str


@dataclass(frozen=True)
class ObservationMade:
    index: int
    observation: str
    step: Step


@dataclass(frozen=True)
class RunFinished:
    trace: Trace


Event = StepStarted | TextDelta | ActionParsed | StepFailed | ObservationMade | RunFinished
