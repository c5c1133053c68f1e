"""/openapi.json is a valid OpenAPI 3.1 document that matches the configured limits."""

from openapi_spec_validator import validate

from turret_stream.http.openapi import openapi_document
from turret_stream.settings import Settings


def test_document_is_valid_and_reflects_limits():
    doc = openapi_document(Settings(limits={"max_name_chars": 99}))
    validate(doc)
    name = doc["components"]["schemas"]["TrackRequest"]["properties"]["name"]
    assert name["maxLength"] == 99
    errors = doc["paths"]["/track"]["post"]["responses"]
    assert set(errors) == {"200", "400", "401", "413", "429", "503"}
