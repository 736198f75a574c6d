"""What every ``alphaopt`` command shares: the settings options, building ``Settings`` from
them, and turning expected failures into one clear message."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from alphaopt.config import Settings, load_settings, raise_errors
from alphaopt.errors import AlphaoptError
from library.errors import LibraryError

#: Exit codes scripts can rely on (click itself exits 2 on a usage error: a bad option or argument).
EXIT_ERROR = 1  # nothing was answered: bad input, a bad setting, or the model endpoint failed (message on stderr)
EXIT_NO_ANSWER = 3  # the run ended without an answer (see alphaopt.api.ANSWER_STATUSES)
EXIT_FAILED = 4  # batch: some items failed (their lines say why); run the same command again to retry them


def _settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that runs the model; they override env and settings file."""
    options = [
        click.option("--home", type=click.Path(path_type=Path), help="alphaopt home (ALPHAOPT_HOME)."),
        click.option("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 "
                                        "(ALPHAOPT_BASE_URL). Unset: embedded model."),
        click.option("--api-key", help="API key for the endpoint (ALPHAOPT_API_KEY)."),
        click.option("-m", "--model", help="Model id at the endpoint (ALPHAOPT_MODEL)."),
        click.option("--model-path", type=click.Path(path_type=Path),
                     help="A GGUF file for the embedded model (ALPHAOPT_MODEL_PATH)."),
        click.option("--temperature", type=float,
                     help="Sampling temperature (ALPHAOPT_EXPERIMENTAL__TEMPERATURE, default 0)."),
        click.option("--max-repairs", type=int,
                     help="Repair rounds after a failed run (ALPHAOPT_MAX_REPAIRS, default 2)."),
        click.option("--no-cache", is_flag=True, default=None,
                     help="Do not replay identical calls from the LLM cache."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


SAMPLES_OPTION = click.option(
    "--samples", type=int,
    help="Independent programs per problem, answer by majority vote (ALPHAOPT_SAMPLES, default 1).")


def _settings(kwargs: dict[str, Any]) -> Settings:
    overrides: dict[str, Any] = {k: kwargs.pop(k) for k in ("home", "base_url", "api_key", "model", "model_path",
                                                             "max_repairs")}
    overrides["samples"] = kwargs.pop("samples", None)  # solve and batch only; None keeps the setting
    overrides["experimental"] = {"temperature": kwargs.pop("temperature"),
                                 "cache": False if kwargs.pop("no_cache", None) else None}
    return load_settings(**overrides)


def _errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Expected failures become one clear message; set ALPHAOPT_RAISE_ERRORS=1 for tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (AlphaoptError, LibraryError) as exc:
            if raise_errors():
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise click.ClickException(str(message)) from exc

    return wrapper
