"""The chart with several Talon.One applications: the routing table from values in a ConfigMap,
each application's key from its own Secret, and what the worker makes of them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.applications import load_table
from tests.deploy.test_chart import VARIANTS
from tests.support.chart import Docs, config_data, container, find, one, pod_spec

pytestmark = pytest.mark.slow

Render = Callable[..., Docs]
RenderResult = Callable[..., subprocess.CompletedProcess[str]]


def _values() -> dict[str, Any]:
    values = VARIANTS["several-applications"][1]
    assert values is not None
    return values


def _table(docs: Docs) -> dict[str, Any]:
    (config_map,) = [
        d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("-applications")
    ]
    table: dict[str, Any] = yaml.safe_load(config_map["data"]["applications.yaml"])
    return table


def test_the_table_and_keys_are_mounted_where_the_settings_say(
    render: Render, tmp_path: Path
) -> None:
    docs = render(_values())
    settings = config_data(docs)
    table_file = settings["BRIDGE_APPLICATIONS_FILE"]
    assert settings["BRIDGE_APPLICATION_HEADER"] == "talon-application"
    assert "BRIDGE_TALON_BASE_URL" not in settings
    table = _table(docs)
    assert [a["name"] for a in table["applications"]] == ["de", "fr"]
    assert table["default"] == "fr"
    deployment = one(docs, "Deployment")
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert table_file == f"{mounts['talon-applications']}/applications.yaml"
    keys = mounts["talon-application-keys"]
    sources = [s["secret"] for s in volumes["talon-application-keys"]["projected"]["sources"]]
    assert [(s["name"], s["items"][0]["key"]) for s in sources] == [
        ("talon-one-de", "api-key"),
        ("talon-one-fr", "key"),
    ]
    files = {f"{keys}/{s['items'][0]['path']}" for s in sources}
    assert {a["api_key_file"] for a in table["applications"]} == files
    # The worker reads the rendered table: its keys, written where the kubelet would put them.
    for app in table["applications"]:
        local = tmp_path / app["api_key_file"].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(f"key-{app['name']}", encoding="utf-8")
        app["api_key_file"] = str(local)
    (tmp_path / "applications.yaml").write_text(yaml.safe_dump(table), encoding="utf-8")
    loaded = load_table(
        str(tmp_path / "applications.yaml"), input_topics=["talon.commands"], allow_http=False
    )
    assert loaded.route("talon.commands", None) == "de"
    assert loaded.route("other", None) == "fr"
    assert loaded.applications[1].api_key.get_secret_value() == "key-fr"


def test_the_table_rolls_the_pods_and_the_replay_job_mounts_it_too(render: Render) -> None:
    docs = render(_values())
    changed = {**_values(), "talon": {**_values()["talon"], "defaultApplication": "de"}}
    before = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    after = one(render(changed), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]
    job = one(docs, "Job", "replay")
    names = {m["name"] for m in container(job)["volumeMounts"]}
    assert {"talon-applications", "talon-application-keys"} <= names


def test_without_applications_nothing_of_them_is_rendered(render: Render) -> None:
    files, values = VARIANTS["inline-secrets-hpa"]
    docs = render(values, files)
    assert "BRIDGE_APPLICATIONS_FILE" not in config_data(docs)
    names = [d["metadata"]["name"] for d in find(docs, "ConfigMap")]
    assert not [n for n in names if n.endswith("-applications")]
    names = {v["name"] for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    assert not names & {"talon-applications", "talon-application-keys"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"baseUrl": "https://acme.talon.one"}, "talon.applications replaces talon.baseUrl"),
        ({"existingSecret": "talon-one"}, "talon.applications replaces talon.baseUrl"),
        ({"defaultApplication": "it"}, 'talon.defaultApplication "it" is not one of'),
        ({"applications_0_name": "fr"}, 'the name "fr" is given twice'),
        ({"applications_0_baseUrl": "http://sim:8080"}, "(de): baseUrl is plain http"),
        ({"applications_0_baseUrl": "https://u:p@x"}, "(de): baseUrl holds credentials"),
        ({"applications_0_name": "DE"}, "/talon/applications/0/name"),
        ({"applications_0_existingSecret": None}, "missing property 'existingSecret'"),
    ],
)
def test_a_bad_table_fails_the_render_naming_the_value(
    render_result: RenderResult, change: dict[str, Any], message: str
) -> None:
    talon = {**_values()["talon"]}
    talon["applications"] = [dict(a) for a in talon["applications"]]
    for key, value in change.items():
        if key.startswith("applications_0_"):
            field = key.removeprefix("applications_0_")
            if value is None:
                talon["applications"][0].pop(field)
            else:
                talon["applications"][0][field] = value
        else:
            talon[key] = value
    result = render_result({"talon": talon})
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
