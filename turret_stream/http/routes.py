"""The route table, and nothing else."""

from aiohttp import web

from turret_stream.http import handlers, read_handlers


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/track", handlers.track)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/openapi.json", handlers.openapi)
    app.router.add_get("/v1/clusters", read_handlers.list_clusters)
    app.router.add_get("/v1/clusters/{cluster_id}", read_handlers.get_cluster)
    app.router.add_get("/v1/clusters/{cluster_id}/events", read_handlers.cluster_events)
    app.router.add_get("/v1/events/{event_id}", read_handlers.get_event)
    app.router.add_get("/v1/search", read_handlers.search)
