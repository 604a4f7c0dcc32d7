"""Profile routing: the partition a producer picks so that one customer's sessions share it.

Talon.One answers 409 to parallel requests on one customer profile. Sessions are the record
key, so two sessions of one profile usually land on different partitions, and two workers can
then send events for that profile at the same time. Routing a command to the partition of
its *profile*, while keeping the session ID as the record key, puts every session of a
customer on one partition, and so in one worker, which keeps their events apart
(docs/producers.md, "Routing by profile").

The rule is Kafka's default partitioner applied to the profile ID instead of the record key:
``toPositive(murmur2(utf8(profileId))) % partitions``, with the session ID in place of the
profile ID for a session without one. A Java producer computes the same with
``Utils.toPositive(Utils.murmur2(bytes)) % partitions``; librdkafka's ``murmur2`` and
``murmur2_random`` partitioners hash a key the same way.

Per-session order holds as long as a session keeps its profile: a session whose profile
changes moves to another partition, and its later commands may then run before, or
alongside, its earlier ones still waiting on the old partition. `ProfileRouter` avoids that
within one producer by keeping each session on the partition of its first command.
"""

from __future__ import annotations

from bridge.commands import Command

__all__ = ["ProfileRouter", "murmur2", "partition", "routing_key"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` (seed 0x9747b28c), as the signed 32-bit int Java returns."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def routing_key(profile_id: str | None, session_id: str) -> str:
    """What the partition is chosen by: the profile, or the session for an anonymous one."""
    return profile_id or session_id


def partition(profile_id: str | None, session_id: str, partitions: int) -> int:
    """The partition of a command of `session_id`, whose customer profile is `profile_id`.

    Args:
        profile_id: The session's customer profile; empty or None for an anonymous session.
        session_id: The session ID, still the record key.
        partitions: How many partitions the input topic has.
    """
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    key = routing_key(profile_id, session_id).encode()
    # Java's Utils.toPositive: clear the sign bit rather than take the absolute value.
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class ProfileRouter:
    """Routes every command of a session to the partition of the session's first command.

    A return names no profile, and a session update may leave it out (Talon.One keeps the
    stored one), yet both must follow their session. So each session is routed by the
    profile its first command names, and keeps that partition for as long as this router
    lives, even if a later command names another profile: moving would lose the session's
    order. A session whose first command names none (and is not marked anonymous with an
    empty profile ID) is routed by its session ID and counted in `unknown`.
    """

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self.unknown = 0

    def partition(self, cmd: Command, partitions: int) -> int:
        """The partition `cmd` goes to under profile routing."""
        key = self._keys.get(cmd.session_id)
        if key is None:
            named = cmd.profile_id
            if named is None:
                self.unknown += 1
            key = self._keys[cmd.session_id] = routing_key(named, cmd.session_id)
        return partition(key, cmd.session_id, partitions)
