"""The documentation site builds with `mkdocs build --strict`: a link to a page, file or anchor
that does not exist, or a page left out of the navigation, fails it."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_the_site_builds_strictly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").exists()


def test_the_readme_is_for_a_newcomer():
    """What it is, the two commands, a first request, links: the rest is in docs/."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 4000
    assert readme.index("make demo") < readme.index("make test") < readme.index("## A first request")
    assert "INTEGRATION_GUIDE.md" in readme and "docs/" in readme
