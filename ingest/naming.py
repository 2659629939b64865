"""Cluster names from a Gemini text model: one `generate_content` call per cluster, paid once.

The analysis describes each cluster by its c-TF-IDF terms and the documents nearest its
centre (`analyze.describe`); this module turns that description into a short name.
It is a provider call, so it lives on the ingest side with the same key hygiene, error
mapping and retry policy as embeddings, and the Lab hands it the clusters: `analyze/`
never reaches a provider.

Names are cached in the store by (the members' content hashes, PROMPT_VERSION, model)
(`store.names`), so the same cluster is never named twice. Without a key the terms stay
the names; when Gemini fails for good the remaining clusters keep their terms too, and a
note says why: the analysis is never lost for a name.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InvalidRequest, ProviderError, RequestRefused, TransientError
from ..store.ledger import generation_entry
from .pipeline import RetryPolicy
from .providers import _http_exceptions, _map_api_error, gemini_api_key

DEFAULT_NAMING_MODEL = "gemini-2.5-flash-lite"
# Bump when the prompt's wording or content changes: cached names then no longer apply.
PROMPT_VERSION = 1
MAX_NAME_CHARS = 60
PROMPT_TERMS = 10
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DECORATION = "\"'`*_#“”‘’«»「」 \t."

PROMPT = """You name clusters of documents that were grouped by their text embeddings.
Give the topic these documents share a short name of two to five words.
Reply with the name only: no quotes, no numbering, no explanation.

Terms: {terms}

