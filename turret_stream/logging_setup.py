"""Logging of every turret-stream process (`up` and its worker process alike)."""

from __future__ import annotations

import logging
import sys

from turret_stream.settings import Settings


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Faust and aiokafka are chatty at INFO; keep their warnings.
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
