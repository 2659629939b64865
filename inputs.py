"""Reading inputs into documents, the same way for a Lab and for a running service.

`Lab` (which embeds into its store) and `client.RemoteLab` (which sends the documents to
`embedlab serve`) both read DataFrames, Python objects, 20 Newsgroups and files here,
so one input gets the same ids whichever way it is ingested. A subclass provides
`ingest_documents`, `embedding_choice`, `spaces`, `location`, and optionally `_claim_source`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import Cancelled, EmbedlabError, InvalidRequest, NotFound

if TYPE_CHECKING:
    from .ingest.pipeline import IngestReport
    from .store import Space


class Inputs:
    """The ingest calls that read an input, then hand its documents on."""

    if TYPE_CHECKING:  # given by Lab and RemoteLab (pick_space reads them)

        @property
        def location(self) -> str: ...

        def spaces(self) -> list[Space]: ...

    def ingest_documents(self, *args: Any, **options: Any) -> IngestReport:
        raise NotImplementedError

    def embedding_choice(self, provider: str = "auto", *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _claim_source(self, source: str, origin: str, dry_run: bool) -> None:
        """Bind a default source name to one real input (a no-op where nothing is kept)."""

    def ingest_vectors(self, *args: Any, **options: Any) -> Any:  # (documents, vectors, space)
        """Store vectors computed elsewhere (a Lab does; a running service does not)."""
        raise InvalidRequest(
            "vectors you bring are stored by a Lab on the store itself; the service does not "
            "take them: stop it and run the ingest with --store (or embedlab.open(...))"
        )

    def pick_space(  # needs spaces() and location
        self,
        provider: str | None = None,
        model: str | None = None,
        task_type: str | None = None,
        dims: int | None = None,
    ) -> Space:
        """The one space matching the filters (the CLI's --provider/--model/...)."""
        from .analyze.select import choose_space

        return choose_space(self.spaces(), self.location, provider, model, task_type, dims)

    def analysis_to_update(
        self,
        which: str,
        provider: str | None = None,
        model: str | None = None,
        task_type: str | None = None,
        dims: int | None = None,
    ) -> str:
        """The id `which` names: itself, or for "latest" the newest stored analysis of the
        space the filters pick (NotFound when it has none)."""
        if which != "latest":
            return which
        space = self.pick_space(provider, model, task_type, dims)
        table = self.analyses(space)  # type: ignore[attr-defined]  # both twins have it
        if table.empty:
            raise NotFound(
                f"no stored analysis of {space.describe()} to update; run `embedlab analyze` first"
            )
        return str(table.iloc[0]["id"])

    def check_ids(self, ids: Any) -> None:
        """Refuse (InvalidRequest) an id of only spaces among `ids` (None: from the text),
        as ingest would: a front end checks a request with it before starting work."""
        from .ingest.framing import check_ids

        check_ids(ids)

    def ingest(
        self,
        data: Any,
        text: str = "text",
        id: str | None = None,  # noqa: A002 - the name users know from their columns
        label: str | None = None,
        source: str = "python",
        vector: str | None = None,
        space: str | None = None,
        **options: Any,
    ) -> IngestReport:
        """Embed what the store does not hold yet: a DataFrame, strings, or dicts.

        - DataFrame: text from column `text`; ids from column `id` (default: an "id"
          column, else the index); labels from column `label` (default: a "label" column).
        - strings: ids derived from the content ("text/<hash>").
        - dicts: keys "id", "text", "label", "source" (or the names given).
        A DataFrame's other columns and a dict's other keys with a str, int, float or bool
        value are each document's own fields (at most 32; docs/ingest.md).
        Options: provider, model, task_type, dims, batch_size, concurrency, max_attempts,
        timeout, dry_run, cancel, quiet, on_progress, and confirm: a callable asked
        `confirm(plan, why)` before an ingest over the spending threshold (more than 5,000
        texts to embed or est. $1; see _ingest_read). Returns an IngestReport.

        Vectors computed elsewhere: `vector` names their column (key), `space` the model
        that made them; they are stored, unit length, in the space `custom:<space>:<dims>`
        and nothing is embedded (options: dims, which every vector must have, dry_run,
        prune, quiet, on_progress). Returns a VectorReport.
        """
        from .ingest.framing import python_documents

        skipped: Counter[str] = _skips()
        vectors: dict[str, Any] = {}
        options = _vector_options(vector, space, options)
        documents = list(python_documents(data, text, id, label, source, skipped, vector, vectors))
        if vector is not None:
            return self.ingest_vectors(documents, vectors, space, skipped=skipped, **options)
        return self._ingest_read(documents, skipped, options)

    def _ingest_read(
        self, documents: Any, skipped: Counter[str], options: dict[str, Any]
    ) -> IngestReport:
        """ingest_documents on what an input read. With `confirm` (a callable) in the
        options, the ingest is planned first (a dry run, nothing embedded); a plan over the
        spending threshold (IngestReport.spend_to_confirm) is passed to `confirm(plan, why)`
        and goes ahead only when it returns True (else Cancelled, nothing spent)."""
        options = dict(options)
        confirm = options.pop("confirm", None)
        if confirm is not None and not options.get("dry_run"):
            documents = list(documents)
            planning = {k: v for k, v in options.items() if k not in ("on_progress", "cancel")}
            plan = self.ingest_documents(documents, **{**planning, "dry_run": True, "quiet": True})
            why = plan.spend_to_confirm(getattr(self, "prices", None))
            if why is not None and not confirm(plan, why):
                raise Cancelled(f"not confirmed ({why}): nothing was embedded")
        return self.ingest_documents(documents, skipped=skipped, **options)

    def ingest_newsgroups(
        self,
        source: str | os.PathLike[str] | None = None,
        subset: str = "train",
        categories: Sequence[str] | None = ("sci.*",),
        per_class: int | None = 150,
        seed: int = 0,
        clean: str | None = None,
        **options: Any,
    ) -> IngestReport:
        """20 Newsgroups posts (labels = group names), from the archive or sklearn's copy.

        By default the demo's sample: the sci.* groups, 150 posts each (seed 0); the CLI's
        `ingest newsgroups` takes these defaults from here. `categories=None` reads all 20
        groups, `per_class=None` every post.

        `clean` defaults to the provider's cleaning: "notebook" (the seed notebook's) for
        both the local model and Gemini (ingest.newsgroups.DEFAULT_CLEAN).
        """
        from .ingest.newsgroups import default_clean, newsgroups_documents

        if clean is None:  # the provider that will embed (a service's own, with --server)
            provider = self.embedding_choice(options.get("provider") or "auto").space.provider
            clean = default_clean(provider)
        skipped: Counter[str] = _skips()
        cats = list(categories) if categories else None
        docs = newsgroups_documents(source, subset, cats, per_class, seed, clean, skipped=skipped)
        return self._ingest_read(docs, skipped, options)

    def ingest_path(
        self,
        path: str | os.PathLike[str],
        text: str = "text",
        id: str | None = None,  # noqa: A002
        label: str | None = None,
        glob: str = "*",
        name: str | None = None,
        kind: str | None = None,
        vector: str | None = None,
        space: str | None = None,
        **options: Any,
    ) -> IngestReport:
        """A folder of text files (label = parent folder), a .csv, or a .jsonl file.

        Ids are `<kind>/<name>/<key>`, `name` defaulting to the file's stem or the
        folder's name. A default name belongs to one real file or folder: another input
        with the same default is refused (give it a `name`), never mixed into its ids. A
        `name` given by the user is theirs: successive exports of one dataset may share it.
        `kind` ("files", "csv", "jsonl") overrides the guess from the path. `vector` and
        `space` store vectors computed elsewhere, as in `ingest`.
        """
        from .ingest.sources import read_path

        skipped: Counter[str] = _skips()
        vectors: dict[str, Any] = {}
        options = _vector_options(vector, space, options)
        encodings: Counter[str] = Counter()
        docs, source, origin = read_path(
            path, text, id, label, glob, name, kind, skipped, vector, vectors, encodings
        )
        # A name the user gives is theirs to share between inputs. A default one is
        # checked now and claimed once something is written, so a failed ingest claims
        # nothing.
        claim = name is None and not options.get("dry_run")
        if name is None:
            self._claim_source(source, origin, dry_run=True)
        try:
            if vector is not None:
                report = self.ingest_vectors(docs, vectors, space, skipped=skipped, **options)
            else:
                report = self._ingest_read(docs, skipped, options)
        except EmbedlabError as exc:
            partial = getattr(exc, "report", None)
            if claim and partial is not None and partial.embedded + partial.reused > 0:
                self._claim_source(source, origin, dry_run=False)
            raise
        if claim:
            self._claim_source(source, origin, dry_run=False)
        if hasattr(report, "encodings"):
            report.encodings.update(encodings)
        return report


# what an ingest of given vectors takes; the provider's options would be silently ignored
VECTOR_OPTIONS = {
    "dims",
    "dry_run",
    "prune",
    "replace",
    "quiet",
    "on_progress",
    "started",
    "cancel",
}
OPTION_DEFAULTS = {
    "provider": "auto",
    "task_type": "CLUSTERING",
    "max_attempts": 6,
    "timeout": 60.0,
    "batch": False,
}


def _vector_options(
    vector: str | None, space: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    """The options for this ingest: all of them to embed; with vectors the user brings,
    those that apply (the others refused when set)."""
    if vector is None:
        if space is not None:
            raise InvalidRequest(
                "--space-name (space=) names the space of vectors you bring: give "
                "--vector-col COL (vector=COL) too, or drop it to embed with a provider"
            )
        return options
    if not isinstance(vector, str) or not vector:
        raise InvalidRequest(f"vector must be a column or key name, not {vector!r}")
    if space is None:
        raise InvalidRequest(
            "vectors need a space name: --space-name NAME (space=NAME), the model that made them"
        )
    extra = sorted(
        key
        for key, value in options.items()
        if key not in VECTOR_OPTIONS and value is not None and value != OPTION_DEFAULTS.get(key)
    )
    if extra:
        verb = "does" if len(extra) == 1 else "do"
        named = ", ".join(f"{key} (--{key.replace('_', '-')})" for key in extra)
        raise InvalidRequest(
            f"{named} {verb} not apply to vectors you bring: they are stored as "
            "given, nothing is embedded"
        )
    return {key: value for key, value in options.items() if key in VECTOR_OPTIONS}


def _skips() -> Counter[str]:
    """A count of skipped records that names the first few (ingest.skips.Skips)."""
    from .ingest.skips import Skips

    return Skips()
