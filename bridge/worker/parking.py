"""Session parking: once a session has a dead letter, its later commands follow it there.

Applying a session's later commands while an earlier one is missing would corrupt its state
at Talon.One (a return before its close, an old cart after a new one). So in `park` mode the
worker diverts them, in order, to the dead-letter topic, marked as parked behind the poison
record. The parked set lives in a compacted topic, keyed by session ID (a tombstone releases),
so it survives restarts and follows partitions across rebalances: every worker reads the whole
topic.

A parked session is a *chain*: the poison (position 0) and every record diverted behind it
(1, 2, ...). Each chain record's dead letter carries its position and a token, an HMAC of the
position, its source coordinates and its value under a secret drawn when the session was
parked; the secret lives only in the parking topic. `talon-bridge replay` copies position and
token into the re-sent record. While the session is parked, only the chain's next record runs
(one that already ran may run again: Talon.One's Idempotency-Key makes that a no-op); a chain
record out of turn, or one that fails again, is dead-lettered at its own place; any other
record, live or forged, goes to the end of the chain. The session is released once its last
record is back, or by a tombstone that `replay --discard` writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from bridge.dlq import (
    H_REPLAY_OF,
    H_REPLAY_POSITION,
    H_REPLAY_TOKEN,
    DeadLetter,
    coordinates,
    header,
)
from bridge.errors import OutputTooLargeError
from bridge.kafka.records import InputRecord

__all__ = ["Chains", "ParkedSession", "ParkingLot", "Write", "encode_parked", "precedes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ParkedSession:
    """A parked session's chain. `secret` is None for entries written before chains existed."""

    poison: str  # topic/partition/offset of the record that failed
    since_ms: int
    reason: str
    event_id: str | None = None
    secret: str | None = None  # hex; keys the tokens of the chain's records
    size: int = 1  # records in the chain, the poison included
    next: int = 0  # position of the chain record due back next

    @classmethod
    def new(cls, poison: str, reason: str, event_id: str | None) -> ParkedSession:
        return cls(poison, int(time.time() * 1000), reason, event_id, secrets.token_hex(16))

    def token(self, position: int, source: str, value: bytes | None) -> str:
        """The token of the chain record at `position`, consumed at `source` with `value`."""
        if self.secret is None:
            return ""
        mac = hmac.new(bytes.fromhex(self.secret), digestmod=hashlib.sha256)
        mac.update(f"{position}|{source}|".encode())
        mac.update(value or b"")
        return mac.hexdigest()[:32]

    def position_of(
        self, of: str | None, position: str | None, token: str | None, value: bytes | None
    ) -> int | None:
        """The chain position a re-sent record proves with its replay headers, or None."""
        if self.secret is None or of is None or position is None or token is None:
            return None
        try:
            pos = int(position)
        except ValueError:
            return None
        if not 0 <= pos < self.size:
            return None
        return pos if hmac.compare_digest(token, self.token(pos, of, value)) else None

    def appended(self) -> ParkedSession:
        return dataclasses.replace(self, size=self.size + 1)

    def advanced(self) -> ParkedSession:
        return dataclasses.replace(self, next=self.next + 1)


def encode_parked(p: ParkedSession) -> bytes:
    return orjson.dumps(
        {
            "poison": p.poison,
            "since": p.since_ms,
            "reason": p.reason,
            "eventId": p.event_id,
            "secret": p.secret,
            "size": p.size,
            "next": p.next,
        }
    )


