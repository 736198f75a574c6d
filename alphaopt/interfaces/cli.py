"""The ``alphaopt`` command line.

Run with: alphaopt solve "A factory makes chairs and tables ..."   (or: python -m alphaopt ...)
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from alphaopt.interfaces import cli_library, render
from alphaopt.agent.run import Agent
from alphaopt.interfaces.batch import run_batch
from alphaopt.interfaces.cli_common import SAMPLES_OPTION, _errors, _settings, _settings_options
from alphaopt.config import Settings, load_settings, raise_errors
from alphaopt.errors import AlphaoptError, InputError
from alphaopt.llm.runlog import RunLog
from library.errors import LibraryError


#: One word ending in a file extension (``examples/bakery.txt``): a path, not a problem statement.
_PATH_LIKE = re.compile(r"[^\s]+\.(?:txt|md|json|jsonl|text|prob)", re.IGNORECASE)


def read_problem(source: str) -> str:
    """The problem text from an argument: ``-`` for stdin, an existing file path, or the text itself."""
    if source == "-":
        data = sys.stdin.buffer.read()
        name = "standard input"
    elif len(source) < 4096 and "\n" not in source and Path(source).is_file():
        data = Path(source).read_bytes()
        name = source
    elif _PATH_LIKE.fullmatch(source):
        raise InputError(f"No such file: {source}. Give an existing file, '-' for stdin, or the problem text itself.")
    else:
        return source
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text (byte {exc.start}): pass a plain-text problem description.") from exc


@click.group()
@click.version_option(package_name="alphaopt")
def cli() -> None:
    """alphaopt: optimization problems in plain language, solved with Pyomo and HiGHS."""


@cli.command()
@click.argument("problem")
@click.option("--json", "as_json", is_flag=True, help="Print the whole solution as one JSON object.")
@click.option("--show-code", is_flag=True, help="Also print the Pyomo program.")
@SAMPLES_OPTION
@_settings_options
@_errors
def solve(problem: str, as_json: bool, show_code: bool, **kwargs: Any) -> None:
    """Solve PROBLEM: text, a path to a text file, or - for stdin."""
    settings = _settings(kwargs)
    text = read_problem(problem)
    with Agent(settings) as agent:
        solution = agent.solve(text)
    if as_json:
        click.echo(solution.model_dump_json(indent=2))
    else:
        click.echo(render.render_solution(solution, show_code=show_code, saved_to=str(settings.runs_db)))


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole solution as one JSON object.")
@_settings_options
@_errors
def resume(run_id: str, as_json: bool, **kwargs: Any) -> None:
    """Continue an interrupted run from its last checkpoint."""
    settings = _settings(kwargs)
    with Agent(settings) as agent:
        solution = agent.resume(run_id)
    click.echo(solution.model_dump_json(indent=2) if as_json else
               render.render_solution(solution, saved_to=str(settings.runs_db)))


@cli.command()
@click.argument("input_file", metavar="INPUT", type=click.File("r"))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Results JSONL (appended; rerun to resume).")
@click.option("-c", "--concurrency", type=int, default=1, show_default=True, help="Problems in flight at once.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@SAMPLES_OPTION
@_settings_options
@_errors
def batch(input_file: Any, output: Path, concurrency: int, no_progress: bool, **kwargs: Any) -> None:
    """Solve every problem in INPUT (JSONL, - for stdin); one result line each in --output."""
    from tqdm import tqdm

    settings = _settings(kwargs)
    lines = input_file.read().splitlines()
    bar = tqdm(total=len([x for x in lines if x.strip()]), disable=no_progress, file=sys.stderr, unit="problem")

    def progress(item: Any, line: dict[str, Any]) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{item.id}: {'failed' if line.get('failure') else line.get('status')}")

    summary = run_batch(lines, input_file.name, output, settings, concurrency=concurrency, on_progress=progress)
    bar.update(summary.skipped)
    bar.close()
    click.echo(
        f"{summary.total} problems: {summary.skipped} already in {output}, {summary.solved} solved "
        f"({summary.optimal} optimal), {summary.failed} failed."
    )


@cli.group()
def logs() -> None:
    """The LLM call log."""


@logs.command("list")
@click.option("-n", "--limit", type=int, default=20, show_default=True)
@click.option("--run", "run_id", help="Only the calls of this run.")
@click.option("--home", type=click.Path(path_type=Path))
def logs_list(limit: int, run_id: str | None, home: Path | None) -> None:
    """Recent LLM calls: model, prompt, tokens, latency, error."""
    log = RunLog(load_settings(home=home).runs_db)
    for row in log.calls(limit=limit, run_id=run_id):
        click.echo(render.render_call_row(row))


@logs.command("show")
@click.argument("call_id")
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def logs_show(call_id: str, home: Path | None) -> None:
    """One LLM call in full (messages and response)."""
    row = RunLog(load_settings(home=home).runs_db).call(call_id)
    if row is None:
        raise InputError(f"No single call matches {call_id!r}: see 'alphaopt logs list'.")
    click.echo(render.render_call(row))


@cli.group()
def runs() -> None:
    """Saved runs."""


@runs.command("list")
@click.option("-n", "--limit", type=int, default=20, show_default=True)
@click.option("--home", type=click.Path(path_type=Path))
def runs_list(limit: int, home: Path | None) -> None:
    """Recent runs: id, status, objective, problem."""
    for row in RunLog(load_settings(home=home).runs_db).runs(limit=limit):
        problem = " ".join(row["problem"].split())[:60]
        click.echo(f"{row['id']}  {row['created_at'][:19]}  {row['status']:<12} {render.fmt_number(row['objective']):>12}  {problem}")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--show-code", is_flag=True)
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def runs_show(run_id: str, as_json: bool, show_code: bool, home: Path | None) -> None:
    """One saved run."""
    from alphaopt.agent.state import Solution

    row = RunLog(load_settings(home=home).runs_db).run(run_id)
    if row is None:
        raise InputError(f"No single run matches {run_id!r}: see 'alphaopt runs list'.")
    solution = Solution.model_validate_json(row["solution"])
    click.echo(json.dumps(json.loads(row["solution"]), indent=2) if as_json else
               render.render_solution(solution, show_code=show_code))


@cli.group()
def model() -> None:
    """The embedded model."""


@model.command("fetch")
@_settings_options
@_errors
def model_fetch(**kwargs: Any) -> None:
    """Download, assemble and verify the embedded model (about 1.1 GB)."""
    from alphaopt.llm.embedded import embedded_model_path

    click.echo(f"Embedded model ready: {embedded_model_path(_settings(kwargs))}")


cli.add_command(cli_library.learn)
cli.add_command(cli_library.library)
