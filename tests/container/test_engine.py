"""The private engine's own promise: a run that was killed leaves the host to the next run to clean.

Runs after test_compose_stack.py (file order), when that module's engine has stopped.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT
from tests.container.conftest import TOOLS
from tests.container.engine import HostState, PrivateEngine

START_AND_HANG = f"""
import time
from pathlib import Path
from tests.container.engine import PrivateEngine
PrivateEngine().start(Path({str(TOOLS / "cli-plugins")!r}))
print("up", flush=True)
time.sleep(600)
"""


def test_a_killed_run_is_cleaned_up_by_the_next_one():
    before = HostState.capture()
    with subprocess.Popen([sys.executable, "-c", START_AND_HANG], cwd=ROOT, stdout=subprocess.PIPE, text=True) as run:
        try:
            assert run.stdout.readline() == "up\n"
        finally:
            run.kill()  # SIGKILL: no teardown; its dockerd (a session of its own) goes on running
    left = HostState.capture()
    assert "docker0" in left.links and left.rules["ipv4"] and before.differences(left)

    engine = PrivateEngine()
    engine.start(TOOLS / "cli-plugins")  # stops the old engine and restores the host first
    engine.stop()  # raises if the host does not read as it did before the engine started
    assert before.differences(HostState.capture()) == []
