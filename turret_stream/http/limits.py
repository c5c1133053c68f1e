"""Fixed bounds of the read API's parameters, shared by the handlers and /openapi.json."""

# Topics or events per page.
MAX_LIMIT = 500
# Characters of a search query.
MAX_QUERY_CHARS = 2000
# A label a person gives a topic.
MAX_LABEL_CHARS = 80
MAX_DESCRIPTION_CHARS = 500
# Paths returned by /v1/journeys/paths.
MAX_TOP_PATHS = 100
