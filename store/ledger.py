"""The cost ledger: every provider request, recorded in the store beside the vectors.

Each request (a batch of texts sent to a provider, with its retries) and each ingest's
cache hits become one record in the artifacts collection, so a service, the CLI and a
notebook on the same store add up the same bill. Token counts are *estimated* from
characters (Gemini's documented rule of thumb: about 4 characters per token); prices come
from a table whose defaults are the providers' published list prices, overridable.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import InvalidRequest
from .keys import Space

COST = "cost"
CHARS_PER_TOKEN = 4.0
# USD per 1M input tokens, list prices (ai.google.dev/gemini-api/docs/pricing).
DEFAULT_PRICES: dict[str, float] = {
    "gemini-embedding-001": 0.15,
    "text-embedding-004": 0.0,
    "gemini-2.5-flash-lite": 0.10,  # cluster names (output tokens, a few per name, unpriced)
    "gemini-2.5-flash": 0.30,
}
# The Batch API's price (ai.google.dev/gemini-api/docs/batch-mode): half the online one.
DEFAULT_BATCH_PRICES: dict[str, float] = {"gemini-embedding-001": 0.075}
BATCH_DISCOUNT = 0.5  # a model without a listed batch price, or an overridden online price
BATCH_SUFFIX = ":batch"  # --price MODEL:batch=USD sets the batch price alone
BATCH_KIND = "batch"  # the ledger kind of vectors that came back from a batch job
GENERATE = "generate"  # the task type of a generation model's ledger "space"
LOCAL_PRICE = 0.0  # the offline model costs electricity, not dollars


def estimate_tokens(chars: int) -> int:
    return int(round(chars / CHARS_PER_TOKEN))


def usd(amount: float) -> str:
    """Dollars readable at any size: $12.34, $0.042, $0.000044."""
    if amount == 0 or amount >= 1:
        return f"${amount:,.2f}"
    if amount < 1e-6:
        return f"${amount:.2g}"
    return f"${amount:.6f}".rstrip("0")


def parse_prices(items: list[str] | tuple[str, ...]) -> dict[str, float]:
    """`MODEL=USD_PER_1M_TOKENS` pairs (the CLI's --price) to a price table."""
    prices: dict[str, float] = {}
    for item in items:
        model, sep, value = item.partition("=")
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if not sep or not model.strip() or not price >= 0:
            raise InvalidRequest(
                f"price {item!r}: use MODEL=USD_PER_1M_TOKENS, e.g. gemini-embedding-001=0.15"
            )
        prices[model.strip()] = price
    return prices


@dataclass
class PriceTable:
    """USD per 1M input tokens by model; unknown Gemini models are priced like the default."""

    overrides: Mapping[str, float] | None = None

    def price(self, space: Space | Mapping[str, Any]) -> float:
        provider = space.provider if isinstance(space, Space) else space["provider"]
        model = space.model if isinstance(space, Space) else space["model"]
        if self.overrides and model in self.overrides:
            return float(self.overrides[model])
        if provider != "gemini":
            return LOCAL_PRICE
        return DEFAULT_PRICES.get(model, DEFAULT_PRICES["gemini-embedding-001"])

    def dollars(self, space: Space | Mapping[str, Any], tokens: int) -> float:
        return self.price(space) * tokens / 1e6

    def batch_price(self, space: Space | Mapping[str, Any]) -> float:
        """USD per 1M tokens through the Batch API: `MODEL:batch` when overridden, else
        the listed batch price, else half the (possibly overridden) online price."""
        model = space.model if isinstance(space, Space) else space["model"]
        if self.overrides and f"{model}{BATCH_SUFFIX}" in self.overrides:
            return float(self.overrides[f"{model}{BATCH_SUFFIX}"])
        online = self.price(space)
        if (self.overrides and model in self.overrides) or model not in DEFAULT_BATCH_PRICES:
            return online * BATCH_DISCOUNT
        return DEFAULT_BATCH_PRICES[model]

    def batch_dollars(self, space: Space | Mapping[str, Any], tokens: int) -> float:
        return self.batch_price(space) * tokens / 1e6


def entry(space: Space, kind: str, texts: int, chars: int, retries: int = 0) -> dict[str, Any]:
    """One ledger record: kind "embed" (an ingest request), "query" or "cache" (hits)."""
    now = datetime.now(timezone.utc)
    return {
        "id": f"{now:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(3)}",
        "created": now.isoformat(timespec="microseconds"),
        "space_collection": space.collection_name,
        "space": space.to_dict(),
        "kind": kind,
        "requests": 0 if kind == "cache" else 1 + retries,
        "retries": retries,
        "texts": texts,
        "chars": chars,
        "tokens": estimate_tokens(chars),
    }


def generation_entry(
    model: str, kind: str, prompts: int, chars: int, retries: int = 0, tokens: int | None = None
) -> dict[str, Any]:
    """One ledger record of text generation: kind "name" (a cluster name requested) or
    "name-cache" (names reused from the store). `tokens` is the provider's own prompt
    token count when it sent one; else it is estimated from characters."""
    record = entry(Space("gemini", model, GENERATE, 0), kind, prompts, chars, retries)
    record["space_collection"] = f"{GENERATE}-{model}"
    record["requests"] = 0 if kind == "name-cache" else 1 + retries
    if tokens is not None:
        record["tokens"] = int(tokens)
    return record


def summarise(entries: list[dict[str, Any]], prices: PriceTable) -> list[dict[str, Any]]:
    """Per space: requests, texts embedded, estimated tokens and dollars, and savings."""
    rows: dict[str, dict[str, Any]] = {}
    for e in entries:
        row = rows.setdefault(
            e["space_collection"],
            {
                "space": _describe(e["space"]),
                "provider": e["space"]["provider"],
                "model": e["space"]["model"],
                "dims": e["space"]["dims"],
                "requests": 0,
                "retries": 0,
                "texts_embedded": 0,
                "queries_embedded": 0,
                "names_generated": 0,
                "names_reused": 0,
                "estimated_tokens": 0,
                "estimated_usd": 0.0,
                "cache_hits": 0,
                "estimated_tokens_saved": 0,
                "estimated_usd_saved": 0.0,
                "usd_per_1m_tokens": prices.price(e["space"]),
                "texts_batched": 0,
                "batch_estimated_tokens": 0,
                "batch_usd_per_1m_tokens": prices.batch_price(e["space"]),
            },
        )
        if e["kind"] == "cache":
            row["cache_hits"] += e["texts"]
            row["estimated_tokens_saved"] += e["tokens"]
        elif e["kind"] == "name-cache":
            row["names_reused"] += e["texts"]
            row["estimated_tokens_saved"] += e["tokens"]
        elif e["kind"] == BATCH_KIND:  # one batch job's vectors, at the batch price
            row["requests"] += e["requests"]
            row["texts_batched"] += e["texts"]
            row["batch_estimated_tokens"] += e["tokens"]
            row["estimated_tokens"] += e["tokens"]
        elif e["kind"] == "name":
            row["requests"] += e["requests"]
            row["retries"] += e["retries"]
            row["names_generated"] += e["texts"]
            row["estimated_tokens"] += e["tokens"]
        else:
            row["requests"] += e["requests"]
            row["retries"] += e["retries"]
            row["texts_embedded" if e["kind"] == "embed" else "queries_embedded"] += e["texts"]
            row["estimated_tokens"] += e["tokens"]
    for row in rows.values():
        price = row["usd_per_1m_tokens"]
        online = row["estimated_tokens"] - row["batch_estimated_tokens"]
        batch = row["batch_usd_per_1m_tokens"] * row["batch_estimated_tokens"]
        row["estimated_usd"] = round((price * online + batch) / 1e6, 6)
        row["estimated_usd_saved"] = round(price * row["estimated_tokens_saved"] / 1e6, 6)
    return sorted(rows.values(), key=lambda r: r["space"])


def _describe(space: Mapping[str, Any]) -> str:
    if space["task_type"] == GENERATE:
        return f"{space['provider']}:{space['model']} (cluster names)"
    return Space.from_dict(space).describe()
