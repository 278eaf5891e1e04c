"""A throw-away stac-fastapi-pgstac STAC API for tests: full filter, sortby and paging fidelity.

`run_pgstac` builds a private PostgreSQL cluster (Debian's ``/usr/lib/postgresql/*/bin`` with
PostGIS) on a free port, migrates pgstac into it with ``pypgstac``, loads one collection and its
items, serves them with ``uvicorn stac_fastapi.pgstac.app:create_app --factory`` on another free
port, and tears all of it down on exit. Cold start is a few seconds (initdb + migrate dominate), so
share one server per module or session.

Requirements: ``.ci/install-services`` (PostgreSQL 15 + PostGIS 3) and the ``stac-servers`` extra.
`pgstac_available` names whatever is missing; `run_pgstac` raises `PgstacServerError` with that
reason instead of starting, so a missing dependency fails loudly rather than skipping tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

PG_ROOT = Path("/usr/lib/postgresql")
PG_SHARE = Path("/usr/share/postgresql")
PG_USER = "postgres"  # both the OS user (when we run as root) and the database superuser
VENV_BIN = Path(sys.executable).parent
INSTALL_HINT = "run `make services` (.ci/install-services)"
PIP_HINT = "pip install -e '.[stac-servers]'"
START_TIMEOUT = 30.0
COMMAND_TIMEOUT = 300.0
# Durability is pointless for a throw-away cluster and costs seconds per load.
PG_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


# The pypgstac CLI's own steps in one process: one process per step costs ~0.8 s of imports each.
_LOAD_SCRIPT = """
import sys
from pypgstac.load import Methods
from pypgstac.pypgstac import PgstacCLI

dsn, collections, items, *queryables = sys.argv[1:]
cli = PgstacCLI(dsn=dsn)
cli.migrate()
for path in queryables:
    cli.load_queryables(path)
