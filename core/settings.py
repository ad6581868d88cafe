"""One settings object for the whole service, read from ``IRTMON_*`` environment variables.

Each process's entry point creates it once (the ``irtmon`` CLI, the Streamlit app, Orthanc's
plugin) and passes it down; no broker or database address is written anywhere else, and nothing
else reads the environment. Every field's default and meaning is listed by ``irtmon config``.
"""

from __future__ import annotations

import base64
import ipaddress
import ssl
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from pydantic import AwareDatetime, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.limits import ReadLimits

SECRET_FILES: dict[str, str] = {
    "database_password": "database_password_file",
    "pseudonym_key": "pseudonym_key_file",
    "kafka_sasl_password": "kafka_sasl_password_file",
    "pacs_password": "pacs_password_file",
    "alert_webhook_secret": "alert_webhook_secret_file",
    "alert_smtp_password": "alert_smtp_password_file",
}
"""Each secret setting and the setting naming a file that holds it (compose ``secrets:``)."""

KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def mask_url(url: str | None) -> str:
    """``url`` with its password replaced by ``***`` (for anything printed or logged).

    ``postgresql://irtmon:s3cret@db:5432/irtmon`` becomes
    ``postgresql://irtmon:***@db:5432/irtmon``; a ``password=`` query parameter is masked
    too; a URL without a password is returned as it is. ``None`` gives ``""``.
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL, not shown>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if sep else netloc
    query = "&".join(
        f"{k}=***" if k.lower() in ("password", "sslpassword") else f"{k}{sep}{v}"
        for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def _with_password(url: str, password: str) -> str:
    """``url`` with ``password`` put into its user information (percent-encoded)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        raise ValueError(
            "IRTMON_DATABASE_PASSWORD needs a user in IRTMON_DATABASE_URL "
            "(postgresql://USER@host:port/db)"
        )
    user = userinfo.partition(":")[0]
    netloc = f"{user}:{quote(password, safe='')}@{hostport}"
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_origin(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of an http(s) URL, normalised for comparison: lower-case
    scheme and host, the default port filled in, no trailing slash on the path."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, parts.hostname.lower(), port, parts.path.rstrip("/")


def webhook_url_problem(url: str, *, allow_http_loopback: bool) -> str | None:
    """Why ``url`` may not receive alerts (None when it may): ``https://`` is required;
    ``http://`` only to this machine and only with ``allow_http_loopback``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return f"webhook url must be https://host/..., got {url!r}"
    if scheme == "https":
        return None
    if not is_loopback_host(parts.hostname):
        return (
            f"webhook url {url!r} is http://: alerts would travel unencrypted. Use https:// "
            "(http:// is only allowed to this machine, with "
            "IRTMON_ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK=true)"
        )
    if not allow_http_loopback:
        return (
            f"webhook url {url!r} is http:// on this machine: set "
            "IRTMON_ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK=true to allow it, or use https://"
        )
    return None


SMTP_LOGIN_IN_CLEAR = (
    "an SMTP login without TLS would send the password in clear: set "
    "IRTMON_ALERT_SMTP_STARTTLS=true (the server's certificate is verified), or leave "
    "IRTMON_ALERT_SMTP_USERNAME unset"
)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """irtmon configuration. Each field ``name`` is set by ``IRTMON_NAME``."""

    model_config = SettingsConfigDict(env_prefix="IRTMON_", extra="ignore")

    state_dir: Path = Field(
        default=Path(".irtmon"),
        description="Folder for the local stack's data, logs and pid files (git-ignored).",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Folder for downloaded artefacts such as the Kafka jars "
        "(default: <state_dir>/cache). Share it between state folders to download once.",
    )

    # Kafka
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Existing Kafka cluster (host:port,...). Unset: the local stack's broker.",
    )
    kafka_version: str = Field(default="3.9.2", description="Kafka broker version the stack runs.")
    kafka_port: int = Field(default=19092, description="Local broker's client port (loopback).")
    kafka_controller_port: int = Field(default=19093, description="Local KRaft controller port.")
    kafka_heap: str = Field(default="512m", description="Local broker's JVM heap (-Xmx).")
    kafka_security_protocol: str = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. SSL and SASL_SSL verify the "
        "broker's certificate (IRTMON_KAFKA_SSL_CAFILE, else the system trust store); SASL_* "
        "need a mechanism, a user name and a password.",
        pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$",
    )
    kafka_sasl_mechanism: str | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)."
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="This service's Kafka principal (with SASL_*)."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="Its password (or IRTMON_KAFKA_SASL_PASSWORD_FILE)."
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None, description="File holding IRTMON_KAFKA_SASL_PASSWORD (compose secrets)."
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="CA bundle (PEM) that signed the broker's certificate, for SSL and "
        "SASL_SSL (default: the system trust store).",
    )

    # PostgreSQL / TimescaleDB
    database_url: str | None = Field(
        default=None,
        description="Existing PostgreSQL/TimescaleDB (postgresql://user@host:port/db; the "
        "password best in IRTMON_DATABASE_PASSWORD_FILE). Unset: the local stack's server. "
        "Shown and logged with its password masked.",
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="Password of IRTMON_DATABASE_URL's user, put into the URL when connecting "
        "(or IRTMON_DATABASE_PASSWORD_FILE).",
    )
    database_password_file: Path | None = Field(
        default=None, description="File holding IRTMON_DATABASE_PASSWORD (compose secrets)."
    )
    pg_port: int = Field(default=15432, description="Local PostgreSQL server's port (loopback).")
    pg_database: str = Field(default="irtmon", description="Database name on the local server.")
    pg_bin_dir: Path = Field(
        default=Path("/usr/lib/postgresql/15/bin"),
        description="Where the PostgreSQL server binaries (initdb, pg_ctl, postgres) are.",
    )
    pg_os_user: str = Field(
        default="postgres",
        description="Unprivileged OS user that runs the local PostgreSQL when irtmon runs as root.",
    )
    timescaledb: str = Field(
        default="auto",
        description="auto: use TimescaleDB when the extension is available; off: plain tables.",
        pattern="^(auto|off)$",
    )

    # Patient data
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="Secret key of the keyed-hash pseudonyms (at least 16 bytes). Never commit "
        "it; give it only where pseudonyms are made (the PACS plugin, the publishing tools).",
    )
    pseudonym_key_file: Path | None = Field(
        default=None, description="File holding IRTMON_PSEUDONYM_KEY (compose secrets)."
    )

    # Workers
    consumer_group: str = Field(
        default="irtmon", description="Kafka consumer group (and Faust app id) of the workers."
    )
    worker_web_port: int = Field(
        default=6066, description="Worker's health and Prometheus metrics port (loopback)."
    )
    worker_web_host: str = Field(default="127.0.0.1", description="Worker's web bind address.")
    worker_cpu_processes: int = Field(
        default=1, ge=1, description="Processes a worker uses for DICOM decoding and inference."
    )
    worker_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Events the scoring agents (imaging, biopsy) of one worker handle at once; "
        "one patient's events still one at a time, in order. Pair with "
        "IRTMON_WORKER_CPU_PROCESSES. More worker processes are the main way to scale.",
    )
    worker_warm_start: bool = Field(
        default=False,
        description="Start a worker's CPU processes (IRTMON_WORKER_CPU_PROCESSES) and their "
        "heavy imports as the worker starts, rather than at its first acquisition or biopsy "
        "(the demo does, while its cohort is generated).",
    )
    worker_batch_max: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Most light events (treatment events, scores) a worker takes in one batch "
        "and stores in one transaction; a bad event is still dead-lettered on its own.",
    )
    worker_batch_wait_s: float = Field(
        default=0.1,
        gt=0,
        le=10,
        description="How long a worker waits for a batch of light events to fill before it "
        "stores what it has (the most a lone event is held back).",
    )
    worker_fetch_wait_s: float = Field(
        default=0.1,
        gt=0,
        le=10,
        description="Longest the broker holds a worker's fetch while it has no new data for the "
        "partitions fetched (Kafka's fetch.max.wait.ms; faust's own is 1.5 s). The consumer has "
        "one fetch in flight per broker, so a longer wait also delays the other partitions' "
        "events by up to as much.",
    )
    commit_every: int = Field(
        default=10, ge=1, description="Commit consumer offsets every N processed events..."
    )
    commit_interval_s: float = Field(
        default=1.0, gt=0, description="...or every so many seconds, whichever comes first."
    )
    transient_retry_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a transient failure (database, broker or PACS down, disk full) "
        "is retried with back-off; past it the worker stops (exit status 70) without "
        "acknowledging the event, for its supervisor to restart it: a valid event is never "
        "dead-lettered because of an outage.",
    )
    deadletter_payload_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="How long a dead letter keeps the original bytes (message and key, which "
        "may carry an identifier smuggled into a bad event): the worker's housekeeping erases "
        "older payloads from the dead_letters table (the reason and metadata stay), and the "
        "deadletter topic keeps records no longer (its retention.ms, set by `irtmon stack "
        "up`). Only the irtmon_deadletters database role reads payloads.",
    )
    torch_device: str = Field(
        default="cpu",
        pattern="^(auto|cpu|cuda(:[0-9]+)?)$",
        description="Where torch trains and runs the pathology and CT models: cpu, cuda "
        "(cuda:N for one GPU), or auto (cuda when a GPU is available, else cpu).",
    )
    read_limits: dict[str, float] | None = Field(
        default=None,
        description="Reading limits of the workers, JSON of ReadLimits fields, e.g. "
        '{"dicom_max_files": 5000, "slide_max_mpp": 2, "task_time_limit_s": 300} (default: '
        "models/limits.py's table). Past one, an event is dead-lettered naming the limit.",
    )
    data_roots: list[Path] = Field(
        default_factory=lambda: [Path("data")],
        description="Folders the workers may read DICOM and slides from (JSON list); a path "
        "outside them is refused.",
    )

    # Alerts
    alert_policy: dict[str, Any] | None = Field(
        default=None,
        description='Site decision policy, JSON of DecisionConfig fields, e.g. {"threshold": '
        '0.7, "min_timepoints": 3, "confirm": "repeat"} (default: the calibrated rule).',
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="POST each alert change here (JSON, HMAC-signed); https:// only, unless "
        "IRTMON_ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK allows http:// to this machine.",
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key of X-Irtmon-Signature (>= 16 characters; or "
        "IRTMON_ALERT_WEBHOOK_SECRET_FILE).",
    )
    alert_webhook_secret_file: Path | None = Field(
        default=None, description="File holding IRTMON_ALERT_WEBHOOK_SECRET (compose secrets)."
    )
    alert_webhook_allow_http_loopback: bool = Field(
        default=False,
        description="Allow an http:// webhook on this machine (127.0.0.1, ::1, localhost), for "
        "a receiver on the same host; any other http:// URL is refused.",
    )
    alert_webhook_cafile: Path | None = Field(
        default=None,
        description="CA bundle (PEM) for the webhook's certificate (default: the system trust "
        "store).",
    )
    alert_webhook_max_age_s: float = Field(
        default=300.0,
        gt=0,
        description="Replay window a receiver should allow: core.delivery.verify refuses a "
        "signature whose X-Irtmon-Timestamp is older (or further ahead) than this.",
    )
    alert_smtp_host: str | None = Field(default=None, description="SMTP server for e-mails.")
    alert_smtp_port: int = Field(default=25, description="SMTP port.")
    alert_smtp_from: str = Field(default="irtmon@localhost", description="E-mail sender.")
    alert_smtp_to: str = Field(default="", description="E-mail recipients, comma-separated.")
    alert_smtp_starttls: bool = Field(
        default=False,
        description="Use STARTTLS, verifying the server's certificate and host name "
        "(IRTMON_ALERT_SMTP_CAFILE, else the system trust store). Required for a login.",
    )
    alert_smtp_cafile: Path | None = Field(
        default=None,
        description="CA bundle (PEM) for the SMTP server's certificate (default: the system "
        "trust store).",
    )
    alert_smtp_username: str | None = Field(
        default=None, description="SMTP login (only over STARTTLS; refused in clear)."
    )
    alert_smtp_password: SecretStr | None = Field(
        default=None, description="SMTP password (or IRTMON_ALERT_SMTP_PASSWORD_FILE)."
    )
    alert_smtp_password_file: Path | None = Field(
        default=None, description="File holding IRTMON_ALERT_SMTP_PASSWORD (compose secrets)."
    )
    alert_delivery_interval_s: float = Field(
        default=15.0, gt=0, description="How often a worker delivers pending alert changes."
    )
    alert_webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long one webhook POST may take before it counts "
        "as failed (and is sent again later; receivers de-duplicate on X-Irtmon-Delivery).",
    )
    alert_delivery_since: AwareDatetime | None = Field(
        default=None,
        description="Deliver only alert changes from this time on (ISO 8601 "
        "with a zone), so a newly configured sink does not receive the whole alert history.",
    )
    alert_retry_after_s: float = Field(
        default=60.0,
        gt=0,
        description="Wait after a failed delivery before the next round "
        "retries it; doubles per failure, capped at an hour.",
    )

    # PACS (Orthanc)
    pacs_url: str | None = Field(
        default=None,
        description="Existing Orthanc's HTTP root (http://host:8042). Unset: the local stack's "
        "Orthanc (`irtmon stack up --with-pacs`).",
    )
    pacs_public_url: str | None = Field(
        default=None,
        description="Orthanc's HTTP root as the workers reach it, written into imaging.acquired "
        "(default: IRTMON_PACS_URL, or the local Orthanc).",
    )
    pacs_allowed_urls: list[str] = Field(
        default_factory=list,
        description='Further DICOMweb roots (JSON list, e.g. ["https://pacs2:8042/dicom-web"]) '
        "the workers may fetch from and store SEG/SR to, besides the configured PACS's; an "
        "imaging.acquired naming any other is dead-lettered, never fetched.",
    )
    pacs_username: str = Field(
        default="irtmon", description="User of Orthanc's REST API and DICOMweb (HTTP Basic)."
    )
    pacs_password: SecretStr | None = Field(
        default=None,
        description="Its password (or IRTMON_PACS_PASSWORD_FILE). The local Orthanc needs one; "
        "its REST API refuses requests without it.",
    )
    pacs_password_file: Path | None = Field(
        default=None, description="File holding IRTMON_PACS_PASSWORD (compose secrets)."
    )
    orthanc_http_port: int = Field(default=18042, description="Local Orthanc's HTTP port.")
    orthanc_dicom_port: int = Field(default=14242, description="Local Orthanc's DICOM port.")
    orthanc_aet: str = Field(
        default="IRTMON",
        max_length=16,
        description="Application entity title of the Orthanc; a scanner that calls another "
        "one is refused.",
    )
    orthanc_allowed_callers: list[str] = Field(
        default_factory=lambda: ["IRTMON-SCU@127.0.0.1"],
        description="Who may store studies into the PACS: JSON list of CALLING_AET@IP "
        "(the scanner's AE title and address; IP addresses only, as Orthanc compares them). "
        "Anyone else is refused. Default: irtmon pacs send on this machine.",
    )
    orthanc_stable_age_s: int = Field(
        default=5, ge=1, description="Seconds without a new instance before a study is stable."
    )
    pacs_write_back: bool = Field(
        default=True,
        description="Store the lesion SEG and burden SR back to the PACS (STOW-RS) when an "
        "acquisition came from a DICOMweb location.",
    )
    radiomics: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="The radiomics (MIRP, IBSI) and peritumoural features of every lesion: "
        "'auto' computes them only when a promoted virtual biopsy reads them (the shipped one "
        "reads the burden, enhancement and spectral features only), 'on' always (for research "
        "use of the stored features), 'off' never. They are about a third of a follow-up's CPU "
        "(docs/deployers.md).",
    )
    deformable_registration: bool = Field(
        default=False,
        description="When a follow-up has no annotation and its lesions are carried from the "
        "baseline, add a B-spline stage after the rigid registration (about 6 to 16 times the "
        "cost; it changed no measurement on the virtual clinic or the benchmark phantom, whose "
        "anatomy moves rigidly: docs/lesions.md). Turn on where anatomy deforms between scans.",
    )

    derived_dir: Path = Field(
        default=Path(".irtmon/derived"),
        description="Where workers write derived images (attention heat maps, SEG, SR).",
    )
    dicomweb_retention_days: float = Field(
        default=7.0,
        gt=0,
        description="Days a study fetched by DICOMweb stays in the derived folder after its "
        "last use (as a follow-up's baseline); the PACS keeps the original and a later "
        "follow-up fetches it again.",
    )
    housekeeping_interval_s: float = Field(
        default=3600.0, gt=0, description="How often a worker prunes fetched studies."
    )
    models_dir: Path = Field(
        default=Path(".irtmon/models"),
        description="Folder of trained model artefacts (<name>/<version>/ with model.json).",
    )
    reference_models: bool = Field(
        default=True,
        description="At `irtmon db migrate` (and the demo), register and promote the "
        "reference model of each name the registry has no promoted version of (trained on the "
        "virtual clinic, not for clinical use); a promoted model is never replaced.",
    )
    reference_models_dir: Path = Field(
        default=Path(__file__).resolve().parents[1] / "reference_models",
        description="Folder of the reference models (the repository's reference_models/).",
    )

    # Monitoring app
    app_cache_ttl_s: float = Field(
        default=10.0, gt=0, description="How long the app reuses a read before asking again."
    )
    app_refresh_s: float = Field(
        default=15.0,
        gt=0,
        description="How often the app's live parts re-run (new scores and alerts appear "
        "without a reload).",
    )
    app_idle_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description="A signed-in session with no interaction for this long is signed out "
        "(the live refresh does not count as an interaction).",
    )
    app_login_free_attempts: int = Field(
        default=5,
        ge=1,
        description="Failed sign-ins of one user name (since its last success) before the "
        "app makes it wait; each further failure doubles the wait.",
    )
    app_login_address_free_attempts: int = Field(
        default=20,
        ge=1,
        description="Failed sign-ins from one client address (any user name) before the app "
        "makes that address wait; each further failure doubles the wait.",
    )
    app_login_backoff_s: float = Field(
        default=2.0,
        gt=0,
        description="First wait after the free sign-in attempts are used up (seconds).",
    )
    app_login_backoff_max_s: float = Field(
        default=900.0,
        gt=0,
        description="Longest wait the sign-in back-off imposes (seconds).",
    )
    app_login_window_s: float = Field(
        default=3600.0,
        gt=0,
        description="Failed sign-ins older than this no longer count towards the back-off.",
    )
    app_trust_forwarded_for: bool = Field(
        default=False,
        description="Take the client address from the X-Forwarded-For header (only behind a "
        "reverse proxy that sets it); otherwise the address of the connection.",
    )

    log_level: str = Field(default="INFO", description="Python logging level.")

    @field_validator("orthanc_allowed_callers")
    @classmethod
    def _callers(cls, value: list[str]) -> list[str]:
        for entry in value:
            aet, at, host = entry.rpartition("@")
            if not at or not aet or len(aet) > 16 or not aet.isascii():
                raise ValueError(
                    f"orthanc_allowed_callers: {entry!r} is not CALLING_AET@IP (an AE title of "
                    "at most 16 ASCII characters, then @ and an IP address)"
                )
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(
                    f"orthanc_allowed_callers: {host!r} in {entry!r} is not an IP address "
                    "(Orthanc checks the caller's address, not a host name)"
                ) from None
        return value

    @field_validator("pacs_allowed_urls")
    @classmethod
    def _allowed_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            url_origin(url)  # a clear ValueError for anything not http(s)://host
        return value

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        """Fill each secret from its ``*_file`` setting (compose ``secrets:``), and check that
        SASL has what it needs."""
        for name, file_name in SECRET_FILES.items():
            path = getattr(self, file_name)
            if path is None:
                continue
            try:
                text = Path(path).read_text(encoding="utf-8").strip()
            except OSError as err:
                raise ValueError(
                    f"IRTMON_{file_name.upper()}: cannot read {path} ({err.strerror})"
                ) from None
            if not text:
                raise ValueError(f"IRTMON_{file_name.upper()}: {path} is empty")
            current = getattr(self, name)
            if current is not None and current.get_secret_value() != text:
                raise ValueError(
                    f"both IRTMON_{name.upper()} and IRTMON_{file_name.upper()} are set, to "
                    "different values: set only one"
                )
            object.__setattr__(self, name, SecretStr(text))
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                f"IRTMON_KAFKA_SASL_{n.upper()}"
                for n, v in (
                    ("mechanism", self.kafka_sasl_mechanism),
                    ("username", self.kafka_sasl_username),
                    ("password", self.kafka_sasl_password),
                )
                if not v
            ]
            if missing:
                raise ValueError(
                    f"IRTMON_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                    + ", ".join(missing)
                )
        elif self.kafka_sasl_mechanism:
            raise ValueError(
                f"IRTMON_KAFKA_SASL_MECHANISM is set but IRTMON_KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        if self.alert_webhook_url:
            problem = webhook_url_problem(
                self.alert_webhook_url, allow_http_loopback=self.alert_webhook_allow_http_loopback
            )
            if problem:
                raise ValueError(problem)
        if self.alert_smtp_host and self.alert_smtp_username and not self.alert_smtp_starttls:
            raise ValueError(SMTP_LOGIN_IN_CLEAR)
        return self

    @property
    def cache_path(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.state_dir / "cache"

    @property
    def local_kafka(self) -> bool:
        """True when irtmon runs its own broker."""
        return not self.kafka_bootstrap

    @property
    def local_postgres(self) -> bool:
        """True when irtmon runs its own PostgreSQL server."""
        return not self.database_url

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def local_pacs(self) -> bool:
        """True when irtmon runs its own Orthanc (with ``stack up --with-pacs``)."""
        return not self.pacs_url

    @property
    def pacs_http(self) -> str:
        """Orthanc's HTTP root irtmon talks to (REST and DICOMweb)."""
        return (self.pacs_url or f"http://127.0.0.1:{self.orthanc_http_port}").rstrip("/")

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root published in ``imaging.acquired`` (QIDO/WADO/STOW-RS)."""
        return (self.pacs_public_url or self.pacs_http).rstrip("/") + "/dicom-web"

    @property
    def pacs_auth(self) -> tuple[str, str] | None:
        """User and password of the PACS's REST API and DICOMweb (None when no password)."""
        if self.pacs_password is None:
            return None
        return self.pacs_username, self.pacs_password.get_secret_value()

    def pacs_headers(self) -> dict[str, str]:
        """HTTP headers that authenticate to the PACS (HTTP Basic; empty without a password)."""
        auth = self.pacs_auth
        if auth is None:
            return {}
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @property
    def dicomweb_allowed(self) -> list[str]:
        """The DICOMweb roots the workers may fetch from and write back to: the configured
        PACS's (as published and as reached) and ``IRTMON_PACS_ALLOWED_URLS``."""
        own = [self.dicomweb_url, self.pacs_http + "/dicom-web"]
        return list(dict.fromkeys([*own, *(u.rstrip("/") for u in self.pacs_allowed_urls)]))

    @property
    def dsn(self) -> str:
        """Connection string of the database irtmon uses (with its password: never print it;
        :attr:`dsn_masked` is for showing)."""
        url = self.database_url or (
            f"postgresql://irtmon@127.0.0.1:{self.pg_port}/{self.pg_database}"
        )
        if self.database_password is not None:
            url = _with_password(url, self.database_password.get_secret_value())
        return url

    @property
    def dsn_masked(self) -> str:
        """:attr:`dsn` with its password masked, for messages and logs."""
        return mask_url(self.dsn)

    def shown(self, name: str) -> str:
        """The value of setting ``name`` as ``irtmon config`` shows it: secrets masked, URLs
        without their password."""
        value = getattr(self, name)
        if value is None:
            return "None"
        if isinstance(value, SecretStr):
            return "********"
        if name.endswith("_url"):
            return mask_url(str(value))
        return str(value)

    def limits(self) -> ReadLimits:
        """The reading limits (``IRTMON_READ_LIMITS`` over the defaults)."""
        return ReadLimits(**(self.read_limits or {}))  # type: ignore[arg-type]

    def kafka_client_config(self) -> dict[str, object]:
        """Security options for kafka-python clients (the protocol alone for PLAINTEXT).

        SSL and SASL_SSL verify the broker's certificate and host name against
        ``kafka_ssl_cafile`` or, without one, the system trust store.
        """
        protocol = self.kafka_security_protocol
        config: dict[str, object] = {"security_protocol": protocol}
        if protocol.startswith("SASL_"):
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                config["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        context = self.kafka_ssl_context()
        if context is not None:
            config["ssl_context"] = context
        return config

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every Kafka client (producers, admin, the workers' Faust app)
        for SSL and SASL_SSL: certificate and host name verified, against
        ``kafka_ssl_cafile`` or the system trust store. None for PLAINTEXT and SASL_PLAINTEXT.
        """
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile is not None else None
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
