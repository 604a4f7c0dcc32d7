"""Static group membership: `BRIDGE_GROUP_INSTANCE_ID` becomes `group.instance.id`."""

from __future__ import annotations

import pytest

from bridge.cli import main
from bridge.environment import load
from bridge.errors import ConfigError
from bridge.kafka.config import consumer_config
from bridge.settings import KafkaSettings, Settings
from tests.support.environment import clean_environment


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return clean_environment(monkeypatch)


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_the_instance_id_reaches_the_consumer_with_either_protocol(protocol: str) -> None:
    settings = KafkaSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        group_protocol=protocol,  # type: ignore[arg-type]
        group_instance_id="talon-bridge-2",
    )
    assert consumer_config(settings)["group.instance.id"] == "talon-bridge-2"


def test_unset_the_member_is_dynamic(env: pytest.MonkeyPatch) -> None:
    settings = load(Settings)
    assert settings.group_instance_id is None
    assert "group.instance.id" not in consumer_config(settings)


@pytest.mark.parametrize(
    "value", ["", " ", ".", "..", "pod 0", "pod/0", "ünï", "talon-bridge-0\n", "x" * 250]
)
def test_nonsense_is_refused_naming_the_setting(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("BRIDGE_GROUP_INSTANCE_ID", value)
    with pytest.raises(ConfigError) as info:
        load(Settings)
    assert info.value.setting == "BRIDGE_GROUP_INSTANCE_ID"


@pytest.mark.parametrize("value", ["talon-bridge-0", "eu.talon-bridge_7", "x" * 249])
def test_kafkas_own_rule_is_accepted(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("BRIDGE_GROUP_INSTANCE_ID", value)
    assert load(Settings).group_instance_id == value


def test_an_empty_id_exits_2_with_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("BRIDGE_GROUP_INSTANCE_ID", "")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "BRIDGE_GROUP_INSTANCE_ID" in err


def test_the_pass_through_may_not_set_it(env: pytest.MonkeyPatch) -> None:
    # Else every consumer of every command would share one static identity.
    env.setenv("BRIDGE_KAFKA_CONFIG", '{"group.instance.id": "pod-0"}')
    with pytest.raises(ConfigError, match="BRIDGE_GROUP_INSTANCE_ID") as info:
        load(Settings)
    assert info.value.setting == "BRIDGE_KAFKA_CONFIG"
