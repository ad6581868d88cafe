"""The local PACS: Debian's Orthanc with its DICOMweb and Python plugins, on loopback.

``irtmon stack up --with-pacs`` writes ``<state>/orthanc/orthanc.json`` (own storage, own HTTP
and DICOM ports, DICOMweb enabled, irtmon's plugin :mod:`pacs.orthanc_plugin` loaded) and runs
``Orthanc`` with it. The plugin reads the same ``IRTMON_*`` settings as every other part, from
the environment it is started with. The same configuration is written by ``irtmon pacs config``
for the container of ``docker/compose.yaml``.

Who may talk to it:

- DICOM: only the callers of ``IRTMON_ORTHANC_ALLOWED_CALLERS`` (calling AE title and IP
  address, both checked) may store (C-STORE), and only to ``IRTMON_ORTHANC_AET`` (the called
  AE title is checked); find, move and get are refused to everyone.
- HTTP (REST and DICOMweb): HTTP Basic authentication with ``IRTMON_PACS_USERNAME`` and
  ``IRTMON_PACS_PASSWORD``, the only registered user. The configuration file holds that
  password, so it is written readable by its owner only.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sysconfig
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.settings import Settings
from irtmon.stack.process import (
    StackError,
    ensure_ports_free,
    live_pid,
    start_server,
    stop_server,
    tail,
)

ORTHANC = "Orthanc"
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
PLUGINS = ("libOrthancDicomWeb.so", "libOrthancPython.so")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OrthancPaths:
    root: Path

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def config(self) -> Path:
        return self.root / "orthanc.json"

    @property
    def log(self) -> Path:
        return self.root / "orthanc.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "orthanc.pid"


def paths(settings: Settings) -> OrthancPaths:
    return OrthancPaths(settings.state_dir.resolve() / "orthanc")


def plugin_script() -> Path:
    """The Orthanc Python plugin of this checkout or installation."""
    import pacs

    return Path(pacs.__file__).resolve().parent / "orthanc_plugin.py"


def python_paths() -> list[str]:
    """Where the plugin finds irtmon and its dependencies: this interpreter's site-packages
    (Orthanc embeds Debian's system Python, not the virtual environment) and the source tree."""
    found = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.PREFIXES]
    found = [p for p in dict.fromkeys(found) if p.endswith("site-packages")]
    return [*found, str(plugin_script().parents[1])]


def allowed_modalities(settings: Settings) -> dict[str, dict[str, object]]:
    """``DicomModalities`` of the callers that may store: each ``AET@IP`` of
    ``IRTMON_ORTHANC_ALLOWED_CALLERS``, allowed C-STORE (and C-ECHO) and nothing else."""
    modalities: dict[str, dict[str, object]] = {}
    for i, entry in enumerate(settings.orthanc_allowed_callers, start=1):
        aet, _, host = entry.rpartition("@")
        modalities[f"caller-{i}"] = {
            "AET": aet,
            "Host": host,
            "Port": 104,  # Orthanc never calls back (no C-MOVE); a placeholder
            "AllowEcho": True,
            "AllowStore": True,
            "AllowFind": False,
            "AllowFindWorklist": False,
            "AllowGet": False,
            "AllowMove": False,
            "AllowStorageCommitment": False,
        }
    return modalities


def orthanc_config(
    settings: Settings,
    storage: Path,
    plugin_dir: Path = PLUGIN_DIR,
    remote_access: bool = False,
) -> dict[str, object]:
    """Orthanc's configuration for irtmon: ports, AE title and who may store, HTTP
    authentication, DICOMweb, the Python plugin.

    Raises
    ------
    ValueError
        No ``IRTMON_PACS_PASSWORD``: the REST API would be open to anyone who reaches it.
    """
    auth = settings.pacs_auth
    if auth is None:
        raise ValueError(
            "set IRTMON_PACS_PASSWORD (or IRTMON_PACS_PASSWORD_FILE): Orthanc's REST API and "
            "DICOMweb only answer requests authenticated as IRTMON_PACS_USERNAME"
        )
    return {
        "Name": "irtmon-pacs",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": settings.orthanc_http_port,
        "DicomPort": settings.orthanc_dicom_port,
        "DicomAet": settings.orthanc_aet,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowFindWorklist": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": allowed_modalities(settings),
        "DicomModalitiesInDatabase": False,
        "RemoteAccessAllowed": remote_access,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {auth[0]: auth[1]},
        "StableAge": settings.orthanc_stable_age_s,
        "Plugins": [str(plugin_dir / name) for name in PLUGINS],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "PythonScript": str(plugin_script()),
        "PythonVerbose": False,
        "Irtmon": {"PythonPaths": python_paths()},
    }


