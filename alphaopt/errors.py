"""alphaopt's exceptions. Solver outcomes and model mistakes are data, not exceptions;
these are for a broken setup or harness, and each message says how to fix it."""

from __future__ import annotations


class AlphaoptError(Exception):
    """Base class for alphaopt errors."""


class ConfigError(AlphaoptError):
    """A setting is missing or invalid."""


class LLMError(AlphaoptError):
    """The model endpoint failed in a way retries cannot fix."""


class InputError(AlphaoptError):
    """The user's problem text or input file is unusable."""


class ClusterError(AlphaoptError):
    """A Dask cluster cannot be reached or used as asked, or lost the workers running one item."""
