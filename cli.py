"""embedlab command line: parse options, call the packages, print results.

No logic lives here beyond wiring; heavy libraries are imported by the packages
where they are used, so `embedlab --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import click

from .ingest.errors import SourceError
from .store import Document, Store, StoreError
from .store.documents import MAX_TEXT_CHARS

DEFAULT_STORE = "./embedlab-store"


@dataclass
class StoreOptions:
    path: str
    chroma_url: str | None
    wait: float = 0.0

    def open(self, create: bool = False, connect: bool = True) -> Store:
        if self.chroma_url:
            return Store.open_server(self.chroma_url)
        return Store.open_local(self.path, create=create, connect=connect, wait=self.wait)

    def exists(self) -> bool:
        return bool(self.chroma_url) or (Path(self.path) / "embedlab.json").is_file()


def user_errors(func: Callable) -> Callable:
    """Turn the packages' user-facing errors into one-line click errors, never tracebacks."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .ingest.providers import ProviderError

        try:
            return func(*args, **kwargs)
        except (StoreError, SourceError, ProviderError) as exc:
            raise click.ClickException(str(exc)) from None

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
@click.version_option(package_name="embedlab")
@click.pass_context
def cli(ctx: click.Context, store_path: str, chroma_url: str | None, wait: float) -> None:
    """Embed documents once, then cluster, map and explore them without paying again."""
    ctx.obj = StoreOptions(store_path, chroma_url, wait)


# -- ingest --------------------------------------------------------------------------------


@cli.group("ingest")
def ingest_group() -> None:
    """Embed documents into the store; texts already embedded cost nothing."""


