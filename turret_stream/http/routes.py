"""The route table, and nothing else."""

from aiohttp import web

from turret_stream.http import (
    alert_handlers,
    handlers,
    journey_handlers,
    live,
    pipeline_handlers,
    read_handlers,
)
from turret_stream.http.dashboard import setup_dashboard


def setup_routes(app: web.Application, *, public: bool = True) -> None:
    """``public=False``: the worker process's read API, behind the ingest process, which
    serves /track and /v1/live (they are kept here for their 405s)."""
    app.router.add_post("/track", handlers.track if public else handlers.served_by_ingest)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/openapi.json", handlers.openapi)
    app.router.add_get("/metrics", pipeline_handlers.metrics)
    app.router.add_get("/v1/dead-letters", pipeline_handlers.dead_letters)
    app.router.add_get("/v1/dimensions", pipeline_handlers.dimensions)
    app.router.add_get("/v1/clusters", read_handlers.list_clusters)
    app.router.add_get("/v1/clusters/{cluster_id}", read_handlers.get_cluster)
    app.router.add_put("/v1/clusters/{cluster_id}/label", read_handlers.set_label)
    app.router.add_get("/v1/clusters/{cluster_id}/events", read_handlers.cluster_events)
    app.router.add_get("/v1/clusters/{cluster_id}/segments", read_handlers.cluster_segments)
    app.router.add_get("/v1/themes", read_handlers.list_themes)
    app.router.add_get("/v1/themes/{theme_id}", read_handlers.get_theme)
    app.router.add_put("/v1/themes/{theme_id}/label", read_handlers.set_theme_label)
    app.router.add_get("/v1/events/{event_id}", read_handlers.get_event)
    app.router.add_get("/v1/search", read_handlers.search)
    app.router.add_get("/v1/live", live.live if public else handlers.served_by_ingest)
    app.router.add_get("/v1/sessions/{session_id}/journey", journey_handlers.session_journey)
    app.router.add_get("/v1/users/{user_id}/sessions", journey_handlers.user_sessions)
    app.router.add_get("/v1/journeys/transitions", journey_handlers.transitions)
    app.router.add_get("/v1/journeys/paths", journey_handlers.paths)
    app.router.add_get("/v1/journeys/entries", journey_handlers.entries)
    app.router.add_get("/v1/journeys/dropoffs", journey_handlers.dropoffs)
    app.router.add_get("/v1/journeys/flows", journey_handlers.flows)
    app.router.add_get("/v1/alerts", alert_handlers.list_rules)
    app.router.add_post("/v1/alerts", alert_handlers.create_rule)
    app.router.add_get("/v1/alerts/deliveries", alert_handlers.deliveries)
    app.router.add_get("/v1/alerts/{rule_id}", alert_handlers.get_rule)
    app.router.add_patch("/v1/alerts/{rule_id}", alert_handlers.update_rule)
    app.router.add_delete("/v1/alerts/{rule_id}", alert_handlers.delete_rule)
    app.router.add_post("/v1/alerts/{rule_id}/test", alert_handlers.send_test)
    app.router.add_get("/v1/alerts/{rule_id}/deliveries", alert_handlers.deliveries)
    setup_dashboard(app)
