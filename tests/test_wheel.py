"""Installable: ``python -m build`` makes an sdist and, from it, a wheel whose one top-level name
is ``craftsync``; installed into a fresh venv (and by pipx) as a user would, it runs
``craftsync run --browser`` with its UI, its local migrations and the demo data, and imports
nothing but what it installed.

The build starts from the project's files as git sees them (tracked or new, not ignored), copied
into a temp dir, so that what git ignores (an egg-info with a stale file list, build/, dist/,
caches, local databases) cannot reach the sdist or the wheel. Dependencies come
from the package index pip is configured with, as for any user. Every command runs with an
empty HOME, no CraftSync variable, no PYTHONPATH, and a working directory outside the project,
so that the top-level folders (``shell/``, ``worker/`` ...) cannot be imported by accident.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from tests.support.e2e import DesktopRun, local_rows, ui_get, user_env, wait_run
from tests.support.process import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT: Final = Path(__file__).resolve().parents[1]
#: The folders the design fixes at the top of the project, and their installed names.
PACKAGES: Final = {"contract": "craftsync.contract", "shell": "craftsync.shell", "worker": "craftsync.worker",
                   "server": "craftsync.server", "web": "craftsync.web"}
#: Seconds a build or an install gets (an install downloads what pip's cache lacks).
INSTALL_TIMEOUT_S: Final = 400


def command(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float = INSTALL_TIMEOUT_S,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; on failure (if ``check``), fail the test with the end of its output."""
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited with {result.returncode}:\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def outsider_env(home: Path, *bin_dirs: Path, **variables: str) -> dict[str, str]:
    """A new user's environment (``user_env``) that knows nothing of the project: no
    PYTHONPATH, no active venv, and a PATH of the given bin dirs and the system's."""
    env = user_env(home, **variables)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join([*map(str, bin_dirs), "/usr/local/bin", "/usr/bin", "/bin"])
    return env


def project_files() -> list[str]:
    """The project's files as git sees them: tracked or new, not ignored (nor deleted)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def shipped_files() -> set[str]:
    """What the wheel must hold: every file of the five folders, under ``craftsync/``."""
    return {f"craftsync/{name}" for name in project_files() if name.split("/", 1)[0] in PACKAGES}


def local_head(venv: Path) -> str:
    """The newest revision of the local store's migrations as installed in ``venv``."""
    (versions,) = venv.glob("lib/python*/site-packages/craftsync/worker/migrations/versions")
    revisions: dict[str, str | None] = {}
    for script in versions.glob("*.py"):
        found = dict(re.findall(r'^(revision|down_revision)\s*=\s*"?([^"\n]*)"?$', script.read_text(), re.MULTILINE))
        revisions[found["revision"]] = None if found.get("down_revision") in (None, "None") else found["down_revision"]
    (head,) = set(revisions) - set(revisions.values())
    return head


# -- fixtures: one build and one venv for the module -----------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` (an sdist, then the wheel from it) on a copy of the project's files."""
    source = tmp_path_factory.mktemp("source")
    for name in project_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    env = outsider_env(tmp_path_factory.mktemp("build-home"))
    command([sys.executable, "-m", "build", "--outdir", str(out), str(source)], env=env, cwd=out)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("craftsync-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh venv with the wheel and its dependencies installed, as a user would."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    env = outsider_env(tmp_path_factory.mktemp("install-home"))
    command([sys.executable, "-m", "venv", str(where)], env=env, cwd=where.parent)
    command([str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], env=env, cwd=where.parent)
    return where


@pytest.fixture
def launch(tmp_path: Path, venv: Path) -> Iterator[DesktopRun]:
    """The installed ``craftsync run --browser`` started on an empty HOME (stopped at teardown)."""
    home = tmp_path / "home"
    home.mkdir()
    run = DesktopRun(home, outsider_env(home, venv / "bin"), log=tmp_path / "run.log",
                     argv=[str(venv / "bin" / "craftsync"), "run", "--browser"])
    try:
        yield run.start()
    finally:
        run.stop()


# -- the build -------------------------------------------------------------------------------


def test_the_wheel_holds_one_namespace_with_the_ui_both_migrations_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if not name.endswith("/")}
        info = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    # One top-level name besides the metadata: no shell, worker or server modules, no tests
    assert {name.split("/", 1)[0] for name in names} == {"craftsync", info}
    # Every file of the five folders, and nothing else
    packaged = {name for name in names if not name.startswith(info)}
    assert sorted(shipped_files() - packaged) == [], "left out of the wheel"
    assert sorted(packaged - shipped_files()) == [], "in the wheel but not in the project"
    # Among them what a run needs that is not Python: the UI and the Alembic templates
    for needed in ("web/index.html", "web/favicon.svg", "web/css/app.css", "web/js/app.js",
                   "worker/migrations/env.py", "worker/migrations/script.py.mako",
                   "server/migrations/env.py", "server/migrations/script.py.mako"):
        assert f"craftsync/{needed}" in names, needed
    for side in ("worker", "server"):
        assert any(n.startswith(f"craftsync/{side}/migrations/versions/") and n.endswith(".py") for n in names), side
    assert "[console_scripts]\ncraftsync = craftsync.shell.cli:main" in entry_points


