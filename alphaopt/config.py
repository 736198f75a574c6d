"""One settings object for alphaopt, built once per entry point and passed down.

Precedence: CLI flag > environment variable (``ALPHAOPT_*``) > settings file
(``$ALPHAOPT_HOME/settings.toml``) > default. This is the only module that reads
``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alphaopt.errors import ConfigError

EMBEDDED_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"
STARTER_LIBRARY = Path(__file__).resolve().parent.parent / "library" / "starter.jsonl"


def default_home() -> Path:
    """The alphaopt home: ``$ALPHAOPT_HOME`` or ``~/.alphaopt``."""
    return Path(os.environ.get("ALPHAOPT_HOME") or Path.home() / ".alphaopt").expanduser()


def default_model_dir() -> Path:
    """Where the embedded model is cached (kept apart from the home so tests can reuse it)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "alphaopt" / "models"


def raise_errors() -> bool:
    """``ALPHAOPT_RAISE_ERRORS=1`` makes the CLI show tracebacks instead of one-line errors."""
    return os.environ.get("ALPHAOPT_RAISE_ERRORS", "") not in ("", "0")


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``settings.toml`` from the alphaopt home, if present."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _settings_file()


def _settings_file() -> dict[str, Any]:
    """``$ALPHAOPT_HOME/settings.toml`` as a dict (empty when there is none)."""
    path = default_home() / "settings.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Cannot read settings file {str(path)!r}: {exc}. Fix or delete it.") from exc


Rewrite = Literal["sense", "bounds", "counted", "unused"]
#: The text rewrites (``alphaopt.agent.rewrites``): the objective's sense, a bound's direction, a
#: patch for a weighted count to minimize, a patch for each quantity the program leaves out.
REWRITES: tuple[Rewrite, ...] = get_args(Rewrite)
#: Those on by default: the ones that helped on training problems they were not written from.
SHIPPED_REWRITES: tuple[Rewrite, ...] = ("bounds",)


def rewrites_on(value: bool | Collection[str]) -> frozenset[str]:
    """The text rewrites ``value`` turns on: all (True), none (False), or those named.

    Raises:
        ValueError: a name that is not in ``REWRITES``.
    """
    if isinstance(value, bool):
        return frozenset(REWRITES) if value else frozenset()
    unknown = set(value) - set(REWRITES)
    if unknown:
        raise ValueError(f"unknown text rewrites {sorted(unknown)}: the names are {', '.join(REWRITES)}")
    return frozenset(value)


