"""/openapi.json is a valid OpenAPI 3.1 document that matches the configured limits and
describes every API route the app serves."""

from pathlib import Path

from openapi_spec_validator import validate

from turret_stream.http import create_app
from turret_stream.http.keys import STORE
from turret_stream.http.openapi import API_PREFIXES, openapi_document
from turret_stream.keys import KeyStore
from turret_stream.settings import Settings


def test_document_is_valid_and_reflects_limits():
    doc = openapi_document(Settings(limits={"max_name_chars": 99}))
    validate(doc)
    name = doc["components"]["schemas"]["TrackRequest"]["properties"]["name"]
    assert name["maxLength"] == 99
    errors = doc["paths"]["/track"]["post"]["responses"]
    assert set(errors) == {"200", "400", "401", "408", "413", "429", "503"}


def served_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every API route registered on the app; HEAD is implied by GET,
    and routes outside API_PREFIXES (a browser dashboard, its static files) are pages."""
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "*") or not path.startswith(API_PREFIXES):
            continue
        routes.add((route.method.lower(), path))
    return routes


def test_every_api_route_is_documented(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    keystore = KeyStore(settings.keys_db_path)
    app = create_app(settings, keystore=keystore)  # a real (empty) store under tmp_path
    try:
        served = served_routes(app)
    finally:
        app[STORE].close()
        keystore.close()
    doc = openapi_document(settings)
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served, "no API route found"
    assert served - documented == set(), "served but not in /openapi.json"
    assert documented - served == set(), "in /openapi.json but not served"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            if path.startswith("/v1/"):
                # Every read route names its errors in the documented shape.
                assert {"400", "401"} <= set(op["responses"]), (method, path)
