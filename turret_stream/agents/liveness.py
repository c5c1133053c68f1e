"""Every worker tells, on a timer, that it is alive (the workers topic, one partition).

An API running apart from the workers reads the newest heartbeat for /readyz
(``http.readiness.heartbeat_probe``): the consumer group's member list is no proof of
life, since a worker killed with -9 stays listed until the broker expires it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import faust

from turret_stream.records import WorkerHeartbeat


def register_heartbeat(app: faust.App, workers: faust.TopicT, interval_s: float) -> str:
    """A timer on every worker (not only the leader) sending a heartbeat; returns its id."""
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    host = socket.gethostname()

    @app.timer(interval_s, name="turret.heartbeat")
    async def heartbeat() -> None:
        beat = WorkerHeartbeat(worker_id=worker_id, host=host, pid=os.getpid(), at=time.time())
        await workers.send(key=worker_id.encode(), value=beat)

    return worker_id
