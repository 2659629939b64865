"""embedlab command line: parse options, call one `Lab` method, print the result.

Every use case is wired in `lab.py`; a command here only turns options into a call
and the typed result into text. Heavy libraries are imported by the packages where
they are used, so `embedlab --help` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .errors import DocumentNotFound, EmbedlabError, ProviderKeyError
from .inputs import Inputs
from .lab import Lab
from .lab import open as open_lab
from .options import ANALYZE, COMPARE, INGEST, NEIGHBOURS_OPTIONS, click_options
from .progress import plural, terminal_bar
from .store.selection import parse_globs

DEFAULT_STORE = "./embedlab-store"


@dataclass
class StoreOptions:
    path: str
    chroma_url: str | None
    wait: float = 0.0
    server: str | None = None

    def open(self, create: bool = False) -> Lab:
        """The Lab on the chosen store (progress is drawn by the CLI itself), or a
        running service's, answering the same calls (--server)."""
        if self.server:
            from .client import RemoteLab

            return RemoteLab(self.server)  # type: ignore[return-value]
        return open_lab(
            self.path, chroma_url=self.chroma_url, create=create, wait=self.wait, quiet=True
        )

    def open_for_dry_run(self, stack: contextlib.ExitStack) -> Lab:
        """A dry run leaves no store behind: where none exists yet, plan against an
        empty one in a temporary folder (everything is then "to embed")."""
        if self.server or self.chroma_url or (Path(self.path) / "embedlab.json").is_file():
            return stack.enter_context(self.open())
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="embedlab-dry-run-"))
        return stack.enter_context(open_lab(Path(folder) / "store", quiet=True))


# The CLI's names for the library's arguments where they differ from `--<argument>`: the
# library's messages name arguments, and each front end names them its own way.
CLI_FLAGS = {"algorithm": "--algo"}


def user_errors(func: Callable) -> Callable:
    """Turn embedlab's errors into one-line click errors, never tracebacks."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EmbedlabError as exc:
            raise click.ClickException(exc.say("cli", CLI_FLAGS)) from None

    return wrapper


@click.group()
@click.option(
    "--store",
    "store_path",
    envvar="EMBEDLAB_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store folder (embedded Chroma). Also $EMBEDLAB_STORE.",
)
@click.option(
    "--chroma-url",
    envvar="EMBEDLAB_CHROMA_URL",
    help="Use a Chroma server instead, e.g. http://127.0.0.1:8000.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    envvar="EMBEDLAB_WAIT",
    help="Seconds to wait for another process using the store (default: fail at once).",
)
@click.option(
    "--server",
    envvar="EMBEDLAB_SERVER",
    metavar="URL",
    help="Use a running `embedlab serve` (e.g. http://127.0.0.1:8000) instead of the "
    "store; $EMBEDLAB_TOKEN is sent as its token. Also $EMBEDLAB_SERVER.",
)
@click.version_option(package_name="embedlab")
@click.pass_context
def cli(
    ctx: click.Context, store_path: str, chroma_url: str | None, wait: float, server: str | None
) -> None:
    """Embed documents once, then cluster, map and explore them without paying again."""
    ctx.obj = StoreOptions(store_path, chroma_url, wait, server)
    show_store_notices()


class _StderrNotice(logging.Handler):
    """What the store tells the user on its own (a torn index healed on open): one line
    on stderr, written to whichever stderr the command has now."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(record.getMessage(), err=True)


def show_store_notices() -> None:
    """Send the store's warnings to stderr (once per process)."""
    logger = logging.getLogger("embedlab.store")
    if not any(isinstance(h, _StderrNotice) for h in logger.handlers):
        handler = _StderrNotice(logging.WARNING)
        logger.addHandler(handler)


# -- ingest --------------------------------------------------------------------------------


@cli.group("ingest")
def ingest_group() -> None:
    """Embed documents into the store; texts already embedded cost nothing."""


def space_filter_options(what: str = "Space") -> Callable[[Callable], Callable]:
    """--provider/--model/--task-type/--dims: which of the store's spaces (`what` it is for)."""

    def decorate(func: Callable) -> Callable:
        for option in reversed(
            [
                click.option("--provider", help=f"{what} (needed when the store has several)."),
                click.option("--model", help="Space's model (with several spaces)."),
                click.option("--task-type", help="Space's task type (with several spaces)."),
                click.option("--dims", type=int, help="Space's dimensions (with several spaces)."),
            ]
        ):
            func = option(func)
        return func

    return decorate


def space_options(func: Callable) -> Callable:
    return space_filter_options()(func)


def provider_options(func: Callable) -> Callable:
    """The embedding options of every ingest command (options.INGEST), and --yes."""
    func = click.option(
        "--yes",
        is_flag=True,
        help="Do not ask before an ingest over the spending threshold (more than 5,000 "
        "texts to embed or est. $1; cached texts are free).",
    )(func)
    return click_options(INGEST)(func)


def _interactive() -> bool:
    """Whether a person can answer a question here (tests stand in for one)."""
    return sys.stdin.isatty()


# `ingest newsgroups` takes the library's defaults (Lab.ingest_newsgroups): one sample
# whichever way it is ingested
NEWSGROUPS = inspect.signature(Inputs.ingest_newsgroups).parameters


def _per_class(ctx, param, value: str | None) -> int | None:
    if value is None or value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter("use a number of posts per group, or 'all'") from None
    if n < 1:
        raise click.BadParameter("needs at least 1 post per group, or 'all'")
    return n


