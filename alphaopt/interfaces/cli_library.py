"""``alphaopt learn`` and ``alphaopt library ...``: grow, inspect and ship the experience library.

Run with: alphaopt learn benchmarks/data/nl4opt_train.jsonl --limit 10
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import click

from alphaopt.config import load_settings
from alphaopt.errors import InputError
from alphaopt.interfaces.cli_common import _errors, _settings, _settings_options
from alphaopt.learning.training import read_training
from alphaopt.llm.client import OpenAIClient
from alphaopt.llm.runlog import open_run_log


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--limit", type=int, help="Learn from at most N problems (after skipping those already done).")
@click.option("-k", "--solves", type=click.IntRange(min=1), default=2, show_default=True,
              help="Solves per problem in each arm of the check (without, with, placebo): the first greedy, the "
                   "others sampled. 1 is the cheap setting.")
@click.option("--explore-tries", type=click.IntRange(min=0), default=1, show_default=True,
              help="Sampled model tries per failed problem to reach its answer (raise it for a model that "
                   "corrects programs well).")
@click.option("--line-variants/--no-line-variants", default=True, show_default=True,
              help="Screen single-line edits of a failed program (and pairs of them) with the solver first.")
@click.option("--max-tokens", type=int, help="Stop when this many tokens are spent (the run resumes later).")
@click.option("--skip-learned", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A library export whose header lists tasks already learned from (to go on in a new home; "
                   "with --retry-unsolved, those it lists as left unsolved are learned from again).")
@click.option("--exclude", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSONL file of problems you evaluate on (repeatable): training problems that nearly copy "
                   "one of them are skipped.")
@click.option("--twins/--no-twins", default=False, show_default=True,
              help="Also learn from a training problem that nearly copies one learned from already (or one "
                   "earlier in this run); by default it is skipped, its twin standing for it.")
@click.option("--retry-unsolved", is_flag=True,
              help="Learn again from problems an earlier run ended unsolved (after the pipeline changed): in this "
                   "home, or in the export given to --skip-learned.")
@click.option("--revisit-solved", is_flag=True,
              help="Solve again the problems an earlier run ended solved, with the library: fresh evidence on "
                   "whether its insights help or mislead (for `alphaopt library evolve`).")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Problems learned at once, for a remote endpoint (--base-url) that serves several requests "
                   "(with --cluster local:N: per worker).")
@click.option("--cluster", metavar="ADDRESS",
              help="Learn on a Dask cluster (a scheduler address, or local:N worker processes here) into one shared "
                   "library: needs ALPHAOPT_LIBRARY_URL and ALPHAOPT_CHROMA_URL (README: Scale out).")
@click.option("--no-progress", is_flag=True)
@_settings_options
@_errors
def learn(files: tuple[Path, ...], limit: int | None, solves: int, explore_tries: int, line_variants: bool,
          max_tokens: int | None, skip_learned: Path | None, exclude: tuple[Path, ...], twins: bool,
          retry_unsolved: bool, revisit_solved: bool, concurrency: int, cluster: str | None, no_progress: bool,
          **kwargs: Any) -> None:
    """Learn verified insights from FILES (JSONL with a problem text and its optimal 'answer').

    Prints the run's funnel at the end (problems, right at first try, failed, explored, reached
    the answer, drafted, verified, merged, retired; tokens and seconds per problem)."""
    from tqdm import tqdm

    from alphaopt.agent.retrieval import open_library
    from alphaopt.agent.run import solver_runner
    from alphaopt.learning.dedup import near_duplicates
    from alphaopt.learning.funnel import LearningStopped, funnel_lines, progress_line
    from alphaopt.learning.learn import LearnConfig, Learner

    signal.signal(signal.SIGTERM, _interrupt)  # a stop from the app: record the run, then exit
    settings = _settings(kwargs)
    if concurrency > 1 and settings.embedded:
        raise InputError("--concurrency needs a remote endpoint (--base-url or ALPHAOPT_BASE_URL): the embedded "
                         "model answers one request at a time, so leave it at 1.")
    if cluster:
        from alphaopt.learning.cluster import require_shared_library

        require_shared_library(settings)
    items = _training_items(files, exclude)
    store, index = open_library(settings)
    config = LearnConfig(k=solves, explore_tries=explore_tries, line_variants=line_variants, max_tokens=max_tokens)
    command = "alphaopt learn " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    with solver_runner(settings) as runner:
        llm = OpenAIClient(settings, open_run_log(settings))
        learner = Learner(settings, store, index, llm, runner, config)
        revisit = ["unsolved"] * retry_unsolved + ["solved"] * revisit_solved
        again = learner.ended(revisit)
        here = store.done_tasks()
        done = here - again
        if skip_learned:
            from alphaopt.learning.header import tasks_to_skip
            from library import read_header

            skip, retry = tasks_to_skip(read_header(skip_learned) or {}, retry_unsolved=retry_unsolved)
            again |= retry - here  # ended unsolved there, not yet learned from again here
            done = (done | skip) - again
        todo = [i for i in items if f"{i[0]}/{i[1]}" not in done]
        if not twins:
            learned = [t.text for t in store.tasks() if t.id in done] + [
                i[2] for i in items if f"{i[0]}/{i[1]}" in done]
            fresh = [i for i in todo if f"{i[0]}/{i[1]}" not in again]  # a revisit asked for is never skipped
            revisited = [i[2] for i in todo if f"{i[0]}/{i[1]}" in again]  # learned from again, first in this run
            copies = near_duplicates([i[2] for i in fresh], learned + revisited, among=True)
            if copies:
                skipped = {f"{fresh[n][0]}/{fresh[n][1]}" for n in copies}
                todo = [i for i in todo if f"{i[0]}/{i[1]}" not in skipped]
                click.echo(f"Skipping {len(copies)} training problems that nearly copy one learned from already or "
                           "earlier in this run (--twins learns from them too).", err=True)
        todo = sorted(todo, key=lambda i: f"{i[0]}/{i[1]}" not in again)[:limit]  # the problems revisited first
        bar = tqdm(total=len(todo), disable=no_progress, file=sys.stderr, unit="problem")

        def progress(task: Any, outcome: str, summary: Any) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{task.id}: {outcome}; {progress_line(summary)}")

        interrupted = False
        try:
            if cluster:  # the problems go to the cluster's workers (alphaopt.learning.cluster)
                from alphaopt.learning.cluster import learn_on_cluster

                summary = learn_on_cluster(settings, todo, cluster, config, command=command, revisit=revisit,
                                           threads=concurrency, on_task=progress)
            else:
                summary = learner.learn(todo, command=command, on_task=progress, revisit=revisit,
                                        concurrency=concurrency)
        except LearningStopped as stop:  # recorded as stopped: say what it did, and how to go on
            summary, interrupted = stop.summary, True
    bar.close()
    click.echo(
        f"Run {summary.run_id}: {summary.seen} problems ({len(items) - len(todo)} done earlier), solved before "
        f"{summary.solved_before}, after {summary.solved_after}; insights added {summary.added}, verified "
        f"{summary.verified}, rejected {summary.rejected}, merged {summary.merged}; {summary.tokens:,} tokens, "
        f"{summary.seconds / 60:.1f} min." + (f" Stopped: {summary.stopped}" if summary.stopped else "")
    )
    for line in funnel_lines(summary):
        click.echo(line)
    if interrupted:
        click.echo("Stopped; run the same command again to go on where it stopped.", err=True)
        sys.exit(130)


def _training_items(files: tuple[Path, ...], exclude: tuple[Path, ...]) -> list[tuple[str, str, str, float]]:
    """The training problems in ``files``, less those that nearly copy a problem in ``exclude``
    (how many is said on stderr)."""
    from alphaopt.learning.dedup import near_duplicates

    items = read_training(list(files)) if files else []
    if items and exclude:
        copies = near_duplicates([i[2] for i in items], [e[2] for e in read_training(list(exclude))])
        items = [i for n, i in enumerate(items) if n not in copies]
        click.echo(f"Skipping {len(copies)} training problems that nearly copy a problem in --exclude.", err=True)
    return items


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


@click.group()
def library() -> None:
    """The experience library."""


def _open_store(home: Path | None) -> Any:
    """The SQL store alone: listing, showing and exporting never touch the vector index."""
    from alphaopt.agent.retrieval import open_store

    return open_store(load_settings(home=home))


@library.command("list")
@click.option("--status", default="verified", show_default=True, help="verified, candidate, retired or all.")
@click.option("--stage", help="domain_modeling, general_formulation or code_implementation.")
@click.option("--text", help="Only insights whose text contains this.")
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def library_list(status: str, stage: str | None, text: str | None, home: Path | None) -> None:
    """List insights."""
    from alphaopt.agent.retrieval import told

    store = _open_store(home)
    for i in store.list(status=None if status == "all" else status, stage=stage, text=text):
        untold = "" if told(i) else " (applied, untold)"
        click.echo(f"{i.id} v{i.version} {i.status.value:<9} {i.stage.value}/{i.level1}/{i.level2}: "
                   f"{i.condition[:80]}{untold}")


@library.command("show")
@click.argument("insight_id")
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def library_show(insight_id: str, home: Path | None) -> None:
    """One insight with its versions and evidence."""
    store = _open_store(home)
    for v in store.versions(insight_id):
        click.echo(json.dumps(v.model_dump(mode="json"), indent=2))
    evidence = store.evidence_for(insight_id)
    helped = sum(e.success is True for e in evidence if e.used)
    hurt = sum(e.success is False for e in evidence if e.used)
    click.echo(f"evidence: {len(evidence)} records, used {sum(e.used for e in evidence)}, "
               f"succeeded {helped}, failed {hurt}")


@library.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--home", type=click.Path(path_type=Path))
@click.option("--continues", "earlier", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The export this home's learning went on from (given to `learn --skip-learned`): its learned "
                   "tasks, those left unsolved (unless learned from again here) and its runs stay in the new header.")
@_errors
def library_export(path: Path, home: Path | None, earlier: Path | None) -> None:
    """Write the verified insights as reviewable JSONL, with how they were learned."""
    from alphaopt.learning.header import export_header

    store = _open_store(home)
    header = export_header(store, earlier)
    count = store.export_jsonl(path, header=header)
    click.echo(f"Exported {count} verified insights learned from {header['training_problems']} training problems "
               f"({len(header['unsolved_tasks'])} left unsolved) to {path}")


@library.command("recheck")
@click.argument("insight_ids", nargs=-1, required=True)
@click.option("-k", "--solves", type=int, default=1, show_default=True,
              help="Solves per source problem in each arm (without, with, placebo).")
@click.option("--answers", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Training JSONL files holding the source problems' answers (repeatable), for a library that "
                   "holds them as text only (an imported one).")
@_settings_options
@_errors
def library_recheck(insight_ids: tuple[str, ...], solves: int, answers: tuple[Path, ...], **kwargs: Any) -> None:
    """Check verified insights again on their source problems: without each, with it, and with a
    placebo lesson in its place; one that does not beat both is retired (the evidence is kept)."""
    from alphaopt.agent.retrieval import open_library
    from alphaopt.agent.run import solver_runner
    from alphaopt.learning.learn import LearnConfig, Learner

    signal.signal(signal.SIGTERM, _interrupt)
    settings = _settings(kwargs)
    store, index = open_library(settings)
    insights = [store.get(i) for i in insight_ids]  # an unknown id stops here, before any run starts
    sources = {t for i in insights for t in i.provenance.source_tasks}
    for dataset, item_id, text, answer in read_training(list(answers)):
        if f"{dataset}/{item_id}" in sources:
            store.add_task(dataset, item_id, text, answer)
    command = "alphaopt library recheck " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    with solver_runner(settings) as runner:
        learner = Learner(settings, store, index, OpenAIClient(settings, open_run_log(settings)), runner,
                          LearnConfig(k=solves))
        run = store.start_run({"command": command, "model": settings.model_name, "pid": os.getpid(),
                               "recheck": list(insight_ids), **learner.config.__dict__})
        kept = retired = 0
        try:
            for insight in insights:
                e = learner.recheck(insight, run.id)
                kept, retired = kept + e["kept"], retired + (not e["kept"])
                click.echo(f"{insight.id}: right without it {e['without']}, with it {e['with']}, with the placebo "
                           f"{e['placebo']} (of {e['k'] * e['sources']}) -> {'kept' if e['kept'] else 'retired'}")
        except BaseException as exc:
            store.finish_run(run.id, status="failed", counters={"kept": kept, "retired": retired, "error": repr(exc)},
                             tokens=learner.ledger.spent)
            raise
        store.finish_run(run.id, counters={"kept": kept, "retired": retired}, tokens=learner.ledger.spent)


@library.command("retire")
@click.argument("insight_id")
@click.option("--reason", required=True, help="Why, with the evidence (kept in the insight's history).")
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def library_retire(insight_id: str, reason: str, home: Path | None) -> None:
    """Retire an insight on a reviewer's decision; the reason becomes a new version's note."""
    from alphaopt.agent.retrieval import open_library

    store, index = open_library(load_settings(home=home))
    store.retire(insight_id, reason=f"retired by review: {reason}", evidence={"retired_by_review": reason})
    index.remove(insight_id)
    click.echo(f"Retired {insight_id}: {reason}")


@library.command("review")
@click.argument("insight_id")
@click.option("--note", required=True, help="What the reviewer checked and found (kept on the insight, exported).")
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def library_review(insight_id: str, note: str, home: Path | None) -> None:
    """Record a reviewer's note on a verified insight (a new version: its evidence gains
    ``review``); an insight whose advice is wrong is retired instead (`alphaopt library retire`)."""
    from alphaopt.agent.retrieval import open_store
    from library import Status

    store = open_store(load_settings(home=home))  # the index is not touched: the text and the recall stay
    try:
        status = store.get(insight_id).status
        if status != Status.VERIFIED:
            raise InputError(f"{insight_id} is {status.value}: only a verified insight is reviewed for shipping "
                             "(see `alphaopt library list`)")
        store.verify(insight_id, {"review": note}, reason=f"reviewed: {note}")
    finally:
        store.close()
    click.echo(f"Reviewed {insight_id}: {note}")


@library.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def library_import(path: Path, home: Path | None) -> None:
    """Load insights from a JSONL export (all or nothing)."""
    from alphaopt.agent.retrieval import open_library

    store, index = open_library(load_settings(home=home))
    count = store.import_jsonl(path)
    index.rebuild(store)
    click.echo(f"Imported {count} insights from {path}")


@library.command("propose")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--limit", type=click.IntRange(min=1), default=6, show_default=True,
              help="Check each proposed insight on at most N training problems that recall it.")
@click.option("-k", "--solves", type=click.IntRange(min=1), default=2, show_default=True,
              help="Solves per problem in each arm of the check (without, with, placebo), as `alphaopt learn`. "
                   "1 is the cheap setting.")
@_settings_options
@_errors
def library_propose(path: Path, limit: int, solves: int, **kwargs: Any) -> None:
    """Offer insights in FILE and verify them on the training problems held with answers.

    FILE is JSONL, one insight a line: {"stage", "level1", "level2", "condition", "explanation",
    "example", "note", "definition"} (the last three optional), or as `alphaopt library export`
    writes it. Each insight is added as a candidate and checked as learned ones are, on the
    problems retrieval recalls it for (at most --limit): k solves without it, with it and with a
    placebo lesson. It is verified when it turns at least one problem right and none wrong; retired when it turns
    any problem wrong that was right without it; otherwise (or when no problem recalls it) it
    stays a candidate, with the evidence and why. Prints each check, then a table of outcomes."""
    from alphaopt.agent.retrieval import open_library
    from alphaopt.agent.run import solver_runner
    from alphaopt.learning.learn import LearnConfig, Learner
    from alphaopt.learning.propose import ProposeConfig, Proposer, read_offers, table

    signal.signal(signal.SIGTERM, _interrupt)
    offers = read_offers(path)  # a bad file stops here, before the library is touched
    settings = _settings(kwargs)
    store, index = open_library(settings)
    command = "alphaopt library " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    with solver_runner(settings) as runner:
        learner = Learner(settings, store, index, OpenAIClient(settings, open_run_log(settings)), runner,
                          LearnConfig(k=solves))
        summary = Proposer(learner, ProposeConfig(limit=limit)).propose(offers, source=path.name, command=command,
                                                                        on_event=click.echo)
    click.echo(f"Run {summary.run_id}: {len(summary.outcomes)} proposed insight(s): verified "
               f"{summary.count('verified')}, retired {summary.count('retired')}, left candidates "
               f"{summary.count('candidate')}" + (f", already verified {summary.count('already verified')}"
                                                  if summary.count("already verified") else "") + ".")
    for line in table(summary):
        click.echo(line)


@library.command("rebuild-index")
@_settings_options
@_errors
def library_rebuild(**kwargs: Any) -> None:
    """Rebuild the Chroma index from the SQL store."""
    from alphaopt.agent.retrieval import open_library

    store, index = open_library(_settings(kwargs))
    click.echo(f"Indexed {index.rebuild(store)} insights")


@library.command("evolve")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Rounds of replay, refinement and re-tagging (fewer when a round changes nothing).")
@click.option("--candidates", type=click.IntRange(min=1), default=3, show_default=True,
              help="Candidate conditions written for each insight that retrieval misaligns.")
@click.option("--unretrieved-tries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Insights given, one at a time, to each training problem the library gets wrong.")
@click.option("--max-problems", type=click.IntRange(min=1),
              help="Replay at most N training problems (the insights' source problems first).")
@click.option("--broaden-problems", type=click.IntRange(min=0), default=8, show_default=True,
              help="Judge each candidate quote for a condition (a shorter quote, or one of the source problems' "
                   "goal) on at most N training problems it newly reaches, a seeded sample when more (each solved "
                   "with and without it); 0: never.")
@click.option("--problems", "problem_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL training problems with answers to hold first (repeatable): more problems for the "
                   "replay and for judging shorter quotes.")
@click.option("--exclude", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSONL file of problems you evaluate on (repeatable): --problems that nearly copy one "
                   "are left out.")
@click.option("--fresh", is_flag=True, help="Solve every arm again instead of reusing solves recorded earlier "
                                            "with the same model and prompt content.")
@click.option("--no-merge", is_flag=True, help="Do not merge insights that say nearly the same first.")
@click.option("--dry-run", is_flag=True, help="Only replay: print the pair labels and the metrics; change nothing.")
@click.option("--cluster", metavar="ADDRESS",
              help="Replay on a Dask cluster (a scheduler address, or local:N worker processes here), one training "
                   "problem per task: needs ALPHAOPT_LIBRARY_URL and ALPHAOPT_CHROMA_URL.")
@_settings_options
@_errors
def library_evolve(rounds: int, candidates: int, unretrieved_tries: int, max_problems: int | None,
                   broaden_problems: int, problem_files: tuple[Path, ...], exclude: tuple[Path, ...], fresh: bool,
                   no_merge: bool, dry_run: bool, cluster: str | None, **kwargs: Any) -> None:
    """Evolve the library on the training problems it holds with answers: replay retrieval and
    label each (insight, problem) pair positive, negative or unretrieved by solving with and
    without the insight; rewrite misaligned conditions (the best of several candidates, judged by
    retrieval); re-tag insights to the labels retrieval finds them under; report retrieval
    precision, recall and training accuracy per round. Every change is a new version:
    `alphaopt library rollback N` undoes the run."""
    from alphaopt.agent.retrieval import open_library
    from alphaopt.agent.run import solver_runner
    from alphaopt.learning.evolve import EvolveConfig, Evolver, evolve_running
    from alphaopt.learning.learn import Learner

    signal.signal(signal.SIGTERM, _interrupt)
    settings = _settings(kwargs)
    busy = evolve_running(settings.home)  # refused before the model loads; the run itself takes the lock
    if busy:
        raise InputError(f"An evolution run is already running on the library in {str(settings.home)!r} ({busy}). "
                         "One runs at a time per home: wait for it to finish, or stop it first.")
    if cluster:
        from alphaopt.learning.cluster import require_shared_library

        require_shared_library(settings)
    items = _training_items(problem_files, exclude)
    store, index = open_library(settings)
    if items:
        held = {t.id for t in store.tasks()}
        added = [store.add_task(dataset, item_id, text, answer) for dataset, item_id, text, answer in items]
        click.echo(f"Holding {len(added)} training problems from --problems ({sum(t.id not in held for t in added)} "
                   "new).", err=True)
    command = "alphaopt library " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    config = EvolveConfig(rounds=rounds, candidates=candidates, unretrieved_tries=unretrieved_tries,
                          max_problems=max_problems, broaden_problems=broaden_problems, reuse=not fresh,
                          merge=not no_merge)
    with solver_runner(settings) as runner:
        llm = OpenAIClient(settings, open_run_log(settings))
        learner = Learner(settings, store, index, llm, runner)
        if cluster:  # the replays go to the cluster's workers (alphaopt.learning.cluster_evolve)
            from alphaopt.learning.cluster_evolve import evolve_on_cluster

            summary = evolve_on_cluster(learner, cluster, config, command=command, dry_run=dry_run,
                                        on_event=click.echo)
        else:
            summary = Evolver(learner, config).evolve(command=command, dry_run=dry_run, on_event=click.echo)
    click.echo(f"Run {summary.run_id}: {len(summary.rounds)} round(s), merged {summary.merged}.")
    for r in summary.rounds:
        click.echo(f"  round {r.round} before: {r.before.line()}")
        if r.after is not None:
            click.echo(f"  round {r.round} after:  {r.after.line()}")
        click.echo(f"  round {r.round}: refined {len(r.refined)}, retired {len(r.retired)}, broadened "
                   f"{len(r.broadened)}, re-tagged "
                   f"{len(r.retagged)}, labels retired {len(r.labels_retired)}; {r.solved} solves, {r.reused} reused")
    if not dry_run and store.library_version() != summary.library_version:
        click.echo(f"Undo this run with: alphaopt library rollback {summary.library_version}")


@library.command("versions")
@click.option("--since", type=int, default=0, show_default=True, help="Only versions after this number.")
@click.option("--limit", type=int, default=30, show_default=True, help="Show the latest N (0: all).")
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def library_versions(since: int, limit: int, home: Path | None) -> None:
    """List the library's versions: one per committed change, newest last (roll back to any)."""
    store = _open_store(home)
    versions = store.library_versions(since=since)
    for v in versions[-limit:] if limit else versions:
        items = [*v.insights, *v.labels]
        changed = ", ".join(items[:6]) + (f", … (+{len(items) - 6})" if len(items) > 6 else "")
        click.echo(f"{v.number:>5}  {v.created_at[:19].replace('T', ' ')}  {v.actor or '-'}: {v.reason}"
                   + (f"  [{changed}]" if changed else ""))
    if not versions:
        click.echo("The library has no versions yet.")


@library.command("rollback")
@click.argument("version", type=int)
@click.option("--reason", help="Why (the new version's note; default: 'rollback to library version N').")
@click.option("--home", type=click.Path(path_type=Path))
@_errors
def library_rollback(version: int, reason: str | None, home: Path | None) -> None:
    """Restore the library to library VERSION (see `alphaopt library versions`). Nothing is lost:
    the restore is a new version, and rolling back to the version before it undoes it."""
    from alphaopt.agent.retrieval import open_library
    from alphaopt.learning.evolve import evolve_running

    settings = load_settings(home=home)
    busy = evolve_running(settings.home)
    if busy:
        raise InputError(f"An evolution run is changing this library ({busy}): wait for it to finish or stop it "
                         "before rolling back.")
    store, index = open_library(settings)
    restored = store.rollback(version, reason=reason)
    index.rebuild(store)
    click.echo(f"Restored library version {version} as version {restored.number} ({len(restored.insights)} "
               f"insight(s) and {len(restored.labels)} label(s) changed"
               + (f": {', '.join([*restored.insights, *restored.labels])}" if restored.insights or restored.labels
                  else "") + ").")
