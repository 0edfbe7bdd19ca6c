"""The Dockerfile and docker-compose.yml call what the tested recipe runs, so they cannot drift.

Docker cannot run here; tests/e2e/test_production.py runs the recipe itself (scripts/run_prod.py
with the nginx template, as `make run-prod` does). These tests read the Docker files and check
that they run exactly that, installed exactly as the Makefile installs it.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse
from pathlib import Path

import yaml
from django.urls import reverse

from scripts import run_prod

REPO = Path(__file__).resolve().parents[2]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            name, _, arguments = line.strip().partition(" ")
            instructions.append((name.upper(), arguments.strip()))
    return instructions


def instruction(name: str) -> list[str]:
    return [arguments for found, arguments in dockerfile() if found == name]


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in instruction("ENV"):
        env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def makefile_recipe(target: str) -> list[str]:
    text = (REPO / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, flags=re.MULTILINE)
    assert match, f"the Makefile has no {target} target"
    return [line.strip() for line in match.group(1).splitlines()]


def expand(command: str) -> list[str]:
    return shlex.split(command.replace("$(BIN)", ".venv/bin"))


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_the_image_runs_the_supervisor_that_make_run_prod_runs():
    (recipe,) = makefile_recipe("run-prod")
    make_command = expand(recipe)
    (cmd,) = instruction("CMD")
    image_command = json.loads(cmd)
    assert (
        make_command[: len(image_command)]
        == image_command
        == [
            ".venv/bin/python",
            "scripts/run_prod.py",
        ]
    )
    # What make passes as options, the image passes as the variables run_prod.py reads instead.
    assert make_command[len(image_command) :] == ["--host", "$(HOST)", "--port", "$(PORT)"]
    assert docker_env()["HOST"] == "0.0.0.0" and docker_env()["PORT"].isdigit()
    assert compose()["services"]["app"]["command"] == image_command


def test_the_image_installs_with_the_makefile_and_the_ci_packages():
    runs = " && ".join(instruction("RUN"))
    assert "make .venv/.installed" in runs, "the image must install as `make` does"
    assert (
        "$(VENV)/.installed" in (REPO / "Makefile").read_text().split("run-prod:")[1].split("\n")[0]
    )
    ci_packages = re.search(r"^packages=\((.*)\)$", (REPO / ".ci/run").read_text(), re.MULTILINE)
    assert ci_packages
    for package in ("nginx", "make"):
        assert package in ci_packages.group(1).split()
        assert re.search(rf"apt-get install [^&]*\b{package}\b", runs), f"{package} not installed"
    assert instruction("COPY") == [". ."]


def test_the_image_keeps_what_the_recipe_needs():
    ignored = [
        line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
    ]
    needed = [run_prod.TEMPLATE, REPO / "scripts" / "run_prod.py", REPO / "manage.py"]
    needed += [REPO / name for name in ("chat", "chatsite", "static", "templates", "Makefile")]
    needed += [REPO / "requirements.lock", REPO / "pyproject.toml"]
    for path in needed:
        assert path.exists(), path
        assert path.relative_to(REPO).parts[0] not in ignored, f"{path} is left out of the image"
    assert run_prod.TEMPLATE == REPO / "deploy" / "nginx.conf.template"


def test_the_health_check_uses_the_apps_probe():
    (healthcheck,) = instruction("HEALTHCHECK")
    port = docker_env()["PORT"]
    assert f"http://127.0.0.1:{port}{reverse('healthz')}" in healthcheck


def test_compose_wires_postgresql_and_redis_into_the_recipe():
    services = compose()["services"]
    assert set(services) == {"db", "redis", "app"}
    app = services["app"]
    environment = app["environment"]
    # The variables the recipe refuses to start without, pointing at the compose services.
    assert urllib.parse.urlsplit(environment["DATABASE_URL"]).hostname == "db"
    assert urllib.parse.urlsplit(environment["DATABASE_URL"]).scheme == "postgres"
    assert urllib.parse.urlsplit(environment["REDIS_URL"]).hostname == "redis"
    assert run_prod.required_settings(environment) is None
    assert services["db"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert set(app["depends_on"]) == {"db", "redis"}
    published = {mapping.split(":")[-1] for mapping in app["ports"]}
    assert published == {docker_env()["PORT"]}
    # SIGTERM drains: compose waits longer than the workers' grace before it kills.
    assert int(app["stop_grace_period"].rstrip("s")) > 10 + 15


def _body_limits(config: str) -> dict[str, str]:
    """Each location's client_max_body_size ("server" for the server's own)."""
    limits: dict[str, str] = {}
    location = "server"
    for line in config.splitlines():
        if opened := re.match(r"\s*location\s+(.+?)\s*\{", line):
            location = opened.group(1)
        elif re.match(r"\s*}\s*$", line):
            location = "server"
        elif sized := re.match(r"\s*client_max_body_size\s+(\S+);", line):
            limits[location] = sized.group(1)
    return limits


def test_only_the_upload_and_the_apis_completions_take_large_bodies(tmp_path):
    env = {"CHAT_MAX_UPLOAD_BYTES": "5000000", "CHAT_API_MAX_BODY_BYTES": "10485760"}
    config = run_prod.nginx_config(
        run_dir=tmp_path, listen="127.0.0.1:8000", worker_ports=[9001], env=env
    )

    assert _body_limits(config) == {
        "server": "3m",
        "= /streaming-demo/attachments": str(5000000 + 1024 * 1024),
        "= /v1/chat/completions": str(10485760 + 1024 * 1024),
    }
    assert reverse("api:chat_completions") == "/v1/chat/completions"