@ingest_group.command("newsgroups")
@click.option("--source", type=click.Path(), help="20news-bydate.tar.gz or its folder.")
@click.option(
    "--subset",
    type=click.Choice(["train", "test", "all"]),
    default=NEWSGROUPS["subset"].default,
    show_default=True,
    help="Which split.",
)
@click.option(
    "--categories",
    "--labels",
    "categories",
    default=",".join(NEWSGROUPS["categories"].default),
    show_default=True,
    help="Comma-separated globs, e.g. 'sci.*,rec.autos'; '*' for all 20 groups.",
)
@click.option(
    "--per-class",
    default=str(NEWSGROUPS["per_class"].default),
    show_default=True,
    callback=_per_class,
    metavar="N|all",
    help="Sample N posts per group; 'all' for every post.",
)
@click.option(
    "--seed", type=int, default=NEWSGROUPS["seed"].default, show_default=True, help="Seed."
)
@click.option(
    "--clean",
    type=click.Choice(["embedding", "notebook", "sklearn", "none"]),
    help="[default: notebook] notebook: the seed notebook's cleaning; embedding: subject "
    "and body, other headers and signatures out, quotes kept; sklearn: headers, footers "
    "and quotes removed; none: raw posts. "
    "Each has its own ids (newsgroups-<clean>/..., notebook: newsgroups/...).",
)
@provider_options
@click.pass_obj
def ingest_newsgroups(store_opts, source, subset, categories, per_class, seed, clean, **opts):
    """20 Newsgroups posts (labels = newsgroup names); by default the demo's sample, as
    `lab.ingest_newsgroups()`: the sci.* groups, 150 posts each."""
    globs = parse_globs(categories)
    return run_ingest(
        store_opts,
        lambda lab, **o: lab.ingest_newsgroups(source, subset, globs, per_class, seed, clean, **o),
        **opts,
    )


NAME_HELP = "Name of this input in ids and sources (default: the file or folder name)."


@ingest_group.command("files")
@click.argument("folder", type=click.Path())
@click.option("--glob", "pattern", default="*", show_default=True, help="Which file names.")
@click.option("--name", help=NAME_HELP)
@provider_options
@click.pass_obj
def ingest_files(store_opts, folder, pattern, name, **opts):
    """Every text file under FOLDER (label = the file's parent folder name)."""
    run_ingest(
        store_opts,
        lambda lab, **o: lab.ingest_path(folder, glob=pattern, name=name, kind="files", **o),
        **opts,
    )


def vector_options(*names: str) -> Callable[[Callable], Callable]:
    """--vector-col (or --vector-key) and --space-name: store vectors computed elsewhere."""

    def decorate(func: Callable) -> Callable:
        func = click.option(
            "--space-name",
            "space",
            metavar="NAME",
            help="With --vector-col: the model that made the vectors; they go into the "
            "space custom:NAME:DIMS.",
        )(func)
        return click.option(
            *names,
            "vector",
            metavar="COL",
            help="Store the vectors in this column (a list of numbers, or text like "
            "'[0.1, 0.2]') instead of embedding; --dims N checks their length. Stored unit "
            "length; nothing is embedded.",
        )(func)

    return decorate


def table_command(kind: str, what: str) -> click.Command:
    """`ingest csv` and `ingest parquet`: the same columns, options and ids."""

    @ingest_group.command(kind, help=f"Rows of a {what} file.")
    @click.argument("path", type=click.Path())
    @click.option("--text-col", default="text", show_default=True, help="Column with the text.")
    @click.option("--id-col", help="Column with document ids (default: row number).")
    @click.option("--label-col", help="Column with labels, if any.")
    @click.option("--name", help=NAME_HELP)
    @vector_options("--vector-col")
    @provider_options
    @click.pass_obj
    def command(store_opts, path, text_col, id_col, label_col, name, vector, space, **opts):
        (run_vector_ingest if vector or space else run_ingest)(
            store_opts,
            lambda lab, **o: lab.ingest_path(
                path,
                text_col,
                id_col,
                label_col,
                name=name,
                kind=kind,
                vector=vector,
                space=space,
                **o,
            ),
            **opts,
        )

    return command


ingest_csv = table_command("csv", "CSV")
ingest_parquet = table_command("parquet", "Parquet")


@ingest_group.command("jsonl")
@click.argument("path", type=click.Path())
@click.option("--text-key", default="text", show_default=True, help="Key with the text.")
@click.option("--id-key", help="Key with document ids (default: line number).")
@click.option("--label-key", help="Key with labels, if any.")
@click.option("--name", help=NAME_HELP)
@vector_options("--vector-key", "--vector-col")
@provider_options
@click.pass_obj
def ingest_jsonl(store_opts, path, text_key, id_key, label_key, name, vector, space, **opts):
    """Objects of a JSON Lines file."""
    (run_vector_ingest if vector or space else run_ingest)(
        store_opts,
        lambda lab, **o: lab.ingest_path(
            path,
            text_key,
            id_key,
            label_key,
            name=name,
            kind="jsonl",
            vector=vector,
            space=space,
            **o,
        ),
        **opts,
    )


