"""The route table, and nothing else."""

from aiohttp import web

from turret_stream.http import handlers


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/track", handlers.track)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/openapi.json", handlers.openapi)
