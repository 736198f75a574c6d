"""Glue between the settings and the in-process llama.cpp model.

The client in ``alphaopt.llm.client`` talks to the embedded model through the same OpenAI SDK as to
any endpoint; this module only builds the HTTP client whose transport runs the model.
"""

from __future__ import annotations

import httpx2

from alphaopt.config import Settings
from alphaopt.errors import ConfigError


def embedded_model_path(settings: Settings) -> str:
    """The GGUF file to load: ``model_path`` if set, else the default model, fetched on first use."""
    from alphaopt.llm.model_fetch import DEFAULT_MODEL, ModelFetchError, ensure_model

    if settings.model_path is not None:
        if not settings.model_path.is_file():
            raise ConfigError(
                f"ALPHAOPT_MODEL_PATH points at {str(settings.model_path)!r}, which is not a file: give a GGUF file."
            )
        return str(settings.model_path)
    try:
        return str(ensure_model(settings.experimental.model_dir, DEFAULT_MODEL))
    except ModelFetchError as exc:
        raise ConfigError(str(exc)) from exc


def embedded_http_client(settings: Settings) -> httpx2.Client:
    """An HTTP client whose transport answers chat requests with the local model."""
    try:
        from alphaopt.llm.local_model import LlamaTransport
    except ImportError as exc:
        raise ConfigError(
            "The embedded model needs llama-cpp-python: pip install 'alphaopt[local]' "
            "(it builds from source, several minutes), or set ALPHAOPT_BASE_URL to an OpenAI-compatible endpoint."
        ) from exc
    transport = LlamaTransport(
        embedded_model_path(settings), n_ctx=settings.experimental.n_ctx,
        n_threads=settings.experimental.n_threads, seed=settings.experimental.seed
    )
    return httpx2.Client(transport=transport, timeout=settings.request_timeout_s)
