"""The agent as a LangGraph ``StateGraph``.

retrieve_insights → formulate → write_program → run_program ─┬→ finish_sample ─┬→ answer (vote)
                       ↑           ↑                          ├→ repair → run_program  │
                       │           └──────────── diagnose ←───┘  (direct: → run_program; │
                       │                          formulate: → write_program or finish) │
                       └──────────────── next sample, until the vote is decided ←──────┘
"""

from __future__ import annotations

import sqlite3
import time
from enum import Enum
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from alphaopt.agent import nodes
from alphaopt.agent.applied import Edit
from alphaopt.agent.reading import Reading, TextNumber
from alphaopt.agent.state import AgentContext, SolveState
from solvers import result as solver_result

#: The types of the state that a checkpoint stores as themselves (all else is plain data): the
#: text's reading, the recalled insights' edits, and the solver's enums in a result (its status
#: and the like).
STATE_TYPES: tuple[type, ...] = (Reading, TextNumber, Edit, *(
    v for v in vars(solver_result).values()
    if isinstance(v, type) and issubclass(v, Enum) and v.__module__ == solver_result.__name__))


def build_graph(checkpointer: BaseCheckpointSaver[Any] | None = None) -> Any:
    """Compile the agent graph, checkpointing every step when a checkpointer is given."""
    graph = StateGraph(SolveState, context_schema=AgentContext)
    graph.add_node("retrieve_insights", nodes.retrieve_insights)
    graph.add_node("formulate", nodes.formulate)
    graph.add_node("write_program", nodes.write_program)
    graph.add_node("run_program", nodes.run_program)
    graph.add_node("repair", nodes.repair)
    graph.add_node("diagnose", nodes.diagnose)
    graph.add_node("finish_sample", nodes.finish_sample)
    graph.add_node("answer", nodes.answer)
    graph.add_edge(START, "retrieve_insights")
    graph.add_edge("retrieve_insights", "formulate")
    graph.add_edge("formulate", "write_program")
    graph.add_edge("write_program", "run_program")
    graph.add_conditional_edges("run_program", nodes.route_after_run, ["repair", "diagnose", "finish_sample"])
    graph.add_edge("repair", "run_program")
    graph.add_conditional_edges("diagnose", nodes.route_after_diagnose,
                                ["write_program", "run_program", "diagnose", "finish_sample"])
    graph.add_conditional_edges("finish_sample", nodes.route_after_sample, ["formulate", "answer"])
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)


def sqlite_checkpointer(path: Path, *, tries: int = 40) -> SqliteSaver:
    """LangGraph's SQLite checkpointer on ``path`` (shared safely across threads); it restores the
    state's own types (``STATE_TYPES``) and no others. Several processes may open one file at
    once (a local cluster's workers): its setup switches the file to WAL, which SQLite refuses at
    once ("database is locked", no busy wait) while another connection is doing the same, so the
    setup (idempotent) is tried again after a short wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    saver = SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES))
    for attempt in range(1, tries):
        try:
            saver.setup()
            return saver
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05 * attempt)
    saver.setup()  # the last try: its error, if any, is the caller's
    return saver