@user_errors
def run_ingest(
    store_opts: StoreOptions,
    call: Callable[..., Any],
    provider: str,
    model: str | None,
    task_type: str,
    dims: int | None,
    dry_run: bool,
    yes: bool = False,
    **options,
) -> object:
    """Open the store, say which provider, run `call(lab, ...)` with a bar, print the
    summary; the report is returned (demo analyses the space it names). An ingest the
    library finds over the spending threshold is said first, then asked (--yes skips)."""
    from . import IngestCancelled, IngestError  # the package's own names (ingest/pipeline.py)

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if dry_run:
            lab = store_opts.open_for_dry_run(stack)
        else:
            lab = stack.enter_context(store_opts.open(create=True))
        choice = lab.embedding_choice(provider, model, task_type, dims)
        why = f" ({choice.reason})" if provider == "auto" else ""
        click.echo(f"provider: {choice.space.describe()}{why}", err=True)
        if choice.ignores_task_type(task_type):
            click.echo(
                f"note: {choice.space.provider} has no task types; --task-type ignored", err=True
            )
        if not dry_run and not yes:
            options["confirm"] = functools.partial(_confirm_spend, getattr(lab, "prices", None))
        on_progress = terminal_bar(stack, "ingest")

        try:
            report = call(
                lab,
                provider=choice.space.provider,
                model=model,
                task_type=task_type,
                dims=dims,
                dry_run=dry_run,
                on_progress=on_progress,
                started=started,
                **options,
            )
        except IngestCancelled as exc:
            summary = exc.report.summary(getattr(lab, "prices", None))
            click.echo(f"\ninterrupted: {summary}; re-run to finish", err=True)
            sys.exit(130)
        except IngestError as exc:
            click.echo(f"\n{exc.report.summary(getattr(lab, 'prices', None))}", err=True)
            fix = "set the key, then re-run" if isinstance(exc, ProviderKeyError) else "re-run"
            raise click.ClickException(
                f"{exc.say('cli', CLI_FLAGS)} (everything embedded so far is saved; {fix} "
                "to resume)"
            ) from None
    if getattr(report, "batch", False):  # submitted to the Batch API: its own line
        click.echo(report.summary(getattr(lab, "prices", None)))
        return report
    _echo_skips(report)  # before the summary, which stays the last line
    click.echo(report.summary(getattr(lab, "prices", None)))
    return report


def _confirm_spend(prices, plan, why: str) -> bool:
    """Asked by the library before an ingest over the spending threshold: print the
    estimate, then ask on a terminal, or refuse where nobody can answer (--yes skips)."""
    click.echo(f"estimate: {plan.summary(prices)}", err=True)
    if not _interactive():
        raise click.ClickException(
            f"this ingest would spend more than the threshold ({why}): pass --yes to go "
            "ahead without a terminal, or --dry-run to see the plan"
        )
    click.confirm(f"{why}: embed them now?", abort=True, err=True)
    return True