class ExperimentalSettings(BaseModel):
    """Tuning knobs and experiment switches: ``ALPHAOPT_EXPERIMENTAL__<NAME>`` variables, or keys
    of the ``[experimental]`` table in ``settings.toml``. The defaults are what ships; a knob that
    only served one experiment is removed when that experiment ends (benchmarks/README.md has the
    measurements behind each default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @property
    def rewrites(self) -> frozenset[str]:
        """The text rewrites that are on (``text_rewrites`` read as a set)."""
        return rewrites_on(self.text_rewrites)

    # The LLM calls.
    temperature: float = 0.0
    retry_temperature: float = 0.6  # later samples and a repeated repair, each with its own seed
    seed: int = 0
    cache: bool = True  # replay identical calls (greedy, or seeded samples) from the call log
    max_retries: int = 3
    max_tokens_formulation: int = 400
    max_tokens_program: int = 1000

    # The embedded model.
    model_dir: Path = Field(default_factory=default_model_dir)
    n_ctx: int = 8192
    n_threads: int | None = None

    # The experience library.
    starter_library: Path | None = Field(default_factory=lambda: STARTER_LIBRARY)  # "none": start empty
    retrieval_k: int = 8
    retrieval_labels: int = 3
    retrieval_max_distance: float = 0.8
    retrieval_check_cap: int = 6
    retrieval_check: bool = True
    retrieval_source_similarity: float = Field(default=0.7, ge=0.0, le=1.0)  # 0: no source gate
    # an insight recalled for a near-copy of a problem it was verified on (at least this similar) is
    # chosen without the model's applicability check; above 1: always checked
    retrieval_source_twin: float = Field(default=0.97, ge=0.0)
    # make the one relation edit of a recalled insight whose condition quotes the text, where the
    # quote matches (agent/applied.py); off: its lesson reaches the prompt only
    apply_edits: bool = True
    # an applied insight's lesson also reaches the prompts; off: the code makes its edit and the
    # model is not told (a lesson in the prompt can change the model's whole program)
    tell_applied: bool = True
    # where a chosen lesson reaches the model: "prompt" (in the program-writing prompt), "review"
    # (kept out of it; once the program reaches an optimum, the model is shown that program and each
    # lesson in turn and may correct one line, nodes._review) or "both"
    insight_delivery: Literal["prompt", "review", "both"] = "prompt"

    # The agent loop.
    formulate: bool = False  # write the math first, then the program (two calls per sample)
    max_diagnoses: int = 1
    # the rewrites that follow from the text (agent/rewrites.py): all (true), none (false), or a
    # list of REWRITES, e.g. ALPHAOPT_EXPERIMENTAL__TEXT_REWRITES='["sense", "bounds"]'. Only
    # "bounds" helped on training problems it was not written from (benchmarks/README.md, "Text
    # rewrites"); the others are offered to the library instead (library/proposals/).
    text_rewrites: bool | list[Rewrite] = Field(default_factory=lambda: list(SHIPPED_REWRITES))
    max_unused_patches: int = Field(default=3, ge=1, le=10)  # lines asked for, one per unused number
    quote_max_words: int = Field(default=0, ge=0)  # quote the text above each constraint for problems this short
    resample_failed: int = Field(default=0, ge=0, le=5)  # more samples when none ended optimal

    # The solver sandbox.
    sandbox: Literal["auto", "always", "never"] = "auto"
    solver_workers: int = 1

    @field_validator("starter_library", mode="before")
    @classmethod
    def _no_starter(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value


class Settings(BaseSettings):
    """What a user sets: fields map to ``ALPHAOPT_<FIELD>`` variables (the README lists them);
    ``experimental`` holds the tuning knobs (``ALPHAOPT_EXPERIMENTAL__<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix="ALPHAOPT_", env_nested_delimiter="__", extra="forbid",
                                      validate_assignment=True)

    home: Path = Field(default_factory=default_home)

    # LLM endpoint. With no base_url the embedded llama.cpp model runs in-process.
    base_url: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    model: str | None = None
    model_path: Path | None = None  # another GGUF file as the embedded model
    request_timeout_s: float = 600.0

    # Experience library.
    use_library: bool = True
    library_url: str | None = None
    chroma_url: str | None = None  # the library's index on a Chroma server (or a folder); unset: in the home

    # Runs and the LLM call log: a PostgreSQL URL shares them between machines; unset: runs.db in the home.
    runs_url: str | None = Field(default=None, repr=False)

    # Agent loop.
    max_problem_chars: int = 20000
    samples: int = Field(default=1, ge=1, le=15)  # 3+ for a vote
    max_repairs: int = 2

    # Solver sandbox.
    solver_wall_time_s: float = 30.0
    solver_memory_mb: int = 2048

    experimental: ExperimentalSettings = Field(default_factory=ExperimentalSettings)

    def with_experimental(self, **changes: Any) -> Settings:
        """A copy with some experimental knobs changed (validated)."""
        knobs = ExperimentalSettings.model_validate({**self.experimental.model_dump(), **changes})
        return self.model_copy(update={"experimental": knobs})

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url {value!r} must start with http:// or https:// (e.g. http://localhost:11434/v1)")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def embedded(self) -> bool:
        """True when no endpoint is configured and the in-process model is used."""
        return self.base_url is None

    @property
    def model_name(self) -> str:
        """The model id sent to the endpoint (or the embedded model's name)."""
        if self.model:
            return self.model
        if self.embedded:
            return EMBEDDED_MODEL
        raise ConfigError("ALPHAOPT_MODEL is not set: name the model your endpoint serves (--model or ALPHAOPT_MODEL).")

    @property
    def runs_db(self) -> Path:
        """The LLM call log and saved runs (apart from the library)."""
        return self.home / "runs.db"

    @property
    def checkpoints_db(self) -> Path:
        """LangGraph's checkpointer database."""
        return self.home / "checkpoints.db"

    @property
    def library_db(self) -> Path:
        """The experience library's SQLite database."""
        return self.home / "library.db"

    @property
    def chroma_dir(self) -> Path:
        """The embedded Chroma index."""
        return self.home / "chroma"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, applying explicit overrides (from CLI flags) on top.

    ``experimental`` may be given as a dict of knobs; it is merged with the environment and the
    settings file knob by knob. None values are ignored (an unset flag keeps the setting).

    Raises:
        ConfigError: a value is invalid, or a knob is set under its old top-level name; the
            message names the variable to fix.
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(clean.get("experimental"), dict):
        clean["experimental"] = {k: v for k, v in clean["experimental"].items() if v is not None}
    _refuse_moved(clean)
    try:
        settings = Settings(**clean)
    except ValidationError as exc:
        problems = "; ".join(
            f"ALPHAOPT_{'__'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"Invalid settings: {problems}") from exc
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings


#: Knobs that moved under ``experimental`` with a new name.
_RENAMED = {"patch_lines": "text_rewrites"}
#: Experimental knobs that became settings.
_PROMOTED = ("chroma_url",)


def _refuse_moved(overrides: dict[str, Any]) -> None:
    """An experimental knob set under its top-level name (``ALPHAOPT_FORMULATE``, ``formulate = ...``
    at the top of settings.toml, or ``formulate=`` passed in) would otherwise be ignored or refused
    without a hint; name where it goes now."""
    in_file = _settings_file()
    for old, name in {**{n: n for n in ExperimentalSettings.model_fields}, **_RENAMED}.items():
        where = ("ALPHAOPT_" + old.upper() if "ALPHAOPT_" + old.upper() in os.environ
                 else f"{old!r} at the top of settings.toml" if old in in_file
                 else f"{old}=" if old in overrides else None)
        if where:
            raise ConfigError(
                f"{where} is an experimental setting now: set ALPHAOPT_EXPERIMENTAL__{name.upper()} "
                f"(or {name} under [experimental] in settings.toml, or experimental={{{name!r}: ...}})."
            )
    given = overrides.get("experimental")
    knobs: dict[str, Any] = given if isinstance(given, dict) else {}
    for name in _PROMOTED:
        variable = f"ALPHAOPT_EXPERIMENTAL__{name.upper()}"
        where = (variable if variable in os.environ
                 else f"{name!r} under [experimental] in settings.toml" if name in in_file.get("experimental", {})
                 else f"experimental={{{name!r}: ...}}" if name in knobs else None)
        if where:
            raise ConfigError(f"{where} is a setting now, no longer experimental: set ALPHAOPT_{name.upper()} "
                              f"(or {name} at the top of settings.toml, or {name}=).")
