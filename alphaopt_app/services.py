"""What every page shares: the settings, the cached agent and library store, the sidebar, kept input.

Tests inject a scripted LLM by replacing ``alphaopt.api.Agent`` (this module calls it through the
module) and clear the resource cache between tests (``st.cache_resource.clear()``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from alphaopt import api
from alphaopt.config import Settings, load_settings
from alphaopt.errors import ConfigError
from alphaopt.interfaces import app_api
from library import LibraryError, LibraryStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TRAINING = ROOT / "benchmarks" / "data"
#: Text the user typed; kept in session state when a page that shows it is not on screen.
KEPT_KEYS = ("problem", "formulation_edit", "program_edit", "lib_text", "correct_value")


def keep_input() -> None:
    """Keep typed text across page switches (Streamlit drops the state of widgets not on screen)."""
    for key in KEPT_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def settings() -> Settings:
    """The settings (environment > ``$ALPHAOPT_HOME/settings.toml`` > defaults); stops the page on a bad one."""
    try:
        return load_settings()
    except ConfigError as exc:
        st.error(f"The settings are invalid: {exc}")
        st.stop()


def _key(settings: Settings) -> str:
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()


@st.cache_resource(show_spinner="Starting the agent (solver workers, library index)…", max_entries=2,
                   on_release=lambda agent: agent.close())
def _agent(key: str, _settings: Settings) -> api.Agent:
    return api.Agent(_settings)


def agent(settings: Settings) -> api.Agent:
    """The agent for these settings, shared by every session (its solver workers stay warm)."""
    return _agent(_key(settings), settings)


@st.cache_resource(show_spinner="Opening the library…", max_entries=4, on_release=lambda store: store.close())
def _store(key: str, _settings: Settings) -> LibraryStore:
    return app_api.open_store(_settings)


def store(settings: Settings) -> LibraryStore:
    """The library store named by the settings, shared by every session."""
    return _store(str(settings.library_url or settings.library_db), settings)


def store_or_stop(settings: Settings) -> LibraryStore:
    """The library store, or an error message and the end of the page when it cannot be opened."""
    try:
        return store(settings)
    except LibraryError as exc:
        st.error(f"Cannot open the library: {exc}")
        st.stop()
        raise  # st.stop() ends the script run; this line is never reached


def flash(key: str) -> None:
    """Show (once) the message an action left under ``key`` in the session state."""
    if key in st.session_state:
        kind, message = st.session_state.pop(key)
        {"error": st.error, "info": st.info}.get(kind, st.success)(message)


def sidebar(settings: Settings) -> None:
    """Which model answers, which library, which home."""
    bar = st.sidebar
    bar.markdown("#### Model")
    if settings.embedded:
        bar.markdown(f"**Embedded** (llama.cpp, in-process)  \n`{settings.model_name}`")
        bar.caption("No endpoint is set: set ALPHAOPT_BASE_URL and ALPHAOPT_MODEL to use one. "
                    "On 2 cores a problem takes one to a few minutes.")
    else:
        try:
            name = settings.model_name
        except ConfigError as exc:
            name = "?"
            bar.error(str(exc))
        bar.markdown(f"**Endpoint** `{settings.base_url}`  \nmodel `{name}`")
    bar.markdown("#### Library")
    if settings.use_library:
        bar.markdown(f"on: `{settings.library_url or settings.library_db}`")
    else:
        bar.markdown("off for solving (ALPHAOPT_USE_LIBRARY=0)")
    bar.caption(f"Home: `{settings.home}`")
