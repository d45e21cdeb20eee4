"""tether: grammar-constrained ReAct agents that small local models can run reliably."""

from __future__ import annotations

from tether.engine.answer import AnswerType
from tether.engine.backends import (
    Backend,
    LlamaCppBackend,
    Message,
    OpenAIServerBackend,
    Sampling,
    ScriptedBackend,
    StreamStats,
)
from tether.engine.controller import Agent, Limits, Retriever
from tether.engine.events import (
    ActionParsed,
    Event,
    ObservationMade,
    RunFinished,
    StepFailed,
    StepStarted,
    TextDelta,
)
from tether.engine.grammar import StepGrammar, compose_step_grammar
from tether.engine.protocol import Action, AnswerSource, Mode, Restriction, Step, StopReason, Trace
from tether.engine.run_state import RunLocal
from tether.engine.tool import Tool, ToolRegistry, safe_tool_name, tool
from tether.engine.vote import Voted, reason_then_act, self_consistent
from tether.errors import (
    BackendError,
    ConfigError,
    ContextOverflow,
    DatasetError,
    GrammarError,
    ModelError,
    ModelFileError,
    ParseError,
    RecoverableError,
    SchemaError,
    TetherError,
    ToolError,
    ToolInputError,
    ToolRegistrationError,
    ToolTimeout,
)
from tether.models import default_model_path, load_backend
from tether.tools import default_tools, resolve_tools

__all__ = [
    "Action",
    "ActionParsed",
    "Agent",
    "AnswerSource",
    "AnswerType",
    "Backend",
    "BackendError",
    "ConfigError",
    "ContextOverflow",
    "DatasetError",
    "Event",
    "GrammarError",
    "Limits",
    "LlamaCppBackend",
    "Message",
    "Mode",
    "ModelError",
    "ModelFileError",
    "ObservationMade",
    "OpenAIServerBackend",
    "ParseError",
    "RecoverableError",
    "Restriction",
    "Retriever",
    "RunFinished",
    "RunLocal",
    "Sampling",
    "SchemaError",
    "ScriptedBackend",
    "Step",
    "StepFailed",
    "StepGrammar",
    "StepStarted",
    "StopReason",
    "StreamStats",
    "TetherError",
    "TextDelta",
    "Tool",
    "ToolError",
    "ToolInputError",
    "ToolRegistrationError",
    "ToolRegistry",
    "ToolTimeout",
    "Trace",
    "Voted",
    "compose_step_grammar",
    "default_model_path",
    "default_tools",
    "load_backend",
    "reason_then_act",
    "resolve_tools",
    "safe_tool_name",
    "self_consistent",
    "tool",
]
