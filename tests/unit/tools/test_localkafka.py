"""The local broker's JVM command line."""

from __future__ import annotations

from pathlib import Path

from bridge.tools.localkafka import LocalKafka


def test_quick_jit_by_default_full_jit_on_request(tmp_path: Path) -> None:
    quick = LocalKafka(19_999, data_dir=tmp_path)._java(tmp_path, "kafka.Kafka")
    full = LocalKafka(19_999, data_dir=tmp_path, quick_jit=False)._java(tmp_path, "kafka.Kafka")
    assert "-XX:TieredStopAtLevel=1" in quick
    assert "-XX:TieredStopAtLevel=1" not in full
    assert [a for a in quick if a != "-XX:TieredStopAtLevel=1"] == full


def test_garbage_collector_runs_with_kafkas_own_pause_goal(tmp_path: Path) -> None:
    args = LocalKafka(19_999, data_dir=tmp_path)._java(tmp_path, "kafka.Kafka")
    assert {"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"} <= set(args)
