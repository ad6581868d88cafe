"""One settings object for the whole service, read from ``IRTMON_*`` environment variables.

Each process's entry point creates it once (the ``irtmon`` CLI, the Streamlit app, Orthanc's
plugin) and passes it down; no broker or database address is written anywhere else, and nothing
else reads the environment. Every field's default and meaning is listed by ``irtmon config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.limits import ReadLimits


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
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: str | None = Field(default=None, description="e.g. SCRAM-SHA-512.")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle for SSL.")

    # PostgreSQL / TimescaleDB
    database_url: str | None = Field(
        default=None,
        description="Existing PostgreSQL/TimescaleDB (postgresql://user:pw@host:port/db). "
        "Unset: the local stack's server.",
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
        description="Secret key of the keyed-hash pseudonyms (at least 16 bytes). Never commit it.",
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
    commit_every: int = Field(
        default=10, ge=1, description="Commit consumer offsets every N processed events..."
    )
    commit_interval_s: float = Field(
        default=1.0, gt=0, description="...or every so many seconds, whichever comes first."
    )
    transient_retry_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a transient failure (database or broker down) is retried with "
        "back-off before the event is dead-lettered.",
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
        default=None, description="POST each alert change here (JSON, HMAC-signed)."
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key of X-Irtmon-Signature (>= 16 characters)."
    )
    alert_smtp_host: str | None = Field(default=None, description="SMTP server for e-mails.")
    alert_smtp_port: int = Field(default=25, description="SMTP port.")
    alert_smtp_from: str = Field(default="irtmon@localhost", description="E-mail sender.")
    alert_smtp_to: str = Field(default="", description="E-mail recipients, comma-separated.")
    alert_smtp_starttls: bool = Field(default=False, description="Use STARTTLS.")
    alert_smtp_username: str | None = None
    alert_smtp_password: SecretStr | None = None
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
    orthanc_http_port: int = Field(default=18042, description="Local Orthanc's HTTP port.")
    orthanc_dicom_port: int = Field(default=14242, description="Local Orthanc's DICOM port.")
    orthanc_aet: str = Field(
        default="IRTMON", max_length=16, description="Application entity title of the Orthanc."
    )
    orthanc_stable_age_s: int = Field(
        default=5, ge=1, description="Seconds without a new instance before a study is stable."
    )
    pacs_write_back: bool = Field(
        default=True,
        description="Store the lesion SEG and burden SR back to the PACS (STOW-RS) when an "
        "acquisition came from a DICOMweb location.",
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

    log_level: str = Field(default="INFO", description="Python logging level.")

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
    def dsn(self) -> str:
        """Connection string of the database irtmon uses."""
        if self.database_url:
            return self.database_url
        return f"postgresql://irtmon@127.0.0.1:{self.pg_port}/{self.pg_database}"

    def limits(self) -> ReadLimits:
        """The reading limits (``IRTMON_READ_LIMITS`` over the defaults)."""
        return ReadLimits(**(self.read_limits or {}))  # type: ignore[arg-type]

    def kafka_client_config(self) -> dict[str, object]:
        """Security options for kafka-python clients (empty for PLAINTEXT)."""
        config: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                config["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile is not None:
            config["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return config