@user_errors
def run_vector_ingest(
    store_opts: StoreOptions, call: Callable[..., Any], dry_run: bool, yes: bool = False, **options
) -> None:
    """Open the store, run `call(lab, ...)` storing the given vectors with a bar, print the
    summary. The provider's options are passed on, for the library to refuse when set."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if dry_run:
            lab = store_opts.open_for_dry_run(stack)
        else:
            lab = stack.enter_context(store_opts.open(create=True))
        on_progress = terminal_bar(stack, "store vectors", status=False)

        report = call(lab, dry_run=dry_run, on_progress=on_progress, started=started, **options)
    click.echo(f"space: {report.space.describe()} (vectors as given)", err=True)
    _echo_skips(report)
    click.echo(report.summary())


def _echo_skips(report) -> None:
    """Where the first few skipped records were (ids, line numbers, files)."""
    line = report.skipped_line() if hasattr(report, "skipped_line") else None
    if line:
        click.echo(line, err=True)


# -- analyze -------------------------------------------------------------------------------


def _k_value(ctx, param, value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        k = int(value)
    except ValueError:
        raise click.BadParameter("use a number of clusters or 'auto'") from None
    if k < 1:
        raise click.BadParameter("needs at least 1 cluster")
    return k


@cli.command("analyze")
@space_filter_options("Space to analyse")
@click.option("--source", "sources", help="Comma-separated globs on the document source.")
@click.option("--categories", "--labels", "labels", help="Comma-separated globs on labels.")
@click_options(ANALYZE, ["per_class", "seed", "limit", "algorithm"])
@click.option(
    "--k",
    default=None,
    callback=_k_value,
    help=ANALYZE["k"].help,
)
@click_options(
    ANALYZE, ["reduce", "min_cluster_size", "eps", "text_weight", "cluster_dims", "fresh"]
)
@click.option(
    "--out",
    type=click.Path(),
    default="./report",
    show_default=True,
    help="Report folder (its old report files are replaced).",
)
@click.option(
    "--name-clusters",
    is_flag=True,
    help="Name each cluster with one Gemini call (needs GEMINI_API_KEY; cached in the store).",
)
@click.option(
    "--naming-model",
    help="Gemini text model for --name-clusters  [default: gemini-2.5-flash-lite]",
)
@click.option(
    "--html",
    is_flag=True,
    help="Also write map.html: the interactive map in one file, openable without a server.",
)
@click.option(
    "--update",
    "update_of",
    metavar="ID|latest",
    help="Update a stored analysis for the documents now: new ones placed on its map and "
    "clusters, the rest kept exactly (docs/update.md).",
)
@click.option("--refit", is_flag=True, help="With --update: fit again, from the old state.")
@click.pass_obj
@user_errors
def analyze_command(
    store_opts: StoreOptions,
    provider,
    model,
    task_type,
    dims,
    sources,
    labels,
    per_class,
    seed,
    limit,
    algo,
    k,
    reduce,
    min_cluster_size,
    eps,
    text_weight,
    cluster_dims,
    fresh,
    out,
    name_clusters,
    naming_model,
    html,
    update_of=None,
    refit=False,
) -> None:
    """Cluster, map and score the stored vectors (no embedding calls, ever)."""
    if update_of is not None or refit:
        from .cli_update import run_update

        run_update(store_opts, (provider, model, task_type, dims), update_of, refit, out, html)
        return
    run_analysis(
        store_opts,
        (provider, model, task_type, dims),
        dict(
            sources=sources,
            labels=labels,
            per_class=per_class,
            seed=seed,
            limit=limit,
            algorithm=algo,
            k=k,
            reduce=reduce,
            min_cluster_size=min_cluster_size,
            eps=eps,
            text_weight=text_weight,
            cluster_dims=cluster_dims,
            fresh=fresh,
            name_clusters=name_clusters,
            naming_model=naming_model,
            html=html,
        ),
        Path(out),
    )


def run_analysis(store_opts: StoreOptions, space_filter, arguments: dict, out: Path) -> None:
    started = time.monotonic()
    with store_opts.open() as lab:
        space = lab.pick_space(*space_filter)
        analysis = lab.analyze(space=space, out=out, **arguments)
    stored = (
        f"identical to analysis {analysis.id}: reused, nothing new stored"
        if analysis.reused
        else f"stored as analysis {analysis.id}"
    )
    click.echo(
        f"analyzed {plural(len(analysis.ids), 'document')} of {space.describe()} ({stored})",
        err=True,
    )
    reused = " (map reused from an earlier analysis)" if analysis.map_cached else ""
    click.echo(f"clustering: {analysis.method_line()}{reused}", err=True)
    if analysis.parent and not analysis.reused:  # fitted from the earlier analysis
        for line in analysis.update_lines():
            click.echo(line, err=True)
    for note in analysis.notes:
        if not (analysis.reused and note.startswith("identical to analysis")):  # said above
            click.echo(f"note: {note}", err=True)
    click.echo(analysis.per_class_table())
    click.echo(analysis.verdict())
    click.echo(analysis.cluster_table())
    naming = analysis.naming_line()
    if naming:
        click.echo(naming, err=True)
    if "map.html" in analysis.files:
        click.echo(f"interactive map: {out / 'map.html'} (opens from disk, no server)", err=True)
    n_clusters = len([c for c in analysis.clusters if c["cluster"] != -1])
    click.echo(
        f"{plural(len(analysis.ids), 'document')}, {plural(n_clusters, 'cluster')}, "
        f"{len(analysis.files)} files in {out}, {time.monotonic() - started:.1f} s"
    )


@cli.command()
@click.option(
    "--provider",
    type=click.Choice(["auto", "gemini", "local"]),
    default="local",
    show_default=True,
    help="Embedding provider.",
)
@click.option("--source", type=click.Path(), help="20news-bydate.tar.gz (default: download).")
@click.option(
    "--out", type=click.Path(), default="./demo-report", show_default=True, help="Report folder."
)
@click.pass_context
@user_errors
def demo(ctx: click.Context, provider: str, source: str | None, out: str) -> None:
    """The notebook end to end: 4 sci.* groups x 150 posts, embed (cached), KMeans k=4
    (with the local model on the vectors plus a TF-IDF text view, weight 1), t-SNE map."""
    categories, per_class, seed = "sci.*", 150, 0
    report = ctx.invoke(
        ingest_newsgroups,
        source=source,
        subset="train",
        categories=categories,
        per_class=per_class,
        seed=seed,
        clean=None,
        yes=False,
        provider=provider,
        model=None,
        task_type="CLUSTERING",
        dims=None,
        batch_size=None,
        concurrency=None,
        max_attempts=6,
        timeout=60.0,
        dry_run=False,
    )
    from .ingest.newsgroups import newsgroups_source

    space = report.space  # the space the ingest wrote to, and the source it gave the posts
    sources = newsgroups_source(space.provider, "train")
    arguments = dict(sources=sources, labels=categories, per_class=per_class, seed=seed, k=4)
    space_filter = (space.provider, space.model, space.task_type, space.dims)
    run_analysis(ctx.obj, space_filter, arguments, Path(out))


# -- comparing two spaces ------------------------------------------------------------------


@cli.command("compare")
@click.option(
    "--space",
    "spaces",
    multiple=True,
    metavar="PROVIDER:MODEL[:DIMS]",
    help="A space to compare, e.g. gemini:gemini-embedding-001:768 or local:all-MiniLM-L6-v2 "
    "(give it twice: A, then B).",
)
@click.option("--labels", "--categories", "labels", help="Comma-separated globs on labels.")
@click.option("--source", "sources", help="Comma-separated globs on sources.")
@click_options(COMPARE)
@click.option(
    "--out",
    type=click.Path(),
    default="./comparison",
    show_default=True,
    help="Folder for comparison.json, points.csv, report.md and the PNGs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print comparison.json instead of tables.")
@click.pass_obj
@user_errors
def compare_command(
    store_opts: StoreOptions,
    spaces,
    labels,
    sources,
    per_class,
    limit,
    seed,
    k,
    neighbours,
    reduce,
    out,
    as_json,
) -> None:
    """Compare two spaces on the documents both hold: neighbourhoods, clusterings, scores
    against the labels, and the two maps aligned (no embedding calls, ever)."""
    if len(spaces) != 2:
        raise click.UsageError(
            f"give --space twice (A, then B), not {len(spaces)} time(s); see `embedlab stats`"
        )
    from .jsonout import dumps

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(store_opts.open())
        on_progress = terminal_bar(stack, "compare")

        comparison = lab.compare(
            spaces[0],
            spaces[1],
            labels=parse_globs(labels),
            sources=parse_globs(sources),
            per_class=per_class,
            seed=seed,
            limit=limit,
            k=k,
            neighbours=neighbours,
            reduce=reduce,
            out=out,
            on_progress=on_progress,
        )
    click.echo(f"stored as comparison {comparison.id}", err=True)
    for note in comparison.notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        click.echo(dumps(comparison.to_dict()))
    else:
        for line in comparison.lines():
            click.echo(line)
    click.echo(
        f"{plural(len(comparison.ids), 'document')} compared, {len(comparison.files)} files "
        f"in {out}, {time.monotonic() - started:.1f} s",
        err=as_json,
    )


# -- neighbours ----------------------------------------------------------------------------


@cli.command("neighbors")
@click.argument("query", required=False)
@click.option("--id", "doc_id", help="Find documents like this stored one (no API call).")
@click_options(NEIGHBOURS_OPTIONS)
@click.option("--labels", "--categories", "labels", help="Comma-separated globs on labels.")
@click.option("--source", "sources", help="Comma-separated globs on sources of the results.")
@space_filter_options("Space to search")
@click.option("--analysis", help="Show clusters of this stored analysis (default: the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (a list).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.pass_obj
@user_errors
def neighbors_command(
    store_opts: StoreOptions,
    query,
    doc_id,
    k,
    labels,
    sources,
    provider,
    model,
    task_type,
    dims,
    analysis,
    as_json,
    as_csv,
) -> None:
    """Documents most similar to a stored one (--id) or to a free-text QUERY."""
    if (query is None) == (doc_id is None):
        raise click.UsageError(
            "give a QUERY text or --id, not both" if query else "give a QUERY text or --id"
        )
    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    fmt = "json" if as_json else "csv" if as_csv else None
    started = time.monotonic()
    with store_opts.open() as lab:
        space = lab.pick_space(provider, model, task_type, dims)
        try:
            hits = lab.neighbours(
                doc_id,
                text=query,
                k=k,
                labels=labels,
                sources=sources,
                space=space,
                analysis=analysis,
            )
        except DocumentNotFound as exc:
            raise click.ClickException(
                f"{exc}; find ids in an analysis' points.csv or with "
                '`embedlab neighbors "some text"`'
            ) from None
    print_neighbours(hits, fmt)
    what = doc_id if doc_id is not None else repr(query)
    click.echo(
        f"{plural(len(hits), 'neighbour')} of {what} in {space.describe()}, "
        f"{plural(hits.attrs['requests'], 'request')}, {time.monotonic() - started:.2f} s",
        err=fmt is not None,
    )


# The British spelling works too, without a second entry in --help.
cli.add_command(
    click.Command(
        "neighbours",
        params=neighbors_command.params,
        callback=neighbors_command.callback,
        help=neighbors_command.help,
        hidden=True,
    )
)


def print_neighbours(hits, fmt: str | None) -> None:
    """--json and --csv carry the API's rows (rank, id, similarity, label, cluster, text);
    the terminal shows a snippet of each text."""
    from .jsonout import dumps
    from .store.neighbours import snippet

    rows = [
        {
            "rank": int(row.rank),
            "id": row.id,
            "similarity": float(row.similarity),
            "label": row.label,
            "cluster": None
            if row.cluster is None or row.cluster != row.cluster
            else int(row.cluster),
            "text": row.text,
        }
        for row in hits.itertuples(index=False)
    ]
    if fmt == "json":
        click.echo(dumps(rows))
    elif fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["rank"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            cluster = "" if row["cluster"] is None else f" c{row['cluster']}"
            click.echo(
                f"{row['rank']:>3}  {row['similarity']:.3f}  {row['id']}  "
                f"[{row['label'] or '-'}{cluster}]  {snippet(row['text'])[:80]}"
            )


# -- stats ---------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@user_errors
def stats(store_opts: StoreOptions, as_json: bool) -> None:
    """Spaces in the store, with counts per source and label, and size on disk."""
    from .jsonout import dumps

    with store_opts.open() as lab:
        result = lab.stats()
    damaged = [s["damaged"] for s in result["spaces"] if s.get("damaged")]
    if as_json:
        click.echo(dumps(result))
        if damaged:  # listed above; the exit status says it too
            raise click.ClickException(damaged[0])
        return
    for space in result["spaces"]:
        task = "" if space["task_type"] == "none" else f", {space['task_type']}"
        click.echo(
            f"{space['provider']}:{space['model']} ({space['dims']} dims{task}): "
            f"{space['documents']} documents"
            + (
                f" ({space['needs_vector']} need their vector: the next ingest embeds them)"
                if space.get("needs_vector")
                else ""
            )
        )
        if space.get("damaged"):
            click.echo("  damaged: see below")
            continue
        click.echo("  sources: " + _counts(space["by_source"]))
        click.echo("  labels:  " + _counts(space["by_label"]))
    counts = [s["documents"] for s in result["spaces"]]
    total = plural(sum(counts), "document")
    if len(counts) > 1:  # one text embedded in two spaces is two records, not one document
        total = f"{sum(counts)} records ({' + '.join(map(str, counts))} across spaces)"
    size = result["disk_bytes"]
    where = f", {size / 1e6:.1f} MB on disk" if size is not None else ""
    n_spaces = plural(len(result["spaces"]), "space")
    click.echo(f"{result['store']}: {n_spaces}, {total}{where}")
    if damaged:
        more = f" (and {len(damaged) - 1} more damaged spaces)" if len(damaged) > 1 else ""
        raise click.ClickException(damaged[0] + more)


@cli.command("spaces")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option(
    "--delete", "to_delete", metavar="SPACE", help="Delete this space (provider:model:dims)."
)
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
@click.pass_obj
@user_errors
def spaces_command(store_opts: StoreOptions, as_json: bool, to_delete: str | None, yes: bool):
    """The store's embedding spaces with their documents; delete one on purpose."""
    from .jsonout import dumps

    with store_opts.open() as lab:
        sizes = lab.space_sizes()
        if to_delete is None:
            rows = [
                {"space": s.name, "description": s.describe(),
                 "documents": n}
                for s, n in sizes.items()
            ]  # fmt: skip
            if as_json:
                click.echo(dumps({"spaces": rows}))
            for row in [] if as_json else rows:
                click.echo(f"{row['space']}  {row['documents']} documents  ({row['description']})")
            click.echo(f"{plural(len(rows), 'space')} in {lab.location}", err=as_json)
            return
        space = lab.space(to_delete)
        held = sizes.get(space, 0)
        if not yes:
            if not sys.stdin.isatty():
                raise click.ClickException(
                    f"deleting {space.describe()} removes its {plural(held, 'document')} and "
                    "their analyses: pass --yes to go ahead without a terminal"
                )
            click.confirm(
                f"delete {space.describe()} with its {plural(held, 'document')} and analyses?",
                abort=True,
            )
        gone = lab.delete_space(space)
    click.echo(
        f"deleted {gone['space']}: {plural(gone['documents'], 'document')}, "
        f"{plural(gone['analyses'], 'analysis')}, {plural(gone['comparisons'], 'comparison')}"
    )