def write_config(settings: Settings, target: Path, **kwargs: object) -> Path:
    """Write the configuration to ``target`` (JSON, readable by its owner only: it holds the
    REST password) and return it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    storage = kwargs.pop("storage", None) or (target.parent / "storage")
    config = orthanc_config(settings, Path(storage), **kwargs)  # type: ignore[arg-type]
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an older, wider file too
        out.write(json.dumps(config, indent=2))
    return target


def running_pid(settings: Settings) -> int | None:
    return live_pid(paths(settings).pid_file, ORTHANC)


def rest_get(settings: Settings, path: str, timeout: float = 2.0) -> object:
    """GET ``path`` of the PACS's REST API, authenticated (JSON answer)."""
    request = urllib.request.Request(f"{settings.pacs_http}{path}", headers=settings.pacs_headers())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _system(settings: Settings) -> dict | None:
    try:
        answer = rest_get(settings, "/system")
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def plugins_loaded(settings: Settings) -> list[str]:
    """The plugins the Orthanc at ``settings.pacs_http`` runs (empty when it does not answer)."""
    try:
        return list(rest_get(settings, "/plugins"))  # type: ignore[call-overload]
    except (OSError, ValueError, TypeError):
        return []


def ready(settings: Settings) -> bool:
    """True when Orthanc answers with both plugins loaded."""
    loaded = plugins_loaded(settings)
    return "dicom-web" in loaded and "python" in loaded


def start(settings: Settings, timeout: float = 60.0) -> int:
    """Start the loopback Orthanc unless it runs; wait until it answers with its plugins."""
    p = paths(settings)
    pid = running_pid(settings)
    if pid is not None:
        return pid
    if settings.pseudonym_key is None:
        raise StackError(
            "set IRTMON_PSEUDONYM_KEY (a long random secret) before starting the PACS: its "
            "plugin replaces every PatientID by the keyed-hash pseudonym before publishing"
        )
    if settings.pacs_auth is None:
        raise StackError(
            "set IRTMON_PACS_PASSWORD (a long random secret) before starting the PACS: its REST "
            "API and DICOMweb answer only requests authenticated with it"
        )
    binary = shutil.which(ORTHANC) or "/usr/sbin/Orthanc"
    if not Path(binary).exists():
        raise StackError(
            "Orthanc is not installed: apt-get install orthanc orthanc-python orthanc-dicomweb "
            "(scripts/bootstrap.sh does it)"
        )
    missing = [name for name in PLUGINS if not (PLUGIN_DIR / name).exists()]
    if missing:
        raise StackError(
            f"Orthanc plugins missing: {', '.join(missing)}; apt-get install orthanc-python "
            "orthanc-dicomweb"
        )
    ensure_ports_free(
        (settings.orthanc_http_port, settings.orthanc_dicom_port),
        "port {port} is already taken; set IRTMON_ORTHANC_HTTP_PORT and "
        "IRTMON_ORTHANC_DICOM_PORT to free ports",
    )
    p.storage.mkdir(parents=True, exist_ok=True)
    write_config(settings, p.config, storage=p.storage)
    from irtmon.stack.private import settings_env

    env = settings_env(settings)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return start_server(
        [binary, str(p.config)],
        p.log,
        p.pid_file,
        env=env,
        ready=lambda: ready(settings),
        timeout=timeout,
        what="Orthanc with its plugins",
        exited=lambda proc: f"Orthanc exited with {proc.returncode}:\n{tail(p.log)}",
    )


def stop(settings: Settings) -> bool:
    """Stop the local Orthanc if it runs; True if one was stopped."""
    return stop_server(paths(settings).pid_file, ORTHANC, timeout=30)


def version(settings: Settings) -> str | None:
    """The Orthanc version answering at ``settings.pacs_http`` (None when none answers)."""
    system = _system(settings)
    return None if system is None else str(system.get("Version"))


def stack_log(settings: Settings) -> str:
    """The end of the local Orthanc's log (for error messages)."""
    return tail(paths(settings).log, 30) if os.path.exists(paths(settings).log) else "(no log)"
