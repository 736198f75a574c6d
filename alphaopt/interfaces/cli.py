"""The ``alphaopt`` command line.

Run with: alphaopt solve "A factory makes chairs and tables ..."   (or: python -m alphaopt ...)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from alphaopt.agent.run import Agent
from alphaopt.agent.state import Solution
from alphaopt.api import answered
from alphaopt.config import load_settings
from alphaopt.errors import InputError
from alphaopt.interfaces import cli_library, render
from alphaopt.interfaces.batch import run_batch
from alphaopt.interfaces.cli_common import (
    EXIT_FAILED,
    EXIT_NO_ANSWER,
    SAMPLES_OPTION,
    _errors,
    _settings,
    _settings_options,
)
from alphaopt.jsonl import check_text, decode, read_jsonl
from alphaopt.llm.runlog import open_run_log

#: One word ending in a file extension (``examples/bakery.txt``): a path, not a problem statement.
_PATH_LIKE = re.compile(r"[^\s]+\.(?:txt|md|json|jsonl|text|prob)", re.IGNORECASE)


def read_problem(source: str) -> str:
    """The problem text from an argument: ``-`` for stdin, an existing file's path, or the text itself.

    The argument is a path only when it names an existing file, so a problem of any length can be
    given as the argument. Click hands undecodable bytes of the command line over as lone
    surrogates (``surrogateescape``); such an argument, like a file or stdin that is not UTF-8
    text, is refused with one clear line.

    Raises:
        InputError: the file cannot be read or is not UTF-8 text; the argument is not UTF-8 text;
            or it looks like a path (one word ending in ``.txt``, ``.md``, ...) to a missing file.
    """
    if source == "-":
        return decode(sys.stdin.buffer.read(), "standard input")
    if _is_file(source):
        try:
            return decode(Path(source).read_bytes(), source)
        except OSError as exc:
            raise InputError(f"Cannot read {source}: {exc.strerror or exc}. Check the file's permissions.") from exc
    if _PATH_LIKE.fullmatch(source):
        raise InputError(f"No such file: {source}. Give an existing file, '-' for stdin, or the problem text itself.")
    return check_text(source, "The problem argument")


def _is_file(source: str) -> bool:
    """True when ``source`` names an existing file (a name too long for a path, say, does not)."""
    if "\n" in source:
        return False
    try:
        return Path(source).is_file()
    except (OSError, ValueError):
        return False


def _exit_unless_answered(solution: Solution) -> None:
    """Exit with ``EXIT_NO_ANSWER`` (after the output is printed) when the run has no answer."""
    if not answered(solution):
        click.echo(f"No answer: the run ended with status {str(solution.status)!r}.", err=True)
        raise click.exceptions.Exit(EXIT_NO_ANSWER)


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
    """Solve PROBLEM: the text itself (any length), a path to a UTF-8 text file, or - for stdin.

    \b
    Exit codes:
      0  answered: a plan (optimal, or feasible when a limit stopped the
         solver) or the solver's proof that there is none (infeasible,
         unbounded, infeasible or unbounded)
      1  error, nothing answered: unusable input (not UTF-8 text, empty,
         too long), a bad setting, or the model endpoint failed (timeout,
         HTTP error, empty or malformed replies); one line on stderr
      2  usage error (a bad option or argument)
      3  no answer: the run ended without one (a program that kept
         failing, a sandbox or solver limit); the output says why
    """
    settings = _settings(kwargs)
    text = read_problem(problem)
    with Agent(settings) as agent:
        solution = agent.solve(text)
    if as_json:
        click.echo(solution.model_dump_json(indent=2))
    else:
        click.echo(render.render_solution(solution, show_code=show_code, saved_to=agent.log.where))
    _exit_unless_answered(solution)


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole solution as one JSON object.")
@_settings_options
@_errors
def resume(run_id: str, as_json: bool, **kwargs: Any) -> None:
    """Continue an interrupted run from its last checkpoint (exit codes as for solve)."""
    settings = _settings(kwargs)
    with Agent(settings) as agent:
        solution = agent.resume(run_id)
    click.echo(solution.model_dump_json(indent=2) if as_json else
               render.render_solution(solution, saved_to=agent.log.where))
    _exit_unless_answered(solution)


@cli.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Results JSONL (appended; rerun to resume).")
@click.option("-c", "--concurrency", type=int, default=1, show_default=True,
              help="Problems in flight at once (with --cluster local:N: per worker).")
@click.option("--cluster", metavar="ADDRESS",
              help="Run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N for N worker "
                   "processes on this machine (README: Scale out).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@SAMPLES_OPTION
@_settings_options
@_errors
def batch(input_file: str, output: Path, concurrency: int, cluster: str | None, no_progress: bool,
          **kwargs: Any) -> None:
    """Solve every problem in INPUT (UTF-8 JSONL, - for stdin); one result line each in --output.

    Each line is a JSON object with the problem under "problem" (or "description" or "text")
    and an optional "id". One item never stops the batch: whatever goes wrong with it (no text,
    text that is not UTF-8, an endpoint fault, a crash) is written as its line, with "failure":
    true and the error. Run the same command again to retry the failed and missing items; the
    answered ones are kept, and no id is written twice.

    \b
    Exit codes:
      0  every problem answered (see solve --help for what counts)
      1  error, nothing run: INPUT is not UTF-8 JSONL (the message names
         the line), ids repeat, or a bad setting
      2  usage error (a bad option or argument)
      3  no failures, but some problems ended without an answer
      4  some problems failed (counted on stderr): run the command again
    """
    from tqdm import tqdm

    settings = _settings(kwargs)
    if input_file == "-":
        source, records = "standard input", read_jsonl(sys.stdin.buffer.read(), "standard input")
    elif _same_file(Path(input_file), output):
        raise InputError(f"--output {output} is the input file: give another path for the results.")
    else:
        source, records = input_file, read_jsonl(Path(input_file))
    bar = tqdm(total=len(records), disable=no_progress, file=sys.stderr, unit="problem")

    def progress(item: Any, line: dict[str, Any]) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{item.id}: {'failed' if line.get('failure') else line.get('status')}")

    summary = run_batch(records, source, output, settings, concurrency=concurrency, on_progress=progress,
                        cluster=cluster)
    bar.update(summary.skipped)
    bar.close()
    click.echo(
        f"{summary.total} problems: {summary.skipped} already in {output}, {summary.answered} answered "
        f"({summary.optimal} optimal), {summary.failed} failed."
    )
    if summary.failed:
        click.echo(f"{summary.failed} of {summary.total} problems failed (their lines in {output} say why): "
                   "run the same command again to retry them.", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)
    if summary.unanswered:
        click.echo(f"{summary.unanswered} of {summary.total} problems have no answer in {output} "
                   "(see their status and error).", err=True)
        raise click.exceptions.Exit(EXIT_NO_ANSWER)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and a.samefile(b)
    except OSError:
        return False


@cli.group()
def logs() -> None:
    """The LLM call log."""


@logs.command("list")
@click.option("-n", "--limit", type=int, default=20, show_default=True)
@click.option("--run", "run_id", help="Only the calls of this run.")
@click.option("--home", type=click.Path(path_type=Path))
def logs_list(limit: int, run_id: str | None, home: Path | None) -> None:
    """Recent LLM calls: model, prompt, tokens, latency, error."""
    log = open_run_log(load_settings(home=home))
    for row in log.calls(limit=limit, run_id=run_id):
        click.echo(render.render_call_row(row))


@logs.command("show")
@click.argument("call_id")
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def logs_show(call_id: str, home: Path | None) -> None:
    """One LLM call in full (messages and response)."""
    row = open_run_log(load_settings(home=home)).call(call_id)
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
    for row in open_run_log(load_settings(home=home)).runs(limit=limit):
        problem = " ".join(row["problem"].split())[:60]
        click.echo(f"{row['id']}  {row['created_at'][:19]}  {row['status']:<12} "
                   f"{render.fmt_number(row['objective']):>12}  {problem}")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--show-code", is_flag=True)
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def runs_show(run_id: str, as_json: bool, show_code: bool, home: Path | None) -> None:
    """One saved run."""
    row = open_run_log(load_settings(home=home)).run(run_id)
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
