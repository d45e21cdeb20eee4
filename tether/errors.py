"""The one error hierarchy of tether.

TetherError
├── ModelError            the model's fault: becomes an observation, the run goes on
│   ├── ParseError        a step's text does not match the step grammar
│   └── ToolInputError    the input does not fit the tool's typed input
├── BackendError          the model server failed past its retries: ends the run (stop reason backend_error)
├── ToolError             a tool failed or timed out: becomes an observation
│   └── ToolTimeout
└── ConfigError           the embedder's fault: raised at once, before a run starts
    ├── GrammarError      a grammar source is malformed (names line and column)
    ├── ToolRegistrationError
    ├── ModelLoadError    a model file is missing or unreadable
    └── DatasetError      a question set that cannot be read (names the file and line)
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigError",
    "ContextOverflow",
    "DatasetError",
    "GrammarError",
    "ModelError",
    "ModelLoadError",
    "ParseError",
    "TetherError",
    "ToolError",
    "ToolInputError",
    "ToolRegistrationError",
    "ToolTimeout",
]


class TetherError(Exception):
    """Base of every error tether raises on purpose."""


class ModelError(TetherError):
    """The model produced something unusable; the controller sends it back as an observation."""


class ParseError(ModelError):
    """Step text rejected by the validator, with the position and what was expected there."""

    def __init__(self, message: str, *, text: str, position: int, expected: frozenset[str]) -> None:
        super().__init__(message)
        self.text = text
        self.position = position
        self.expected = expected


class ToolInputError(ModelError):
    """A syntactically valid input that the tool's typed input refuses."""


class BackendError(TetherError):
    """A model server that stays unreachable or answers nonsense; the run ends, its steps kept."""


class ToolError(TetherError):
    """A tool raised or refused its input; the message becomes the observation."""


class ToolTimeout(ToolError):
    """A tool call ran past its time limit."""


class ConfigError(TetherError):
    """Wrong setup by the embedder or CLI user: raised before any model work."""


class GrammarError(ConfigError):
    """A GBNF source that does not parse or refers to undefined rules."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class ToolRegistrationError(ConfigError):
    """A tool that cannot be registered: bad name, duplicate, or malformed input grammar."""


class ModelLoadError(ConfigError):
    """A model file that is missing, unreadable, or not a GGUF model."""


class ContextOverflow(TetherError):
    """The prompt plus the step's token budget no longer fits the model's context window."""


class DatasetError(ConfigError):
    """An evaluation question set that cannot be read: names the file and the line or item."""