@cli.command("analyses")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--delete", "delete_id", metavar="ID", help="Delete this stored analysis.")
@click.option(
    "--export",
    "export_id",
    metavar="ID|latest",
    help="Write this stored analysis' report files again (as `analyze` wrote them) to --out.",
)
@click.option("--out", type=click.Path(), help="With --export: the report folder.")
@click.option("--html", is_flag=True, help="With --export: also write map.html.")
@click.pass_obj
@user_errors
def analyses_command(
    store_opts: StoreOptions,
    as_json: bool,
    delete_id: str | None,
    export_id: str | None = None,
    out: str | None = None,
    html: bool = False,
) -> None:
    """Stored analyses, newest first (ids for `neighbors --analysis`); reopen one with
    --export ID --out DIR."""
    from .jsonout import dumps, records

    if export_id is None and (out is not None or html):
        raise click.UsageError("--out and --html go with --export ID")
    if export_id is not None and out is None:
        raise click.UsageError("--export needs --out DIR, the folder to write the report to")
    with store_opts.open() as lab:
        if delete_id:
            lab.delete_analysis(delete_id)
            click.echo(f"deleted analysis {delete_id}")
            return
        if export_id is not None:
            analysis = lab.analysis(lab.analysis_to_update(export_id))
            files = analysis.save(Path(out or "."), html=html)
            for note in analysis.notes:
                click.echo(f"note: {note}", err=True)
            click.echo(f"analysis {analysis.id}: {len(files)} files written to {out}")
            return
        table = lab.analyses()
    if as_json:
        click.echo(dumps(records(table)))
        return
    for row in table.itertuples(index=False):
        scores = ", ".join(
            f"{name} {value:.3f}"
            for name, value in (
                ("hungarian", row.hungarian_accuracy),
                ("silhouette", row.silhouette),
            )
            if value is not None and value == value
        )
        click.echo(
            f"{row.id}  {row.created[:19]}  {row.space}  {row.documents} documents, "
            f"{row.algorithm} {row.k} clusters, {row.reduce}" + (f"; {scores}" if scores else "")
        )
        for note in row.notes or []:
            click.echo(f"  note: {note}")
    click.echo(f"{plural(len(table), 'analysis')} in {lab.location}")


