"""The naive baseline: poll one record, call the API, publish, commit, repeat.

This is the consumer most teams write first. It is correct (strictly ordered, never commits
past unfinished work) but handles one record at a time per process. Run as
``python -m benchmarks.naive`` with the same BRIDGE_* settings as the worker; it stops after
``--seconds`` and prints how many records it finished.
"""

from __future__ import annotations

import argparse
import json
import time

import httpx
from confluent_kafka import Consumer, Producer

from bridge.avro.codec import Codec
from bridge.commands import EffectsEmitted, ReturnCartItems, TrackEvent, UpdateCustomerSession
from bridge.environment import load
from bridge.settings import Settings
from bridge.talon.client import idempotency_key_for
from bridge.worker.handlers import event_request, return_request, session_request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    s = load(Settings)
    codec = Codec.from_settings(s)
    consumer = Consumer(
        {
            **s.librdkafka_common(),
            "group.id": s.group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({**s.librdkafka_common(), "enable.idempotence": True, "acks": "all"})
    http = httpx.Client(
        base_url=s.talon_base_url,
        headers={
            "Authorization": f"ApiKey-v1 {s.talon_api_key.get_secret_value()}",
            "Content-Type": "application/json",
        },
        timeout=s.talon_read_timeout,
    )
    consumer.subscribe(s.input_topics)
    done = 0
    started: float | None = None
    while started is None or time.monotonic() - started < args.seconds:
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            continue
        if started is None:
            started = time.monotonic()
        cmd = codec.decode_command(msg.value())
        p = cmd.payload
        headers = {
            "Idempotency-Key": idempotency_key_for(cmd.event_id),
            "X-Talon-Bridge-Event-Id": cmd.event_id,
        }
        if isinstance(p, UpdateCustomerSession):
            r = http.put(
                f"/v2/customer_sessions/{cmd.session_id}",
                content=session_request(p).to_json(),
                headers=headers,
            )
        elif isinstance(p, TrackEvent):
            r = http.post(
                "/v2/events?silent=no", content=event_request(p).to_json(), headers=headers
            )
        elif isinstance(p, ReturnCartItems):
            r = http.post(
                f"/v2/customer_sessions/{cmd.session_id}/returns",
                content=return_request(p).to_json(),
                headers=headers,
            )
        body = r.json() if r.status_code == 200 else {}
        out = EffectsEmitted(
            event_id=cmd.event_id,
            session_id=cmd.session_id,
            profile_id=cmd.profile_id,
            command_type=cmd.command_type,
            source_topic=msg.topic() or "",
            source_partition=msg.partition() or 0,
            source_offset=msg.offset() or 0,
            processed_at_ms=int(time.time() * 1000),
            session_state=(body.get("customerSession") or {}).get("state"),
            effects=[],
        )
        producer.produce(
            s.output_topic, key=msg.key(), value=codec.encode_effects(out, s.output_topic)
        )
        producer.poll(0)
        consumer.commit(message=msg, asynchronous=False)
        done += 1
    producer.flush(30)
    consumer.close()
    elapsed = time.monotonic() - (started or time.monotonic())
    print(json.dumps({"processed": done, "seconds": elapsed}))


if __name__ == "__main__":
    main()
