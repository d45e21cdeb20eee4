"""The one error hierarchy of tether.

TetherError
├── RecoverableError      becomes the step's observation and the run goes on (the controller's one rule)
│   ├── ModelError        the model's mistake
│   │   ├── ParseError    a step's text does not match the step grammar
│   │   └── ToolInputError  the input does not fit the tool's typed input
│   └── ToolError         a tool failed or refused its input
│       └── ToolTimeout   a tool call ran past its time limit
├── BackendError          the model server failed past its retries: ends the run (stop reason backend_error)
├── ContextOverflow       the prompt no longer fits the context window: ends the run (stop reason context_limit)
└── ConfigError           the embedder's fault: raised to the caller, at construction where possible
    │                     (raised inside a tool, it ends the run and never reaches the model)
    ├── GrammarError      a grammar source is malformed (names line and column)
    ├── ToolRegistrationError  a tool that cannot be registered
    │   └── SchemaError   a type or JSON Schema with no grammar (names the field's JSON path)
    ├── ModelFileError    a model that is unknown, missing, unreadable, or that llama.cpp cannot load
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
    "ModelFileError",
    "ParseError",
    "RecoverableError",
    "SchemaError",
    "TetherError",
    "ToolError",
    "ToolInputError",
    "ToolRegistrationError",
    "ToolTimeout",
]


class TetherError(Exception):
    """Base of every error tether raises on purpose."""


class RecoverableError(TetherError):
    """A failure the model can react to: the controller makes its message the step's observation and
    the run goes on. Only the model's and the tools' failures are recoverable; a ConfigError is not."""


class ModelError(RecoverableError):
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


class ToolError(RecoverableError):
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


class SchemaError(ToolRegistrationError):
    """A type or JSON Schema (a tool's input, an agent's output) that cannot become a grammar without
    loosening it: `path` is the JSON path of the field (e.g. `properties.when.pattern`)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class ModelFileError(ConfigError):
    """A model that cannot be had: an unknown name, a file that is missing, unreadable, not a GGUF
    model, or that llama.cpp cannot load (a configuration error, unlike ModelError)."""


class ContextOverflow(TetherError):
    """The prompt plus the step's token budget no longer fits the model's context window."""


class DatasetError(ConfigError):
    """An evaluation question set that cannot be read: names the file and the line or item."""
