"""The browser map's routes: the page itself, its two static files, and what it reads of
an analysis besides the JSON API (a small head, ids, text search, a whole map.html).

The page and its files need no token (they hold no data); every /api route does, and
the page sends the token it was given in its URL fragment (`/#token=...`).
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..analyze.html import FILE_CSP, SERVER_CSP, page, render_map_html
from ..analyze.mapdata import map_head, map_points
from ..errors import NotFound
from ..lab import Lab
from ..store.cache import BoundedCache
from ..web import ASSETS, asset
from .problems import jsonable

API = "/api/v1"
MEDIA = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
FIND_LIMIT = 5000
SNIPPETS = 200  # the first matches carry a line of their text, for the results list


class MapData:
    """Each analysis' map head and binary points, computed once: a page asks for both at
    the same moment, and a 100,000-point analysis takes a few hundred ms to encode."""

    def __init__(self, lab: Lab, keep: int = 4):
        self.lab = lab
        self.keep = keep
        self._held: BoundedCache[str, tuple[dict, bytes]] = BoundedCache(keep)
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, analysis_id: str) -> tuple[dict, bytes]:
        found = self._held.get(analysis_id)
        if found is not None:
            return found
        with self._lock:
            lock = self._locks.setdefault(analysis_id, threading.Lock())
        generation = self._held.generation
        try:
            with lock:  # one computation per analysis, however many ask at once
                found = self._held.get(analysis_id)
                if found is None:
                    analysis = self.lab.analysis(analysis_id)
                    found = (map_head(analysis), map_points(analysis))
                    # not kept when forgotten meanwhile
                    self._held.put(analysis_id, found, generation=generation)
        finally:
            with self._lock:
                self._locks.pop(analysis_id, None)
        return found

    def forget(self, analysis_id: str | None = None) -> None:
        """Drop one analysis' map (deleted), or every map (documents were deleted: the
        heads' notes must say so)."""
        if analysis_id is None:
            self._held.clear()
        else:
            self._held.pop(analysis_id)


def add_map_routes(app: FastAPI, lab: Lab, read_only: bool = False) -> None:
    """The pages and the map's routes on `app`; `app.state.maps` keeps encoded maps."""
    maps = app.state.maps = MapData(lab)
    # frame-ancestors works only as a header (a <meta> CSP ignores it): no clickjacking
    policy = f"{SERVER_CSP}; frame-ancestors 'none'"
    headers = {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff"}
    index = page(
        SERVER_CSP,
        '<link rel="stylesheet" href="/static/app.css">',
        '<script src="/static/app.js"></script>',
    )
    compare = page(
        SERVER_CSP,
        '<link rel="stylesheet" href="/static/app.css">',
        '<script src="/static/compare.js"></script>',
        template="compare.html",
    )
    files = {name: asset(name) for name in ASSETS}

    @app.get("/compare", include_in_schema=False)
    def compare_page() -> HTMLResponse:
        """Two spaces' maps of a stored comparison, side by side and linked."""
        return HTMLResponse(compare, headers={**headers, "Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def map_page() -> HTMLResponse:
        return HTMLResponse(index, headers={**headers, "Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in files:
            raise NotFound(f"no file {name!r}; the page uses {', '.join(ASSETS)}")
        media = MEDIA[name.rsplit(".", 1)[1]]
        return Response(
            files[name], media_type=media, headers={**headers, "Cache-Control": "no-cache"}
        )

    @app.get(f"{API}/analyses/{{analysis_id}}/map")
    def analysis_map(analysis_id: str) -> JSONResponse:
        """What the map draws besides the points: categories, names, bounds, metrics, and
        how `points?format=binary` is laid out."""
        head = dict(maps.get(analysis_id)[0])
        why = lab.query_unavailable(lab.analysis(analysis_id).space)
        if why is None and read_only:
            why = "this service is read-only, so it embeds no new text"
        head["search"] = {"meaning": why is None, "reason": why}
        return JSONResponse(jsonable(head))

    @app.get(f"{API}/analyses/{{analysis_id}}/fields")
    def analysis_fields(analysis_id: str) -> JSONResponse:
        """The documents' metadata fields (source, and any stored column), coded per point
        in the order of the points, for colouring the map by them."""
        return JSONResponse(jsonable(lab.map_fields(analysis_id)))

    @app.get(f"{API}/analyses/{{analysis_id}}/ids")
    def analysis_ids(analysis_id: str) -> JSONResponse:
        """The documents' ids in the order of the points."""
        return JSONResponse({"ids": list(lab.analysis(analysis_id).ids)})

    @app.get(f"{API}/analyses/{{analysis_id}}/find")
    def analysis_find(
        analysis_id: str,
        q: Annotated[str, Query(min_length=1, max_length=1000)],
        limit: Annotated[int, Query(ge=1, le=FIND_LIMIT)] = 1000,
    ) -> JSONResponse:
        """Positions of the points whose id or text contains `q` (no embedding)."""
        from ..store.neighbours import snippet

        found = lab.find(analysis_id, q, limit)
        texts = lab.analysis_texts(analysis_id)
        snippets = [snippet(texts[i]) for i in found[:SNIPPETS]]
        body = {"indices": found, "count": len(found), "limit": limit, "snippets": snippets}
        return JSONResponse(body)

    @app.get(f"{API}/analyses/{{analysis_id}}/map.html")
    def analysis_map_html(analysis_id: str) -> HTMLResponse:
        """The analysis as one self-contained page (what `analyze --html` writes)."""
        analysis = lab.analysis(analysis_id)
        body = render_map_html(analysis, *analysis.map_data())  # what a.save(html=True) reads
        disposition = f'attachment; filename="map-{analysis_id}.html"'
        file_headers = {"Content-Security-Policy": FILE_CSP, "X-Content-Type-Options": "nosniff"}
        return HTMLResponse(body, headers={**file_headers, "Content-Disposition": disposition})
