"""The README's Python examples run as copied: extracted from README.md and run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SECTIONS = re.split(r"^## ", README, flags=re.M)


def _blocks(section_title: str) -> list[str]:
    (section,) = [s for s in SECTIONS if s.startswith(section_title)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_the_use_example_runs_and_its_test_passes(tmp_path: Path) -> None:
    (worker,) = _blocks("Use")
    (test,) = _blocks("Testing your handlers")
    (tmp_path / "worker.py").write_text(worker)
    (tmp_path / "test_worker.py").write_text(test)
    (tmp_path / "pyproject.toml").write_text(
        re.search(r"```toml\n(.*?)```", README, flags=re.S)[1]  # type: ignore[index]
    )
    ran = _run(tmp_path, "worker.py")
    assert ran.returncode == 0, ran.stderr
    assert "QUEUE_BACKEND=memory: queues live inside this process only" in ran.stderr
    tested = _run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_worker.py")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


def test_the_building_a_service_examples_run_together(tmp_path: Path) -> None:
    """The section's blocks build one app, in order; it consumes what is sent to it."""
    blocks = _blocks("Building a service")
    assert len(blocks) == 4
    driver = """
import anyio
from aiosqsq.testing import AppTester


async def main() -> None:
    tester = AppTester(app)
    await tester.send({"id": 7})
    await tester.send({"email": "a@example.com"}, "emails")
    await app.send_batch([{"n": 1}, {"n": -1}], "events")
    drained = await tester.drain()
    print("succeeded", len(drained.succeeded), "retried", len(drained.retried))


anyio.run(main)
"""
    (tmp_path / "service.py").write_text("\n".join(blocks) + driver)
    ran = _run(tmp_path, "service.py")
    assert ran.returncode == 0, ran.stderr
    assert "succeeded 3 retried 1" in ran.stdout, ran.stdout + ran.stderr