def test_the_sdist_holds_what_the_wheel_is_built_from_and_no_part_of_the_test_suite(dist: Path) -> None:
    (sdist,) = dist.glob("craftsync-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert sorted({name.removeprefix("craftsync/") for name in shipped_files()} - names) == [], "left out of the sdist"
    assert {"pyproject.toml", "README.md"} <= names
    assert not [name for name in names if name.startswith("tests")]


# -- the installed app -----------------------------------------------------------------------


def test_the_venv_imports_craftsync_from_its_site_packages_and_not_the_project_folders(
    tmp_path: Path, venv: Path,
) -> None:
    python = str(venv / "bin" / "python")
    env = outsider_env(tmp_path, venv / "bin")
    # The installed names resolve to the venv's site-packages
    shown = command([python, "-c", "import importlib, sys\nfor name in sys.argv[1:]:\n"
                     "    print(importlib.import_module(name).__file__)", *PACKAGES.values()],
                    env=env, cwd=tmp_path, timeout=60).stdout.split()
    site = command([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   env=env, cwd=tmp_path, timeout=60).stdout.strip()
    assert len(shown) == len(PACKAGES)
    assert all(Path(path).is_relative_to(Path(site) / "craftsync") for path in shown), shown
    # And the folders' own names are not importable there
    for folder in PACKAGES:
        refused = command([python, "-c", f"import {folder}"], env=env, cwd=tmp_path, timeout=60, check=False)
        assert refused.returncode == 1 and "ModuleNotFoundError" in refused.stderr, (folder, refused.stderr)


def test_the_installed_app_serves_its_ui_migrates_its_store_and_syncs_the_demo_data(
    launch: DesktopRun, venv: Path,
) -> None:
    run = launch
    # Given the installed `craftsync run --browser` on an empty HOME (it printed its UI line)
    # Then the page and its JS modules are served, once the launch URL has set the secret's cookie
    with httpx.Client(base_url=run.base_url, timeout=30, follow_redirects=True) as browser:
        page = browser.get(run.launch_url.removeprefix(run.base_url))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text[:300]
        assert '<script type="module" src="/static/js/app.js">' in page.text
        for module in ("js/app.js", "js/sync-panel.js", "css/app.css"):
            served = browser.get(f"/static/{module}")
            assert served.status_code == 200, (module, served.status_code)
            assert served.content == (ROOT / "web" / module).read_bytes(), module
    # And every process of the run is the venv's interpreter
    pythons = [p.cmdline() for p in run.remember_family() if "python" in Path(p.cmdline()[0]).name]
    assert pythons and all(argv[0].startswith(str(venv)) for argv in pythons), pythons
    # And the local store was made and migrated in the user's data dir
    database = run.home / ".local" / "share" / "craftsync" / "craftsync.db"
    wait_until(lambda: ui_get(run, "/api/status")["state"] == "online", timeout=60, interval=0.3,
               what="the status to say online")
    assert database.is_file()
    tables = {row["name"] for row in local_rows(database, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"craftsync_schema_version", "customers", "quotes", "orders", "sync_metadata"} <= tables, tables
    versions = [row["version_num"] for row in local_rows(database, "SELECT version_num FROM craftsync_schema_version")]
    assert versions == [local_head(venv)], versions
    # When the launch's own sync (on by default) has ended and the user syncs the customers
    wait_until(lambda: local_rows(database, "SELECT 1 FROM sync_runs WHERE entity = 'customers'") and not local_rows(
        database, "SELECT 1 FROM sync_runs WHERE status IN ('queued', 'running')"), timeout=90, interval=0.3,
        what="the sync at launch to end")
    answer = httpx.post(f"{run.base_url}/api/sync", json={"entities": ["customers"]},
                        headers={"X-CraftSync-Token": run.launch_url.split("token=", 1)[1]}, timeout=30)
    assert answer.status_code == 202, answer.text
    # Then the run completes and the demo server's customers are in the local file
    assert wait_run(run, answer.json()["run_id"], timeout=90)["status"] == "completed"
    (count,) = local_rows(database, "SELECT count(*) AS n FROM customers")
    assert count["n"] > 0
    assert "Traceback" not in run.output()
    # And the run stops cleanly when asked
    assert run.stop() == 0, run.output()[-3000:]
    assert run.survivors == []


# -- pipx ------------------------------------------------------------------------------------


def test_pipx_installs_the_wheel_as_an_application_that_answers_status(tmp_path: Path, wheel: Path) -> None:
    pipx = shutil.which("pipx", path=str(Path(sys.executable).parent))
    if pipx is None:
        pytest.fail("pipx is not installed beside this Python: it is in the project's test extra")
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "pipx-bin"
    env = outsider_env(home, bin_dir, PIPX_HOME=str(tmp_path / "pipx-home"), PIPX_BIN_DIR=str(bin_dir),
                       PIPX_MAN_DIR=str(tmp_path / "pipx-man"))
    # When the user installs the wheel with pipx
    command([pipx, "install", str(wheel)], env=env, cwd=home)
    app = bin_dir / "craftsync"
    # Then its `craftsync` is on the user's PATH and answers
    assert app.exists()
    helped = command([str(app), "--help"], env=env, cwd=home, timeout=60)
    assert "run" in helped.stdout and "status" in helped.stdout
    status = command([str(app), "status"], env=env, cwd=home, timeout=60)
    assert "never synced" in status.stdout and status.stderr == "", (status.stdout, status.stderr)
    # And it runs from pipx's own venv, not from the project
    python = str(app.resolve().parent / "python")
    where = command([python, "-c", "import craftsync.shell; print(craftsync.shell.__file__)"],
                    env=env, cwd=home, timeout=60).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "pipx-home"), where
