"""Writing to the streams: `ActionLog(store).record_action(...)` / `.record_retrieval(...)`.

Each record is validated (`miner.schema`), serialised with orjson and XADDed as one field `data`
(DESIGN section 3) to `rl_actions` / `retrieval_events` (names configurable). `maxlen` trims the
stream approximately (`XADD MAXLEN ~ N`), which Redis does cheaply in whole nodes. Bulk writes go
through one pipeline; explicit stream ids (`ids=`) let the demo seeder place entries in the past.
A record whose JSON is larger than the miner accepts (`DEFAULT_MAX_ENTRY_BYTES`, the same constant
`mine` skips `too_large` entries by) is refused with `RecordTooLarge`, and nothing is written.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import orjson

from miner.errors import RecordTooLarge
from miner.extract import DEFAULT_MAX_ENTRY_BYTES
from miner.schema import ActionRecord, RetrievalEvent, to_json_dict, validate_record
from miner.store import Store

PIPELINE_CHUNK = 1000


class ActionLog:
    """Validated XADDs of action records and retrieval events into a `Store`."""

    def __init__(self, store: Store, actions_stream: str = "rl_actions", retrieval_stream: str = "retrieval_events"):
        self.store = store
        self.actions_stream = actions_stream
        self.retrieval_stream = retrieval_stream

    def record_action(self, record: ActionRecord | Mapping[str, Any], *, maxlen: int | None = None, id: str = "*") -> str:
        """Validate and append one action; returns its stream id."""
        return self.record_actions([record], maxlen=maxlen, ids=[id])[0]

    def record_retrieval(self, event: RetrievalEvent | Mapping[str, Any], *, maxlen: int | None = None, id: str = "*") -> str:
        """Validate and append one retrieval event; returns its stream id."""
        return self.record_retrievals([event], maxlen=maxlen, ids=[id])[0]

    def record_actions(self, records: Iterable[ActionRecord | Mapping[str, Any]], *, maxlen: int | None = None,
                       ids: list[str] | None = None) -> list[str]:
        """Validate every record first (nothing is written if one is invalid), then append them all."""
        payloads = [orjson.dumps(to_json_dict(validate_record(ActionRecord, r))) for r in records]
        return self._xadd(self.actions_stream, payloads, maxlen, ids)

    def record_retrievals(self, events: Iterable[RetrievalEvent | Mapping[str, Any]], *, maxlen: int | None = None,
                          ids: list[str] | None = None) -> list[str]:
        payloads = [orjson.dumps(to_json_dict(validate_record(RetrievalEvent, e))) for e in events]
        return self._xadd(self.retrieval_stream, payloads, maxlen, ids)

    def _xadd(self, stream: str, payloads: list[bytes], maxlen: int | None, ids: list[str] | None) -> list[str]:
        if maxlen is not None and maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        ids = ids or ["*"] * len(payloads)
        if len(ids) != len(payloads):
            raise ValueError(f"{len(ids)} ids for {len(payloads)} records")
        for n, payload in enumerate(payloads, 1):
            if len(payload) > DEFAULT_MAX_ENTRY_BYTES:
                which = f"record {n} of {len(payloads)}" if len(payloads) > 1 else "the record"
                raise RecordTooLarge(f"{which} is {len(payload):,} bytes as JSON, over the {DEFAULT_MAX_ENTRY_BYTES:,}-byte "
                                     f"limit of an entry `grpo mine` accepts; shorten it (e.g. its result text); nothing was written")
        out: list[str] = []
        with self.store.errors():
            for lo in range(0, len(payloads), PIPELINE_CHUNK):
                pipe = self.store.client.pipeline(transaction=False)
                for payload, sid in zip(payloads[lo:lo + PIPELINE_CHUNK], ids[lo:lo + PIPELINE_CHUNK]):
                    pipe.xadd(stream, {"data": payload}, id=sid, maxlen=maxlen, approximate=True)
                out.extend(r.decode() if isinstance(r, bytes) else str(r) for r in pipe.execute())
        return out
