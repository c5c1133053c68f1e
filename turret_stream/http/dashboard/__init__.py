"""The dashboard: a static single-page app served by the API at ``/``.

Our own files (``static/``: HTML, CSS, vanilla ES modules) are package data. The two
front-end libraries arrive with ``pip install``, as files inside their own wheels, and are
served from where pip put them: plotly.js (``plotly`` ships ``package_data/plotly.min.js``)
for the journeys Sankey, Swagger UI (``swagger-ui-py`` ships ``static/``) for the API
reference. Nothing is fetched from another host at run time, and the Content-Security-Policy
header makes the browser refuse anything that tries.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import importlib.util
import mimetypes
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"

# Only 'self': no script, style, image or connection may reach another host. Plotly and
# Swagger UI set inline styles on elements, hence 'unsafe-inline' for styles only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The app's own files change with the package: revalidate. Vendor files are versioned.
NO_CACHE = {"Cache-Control": "no-cache"}
VENDOR_CACHE = {"Cache-Control": "public, max-age=86400"}


def package_dir(package: str) -> Path:
    """Where an installed package lives, without importing it (plotly's import is slow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the dashboard needs the '{package}' package: pip install -e .")
    return Path(next(iter(spec.submodule_search_locations)))


# URL name under /vendor/ -> (package, path inside it).
VENDOR_FILES = {
    "plotly.min.js": ("plotly", "package_data/plotly.min.js"),
    "swagger-ui-bundle.js": ("swagger_ui", "static/swagger-ui-bundle.js"),
    "swagger-ui.css": ("swagger_ui", "static/swagger-ui.css"),
}


def _file(path: Path, headers: dict[str, str]) -> web.FileResponse:
    return web.FileResponse(path, headers={**SECURITY_HEADERS, **headers})


async def index(request: web.Request) -> web.StreamResponse:
    return _file(STATIC / "index.html", NO_CACHE)


async def asset(request: web.Request) -> web.StreamResponse:
    """The app's own files; the name is matched against what exists, never joined blindly."""
    name = request.match_info["name"]
    path = (STATIC / name).resolve()
    if STATIC.resolve() not in path.parents or not path.is_file():
        raise web.HTTPNotFound()
    return _file(path, NO_CACHE)


@functools.lru_cache(maxsize=len(VENDOR_FILES))
def _gzipped(path: Path) -> bytes:
    # plotly.min.js is 4.8 MB, 1.4 MB gzipped: compressed once per process, kept.
    return gzip.compress(path.read_bytes(), compresslevel=6)


async def vendor(request: web.Request) -> web.StreamResponse:
    entry = VENDOR_FILES.get(request.match_info["name"])
    if entry is None:
        raise web.HTTPNotFound()
    package, inside = entry
    path = package_dir(package) / inside
    if "gzip" not in request.headers.get("Accept-Encoding", ""):
        return _file(path, VENDOR_CACHE)
    body = await asyncio.to_thread(_gzipped, path)
    return web.Response(
        body=body,
        content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        headers={
            **SECURITY_HEADERS,
            **VENDOR_CACHE,
            "Content-Encoding": "gzip",
            "Vary": "Accept-Encoding",
        },
    )


async def docs(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/#/api")


def setup_dashboard(app: web.Application) -> None:
    """Routes of the dashboard (named ``dashboard.*``: they are pages, not API)."""
    for package, inside in VENDOR_FILES.values():  # fail at start, not on first click
        if not (package_dir(package) / inside).is_file():
            raise RuntimeError(f"'{package}' is installed without {inside}: reinstall it")
    app.router.add_get("/", index, name="dashboard.index")
    app.router.add_get("/docs", docs, name="dashboard.docs")
    app.router.add_get("/dashboard/{name:.+}", asset, name="dashboard.asset")
    app.router.add_get("/vendor/{name}", vendor, name="dashboard.vendor")