def _decode_parked(value: bytes) -> ParkedSession | None:
    try:
        d = orjson.loads(value)
        secret = d.get("secret")
        return ParkedSession(
            str(d["poison"]),
            int(d["since"]),
            str(d.get("reason", "")),
            d.get("eventId"),
            str(secret) if secret is not None else None,
            int(d.get("size", 1)),
            int(d.get("next", 0)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class ParkingLot:
    """The parked sessions, as this worker knows them. Owned by the event loop.

    The worker's own writes come back through the reader, behind its in-memory state; they
    are counted out so that an echo never rolls a chain back (a stale size would hand out a
    position twice). Records of other writers still apply.
    """

    def __init__(self) -> None:
        self._parked: dict[bytes, ParkedSession] = {}
        self._echoes: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def get(self, session: bytes) -> ParkedSession | None:
        return self._parked.get(session)

    def put(self, session: bytes, parked: ParkedSession) -> None:
        """Set the session's chain; the caller writes it to the parking topic."""
        self._parked[session] = parked
        self._echoes[session] = self._echoes.get(session, 0) + 1

    def withdraw(self, session: bytes) -> None:
        """Undo the `put` of a session parked afresh whose write was refused: no echo comes."""
        self._parked.pop(session, None)
        echoes = self._echoes.get(session, 0) - 1
        if echoes > 0:
            self._echoes[session] = echoes
        else:
            self._echoes.pop(session, None)

    def release(self, session: bytes) -> ParkedSession | None:
        """Release the session; the caller writes the tombstone to the parking topic."""
        self._echoes[session] = self._echoes.get(session, 0) + 1
        return self._parked.pop(session, None)

    def apply(self, session: bytes, value: bytes | None) -> None:
        """Apply one record of the parking topic (a tombstone releases)."""
        echoes = self._echoes.get(session, 0)
        if echoes:
            if echoes == 1:
                del self._echoes[session]
            else:
                self._echoes[session] = echoes - 1
            return
        if value is None:
            self._parked.pop(session, None)
            return
        parked = _decode_parked(value)
        if parked is None:
            log.warning("unreadable parking record ignored")
            return
        self._parked[session] = parked

    def waiting(self) -> int:
        """Chain records not back yet, over all parked sessions."""
        return sum(p.size - p.next for p in self._parked.values())

    def oldest_age(self, now: float | None = None) -> float:
        if not self._parked:
            return 0.0
        oldest = min(p.since_ms for p in self._parked.values())
        return max(0.0, (now or time.time()) - oldest / 1000)


# Writes one parking record (None: a tombstone) for the record being handled; it is
# acknowledged before that record's offset can be committed.
Write = Callable[[bytes, bytes | None], None]


class Chains:
    """Which records of a parked session run, and where the others go in its chain.

    Headers alone prove nothing (any producer can write them): a record runs only with the
    token of its chain position, which only the dead-letter and parking topics hold.
    """

    def __init__(
        self,
        lot: ParkingLot,
        log: logging.Logger,
        on_proof_rejected: Callable[[], None] = lambda: None,
    ) -> None:
        self.lot = lot
        self._log = log
        self._on_proof_rejected = on_proof_rejected

    def admit(
        self,
        rec: InputRecord,
        key: bytes,
        parked: ParkedSession,
        write: Write,
        extra: dict[str, Any],
    ) -> DeadLetter | None:
        """None if the record may run (its chain's next record, replayed, one that ran
        already, or one before the poison in its partition); otherwise the dead letter that
        diverts it, its chain already updated."""
        if precedes(rec, parked.poison):
            # Read before the poison (queued ahead of a session over its quota, or read again
            # after a restart): it comes before the chain, not behind it.
            return None
        if parked.secret is None:  # parked by an earlier version: its replayed poison releases
            if header(rec.headers, H_REPLAY_OF) != parked.poison:
                return self.divert(rec, key, parked, write)
            self._unpark(key, write, extra)
            return None
        position = self.position(rec, parked)
        if position is None:
            if header(rec.headers, H_REPLAY_OF) is not None:
                self._on_proof_rejected()
            return self.divert(rec, key, parked, write)
        if position > parked.next:
            return self.divert(rec, key, parked, write, position)  # out of turn: keeps its place
        if position < parked.next:
            return None  # it ran before (a redelivery, an overlapping replay): idempotent
        if parked.next + 1 == parked.size:
            self._unpark(key, write, extra)
            return None
        advanced = parked.advanced()
        self.lot.put(key, advanced)
        write(key, encode_parked(advanced))
        return None

    def divert(
        self,
        rec: InputRecord,
        key: bytes,
        parked: ParkedSession,
        write: Write,
        position: int | None = None,
    ) -> DeadLetter:
        """The dead letter of a parked session's command, at `position` in its chain (a chain
        record out of turn) or else at the chain's end."""
        if position is None:
            position = parked.size
            grown = parked.appended()
            self.lot.put(key, grown)
            write(key, encode_parked(grown))
        here = coordinates(rec.topic, rec.partition, rec.offset)
        return DeadLetter(
            "parked",
            "SessionParked",
            "parked",
            f"session is parked behind {parked.poison}",
            parked_behind=parked.poison,
            chain_position=position,
            chain_token=parked.token(position, here, rec.value),
        )

    def park_behind(
        self,
        rec: InputRecord,
        key: bytes,
        letter: DeadLetter,
        event_id: str | None,
        write: Write,
        extra: dict[str, Any],
    ) -> DeadLetter:
        """Park the session behind this dead letter, unless it already waits for another."""
        here = coordinates(rec.topic, rec.partition, rec.offset)
        parked = self.lot.get(key)
        if parked is not None:
            position = self.position(rec, parked)
            if position is None or position != parked.next - 1:
                return letter
            # A chain record that fails again after coming back keeps its place: the chain
            # waits for it once more, and what follows it stays behind it.
            rewound = replace(parked, next=position)
            self.lot.put(key, rewound)
            write(key, encode_parked(rewound))
            self._log.warning("a parked session's record failed again", extra=extra)
            return replace(
                letter,
                parked_behind=parked.poison,
                chain_position=position,
                chain_token=parked.token(position, here, rec.value),
            )
        fresh = ParkedSession.new(here, letter.reason, event_id)
        self.lot.put(key, fresh)
        try:
            write(key, encode_parked(fresh))
        except OutputTooLargeError:
            # A key too large for the producer cannot be parked: its parking record could
            # never be written, so the dead letter goes without holding the session.
            self.lot.withdraw(key)
            self._log.error("session key too large to park; not parked", extra=extra)
            return letter
        self._log.warning("session parked behind its dead letter", extra=extra)
        return replace(letter, chain_position=0, chain_token=fresh.token(0, here, rec.value))

    @staticmethod
    def position(rec: InputRecord, parked: ParkedSession) -> int | None:
        hs = rec.headers
        return parked.position_of(
            header(hs, H_REPLAY_OF),
            header(hs, H_REPLAY_POSITION),
            header(hs, H_REPLAY_TOKEN),
            rec.value,
        )

    def _unpark(self, key: bytes, write: Write, extra: dict[str, Any]) -> None:
        """The session's last parked record is back from a replay: release the session."""
        self.lot.release(key)
        write(key, None)
        self._log.info("parked session released by a replay", extra=extra)


def precedes(rec: InputRecord, poison: str) -> bool:
    """Whether `rec` comes before `poison` (`topic/partition/offset`) in the same partition."""
    parts = poison.rsplit("/", 2)
    if len(parts) != 3 or parts[0] != rec.topic:
        return False
    try:
        return int(parts[1]) == rec.partition and rec.offset < int(parts[2])
    except ValueError:
        return False