@cli.command()
@click.option("--check", is_flag=True, help="Only report; exit 1 when something is damaged.")
@click.option(
    "--reembed",
    is_flag=True,
    help="Then embed the documents that need their vector now (spends; asks first).",
)
@click.option("--yes", is_flag=True, help="Do not ask before spending (--reembed).")
@click.pass_obj
@user_errors
def repair(store_opts: StoreOptions, check: bool, reembed: bool, yes: bool) -> None:
    """Check every space's vectors and index; rebuild a damaged index (after a crash).

    Every text, label and source is kept; a document whose vector cannot be read is
    marked as needing it, and the next ingest of its space (or --reembed) embeds it."""
    if check and reembed:
        raise click.UsageError("--check only reports; drop it to --reembed")
    started = time.monotonic()
    with store_opts.open() as lab:
        results = lab.repair(check=check)
        waiting = 0
        for health in results:
            line = f"{health.space.describe()}: {plural(health.documents, 'document')}"
            click.echo(f"{line}, " + ("; ".join(health.problems) or "ok"))
            for folder in health.quarantined:
                click.echo(f"  damaged index files moved to {folder}")
            if health.rebuilt:
                click.echo(
                    f"  index rebuilt: {health.documents} documents kept, {health.kept} with "
                    f"their vector, {len(health.needs_vector)} without"
                )
            if health.needs_vector:
                waiting += len(health.needs_vector)
                ids = health.needs_vector
                shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
                click.echo(
                    f"  {plural(len(ids), 'document')} need their vector ({shown}): the next "
                    f"ingest of this space will re-embed exactly these {len(ids)}, or "
                    "`embedlab repair --reembed` now"
                )
                if reembed and _reembed(lab, health.space, yes):
                    waiting -= len(ids)
        damaged = [h for h in results if not h.healthy]
        verdict = "damaged" if check else "repaired"
        click.echo(
            f"{plural(len(results), 'space')} checked, {len(damaged)} {verdict}, "
            f"{waiting} documents needing their vector, {time.monotonic() - started:.1f} s"
        )
    if check and damaged:
        sys.exit(1)


