"""Fixtures of `make test-container`: a private Docker engine with the stand-in base images.

Collected only when named (tests/conftest.py), as `make test-container` does: it needs root, Debian's
docker.io and mmdebstrap, and the compose and buildx plugins, which `make test-container`
installs (scripts/install-container-tools.sh), and it takes minutes.
"""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.container import standins
from tests.container.engine import PrivateEngine

TOOLS = ROOT / ".container-tools"
PHASES: list[tuple[str, float]] = []


@contextmanager
def phase(name: str):
    """Time one phase of the run; the times are printed as it goes and summed up at the end."""
    print(f"\n[container] {name} ...", flush=True)
    started = time.monotonic()
    yield
    PHASES.append((name, time.monotonic() - started))
    print(f"[container] {name}: {PHASES[-1][1]:.1f} s", flush=True)


def pytest_terminal_summary(terminalreporter):
    if PHASES:
        terminalreporter.section("container phases")
        for name, seconds in PHASES:
            terminalreporter.write_line(f"{seconds:7.1f} s  {name}")


class Docker:
    """The docker client against the private engine, run in `cwd` (the project root unless set)."""

    def __init__(self, engine: PrivateEngine, log: Path):
        self.engine = engine
        self.log = log
        self.cwd = ROOT

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        """Run `docker ARGS`; return stdout. Its output goes to the log too; a failure quotes it."""
        result = subprocess.run(["docker", *args], cwd=self.cwd, env=self.engine.env, capture_output=True,
                                text=True, timeout=timeout)
        with self.log.open("a") as log:
            log.write(f"$ docker {' '.join(args)}  -> {result.returncode}\n{result.stdout}{result.stderr}\n")
        if check and result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n" + "\n".join(output[-40:]))
        return result.stdout


@pytest.fixture(scope="module")
def docker():
    """A private dockerd with the stand-in base images; on exit the host is checked to be as before."""
    plugins = TOOLS / "cli-plugins"
    if not (plugins / "docker-compose").exists() or not (plugins / "docker-buildx").exists():
        pytest.fail("the compose and buildx plugins are missing: run `make test-container`, which installs them")
    engine = PrivateEngine()
    with phase("start a private dockerd"):
        engine.start(plugins)
    client = Docker(engine, engine.dir / "docker.log")
    client.log.write_text("")
    try:
        with phase("build the stand-in base images (mmdebstrap, both at once)"):
            standins.build(client, engine.dir)
        yield client
    finally:
        with phase("stop dockerd and restore the host"):
            engine.stop()
