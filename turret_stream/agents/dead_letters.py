"""The dead-letters agent: the one writer of the dead-letter store.

It reads <prefix>.dead_letters (events or texts that failed twice alone in the embed or
cluster agent) and keeps each in the store with its error, where the API
(``GET /v1/dead-letters``) and ``turret-stream dead-letters`` find them.
"""

from __future__ import annotations

import asyncio

import faust

from turret_stream.dead_letters import DeadLetterStore
from turret_stream.progress import ProgressReports
from turret_stream.records import DeadLetter


def register_dead_letters_agent(
    app: faust.App,
    dead: faust.TopicT,
    letters: DeadLetterStore,
    progress: ProgressReports | None = None,
) -> None:
    def keep(batch: list[DeadLetter]) -> None:
        for letter in batch:
            letters.add(letter)

    @app.agent(dead, name="turret.dead_letters")
    async def store_dead_letters(stream: faust.StreamT[DeadLetter]) -> None:
        async for batch in stream.take(64, within=0.05):
            await asyncio.to_thread(keep, list(batch))
            if progress is not None:
                for letter in batch:
                    progress.dead_lettered(letter.event_id, letter.stage)
