"""The deploy/ recipes parse, and their ports, paths and variables are the ones the code
serves and reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import yaml  # type: ignore[import-untyped]

from aiosqsq.cli.command import STOP_MARGIN_S, run
from aiosqsq.observability.http_server import PATHS
from aiosqsq.settings import ENV_PREFIX, QueueSettings

DEPLOY = Path(__file__).parents[2] / "deploy"
VARIABLES = {f"{ENV_PREFIX}{name.upper()}" for name in QueueSettings.model_fields} | {
    param.envvar
    for param in run.params
    if isinstance(param, click.Option) and isinstance(param.envvar, str)
}


def check_environment(env: dict[str, str]) -> None:
    """Every QUEUE_* variable exists, and the HTTP endpoint is reachable from outside."""
    unknown = {name for name in env if name.startswith(ENV_PREFIX)} - VARIABLES
    assert not unknown, f"variables the code does not read: {unknown}"
    assert env["QUEUE_HTTP_HOST"] == "0.0.0.0"
    assert int(env["QUEUE_HTTP_PORT"]) == 9000
    fields = {name.removeprefix(ENV_PREFIX).lower(): value for name, value in env.items()}
    values = {name: value for name, value in fields.items() if name in QueueSettings.model_fields}
    values.setdefault("sqs_queue_url", "orders")  # the image's: given at deploy time
    QueueSettings(**values)  # each value valid


def test_dockerfile_runs_the_worker_as_pid_1_not_as_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1\d-slim$", text, re.MULTILINE)
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    (entrypoint,) = re.findall(r"^ENTRYPOINT (.*)$", text, re.MULTILINE)
    assert json.loads(entrypoint) == ["aiosqsq", "run"]  # exec form: PID 1 gets SIGTERM
    env = dict(re.findall(r"(QUEUE_[A-Z_]+)=(\S+)", text))
    check_environment(env)
    assert re.search(rf"^EXPOSE {env['QUEUE_HTTP_PORT']}$", text, re.MULTILINE)


def deployment() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    return loaded


def test_kubernetes_probes_and_grace_period() -> None:
    spec = deployment()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    check_environment(env)
    (port,) = container["ports"]
    assert port["containerPort"] == int(env["QUEUE_HTTP_PORT"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert {"/livez", "/readyz"} <= set(PATHS)
    # the worker's stop takes up to the shutdown timeout, then a flush of the deletes
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= float(env["QUEUE_SHUTDOWN_TIMEOUT"]) + STOP_MARGIN_S
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == env["QUEUE_HTTP_PORT"]


def test_keda_scales_the_deployment_on_the_queue_in_flight_counted() -> None:
    scaled, _auth = yaml.safe_load_all(
        (DEPLOY / "kubernetes" / "keda-scaledobject.yaml").read_text()
    )
    assert scaled["kind"] == "ScaledObject"
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment()["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"]["scaleOnInFlight"] == "true"
    env = {
        e["name"]: e["value"]
        for e in deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert trigger["metadata"]["queueURL"] == env["QUEUE_SQS_QUEUE_URL"]


def test_ecs_task_health_check_and_stop_timeout() -> None:
    task = json.loads((DEPLOY / "ecs" / "task-definition.json").read_text())
    (container,) = task["containerDefinitions"]
    env = {item["name"]: item["value"] for item in container["environment"]}
    check_environment(env)
    assert container["portMappings"][0]["containerPort"] == int(env["QUEUE_HTTP_PORT"])
    command = " ".join(container["healthCheck"]["command"])
    assert f"http://127.0.0.1:{env['QUEUE_HTTP_PORT']}/livez" in command
    assert container["stopTimeout"] >= float(env["QUEUE_SHUTDOWN_TIMEOUT"]) + STOP_MARGIN_S
