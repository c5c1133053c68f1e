"""The HTTP API: aiohttp app factory, routes, handlers and the OpenAPI document."""

from turret_stream.http.app import create_app

__all__ = ["create_app"]
