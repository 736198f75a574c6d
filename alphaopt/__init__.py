"""alphaopt: plain-language optimization problems → Pyomo models → HiGHS optima."""

from alphaopt.agent.state import BatchItem, Solution
from alphaopt.api import Agent, solve, solve_batch
from alphaopt.config import Settings, load_settings
from alphaopt.errors import AlphaoptError, ConfigError, InputError, LLMError

__all__ = [
    "Agent",
    "AlphaoptError",
    "BatchItem",
    "ConfigError",
    "InputError",
    "LLMError",
    "Settings",
    "Solution",
    "load_settings",
    "solve",
    "solve_batch",
]