def _reembed(lab, space, yes: bool) -> bool:
    """Embed a space's documents that need their vector, after saying the cost and asking."""
    if space.provider not in ("gemini", "local"):
        click.echo("  --reembed: its vectors were made outside embedlab; ingest them again")
        return False
    plan = lab.reembed(space, dry_run=True)
    cost = plan.cost_line(getattr(lab, "prices", None))
    click.echo(f"  --reembed: {plan.planned_embed} texts to embed{cost}")
    if plan.planned_embed and not yes:
        if not sys.stdin.isatty():
            raise click.ClickException(
                "--reembed spends on embeddings: pass --yes to go ahead without a terminal"
            )
        click.confirm("  embed them now?", abort=True)
    report = lab.reembed(space, quiet=True)
    click.echo(f"  {report.summary(getattr(lab, 'prices', None))}")
    return True


# -- the cache's lifecycle -----------------------------------------------------------------


@cli.command("documents")
@click.option("--labels", "--categories", "labels", help="Comma-separated globs on labels.")
@click.option("--source", "sources", help="Comma-separated globs on sources.")
@click.option("--limit", type=click.IntRange(min=1), help="At most N (a seeded sample).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (a list).")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print one JSON document per line.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@space_options
@click.pass_obj
@user_errors
def documents_command(
    store_opts, labels, sources, limit, as_json, as_jsonl, as_csv, **space
) -> None:
    """List stored documents: id, label, source, characters, first words."""
    from .jsonout import dumps, records
    from .store.neighbours import snippet

    if as_json + as_jsonl + as_csv > 1:
        raise click.UsageError("give one of --json, --jsonl or --csv")
    with store_opts.open() as lab:
        chosen = lab.pick_space(*space.values())
        table = lab.documents(
            space=chosen, labels=parse_globs(labels), sources=parse_globs(sources), limit=limit
        )
    if as_json:
        click.echo(dumps(records(table.drop(columns=["content_hash"]))))
    elif as_jsonl:
        for row in records(table.drop(columns=["content_hash"])):
            click.echo(dumps(row, indent=None))
    elif as_csv:
        flat = table.drop(columns=["content_hash", "fields"])
        if any(table["fields"]):  # one JSON object per cell
            flat["fields"] = [dumps(f, indent=None) for f in table["fields"]]
        click.echo(flat.to_csv(index=False), nl=False)
    else:
        for row in table.itertuples(index=False):
            click.echo(f"{row.id}  [{row.label or '-'}]  {row.source}  {snippet(row.text)[:70]}")
    quiet = as_json or as_jsonl or as_csv
    click.echo(f"{plural(len(table), 'document')} in {chosen.describe()}", err=quiet)


@cli.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "npy", "jsonl"]),
    default="parquet",
    show_default=True,
    help="parquet/jsonl: one file; npy: a folder with vectors.npy and documents.jsonl.",
)
@click.option("--out", type=click.Path(), required=True, help="File (or folder for npy).")
@click.option("--labels", "--categories", "labels", help="Comma-separated globs on labels.")
@click.option("--source", "sources", help="Comma-separated globs on sources.")
@space_options
@click.pass_obj
@user_errors
def export_command(store_opts, fmt, out, labels, sources, **space) -> None:
    """Write ids, labels, sources, texts and float32 vectors, for use without Chroma."""
    started = time.monotonic()
    with store_opts.open() as lab:
        chosen = lab.pick_space(*space.values())
        rows = lab.export(
            out, fmt, labels=parse_globs(labels), sources=parse_globs(sources), space=chosen
        )
    click.echo(
        f"exported {plural(rows, 'document')} of {chosen.describe()} to {out} ({fmt}), "
        f"{time.monotonic() - started:.1f} s"
    )