cli.load("collections", collections, Methods.insert)
cli.load("items", items, Methods.insert)
"""


class PgstacServerError(RuntimeError):
    """The pgstac server could not be started: a missing dependency or a failed step."""


def pgstac_available() -> str | None:
    """None when everything `run_pgstac` needs is installed, else why it cannot run."""
    versions = _pg_versions()
    if not versions:
        return f"no PostgreSQL server binaries ({PG_ROOT}/*/bin/initdb); {INSTALL_HINT}"
    if _postgres_bin() is None:
        return f"PostGIS is not installed for PostgreSQL {', '.join(versions)}; {INSTALL_HINT}"
    if _is_root():
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root, but there is no {PG_USER!r} OS user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root, but `runuser` (util-linux) is not on PATH"
    if not (VENV_BIN / "uvicorn").is_file():
        return f"{VENV_BIN / 'uvicorn'} is missing; {PIP_HINT}"
    for module in ("stac_fastapi.pgstac", "pypgstac", "psycopg"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent package is missing
            found = False
        if not found:
            return f"Python module {module} is missing; {PIP_HINT}"
    return None


@contextmanager
def run_pgstac(
    collection: dict[str, Any],
    items: Iterable[dict[str, Any]],
    workdir: Path,
    *,
    queryables: Mapping[str, dict[str, Any]] | None = None,
) -> Iterator[str]:
    """Serve ``collection`` and ``items`` over a STAC API; yields its base URL (no trailing /).

    ``queryables`` maps property names to JSON Schema definitions (``{"type": "number"}``).
    pgstac only registers ``id``, ``geometry`` and ``datetime``; any other property is sorted
    as *text* (``7`` after ``69``) unless declared here, as real deployments do. Filters compare
    numbers as numbers either way.

    ``workdir`` receives the loaded files and ``uvicorn.log``. The cluster itself lives in a
    fresh directory under the system temp dir, because when we run as root PostgreSQL runs as
    the ``postgres`` user, who cannot enter pytest's private temp dirs. On exit, even when the
    body raised, uvicorn and PostgreSQL are stopped and the cluster directory is removed.
    Raises `PgstacServerError` when a dependency is missing or a step fails.
    """
    reason = pgstac_available()
    if reason is not None:
        raise PgstacServerError(f"cannot start the pgstac STAC API: {reason}")
    bin_dir = _postgres_bin()
    assert bin_dir is not None  # pgstac_available checked it
    workdir.mkdir(parents=True, exist_ok=True)
    collection_path = workdir / "collection.json"
    collection_path.write_text(json.dumps(collection))
    items_path = workdir / "items.ndjson"
    with items_path.open("w") as stream:
        for item in items:
            stream.write(json.dumps(item) + "\n")
    files = [collection_path, items_path]
    if queryables:
        files.append(workdir / "queryables.json")
        files[-1].write_text(json.dumps({"type": "object", "properties": dict(queryables)}))

    with ExitStack() as cleanup:
        cluster_dir = Path(tempfile.mkdtemp(prefix="cirrus-feed-pgstac-"))
        cleanup.callback(shutil.rmtree, cluster_dir, ignore_errors=True)
        if _is_root():
            user = pwd.getpwnam(PG_USER)
            os.chown(cluster_dir, user.pw_uid, user.pw_gid)
        pg_port = _start_postgres(bin_dir, cluster_dir, cleanup)
        _load(f"postgresql://{PG_USER}@127.0.0.1:{pg_port}/postgres", files)
        yield _start_api(pg_port, workdir, cleanup)


def _pg_versions() -> list[str]:
    """Installed PostgreSQL major versions with a server, newest first."""
    found = [path.parent.parent.name for path in PG_ROOT.glob("*/bin/initdb")]
    return sorted((v for v in found if v.isdigit()), key=int, reverse=True)


def _postgres_bin() -> Path | None:
    """The bin dir of the newest PostgreSQL that has PostGIS (pgstac needs it)."""
    for version in _pg_versions():
        if (PG_SHARE / version / "extension" / "postgis.control").is_file():
            return PG_ROOT / version / "bin"
    return None


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_postgres(command: Sequence[str | Path]) -> list[str]:
    """``command`` run as the postgres OS user when we are root (PostgreSQL refuses root)."""
    prefix = ["runuser", "-u", PG_USER, "--"] if _is_root() else []
    return [*prefix, *map(str, command)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _run(command: Sequence[str | Path], step: str, cwd: Path, log: Path | None = None) -> None:
    """Run one set-up step; on failure raise with its output (and ``log``'s tail)."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        if log is not None:
            detail += f"\n--- {log.name} ---\n{_tail(log)}"
        raise PgstacServerError(
            f"pgstac server: {step} failed (exit {result.returncode}):\n{detail}"
        )


def _start_postgres(bin_dir: Path, cluster_dir: Path, cleanup: ExitStack) -> int:
    """initdb + pg_ctl start in ``cluster_dir``; returns the TCP port. Stopped by ``cleanup``."""
    data = cluster_dir / "data"
    log = cluster_dir / "postgres.log"
    initdb: list[str | Path] = [
        bin_dir / "initdb",
        "-D",
        data,
        "-U",
        PG_USER,
        "--auth=trust",
        "-E",
        "UTF8",
    ]
    initdb += ["--no-locale", "--no-sync", "--no-instructions"]
    _run(_as_postgres(initdb), "initdb", cwd=cluster_dir)
    port = _free_port()
    options = [f"-p {port}", f"-k {shlex.quote(str(cluster_dir))}", "-c listen_addresses=127.0.0.1"]
    options += [f"-c {setting}" for setting in PG_SETTINGS]
    # Registered before starting, so a server that came up but failed its readiness wait stops.
    cleanup.callback(_stop_postgres, bin_dir, data, cluster_dir)
    start: list[str | Path] = [
        bin_dir / "pg_ctl",
        "-D",
        data,
        "-l",
        log,
        "-w",
        "-t",
        str(int(START_TIMEOUT)),
    ]
    _run(_as_postgres([*start, "-o", " ".join(options), "start"]), "pg_ctl start", cluster_dir, log)
    return port


def _stop_postgres(bin_dir: Path, data: Path, cluster_dir: Path) -> None:
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    stop: list[str | Path] = [bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]
    result = subprocess.run(_as_postgres(stop), cwd=cluster_dir, capture_output=True, check=False)
    if result.returncode == 0:
        return
    # pg_ctl could not stop it: the first line of the pid file is our postmaster's pid.
    with suppress(OSError, ValueError, IndexError):
        os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)


def _load(dsn: str, files: Sequence[Path]) -> None:
    """Migrate, then load ``files``: collections, items, optionally queryables."""
    command: list[str | Path] = [sys.executable, "-c", _LOAD_SCRIPT, dsn, *files]
    _run(command, "pypgstac migrate + load", cwd=files[0].parent)


def _start_api(pg_port: int, workdir: Path, cleanup: ExitStack) -> str:
    """uvicorn serving stac-fastapi-pgstac on a free port; returns its URL once GET / is 200."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_port),
        "PGUSER": PG_USER,
        "PGPASSWORD": "unused-trust-auth",
        "PGDATABASE": "postgres",
    }
    log_path = workdir / "uvicorn.log"
    log = cleanup.enter_context(log_path.open("wb"))
    command = [str(VENV_BIN / "uvicorn"), "stac_fastapi.pgstac.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    # cwd=workdir: the settings would read a stray .env from the current directory.
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    cleanup.callback(_stop_process, process)
    _wait_ready(url, process, log_path)
    return url


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PgstacServerError(
                f"pgstac server: uvicorn exited with {process.returncode}:\n{_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused while starting; HTTPError (5xx) while the pool connects
            pass
        time.sleep(0.05)
    raise PgstacServerError(
        f"pgstac server: {url}/ did not answer 200 within {START_TIMEOUT:.0f} s:\n{_tail(log_path)}"
    )