def provider_options(func: Callable) -> Callable:
    options = [
        click.option(
            "--provider",
            type=click.Choice(["auto", "gemini", "local"]),
            default="auto",
            show_default=True,
            help="auto = gemini when GEMINI_API_KEY or GOOGLE_API_KEY is set, else local.",
        ),
        click.option("--model", help="Embedding model (gemini: gemini-embedding-001)."),
        click.option("--task-type", default="CLUSTERING", show_default=True),
        click.option("--dims", type=click.IntRange(min=1), help="Output dimensions (Gemini)."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Texts per request."),
        click.option("--concurrency", type=click.IntRange(min=1), help="Requests in flight."),
        click.option("--max-attempts", type=click.IntRange(min=1), default=6, show_default=True),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True),
        click.option(
            "--dry-run", is_flag=True, help="Count what would be embedded; embed nothing."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@ingest_group.command("newsgroups")
@click.option("--source", type=click.Path(), help="20news-bydate.tar.gz or its folder.")
@click.option("--subset", type=click.Choice(["train", "test", "all"]), default="train")
@click.option("--categories", help="Comma-separated globs, e.g. 'sci.*,rec.autos'.")
@click.option("--per-class", type=click.IntRange(min=1), help="Sample N posts per group.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--clean", type=click.Choice(["notebook", "sklearn", "none"]), default="notebook")
@provider_options
@click.pass_obj
def ingest_newsgroups(store_opts, source, subset, categories, per_class, seed, clean, **opts):
    """20 Newsgroups posts (labels = newsgroup names)."""
    from .ingest.newsgroups import newsgroups_documents

    globs = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    run_ingest(
        store_opts,
        lambda skipped: newsgroups_documents(
            source, subset, globs, per_class, seed, clean, skipped=skipped
        ),
        **opts,
    )


@ingest_group.command("files")
@click.argument("folder", type=click.Path())
@click.option("--glob", "pattern", default="*", show_default=True, help="Which file names.")
@provider_options
@click.pass_obj
def ingest_files(store_opts, folder, pattern, **opts):
    """Every text file under FOLDER (label = the file's parent folder name)."""
    from .ingest.sources import file_documents

    run_ingest(store_opts, lambda skipped: file_documents(folder, pattern, skipped), **opts)


@ingest_group.command("csv")
@click.argument("path", type=click.Path())
@click.option("--text-col", default="text", show_default=True)
@click.option("--id-col", help="Column with document ids (default: row number).")
@click.option("--label-col", help="Column with labels, if any.")
@provider_options
@click.pass_obj
def ingest_csv(store_opts, path, text_col, id_col, label_col, **opts):
    """Rows of a CSV file."""
    from .ingest.sources import csv_documents

    run_ingest(
        store_opts,
        lambda skipped: csv_documents(path, text_col, id_col, label_col, skipped),
        **opts,
    )


@ingest_group.command("jsonl")
@click.argument("path", type=click.Path())
@click.option("--text-key", default="text", show_default=True)
@click.option("--id-key", help="Key with document ids (default: line number).")
@click.option("--label-key", help="Key with labels, if any.")
@provider_options
@click.pass_obj
def ingest_jsonl(store_opts, path, text_key, id_key, label_key, **opts):
    """Objects of a JSON Lines file."""
    from .ingest.sources import jsonl_documents

    run_ingest(
        store_opts,
        lambda skipped: jsonl_documents(path, text_key, id_key, label_key, skipped),
        **opts,
    )


@user_errors
def run_ingest(
    store_opts: StoreOptions,
    read_documents: Callable[[Counter[str]], Iterable[Document]],
    provider: str,
    model: str | None,
    task_type: str,
    dims: int | None,
    batch_size: int | None,
    concurrency: int | None,
    max_attempts: int,
    timeout: float,
    dry_run: bool,
) -> None:
    from .ingest.pipeline import IngestError, IngestInterrupted, RetryPolicy, ingest
    from .ingest.providers import choose_provider_name, make_provider, resolve_space

    started = time.monotonic()
    name = choose_provider_name(provider)
    space = resolve_space(name, model, task_type, dims)
    why = ""
    if provider == "auto":
        why = " (GEMINI_API_KEY is set)" if name == "gemini" else " (no GEMINI_API_KEY set)"
    click.echo(f"provider: {space.describe()}{why}", err=True)
    if space.task_type == "none" and task_type.upper() != "CLUSTERING":
        click.echo(f"note: {space.provider} has no task types; --task-type ignored", err=True)
    skipped: Counter[str] = Counter()
    docs = list(read_documents(skipped))
    store = store_opts.open(create=True) if not dry_run or store_opts.exists() else None
    with click.progressbar(
        length=len(docs), label="ingest", file=sys.stderr, item_show_func=lambda s: s
    ) as bar:

        def on_progress(report) -> None:
            counts = f"{report.cached + report.reused} cached, {report.embedded} embedded"
            bar.update(report.done - bar.pos, current_item=counts)

        try:
            report = ingest(
                docs,
                store,
                space,
                lambda: make_provider(space, timeout_s=timeout),
                batch_size=batch_size,
                concurrency=concurrency,
                retry=RetryPolicy(attempts=max_attempts),
                dry_run=dry_run,
                on_progress=on_progress,
                skipped=skipped,
                started=started,
            )
        except IngestInterrupted as exc:
            click.echo(f"\ninterrupted: {ingest_summary(exc.report)}; re-run to finish", err=True)
            sys.exit(130)
        except IngestError as exc:
            click.echo(f"\n{ingest_summary(exc.report)}", err=True)
            raise click.ClickException(
                f"{exc} (everything embedded so far is saved; re-run to resume)"
            ) from None
        finally:
            if store is not None:
                store.close()
    click.echo(ingest_summary(report))


def ingest_summary(report) -> str:
    """One line: documents, cached, embedded, requests, seconds (plus skips when any)."""
    call = "request" if report.space.provider == "gemini" else "model batch"
    if report.dry_run:
        line = (
            f"dry run: {report.documents} documents: {report.cached} cached, "
            f"{report.documents - report.cached} to embed in "
            f"{plural(report.planned_requests, call)}"
        )
    else:
        line = (
            f"{report.documents} documents: {report.cached + report.reused} cached, "
            f"{report.embedded} embedded, {plural(report.requests, call)}"
        )
        if report.reused:
            line += f" ({report.reused} reused from identical texts)"
        if report.texts_embedded < report.embedded:
            line += f" ({plural(report.texts_embedded, 'unique text')} sent)"
        if report.retries:
            line += f", {plural(report.retries, 'retry')}"
        if report.truncated:
            line += f", {report.truncated} truncated"
    if report.cut:
        line += f", {report.cut} cut to {MAX_TEXT_CHARS:,} chars"
    if report.skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
        line += f", {sum(report.skipped.values())} skipped ({reasons})"
    return f"{line}, {report.seconds:.1f} s"


# -- analyze -------------------------------------------------------------------------------


def _globs(value: str | None) -> list[str] | None:
    return [g.strip() for g in value.split(",") if g.strip()] if value else None


def _k_value(ctx, param, value: str) -> int | str:
    if value == "auto":
        return value
    try:
        k = int(value)
    except ValueError:
        raise click.BadParameter("use a number of clusters or 'auto'") from None
    if k < 1:
        raise click.BadParameter("needs at least 1 cluster")
    return k


@cli.command("analyze")
@click.option("--provider", help="Space to analyse (needed when the store has several).")
@click.option("--model")
@click.option("--task-type")
@click.option("--dims", type=int)
@click.option("--source", "sources", help="Comma-separated globs on the document source.")
@click.option("--categories", "--labels", "labels", help="Comma-separated globs on labels.")
@click.option("--per-class", type=click.IntRange(min=1), help="Sample N documents per label.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="At most N documents.")
@click.option(
    "--algo",
    type=click.Choice(["kmeans", "hdbscan", "dbscan", "agglomerative"]),
    default="kmeans",
    show_default=True,
)
@click.option(
    "--k",
    default="4",
    show_default=True,
    callback=_k_value,
    help="Clusters for kmeans/agglomerative, or 'auto' (best silhouette).",
)
@click.option(
    "--reduce",
    type=click.Choice(["tsne", "pca", "umap"]),
    default="tsne",
    show_default=True,
    help="2-D map method.",
)
@click.option("--min-cluster-size", type=click.IntRange(min=2), help="hdbscan/dbscan.")
@click.option("--eps", type=float, default=0.5, show_default=True, help="dbscan radius.")
@click.option("--out", type=click.Path(), default="./report", show_default=True)
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
    out,
) -> None:
    """Cluster, map and score the stored vectors (no embedding calls, ever)."""
    from .analyze.run import AnalysisOptions
    from .analyze.select import Selection

    selection = Selection(_globs(sources), _globs(labels), per_class, seed, limit)
    options = AnalysisOptions(algo, k, reduce, seed, min_cluster_size, eps)
    run_analysis(store_opts, (provider, model, task_type, dims), selection, options, Path(out))


def run_analysis(store_opts: StoreOptions, space_filter, selection, options, out: Path) -> None:
    from .analyze import report
    from .analyze.run import analyze_corpus
    from .analyze.select import AnalyzeError, load_corpus, pick_space

    started = time.monotonic()
    try:
        with store_opts.open() as store:
            space = pick_space(store, *space_filter)
            corpus = load_corpus(store, space, selection)
        click.echo(f"analyzing {len(corpus.ids)} documents of {space.describe()}", err=True)
        result = analyze_corpus(corpus, options, out)
    except (AnalyzeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    with store_opts.open() as store:  # so neighbours can show each result's cluster
        store.collection(space).save_clusters(corpus.ids, result.cluster_labels.tolist())
    click.echo(f"clustering: {report.method_line(result.metrics)}", err=True)
    click.echo(report.per_class_table(result.metrics))
    click.echo(report.headline(result.metrics) or "no metrics (a single cluster)")
    n_clusters = len([c for c in result.clusters if c["cluster"] != -1])
    click.echo(
        f"{len(corpus.ids)} documents, {plural(n_clusters, 'cluster')}, "
        f"{len(result.files)} files in {out}, {time.monotonic() - started:.1f} s"
    )


@cli.command()
@click.option(
    "--provider", type=click.Choice(["auto", "gemini", "local"]), default="local", show_default=True
)
@click.option("--source", type=click.Path(), help="20news-bydate.tar.gz (default: download).")
@click.option("--out", type=click.Path(), default="./demo-report", show_default=True)
@click.pass_context
def demo(ctx: click.Context, provider: str, source: str | None, out: str) -> None:
    """The notebook end to end: 4 sci.* groups x 150 posts, embed (cached), t-SNE, KMeans k=4."""
    from .analyze.run import AnalysisOptions
    from .analyze.select import Selection

    categories, per_class, seed = "sci.*", 150, 0
    ctx.invoke(
        ingest_newsgroups,
        source=source,
        subset="train",
        categories=categories,
        per_class=per_class,
        seed=seed,
        clean="notebook",
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
    from .ingest.providers import choose_provider_name, resolve_space

    space = resolve_space(choose_provider_name(provider), None, "CLUSTERING", None)
    selection = Selection(["newsgroups/train"], [categories], per_class, seed, None)
    options = AnalysisOptions("kmeans", 4, "tsne", seed)
    space_filter = (space.provider, space.model, space.task_type, space.dims)
    run_analysis(ctx.obj, space_filter, selection, options, Path(out))


# -- neighbours ----------------------------------------------------------------------------


@cli.command("neighbors")
@click.argument("query", required=False)
@click.option("--id", "doc_id", help="Find documents like this stored one (no API call).")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--labels", help="Comma-separated globs on labels of the results.")
@click.option("--source", "sources", help="Comma-separated globs on sources of the results.")
@click.option("--provider", help="Space to search (needed when the store has several).")
@click.option("--model")
@click.option("--task-type")
@click.option("--dims", type=int)
@click.option("--json", "fmt", flag_value="json", help="Print a JSON list.")
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV.")
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
    fmt,
) -> None:
    """Documents most similar to a stored one (--id) or to a free-text QUERY."""
    from .analyze.select import AnalyzeError, pick_space
    from .store.neighbours import find_neighbours

    if (query is None) == (doc_id is None):
        raise click.UsageError("give either a QUERY text or --id, not both")
    started = time.monotonic()
    requests = 0
    with store_opts.open() as store:
        try:
            space = pick_space(store, provider, model, task_type, dims)
        except AnalyzeError as exc:
            raise click.ClickException(str(exc)) from None
        collection = store.collection(space)
        if doc_id is not None:
            found = collection.get_one(doc_id)
            if found is None:
                raise click.ClickException(
                    f"no document {doc_id!r} in {space.describe()}; find ids in an analysis' "
                    'points.csv or with `embedlab neighbors "some text"`'
                )
            vector = found[0]
        else:
            from .ingest.providers import make_provider
            from .ingest.query import query_vector

            vector, requests = query_vector(collection, query, lambda: make_provider(space))
        hits = find_neighbours(collection, vector, k, doc_id, _globs(labels), _globs(sources))
    print_neighbours(hits, fmt)
    what = doc_id if doc_id is not None else repr(query)
    click.echo(
        f"{plural(len(hits), 'neighbour')} of {what} in {space.describe()}, "
        f"{plural(requests, 'request')}, {time.monotonic() - started:.2f} s",
        err=fmt is not None,
    )


cli.add_command(neighbors_command, "neighbours")


def print_neighbours(hits, fmt: str | None) -> None:
    rows = [hit.as_dict() for hit in hits]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
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
                f"[{row['label'] or '-'}{cluster}]  {row['snippet'][:80]}"
            )


# -- stats ---------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@user_errors
def stats(store_opts: StoreOptions, as_json: bool) -> None:
    """Spaces in the store, with counts per source and label, and size on disk."""
    from .store.stats import store_stats

    with store_opts.open() as store:
        result = store_stats(store)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for space in result["spaces"]:
        task = "" if space["task_type"] == "none" else f", {space['task_type']}"
        click.echo(
            f"{space['provider']}:{space['model']} ({space['dims']} dims{task}): "
            f"{space['documents']} documents"
        )
        click.echo("  sources: " + _counts(space["by_source"]))
        click.echo("  labels:  " + _counts(space["by_label"]))
    total = sum(s["documents"] for s in result["spaces"])
    size = result["disk_bytes"]
    where = f", {size / 1e6:.1f} MB on disk" if size is not None else ""
    n_spaces = plural(len(result["spaces"]), "space")
    click.echo(f"{result['store']}: {n_spaces}, {plural(total, 'document')}{where}")


@cli.command()
@click.option("--check", is_flag=True, help="Only report; exit 1 when something is damaged.")
@click.pass_obj
@user_errors
def repair(store_opts: StoreOptions, check: bool) -> None:
    """Check every space's vectors and index; rebuild a damaged index (after a crash)."""
    from .store.repair import check_store

    started = time.monotonic()
    with store_opts.open(connect=False) as store:
        results = check_store(store, fix=not check)
    for health in results:
        line = f"{health.space.describe()}: {plural(health.documents, 'document')}"
        click.echo(f"{line}, " + ("; ".join(health.problems) or "ok"))
        for folder in health.quarantined:
            click.echo(f"  damaged index files moved to {folder}")
        if health.rebuilt:
            kept, dropped = health.kept, len(health.dropped)
            click.echo(f"  index rebuilt: {kept} records kept, {dropped} dropped")
        if health.dropped:
            shown = ", ".join(health.dropped[:5]) + (" ..." if len(health.dropped) > 5 else "")
            click.echo(
                f"  dropped (vector unreadable): {shown}; re-run your ingest to re-embed "
                f"exactly these {len(health.dropped)}"
            )
    damaged = [h for h in results if not h.healthy]
    verdict = "damaged" if check else "repaired"
    click.echo(
        f"{plural(len(results), 'space')} checked, {len(damaged)} {verdict}, "
        f"{time.monotonic() - started:.1f} s"
    )
    if check and damaged:
        sys.exit(1)


def plural(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    if noun.endswith("y"):
        return f"{n} {noun[:-1]}ies"
    return f"{n} {noun}es" if noun.endswith("ch") else f"{n} {noun}s"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def main() -> None:
    cli(prog_name="embedlab")


if __name__ == "__main__":
    main()
