"""How many native threads an analysis step may use.

scikit-learn's k-means and t-SNE (and openTSNE) run OpenMP loops that synchronise their
threads on every iteration. For a corpus of a few thousand documents an iteration is a
fraction of a millisecond of work, so the threads spend it waiting for one another; on a
machine that is doing anything else at the same time (a service answering lookups, an
ingest, another analysis) the waiting threads spin against the busy ones and a 0.05 s
k-means takes 1.6 s (bench/threads.py measures both). Below `SMALL_WORK` values
(documents x dimensions) a step therefore runs on one thread; above it every core helps.
The results are the same either way (the seeded steps do not depend on the thread count
beyond float rounding, and each analysis records the seed it used).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Step = TypeVar("Step", bound=Callable[..., Any])

SMALL_WORK = 4_000_000  # documents x dims: 600 posts x 3072 dims is 1.8M, 11,314 is 35M

_lock = threading.Lock()
_single = 0  # analyses running on one thread now (the limit is the process's, not a thread's)
_limiter = None


@contextmanager
def threads_for(work: int) -> Iterator[None]:
    """One OpenMP thread while a small analysis (`work`: documents x dims) runs; every
    thread for a large one.

    The limit is process-wide (OpenMP has no per-thread setting), so it is counted: set
    by the first small analysis, lifted when the last one ends, never left behind by two
    overlapping ones (a large analysis overlapping a small one runs on one thread
    meanwhile)."""
    global _single, _limiter
    if work > SMALL_WORK:
        yield
        return
    from threadpoolctl import threadpool_limits

    with _lock:
        _single += 1
        if _single == 1:
            _limiter = threadpool_limits(limits=1, user_api="openmp")
    try:
        yield
    finally:
        with _lock:
            _single -= 1
            if _single == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None


def sized_threads(step: Step) -> Step:
    """Run `step` with the threads its largest Corpus argument warrants (threads_for)."""
    from .select import Corpus

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
        corpora = [a for a in (*args, *kwargs.values()) if isinstance(a, Corpus)]
        with threads_for(max((c.vectors.size for c in corpora), default=0)):
            return step(*args, **kwargs)

    return run  # type: ignore[return-value]
