"""Loop detection: when a step repeats an earlier action, and when a repeat has gained nothing.

A small model stuck on a question repeats itself: the same command, or the same cycle of commands,
with the input spelt a little differently (`1+1`, `1 + 1`, `(1+1)`). Such a step is a repeat:

- a plain tool is not run again; the model is told what it already got;
- a repeatable tool (`lookup`, whose repeat gives the next match) runs, and is a repeat when it
  answers exactly what the same action answered before (no new result).

Each repeat counts; the controller narrows the grammar to `answer:` once there are enough of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tether.engine.protocol import Action, Step

__all__ = ["LoopDetector", "action_key"]

_SPACE_AROUND_SYMBOL = re.compile(r"\s*([^\w\s])\s*")


def action_key(action: Action) -> tuple[str, str]:
    """The action with its input normalised: case, runs of spaces, spaces next to symbols and
    parentheses around the whole input do not make a new action."""
    text = _SPACE_AROUND_SYMBOL.sub(r"\1", " ".join(action.input.split()).casefold())
    while _enclosed(text):
        text = text[1:-1]
    return action.command, text


def _enclosed(text: str) -> bool:
    """Whether the first "(" closes at the last character: "(1+1)" yes, "(1)+(1)" no."""
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        return False
    depth = 0
    for position, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return position == len(text) - 1
    return False


class LoopDetector:
    """The repeats of one run, over its steps (the last of which is the step being acted on)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = steps
        self.repeats = 0

    def _same(self, action: Action) -> list[Step]:
        key = action_key(action)
        return [s for s in self._steps[:-1] if s.action is not None and action_key(s.action) == key]

    def earlier_run(self, action: Action) -> Step | None:
        """The earlier step that ran this same action, if any."""
        return next((s for s in self._same(action) if s.loop is None), None)

    def gained_nothing(self, step: Step) -> bool:
        """Whether this step, whose tool ran, got the same observation as the last time it ran."""
        assert step.action is not None
        same = self._same(step.action)
        return bool(same) and same[-1].observation == step.observation

    def mark(self, step: Step) -> None:
        """Count the step as a repeat: of the step just before it, or of an earlier cycle."""
        assert step.action is not None
        self.repeats += 1
        previous = self._steps[-2].action if len(self._steps) > 1 else None
        same_as_previous = previous is not None and action_key(previous) == action_key(step.action)
        step.loop = "repeat" if same_as_previous else "cycle"
