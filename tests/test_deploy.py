"""The deployment files keep the promises docs/deployment.md makes (they are run for real by hand: see that page)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ruamel.yaml import YAML

from app.cli.run import startup_lines
from app.config import Settings
from app.rules.loader import load_rules
from tests.factories import write_rules

ROOT = Path(__file__).parent.parent


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load(ROOT / "docker-compose.yml")
    return loaded


def test_env_example_has_no_trailing_comments():
    # `docker run --env-file` keeps everything after `=`, a comment included, and so would a user who uncomments.
    for number, line in enumerate((ROOT / ".env.example").read_text().splitlines(), 1):
        setting = re.fullmatch(r"#?\s*([A-Z_]+)=(.*)", line)
        if setting:
            assert "#" not in setting[2] and setting[2] == setting[2].strip(), f".env.example:{number}: {line}"


def test_api_and_worker_run_one_image_built_once():
    services = compose()["services"]
    assert services["api"]["image"] == services["worker"]["image"] == "systeme-flow"
    assert [name for name, service in services.items() if "build" in service] == ["api"]


def test_the_rules_file_sits_in_a_mounted_folder():
    for name in ("api", "worker"):
        service = compose()["services"][name]
        folder = str(PurePosixPath(service["environment"]["RULES_FILE"]).parent)
        targets = [volume.split(":")[1] for volume in service["volumes"]]
        assert folder in targets, f"{name}: RULES_FILE's folder {folder} is not a mount ({targets})"


def test_each_role_checks_its_own_health():
    services = compose()["services"]
    # The api is healthy when ready (its database answers), a worker when alive: what each page of the docs says.
    for role, check in (("api", "ready"), ("worker", "worker")):
        assert services[role]["healthcheck"]["test"] == ["CMD", "python", "-m", "app.health", check]
        assert "stop_grace_period" in services[role]
    health = DEPLOYMENT.split("- **Health**", 1)[1].split("\n- **", 1)[0]
    assert "`app.health ready`" in health and "`app.health worker`" in health and "PostgreSQL" in health


DEPLOYMENT = (ROOT / "docs" / "deployment.md").read_text()


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), stage by stage."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return [stage for stage in stages if stage and stage[0].startswith("FROM ")]


def test_the_compose_network_is_pinned_and_only_the_proxies_are_believed():
    config = compose()
    [pool] = config["networks"]["default"]["ipam"]["config"]
    subnet, fixed_range = ipaddress.IPv4Network(pool["subnet"]), ipaddress.IPv4Network(pool["ip_range"])
    assert fixed_range.subnet_of(subnet)
    services = config["services"]
    proxies = [services[name]["networks"]["default"]["ipv4_address"] for name in ("caddy", "proxy")]
    for address in map(ipaddress.ip_address, proxies):
        # In the subnet, outside the range compose hands out, and not the gateway (the published port's peer).
        assert address in subnet and address not in fixed_range and address != next(subnet.hosts())
    believed = services["api"]["environment"]["FORWARDED_ALLOW_IPS"]
    assert believed == "${FORWARDED_ALLOW_IPS:-" + ",".join(proxies) + "}"
    assert f"`{','.join(proxies)}`" in DEPLOYMENT and f"`{subnet}`" in DEPLOYMENT
    assert "docker network inspect" not in DEPLOYMENT  # the subnet no longer changes at each `up`


def test_how_many_replicas_and_workers_is_a_setting_a_plain_up_keeps():
    services = compose()["services"]
    assert services["worker"]["scale"] == "${WORKERS:-1}"
    assert services["api"]["scale"] == "${API_REPLICAS:-1}"
    assert "WORKERS=" in DEPLOYMENT and "API_REPLICAS=2" in DEPLOYMENT
    for service in services.values():
        assert "container_name" not in service  # a fixed name cannot be scaled


def test_the_dependency_layer_needs_no_readme_and_the_image_no_source():
    *builders, final = dockerfile_stages()
    assert any("pip wheel" in line for stage in builders for line in stage)
    copies = [line for line in final if line.startswith("COPY ")]
    first_install = next(n for n, line in enumerate(final) if "pip install" in line)
    before = [line for line in final[:first_install] if line.startswith("COPY ")]
    assert before == ["COPY pyproject.toml constraints.txt /tmp/deps/"]
    assert "tomllib" in final[first_install] and "rm -rf /tmp/deps" in final[first_install]
    # The source reaches the image only as the wheel built in the other stage, removed once installed.
    assert not any(re.search(r"\b(app|workers|README\.md)\b", line) for line in copies if "--from=" not in line)
    [wheel] = [line for line in copies if "--from=" in line]
    target = wheel.split()[-1]
    assert any(f"rm -rf {target}" in line for line in final if line.startswith("RUN "))


def test_a_proxy_profile_balances_over_every_api_replica():
    services = compose()["services"]
    proxy = services["proxy"]
    assert proxy["profiles"] == ["replicas"] and services["caddy"]["profiles"] == ["tls"]
    caddyfile = "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro"
    assert caddyfile in proxy["volumes"] and caddyfile in services["caddy"]["volumes"]
    # Every replica that compose's DNS lists, not the first address of the name.
    assert re.search(r"dynamic a api 8000", (ROOT / "deploy" / "Caddyfile").read_text())
    assert proxy["ports"] == ["${PROXY_PORT:-8080}:80"]
    # Several replicas cannot share one fixed host port: the docs give each a free loopback one.
    assert services["api"]["ports"] == ["${API_PORT:-8000}:8000"]
    assert "API_PORT=127.0.0.1:\n" in DEPLOYMENT and "--profile replicas up -d" in DEPLOYMENT


def test_commands_against_the_stack_are_documented():
    assert "docker compose exec api systeme-flow" in DEPLOYMENT


def test_the_banner_shows_the_address_the_host_publishes(tmp_path):
    rules = load_rules(write_rules(tmp_path), {})

    def banner(api_port: str | None = None) -> str:
        return startup_lines(Settings(_env_file=None, api_port=api_port), rules, host="0.0.0.0", port=8000)[0]

    published = banner(api_port="127.0.0.1:8081")
    assert published.startswith("systeme-flow serving http://127.0.0.1:8081 ")
    assert banner(api_port="9000").startswith("systeme-flow serving http://127.0.0.1:9000 ")
    free = banner(api_port="127.0.0.1:")
    assert "free host port" in free and "docker compose port" in free
    plain = banner()
    assert plain == "systeme-flow serving http://127.0.0.1:8000 (on every address)"


def test_the_banner_names_the_simulator_as_such(tmp_path):
    rules = load_rules(write_rules(tmp_path), {})

    def account(**values: Any) -> str:
        lines = startup_lines(Settings(_env_file=None, **values), rules, host="127.0.0.1", port=8000)
        return next(line for line in lines if line.startswith("  account:"))

    simulated = account(systeme_api_key="k", systeme_api_url="http://127.0.0.1:8090")
    assert "the simulator on this machine (http://127.0.0.1:8090): test mode" in simulated
    live = account(systeme_api_key="k")
    assert live == "  account:   direct (SYSTEME_API_KEY), https://api.systeme.io"
