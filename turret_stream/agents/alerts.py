"""The alert agent: reads topic events, fires the rules they match, sends the webhooks.

It consumes <prefix>.topic_events in the worker's consumer group (each event is judged
once per deployment), and on the leader a timer evaluates the count rules every
``alerts.check_interval_s``. Deliveries go through one ``Deliverer`` per worker: a
bounded queue with its own senders, so a receiver that hangs or fails never slows the
agent, let alone the pipeline.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from turret_stream.alerts.delivery import Deliverer, DeliveryLog
from turret_stream.alerts.evaluate import AlertEvaluator, Firing
from turret_stream.alerts.rules import RuleBook
from turret_stream.queries import Queries
from turret_stream.records import TopicEvent
from turret_stream.settings import AlertSettings
from turret_stream.storage import VectorStore

log = logging.getLogger(__name__)


class Alerts:
    """The worker's evaluator and deliverer (exposed for tests and benchmarks)."""

    def __init__(self, store: VectorStore, settings: AlertSettings) -> None:
        self.deliverer = Deliverer(settings, DeliveryLog(store, settings.log_keep))
        self.evaluator = AlertEvaluator(RuleBook(store), Queries(store))
        self.settings = settings

    def deliver(self, fired: list[Firing]) -> None:
        for rule, kind, event in fired:
            self.deliverer.submit(rule, kind, event)


def register_alerts_agent(
    app: faust.App, topic_events: faust.TopicT, store: VectorStore, settings: AlertSettings
) -> Alerts:
    alerts = Alerts(store, settings)

    @app.agent(topic_events, name="turret.alerts")
    async def alert(stream: faust.StreamT[TopicEvent]) -> None:
        await alerts.deliverer.start()
        async for event in stream:
            try:
                # Reading the rules is a store call: off the event loop.
                await asyncio.to_thread(alerts.evaluator.rules)
                alerts.deliver(alerts.evaluator.on_event(event.asdict()))
            except Exception:  # a bad rule or event never stops the agent
                log.exception("alert rules on topic event %s failed", event.id)

    @app.timer(settings.check_interval_s, on_leader=True, name="turret.alert_counts")
    async def check_counts() -> None:
        await alerts.deliverer.start()
        try:
            alerts.deliver(await asyncio.to_thread(alerts.evaluator.check_counts))
        except Exception:
            log.exception("alert count rules failed")

    @app.task
    async def stop_on_shutdown() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await alerts.deliverer.stop()

    return alerts
