"""tether: grammar-constrained ReAct agents that small local models can run reliably."""

from __future__ import annotations

from tether.engine.backends.base import Backend, Message, Sampling, StreamStats
from tether.engine.backends.llama_cpp import LlamaCppBackend
from tether.engine.backends.scripted import ScriptedBackend
from tether.engine.controller import Agent, Limits
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
from tether.engine.protocol import Action, Mode, Restriction, Step, StopReason, Trace
from tether.engine.run_state import RunLocal
from tether.errors import (
    ConfigError,
    ContextOverflow,
    GrammarError,
    ModelError,
    ModelFileError,
    ParseError,
    TetherError,
    ToolError,
    ToolInputError,
    ToolRegistrationError,
    ToolTimeout,
)
from tether.models import default_model_path, load_backend
from tether.tools import Tool, ToolRegistry, default_tools, resolve_tools, tool

__all__ = [
    "Action",
    "ActionParsed",
    "Agent",
    "Backend",
    "ConfigError",
    "ContextOverflow",
    "Event",
    "GrammarError",
    "Limits",
    "LlamaCppBackend",
    "Message",
    "Mode",
    "ModelError",
    "ModelFileError",
    "ObservationMade",
    "ParseError",
    "Restriction",
    "RunFinished",
    "RunLocal",
    "Sampling",
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
    "compose_step_grammar",
    "default_model_path",
    "default_tools",
    "load_backend",
    "resolve_tools",
    "tool",
]