Documents nearest the cluster's centre:
{snippets}
"""


class NoName(ProviderError):
    """The model answered without a usable name (an empty or blocked reply)."""


def check_naming(name_clusters: bool, naming_model: str | None) -> str | None:
    """The naming model to use (None: no naming), or InvalidRequest for options that do
    not go together; checked before any work so the service answers 400 at once."""
    if not isinstance(name_clusters, bool):
        raise InvalidRequest(f"name_clusters must be true or false, not {name_clusters!r}")
    if naming_model is not None and not name_clusters:
        raise InvalidRequest("<<naming_model>> applies with <<name_clusters=True>> only")
    if not name_clusters:
        return None
    model = DEFAULT_NAMING_MODEL if naming_model is None else naming_model
    if not isinstance(model, str) or not _MODEL_NAME.fullmatch(model):
        raise InvalidRequest(
            f"naming model {model!r} is not a model name (e.g. {DEFAULT_NAMING_MODEL})"
        )
    return model


def naming_identity(model: str | None) -> str | None:
    """How clusters are named, as part of an analysis' identity: the model and the prompt
    version (None: by their terms)."""
    return None if model is None else f"{model}@prompt-v{PROMPT_VERSION}"


def naming_prompt(cluster: Mapping[str, Any]) -> str:
    """The prompt for one cluster: its terms and its representatives' snippets.

    Labels are left out on purpose: a name must describe the documents, and the cache
    key (the members' texts) would not notice a relabelling.
    """
    terms = ", ".join(cluster.get("terms", [])[:PROMPT_TERMS]) or "(none)"
    snippets = "\n".join(
        f"{n}. {rep['snippet']}" for n, rep in enumerate(cluster.get("representatives", []), 1)
    )
    return PROMPT.format(terms=terms, snippets=snippets or "(none)")


def clean_name(reply: str | None) -> str:
    """The name in a model's reply: its first non-empty line, without quotes, markdown
    or a final full stop, at most MAX_NAME_CHARS; "" when there is none."""
    for line in (reply or "").splitlines():
        line = " ".join(line.split()).strip(_DECORATION)
        line = re.sub(r"^name\s*:", "", line, flags=re.IGNORECASE).strip(_DECORATION)
        if line:
            if len(line) > MAX_NAME_CHARS:
                line = line[: MAX_NAME_CHARS - 1].rstrip() + "…"
            return line
    return ""


class Namer(Protocol):
    model: str

    def generate(self, prompt: str) -> tuple[str, int | None]: ...


class GeminiNamer:
    """A Gemini text model through the google-genai SDK (the same key and base URL as
    embeddings). `generate` returns (reply text, prompt tokens as counted by Gemini)."""

    def __init__(self, model: str = DEFAULT_NAMING_MODEL, timeout_s: float = 60.0):
        key = gemini_api_key()
        if not key:
            raise ProviderError("no Gemini API key: set GEMINI_API_KEY to name clusters")
        from google import genai
        from google.genai import types

        self.model = model
        # The SDK retries nothing by default; we keep it that way and retry above, once.
        self._client = genai.Client(
            api_key=key, http_options=types.HttpOptions(timeout=int(timeout_s * 1000))
        )
        thinking = (
            types.ThinkingConfig(thinking_budget=0)  # a name needs no reasoning tokens
            if model.startswith("gemini-2.5-flash")
            else None
        )
        self._config = types.GenerateContentConfig(temperature=0.0, thinking_config=thinking)

    def generate(self, prompt: str) -> tuple[str, int | None]:
        from google.genai import errors

        timeouts, transports = _http_exceptions()
        try:
            response = self._client.models.generate_content(
                model=self.model, contents=prompt, config=self._config
            )
            text = response.text
        except errors.APIError as exc:
            mapped = _map_api_error(exc, self.model)
            if isinstance(mapped, RequestRefused):  # its message names embedding options
                code = getattr(exc, "code", None)
                raise RequestRefused(
                    f"Gemini refused to name clusters with {self.model!r} ({code}); check "
                    f"<<naming_model>> (default {DEFAULT_NAMING_MODEL})"
                ) from None
            raise mapped from None
        except timeouts:
            raise TransientError("Gemini did not answer in time") from None
        except transports as exc:
            raise TransientError(f"cannot reach Gemini ({type(exc).__name__})") from None
        except ValueError as exc:  # JSON decode or response validation inside the SDK
            raise TransientError(f"Gemini sent a malformed reply ({type(exc).__name__})") from None
        usage = getattr(response, "usage_metadata", None)
        return text or "", getattr(usage, "prompt_token_count", None)


class NameCacheLike(Protocol):
    def get(self, key: str) -> str | None: ...

    def put(self, key: str, name: str, model: str, prompt_version: int) -> None: ...


@dataclass
class NamingReport:
    """What naming did: names requested and reused, requests sent, and why some
    clusters kept their terms."""

    model: str
    clusters: int = 0  # clusters to name (noise is never named)
    requested: int = 0  # names generated in this run
    reused: int = 0  # names found in the store's cache
    kept_terms: int = 0  # clusters that kept their terms as their name
    requests: int = 0  # provider calls, retries included
    retries: int = 0
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt_version": PROMPT_VERSION,
            "clusters": self.clusters,
            "requested": self.requested,
            "reused": self.reused,
            "kept_terms": self.kept_terms,
            "requests": self.requests,
            "retries": self.retries,
            "note": self.note,
        }


def name_clusters(
    clusters: Sequence[dict[str, Any]],
    keys: Mapping[int, str],
    cache: NameCacheLike,
    model: str,
    make_namer: Callable[[], Namer],
    retry: RetryPolicy | None = None,
    on_named: Callable[[int, int], None] | None = None,
    on_spent: Callable[[dict[str, Any]], None] | None = None,
) -> NamingReport:
    """Set "name" and "name_source" of each cluster in `clusters` (in place).

    `keys` maps a cluster number to its cache key (store.names.name_key); a cached name
    costs nothing, even without a key. Each generated name is cached the moment it
    returns, so a crash or a failure later never pays for it again. `on_spent(entry)`
    receives each request's ledger entry as it is made; `on_named(done, total)` reports
    progress. Without a Gemini key, or once Gemini fails for good (a rejected key, an
    unknown model, a fault that outlasts the retries), the clusters left keep their terms
    and `report.note` says why; an empty or blocked reply keeps that cluster's terms.
    """
    retry = retry or RetryPolicy()
    report = NamingReport(model=model)
    named = [c for c in clusters if c["cluster"] != -1]
    report.clusters = len(named)
    missing = []
    for cluster in named:
        found = cache.get(keys[cluster["cluster"]])
        if found is not None:
            cluster["name"], cluster["name_source"] = found, model
            report.reused += 1
        else:
            missing.append(cluster)
    if report.reused and on_spent is not None:
        chars = sum(len(naming_prompt(c)) for c in named if c["name_source"] == model)
        on_spent(generation_entry(model, "name-cache", report.reused, chars))
    if not missing:
        return report
    if gemini_api_key() is None:
        report.kept_terms = len(missing)
        report.note = (
            f"no GEMINI_API_KEY: {_clusters(len(missing))} keep their terms as names "
            "(set the key to name them)"
        )
        return report
    failures: list[str] = []
    rng = random.Random(retry.seed)
    namer: Namer | None = None
    for done, cluster in enumerate(missing):
        if on_named is not None:
            on_named(done, len(missing))
        try:
            namer = namer or make_namer()
            prompt = naming_prompt(cluster)
            name, tokens, retries = _generate(namer, prompt, retry, rng, report)
        except NoName as exc:
            failures.append(f"cluster {cluster['cluster']}: {exc}")
            report.kept_terms += 1
            continue
        except ProviderError as exc:
            left = len(missing) - done
            report.kept_terms += left
            report.note = f"{exc}: {_clusters(left)} keep their terms as names; run again to retry"
            break
        cache.put(keys[cluster["cluster"]], name, model, PROMPT_VERSION)
        cluster["name"], cluster["name_source"] = name, model
        report.requested += 1
        if on_spent is not None:
            on_spent(generation_entry(model, "name", 1, len(prompt), retries, tokens))
    if on_named is not None:
        on_named(len(missing), len(missing))
    if failures and report.note is None:
        report.note = "; ".join(failures) + " (these keep their terms as names)"
    return report


def _generate(
    namer: Namer,
    prompt: str,
    retry: RetryPolicy,
    rng: random.Random,
    report: NamingReport,
) -> tuple[str, int | None, int]:
    """(clean name, prompt tokens, retries): one name with the ingest's retry policy."""
    for attempt in range(retry.attempts):
        report.requests += 1
        report.retries += attempt > 0
        try:
            reply, tokens = namer.generate(prompt)
        except TransientError as exc:
            if attempt + 1 >= retry.attempts:
                raise TransientError(f"{exc}; gave up after {retry.attempts} attempts") from None
            time.sleep(retry.delay(attempt, exc.retry_after, rng))
            continue
        name = clean_name(reply)
        if not name:
            raise NoName("Gemini gave no name (an empty or blocked reply)")
        return name, tokens, attempt
    raise AssertionError("unreachable")


def _clusters(n: int) -> str:
    return "1 cluster" if n == 1 else f"{n} clusters"
