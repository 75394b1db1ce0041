"""Stand-ins for the base images that no registry here serves: python:3.11-slim and postgres:16.

Both are built from Debian 12's packages with mmdebstrap, from the mirror this machine's apt
uses, and tagged with the real names in the private engine, so the project's Dockerfile and
docker-compose.yml run unchanged:
- python:3.11-slim: Debian's Python 3.11 with venv. It trusts the host's extra CA certificates
  (/usr/local/share/ca-certificates) and pip uses the system bundle: on machines whose outbound
  HTTPS goes through an intercepting proxy, the Dockerfile's `pip install` needs both.
- postgres:16: Debian's PostgreSQL 15 behind an entrypoint that keeps the official image's
  contract (postgres-standin/).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
SUITE = "bookworm"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
PYTHON = "python:3.11-slim"
POSTGRES = "postgres:16"
POSTGRES_ROOTFS = "ml-service-standin/postgres-rootfs"


def _mmdebstrap(packages: list[str], hooks: list[str], target: Path, log: Path) -> subprocess.Popen:
    mirror = [str(HOST_SOURCES)] if HOST_SOURCES.exists() else []  # else mmdebstrap's default mirror
    command = ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}"]
    command += [f"--customize-hook={hook}" for hook in hooks]
    command += [SUITE, str(target), *mirror]
    with log.open("w") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)


def _python_hooks() -> list[str]:
    certificates = sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []
    hooks = [f"copy-in {cert} {HOST_CA_DIR}/" for cert in certificates]
    if certificates:
        hooks.append('chroot "$1" update-ca-certificates >/dev/null 2>&1')
    hooks.append('printf "[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n" > "$1/etc/pip.conf"')
    return hooks


def build(docker, work: Path) -> None:
    """Build both stand-ins into the engine `docker` runs against (the two root file systems at once)."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        python = _mmdebstrap(
            ["python3", "python3-venv", "python-is-python3", "ca-certificates"], _python_hooks(),
            tmp / "python.tar", work / "mmdebstrap-python.log",
        )
        postgres = _mmdebstrap(
            ["postgresql-15"],
            # Debian's package creates a cluster of its own; the entrypoint makes the one it serves.
            ['rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"'],
            tmp / "postgres.tar", work / "mmdebstrap-postgres.log",
        )
        for name, process in (("python", python), ("postgres", postgres)):
            if process.wait() != 0:
                log = (work / f"mmdebstrap-{name}.log").read_text(errors="replace").splitlines()
                raise RuntimeError(f"mmdebstrap of the {name} stand-in failed:\n" + "\n".join(log[-20:]))
        docker("import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', str(tmp / "python.tar"), PYTHON)
        docker("import", str(tmp / "postgres.tar"), POSTGRES_ROOTFS)
    docker("build", "--quiet", "--tag", POSTGRES, str(HERE / "postgres-standin"))