@cli.command("delete")
@click.option("--id", "ids", multiple=True, help="A document id (repeatable).")
@click.option("--source", "sources", help="Comma-separated globs on sources.")
@click.option("--labels", "--categories", "labels", help="Comma-separated globs on labels.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.pass_obj
@user_errors
def delete_command(store_opts, ids, sources, labels, dry_run) -> None:
    """Remove documents (and their vectors) from every space of the store."""
    if not ids and not sources and not labels:
        raise click.UsageError("say what to delete: --id ID, --source GLOB or --labels GLOB")
    with store_opts.open() as lab:
        removed = lab.delete(
            ids=list(ids) or None,
            sources=parse_globs(sources),
            labels=parse_globs(labels),
            dry_run=dry_run,
        )
    missing = getattr(removed, "not_found", [])  # named by the library (Lab or service)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        click.echo(f"not in the store ({len(missing)}): {shown}", err=True)
    for doc_id in removed[:20]:
        click.echo(doc_id)
    if len(removed) > 20:
        click.echo(f"... and {len(removed) - 20} more")
    verb = "would be removed (dry run)" if dry_run else "removed"
    click.echo(f"{plural(len(removed), 'document')} {verb}")


# -- batches -------------------------------------------------------------------------------

from .cli_batches import add_batches_command  # noqa: E402 - the command lives beside

add_batches_command(cli, user_errors)

# -- costs and the service -----------------------------------------------------------------

PRICE_HELP = "Price as MODEL=USD_PER_1M_TOKENS (repeatable); default: the providers' list prices."


@cli.command()
@click.option("--price", "prices", multiple=True, metavar="MODEL=USD", help=PRICE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@user_errors
def costs(store_opts: StoreOptions, prices: tuple[str, ...], as_json: bool) -> None:
    """What embedding has cost so far, per space, and what the cache saved (estimated)."""
    from .jsonout import dumps, records
    from .store.ledger import parse_prices, usd

    table_prices = parse_prices(prices)
    with store_opts.open() as lab:
        if table_prices and not store_opts.server:
            lab.set_prices(table_prices)
        table = lab.costs()
    if as_json:
        click.echo(dumps(records(table)))
        return
    for row in table.itertuples(index=False):
        click.echo(
            f"{row.space}: {plural(row.requests, 'request')} ({row.retries} retries), "
            f"{row.texts_embedded} texts + {row.queries_embedded} queries embedded"
            + (f" + {row.names_generated} cluster names" if row.names_generated else "")
            + (
                f" + {row.texts_batched} by batch at ${row.batch_usd_per_1m_tokens:g}/1M"
                if getattr(row, "texts_batched", 0)
                else ""
            )
            + ", "
            f"~{row.estimated_tokens:,} tokens, est. {usd(row.estimated_usd)}; "
            f"{row.cache_hits} cache hits saved ~{row.estimated_tokens_saved:,} tokens, "
            f"est. {usd(row.estimated_usd_saved)} (at ${row.usd_per_1m_tokens:g}/1M tokens)"
        )
    spent = float(table["estimated_usd"].sum()) if len(table) else 0.0
    saved = float(table["estimated_usd_saved"].sum()) if len(table) else 0.0
    click.echo(
        f"{plural(len(table), 'space')}: estimated {usd(spent)} spent, {usd(saved)} saved "
        "by the cache (tokens estimated at 4 characters each)"
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port."
)
@click.option("--read-only", is_flag=True, help="Refuse anything that writes or spends (403).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="File holding the token clients must send (default: $EMBEDLAB_TOKEN). "
    "Needed to listen anywhere but loopback.",
)
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    default=64 * 1024 * 1024,
    show_default=True,
    help="Largest request body in bytes (413 above).",
)
@click.option("--cors", multiple=True, metavar="ORIGIN", help="Allow browser calls from ORIGIN.")
@click.option("--price", "prices", multiple=True, metavar="MODEL=USD", help=PRICE_HELP)
@click.option(
    "--follow",
    is_flag=True,
    help="After every ingest job that changes a space, update its newest analysis "
    "(open maps load it live; docs/update.md).",
)
@click.option(
    "--embedded-chroma",
    is_flag=True,
    help="Run Chroma inside this process instead of a private `chroma run` child: "
    "its writes then hold up every reader while an ingest runs (docs/service-performance.md).",
)
@click.pass_obj
@user_errors
def serve(
    store_opts: StoreOptions,
    host: str,
    port: int,
    read_only: bool,
    token_file: str | None,
    max_body: int,
    cors: tuple[str, ...],
    prices: tuple[str, ...],
    follow: bool = False,
    embedded_chroma: bool = False,
) -> None:
    """Serve the store over HTTP: one process, many clients (API docs at /docs)."""
    from .service.app import ServiceSettings
    from .service.server import check_host, read_token
    from .service.server import serve as run_server
    from .store.ledger import parse_prices

    if store_opts.server:
        raise click.UsageError("serve opens the store itself; drop --server")
    token = read_token(token_file)
    check_host(host, token)
    settings = ServiceSettings(read_only, token, max_body, list(cors))
    settings.follow = follow
    started = time.monotonic()
    lab = open_lab(
        store_opts.path,
        chroma_url=store_opts.chroma_url,
        create=True,
        wait=store_opts.wait,
        quiet=True,
        keep_vectors=True,
        prices=parse_prices(prices),
        own_chroma=not embedded_chroma,
    )

    def on_started(url: str) -> None:
        mode = ", read-only" if read_only else ""
        auth = ", token required" if token else ""
        click.echo(f"serving {lab.location} at {url}{mode}{auth} (docs: {url}/docs)", err=True)

    with lab:
        run_server(lab, host, port, settings, on_started=on_started)
        jobs = len(lab.recorded_jobs())
    click.echo(f"stopped after {time.monotonic() - started:.1f} s; {plural(jobs, 'job')} recorded")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def main() -> None:
    cli(prog_name="embedlab")


if __name__ == "__main__":
    main()
