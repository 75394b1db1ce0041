"""The make targets pass what they are given to the commands they run."""

import subprocess

from tests.conftest import ROOT


def dry_run(*args: str) -> str:
    """The commands `make` would run (-n: none is run), with the setup stamp taken as done."""
    done = subprocess.run(["make", "-n", "-o", ".venv/.installed", "-o", ".venv/.installed-demo", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_demo_serves_on_the_port_it_is_given():
    assert ".venv/bin/python -m ml_service demo --port 5000" in dry_run("demo")
    assert ".venv/bin/python -m ml_service demo --port 5050 --yes" in dry_run("demo", "PORT=5050", "DEMO_ARGS=--yes")
