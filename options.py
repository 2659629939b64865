"""Each use case's parameters, declared once: type, default, limits, help and messages.

The CLI's click options (`click_options`), the service's request bodies
(`request_model`) and the library's validation (`validate`, behind
`AnalysisOptions.checked` and `CompareOptions.checked`) are all built from these tables,
so a rule and its message exist once and every front end says the same thing. Rules
between options ("k does not apply to hdbscan") are declared beside each table as
checks over the values.

Nothing heavy is imported here: click and pydantic only inside the builders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .analyze.cluster import ALGORITHMS, DEFAULT_CLUSTER_DIMS, MAX_CLUSTER_DIMS, MAX_TEXT_WEIGHT
from .analyze.reduce import METHODS
from .errors import InvalidRequest

SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds
MAX_CLUSTERS = 1000
NEIGHBOURS = 10
MAX_NEIGHBOURS = 100

_WHOLE = "{name} must be a whole number, not {value!r}"
_NUMBER = "{name} must be a number, not {value!r}"
_TRUE_OR_FALSE = "{name} must be true or false, not {value!r}"


@dataclass(frozen=True)
class Option:
    """One parameter of a use case.

    `message` (a format string over name, value, minimum, maximum, choices) replaces
    the generic message for a value out of range or not among the choices,
    `type_message` the one for a value of another type; `check(value) -> str | None` adds a rule of
    the option's own. `flags` are the CLI's (default: --name-with-dashes) and `dest`
    the click parameter they fill (default: the name); `cli`/`http` leave the option
    out of that front end (it has its own spelling there).
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False  # the minimum itself is refused (eps > 0)
    also: tuple[Any, ...] = ()  # values accepted besides the type's ("auto")
    message: str | None = None  # for a value out of range or not among the choices
    type_message: str | None = None  # for a value of another type (default: generic)
    required: bool = False  # None is refused too (not "not given")
    check: Callable[[Any], str | None] | None = None
    flags: tuple[str, ...] = ()
    dest: str | None = None
    show_default: bool = True
    cli: bool = True
    http: bool = True

    def say(self, value: Any, template: str, kind: str = "message") -> str:
        choices = ", ".join(self.choices or ())
        return (getattr(self, kind) or template).format(
            name=self.name, value=value, minimum=_num(self.minimum),
            maximum=_num(self.maximum), choices=choices,
        )  # fmt: skip

    def coerce(self, value: Any) -> Any:
        """A whole number given as digits (a query string's, a CLI's) is the number."""
        if self.type is int and isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this option, in the words every front end
        uses; None when it is fine (None itself is "not given")."""
        if value is None and self.required:
            return self.say(value, _WHOLE if self.type is int else _NUMBER, "type_message")
        if value is None or value in self.also:
            return None
        if self.type is bool:
            if not isinstance(value, bool):
                return self.say(value, _TRUE_OR_FALSE, "type_message")
            return None
        if self.choices is not None:
            if value not in self.choices:
                return self.say(value, "unknown {name} {value!r}; use one of {choices}")
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return self.say(value, _WHOLE, "type_message")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return self.say(value, _NUMBER, "type_message")
        if self.type in (int, float):
            low, high = self.minimum, self.maximum
            below = low is not None and (value <= low if self.above_minimum else value < low)
            over = high is not None and value > high
            if below or over or (isinstance(value, float) and math.isnan(value)):
                if low is not None and high is not None:
                    return self.say(value, "{name} must be {minimum}..{maximum}, not {value}")
                if low is not None:
                    return self.say(value, "{name} must be at least {minimum}, not {value}")
                return self.say(value, "{name} must be at most {maximum}, not {value}")
        return self.check(value) if self.check is not None else None

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)


Check = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class Table:
    """A use case's options, and the rules between them (checked after each alone)."""

    options: tuple[Option, ...]
    checks: tuple[Check, ...] = field(default=())

    def __getitem__(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def __iter__(self):
        return iter(self.options)

    def names(self) -> list[str]:
        return [o.name for o in self.options]


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def validate(
    table: Table, values: Mapping[str, Any], names: Iterable[str] | None = None
) -> dict[str, Any]:
    """`values` checked against `table` (each option, then the rules between them);
    InvalidRequest with the option's message at the first problem. Returns the values
    coerced (digits to numbers), options not given at their declared default. With
    `names`, only those options are checked and returned (and no rule between them)."""
    checked: dict[str, Any] = {}
    for option in table if names is None else [table[n] for n in names]:
        value = option.coerce(values.get(option.name, option.default))
        problem = option.problem(value)
        if problem is not None:
            raise InvalidRequest(problem)
        checked[option.name] = value
    for rule in table.checks if names is None else ():
        problem = rule(checked)
        if problem is not None:
            raise InvalidRequest(problem)
    return checked


# -- shared options --------------------------------------------------------------------------

SEED = Option(
    "seed", int, 0, "Seed of every random step.", minimum=0, maximum=SEED_MAX,
    message="seed must be a whole number from 0 to {maximum}, not {value!r}",
    type_message="seed must be a whole number, not {value!r}",
)  # fmt: skip
PER_CLASS = Option("per_class", int, None, "Sample N documents per label.", minimum=1)
LIMIT = Option("limit", int, None, "At most N documents (seeded sample).", minimum=1)
REDUCE = Option(
    "reduce", str, "tsne", "2-D map method.", choices=METHODS,
    message="unknown map method {value!r}; use one of {choices}",
)  # fmt: skip


# -- analyze -------------------------------------------------------------------------------

_K = "k must be a number of clusters (1 to {maximum}) or 'auto', not {value!r}"


def _density(values: Mapping[str, Any]) -> bool:
    return values["algorithm"] in ("hdbscan", "dbscan")


def _k_applies(values: Mapping[str, Any]) -> str | None:
    if values["k"] is not None and _density(values):
        return (
            f"k does not apply to {values['algorithm']} (it finds the number of clusters); "
            "leave it out, or use kmeans/agglomerative"
        )
    return None


def _eps_applies(values: Mapping[str, Any]) -> str | None:
    if values["eps"] is not None and values["algorithm"] != "dbscan":
        return f"eps applies to dbscan only, not {values['algorithm']}"
    return None


def _min_cluster_size_applies(values: Mapping[str, Any]) -> str | None:
    if values["min_cluster_size"] is not None and not _density(values):
        return f"min_cluster_size applies to hdbscan/dbscan, not {values['algorithm']}"
    return None


def _text_weight_applies(values: Mapping[str, Any]) -> str | None:
    weight = values["text_weight"]
    if weight is not None and weight > 0 and values["algorithm"] != "kmeans":
        return f"text_weight applies to kmeans only, not {values['algorithm']}"
    return None


def _cluster_dims_applies(values: Mapping[str, Any]) -> str | None:
    dims = values.get("cluster_dims")
    if dims is not None and dims > 0 and values["algorithm"] not in ("hdbscan", "dbscan"):
        return f"cluster_dims applies to hdbscan and dbscan only, not {values['algorithm']}"
    return None


ANALYZE = Table(
    (
        PER_CLASS,
        SEED,
        LIMIT,
        Option(
            "algorithm", str, "kmeans", "Clustering algorithm (on the full vectors).",
            choices=ALGORITHMS, flags=("--algo",), dest="algo",
        ),
        Option(
            "k", int, None,
            "Clusters for kmeans/agglomerative, or 'auto' (best silhouette)  [default: 4]",
            minimum=1, maximum=MAX_CLUSTERS, also=("auto",), show_default=False,
            message=_K, type_message=_K,
            cli=False,  # the CLI's --k says it its own way (cli._k_value)
        ),
        REDUCE,
        Option("min_cluster_size", int, None, "hdbscan/dbscan.", minimum=2, show_default=False),
        Option(
            "eps", float, None,
            "dbscan radius (a distance on the UMAP reduction; cosine with --cluster-dims 0)  "
            "[default: 0.5]",
            minimum=0, maximum=2, above_minimum=True, show_default=False,
            message="eps must be more than 0 and at most 2, not {value}",
        ),
        Option(
            "text_weight", float, None,
            "kmeans on the vectors + the documents' words (TF-IDF, LSA) at this weight; "
            "0 = vectors alone  [default: 1 for the local model, else 0]",
            minimum=0, maximum=MAX_TEXT_WEIGHT, show_default=False,
            message="text_weight must be between 0 (vectors alone) and {maximum}, not {value}",
        ),
        Option(
            "cluster_dims", int, None,
            "hdbscan/dbscan on a UMAP reduction (cosine) to this many dims (dbscan's eps is "
            "then a distance there); 0 = the full vectors  "
            f"[default: {DEFAULT_CLUSTER_DIMS}]",
            minimum=0, maximum=MAX_CLUSTER_DIMS, show_default=False,
            message="cluster_dims must be 0 (the full vectors) to {maximum}, not {value}",
        ),
        Option(
            "fresh", bool, False,
            "Fit from scratch. By default a selection analysed before with the same "
            "options, whose documents changed since, is fitted starting from the newest "
            "such analysis: points stay where they were, cluster numbers are kept.",
        ),
    ),
    checks=(
        _k_applies, _eps_applies, _min_cluster_size_applies, _text_weight_applies,
        _cluster_dims_applies,
    ),
)  # fmt: skip

# -- compare -------------------------------------------------------------------------------

_SAME_K = "k must be a number of clusters (1 to {maximum}), the same for both spaces, not {value!r}"

COMPARE = Table(
    (
        replace(PER_CLASS, help="Sample N shared documents per label."),
        replace(LIMIT, help="At most N (a seeded sample)."),
        SEED,
        Option(
            "k", int, 4, "Clusters (k-means), the same in both spaces.",
            minimum=1, maximum=MAX_CLUSTERS, required=True,
            message=_SAME_K, type_message=_SAME_K,
        ),
        Option(
            "neighbours", int, NEIGHBOURS,
            "Nearest neighbours per document whose sets are compared (Jaccard).",
            minimum=1, maximum=MAX_NEIGHBOURS, flags=("--neighbours", "--neighbors"),
        ),
        replace(REDUCE, help="2-D map method (both maps; B is aligned onto A)."),
    )
)  # fmt: skip


# -- neighbours, documents ----------------------------------------------------------------

NEIGHBOURS_OPTIONS = Table(
    (Option("k", int, 10, "How many.", minimum=1, maximum=MAX_CLUSTERS, flags=("-k",)),)
)


# One page of a listing (GET /api/v1/documents, Lab.document_page).
DOCUMENT_PAGE = Table(
    (
        Option("offset", int, 0, "Skip the first N matching documents (id order).", minimum=0),
        Option("limit", int, 100, "At most N documents on the page.", minimum=1, maximum=10000),
    )
)


def positive(**values: Any) -> None:
    """Each of `values` a whole number, 1 or more, or None: the rule of every count."""
    for name, value in values.items():
        problem = Option(name, int, minimum=1).problem(value)
        if problem is not None:
            raise InvalidRequest(problem)


# -- ingest --------------------------------------------------------------------------------

INGEST = Table(
    (
        Option(
            "provider", str, "auto",
            "auto = gemini when GEMINI_API_KEY or GOOGLE_API_KEY is set, else local.",
            choices=("auto", "gemini", "local"),
        ),
        Option("model", str, None, "Embedding model (gemini: gemini-embedding-001).", http=False),
        Option(
            "task_type", str, "CLUSTERING", "Gemini task type (the local model has none).",
            http=False,
        ),
        Option("dims", int, None, "Output dimensions (Gemini).", minimum=1, maximum=65536),
        Option("batch_size", int, None, "Texts per request.", minimum=1, maximum=10000),
        Option("concurrency", int, None, "Requests in flight.", minimum=1, maximum=64),
        Option(
            "max_attempts", int, 6,
            "Tries per request (429, 5xx, timeouts and garbled replies are retried).",
            minimum=1, http=False,
        ),
        Option(
            "timeout", float, 60.0, "Seconds per request.", minimum=0, above_minimum=True,
            message="timeout must be more than 0 seconds, not {value}", http=False,
        ),
        Option("dry_run", bool, False, "Count what would be embedded; embed nothing."),
        Option(
            "prune", bool, False,
            "Remove stored documents of this source that the input no longer has.",
        ),
        Option(
            "replace", bool, False,
            "Replace documents with the same ids that another source wrote (refused without it).",
        ),
        Option(
            "batch", bool, False,
            "Submit to Gemini's Batch API at half price and return; `embedlab batches` "
            "collects (--batch-size: texts per batch job).",
        ),
    )
)  # fmt: skip


# -- building the front ends' declarations -------------------------------------------------


def click_type(option: Option) -> Any:
    """A click parameter type that refuses a bad value with the option's message."""
    import click

    class Checked(click.ParamType):
        name = (
            "choice"
            if option.choices
            else "integer"
            if option.type is int
            else option.type.__name__
        )

        def get_metavar(self, param: Any, ctx: Any = None) -> str | None:
            return f"[{'|'.join(option.choices)}]" if option.choices else None

        def convert(self, value: Any, param: Any, ctx: Any) -> Any:
            if isinstance(value, str) and option.type in (int, float):
                try:
                    value = option.type(value)
                except ValueError:
                    kind = _WHOLE if option.type is int else _NUMBER
                    self.fail(option.say(value, kind, "type_message"), param, ctx)
            problem = option.problem(value)
            if problem is not None:
                self.fail(problem, param, ctx)
            return value

        def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> list[Any]:
            from click.shell_completion import CompletionItem

            names = option.choices or ()
            return [CompletionItem(c) for c in names if c.startswith(incomplete)]

    return Checked()


def click_options(table: Table, names: Iterable[str] | None = None) -> Callable:
    """A decorator adding `table`'s options (or those `names`, in that order) to a click
    command, each with the option's flags, default, help and checks."""
    import click

    chosen = [table[n] for n in names] if names is not None else [o for o in table if o.cli]

    def decorate(func: Callable) -> Callable:
        for option in reversed(chosen):
            if option.type is bool:  # a flag: given or not
                func = click.option(
                    *option.cli_flags, option.dest or option.name, is_flag=True,
                    default=bool(option.default), help=option.help,
                )(func)  # fmt: skip
                continue
            plain = option.type is str and option.choices is None and option.check is None
            func = click.option(
                *option.cli_flags,
                option.dest or option.name,
                type=None if plain else click_type(option),
                default=option.default,
                show_default=option.show_default and option.default is not None,
                help=option.help + _limits(option),
            )(func)
        return func

    return decorate


def _limits(option: Option) -> str:
    """The option's range as click writes one ("  [x>=1]", "  [1<=x<=64]")."""
    low = None if option.minimum is None else _num(option.minimum)
    high = None if option.maximum is None else _num(option.maximum)
    if low is None and high is None:
        return ""
    if low is not None and high is not None:
        return f"  [{low}{'<' if option.above_minimum else '<='}x<={high}]"
    if low is not None:
        return f"  [x{'>' if option.above_minimum else '>='}{low}]"
    return f"  [x<={high}]"


def pydantic_field(option: Option) -> tuple[Any, Any]:
    """(annotation, FieldInfo) for a request body: the option's default, its limits in
    the schema, and its checks (so a bad value is a 422 with the option's message)."""
    from typing import Annotated, Literal

    from pydantic import AfterValidator, Field
    from pydantic_core import PydanticCustomError

    def check(value: Any) -> Any:
        problem = option.problem(value)
        if problem is not None:  # the message as it is (no "Value error, " before it)
            raise PydanticCustomError("embedlab_option", problem)
        return value

    base: Any = option.type
    schema: dict[str, Any] = {}
    if option.type is bool:  # strictly: pydantic would read "yes" or 1 as true
        base, schema["type"] = Any, "boolean"
    if option.also:
        base = base | Literal[option.also]
    if option.default is None:
        base = base | None
    if option.choices is not None:
        schema["enum"] = list(option.choices)
    if option.minimum is not None:
        schema["exclusiveMinimum" if option.above_minimum else "minimum"] = option.minimum
    if option.maximum is not None:
        schema["maximum"] = option.maximum
    info = Field(option.default, description=option.help or None, json_schema_extra=schema)
    return Annotated[base, AfterValidator(check)], info


def request_model(name: str, table: Table, base: Any, names: Iterable[str] | None = None) -> Any:
    """A pydantic request body: `base`'s fields, then the table's options."""
    from pydantic import create_model

    chosen = [table[n] for n in names] if names is not None else [o for o in table if o.http]
    fields = {o.name: pydantic_field(o) for o in chosen}
    model: Any = create_model(name, __base__=base, **fields)  # type: ignore[call-overload]
    model.__module__ = base.__module__
    return model
