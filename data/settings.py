"""The one module that reads the environment. Everything else receives a `Settings`.

Every path and URL has an embedded default, so a fresh clone runs with no configuration; production
points the same code at real services by setting the variables below.

Each variable, its default in parentheses, then what it sets:

LOUPE_HOME (<repo>/.loupe): workspace: landing, lake, truth, registries, logs
LOUPE_LANDING (unset): a team's landing folder (read only): run on it, no simulator
LOUPE_SOURCE (auto): landing (LOUPE_LANDING, else <LOUPE_HOME>/landing), simulator, or auto: landing
    when that folder holds files, else simulator
LOUPE_VOCABULARY (data/vocabulary.toml): engagement types (with their role in labels) and impression
    sources
LOUPE_WORLD (small): simulated world size: tiny, small, medium
LOUPE_SEED (data.columns.WORLD_SEED): seed of the simulated world
LOUPE_SERVE (1): make run: keep UIs/service up at the end
REDIS_URL (unset: embedded Valkey under LOUPE_HOME): Redis 7 / Valkey / Redis Cluster URL
LOUPE_REDIS_PORT (16379): port of the embedded Valkey server
SPARK_MASTER (local[*]): Spark master (e.g. spark://host:7077)
SPARK_REMOTE (unset): Spark Connect URL (sc://host:15002); wins over SPARK_MASTER
LOUPE_SPARK_DRIVER_MEMORY (4g): driver memory of a local Spark
MLFLOW_TRACKING_URI (sqlite:///<LOUPE_HOME>/mlflow.db): MLflow tracking + registry
LOUPE_FEAST_OFFLINE (file): Feast offline store: file or spark
LOUPE_FEAST_REGISTRY (<LOUPE_HOME>/feast/registry.db): Feast registry: a file, or a SQL URL
DAGSTER_HOME (<repo>/dagster_home): Dagster instance folder (dagster.yaml)
LOUPE_SERVING_CONFIG (serving/config.toml): the ranking service's config file
LOUPE_NOW (unset: wall clock): the service's clock starts here (ISO-8601): replaying the simulated world
LOUPE_SERVING_PORT (3100): port of the ranking service (make run)
LOUPE_SERVING_WORKERS (2): ranking service worker processes (one per core: Python runs one request's
    stages at a time per process)
LOUPE_API_TOKEN (unset: <LOUPE_HOME>/serving/api_token, generated if absent): the bearer token callers
    of the ranking service send
LOUPE_CURSOR_SECRET (unset: <LOUPE_HOME>/serving/cursor_secret, generated if absent): the key the
    ranking service signs its page cursors with (every worker, every instance behind one balancer: the
    same)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from data.columns import WORLD_SEED, WORLD_SIZES

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("landing", "simulator")


def has_files(folder: Path) -> bool:
    """Whether a landing folder holds any file at all (a team's export, whatever its shape)."""
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


@dataclass(frozen=True)
class Settings:
    home: Path
    source: str = "simulator"  # "landing" or "simulator" (from_env resolves "auto")
    landing: Path | None = None  # a team's landing folder; None: <home>/landing
    vocabulary: Path | None = None  # None: data/vocabulary.toml
    world: str = "small"
    seed: int = WORLD_SEED
    serve: bool = True
    redis_url: str | None = None
    embedded_redis_port: int = 16379
    spark_master: str = "local[*]"
    spark_remote: str | None = None
    spark_driver_memory: str = "4g"
    mlflow_tracking_uri: str | None = None
    feast_offline_store: str = "file"
    feast_registry: str | None = None
    dagster_home: Path = REPO_ROOT / "dagster_home"
    serving_config: Path | None = None
    now: str | None = None
    serving_port: int = 3100
    serving_workers: int = 2
    api_token: str | None = field(default=None, repr=False)  # None: the workspace's token file
    cursor_secret: str | None = field(default=None, repr=False)  # None: the workspace's secret file

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"LOUPE_SOURCE must be one of {SOURCES + ('auto',)}, got {self.source!r}")
        if self.world not in WORLD_SIZES:
            raise ValueError(f"LOUPE_WORLD must be one of {WORLD_SIZES}, got {self.world!r}")
        if self.feast_offline_store not in ("file", "spark"):
            raise ValueError(f"LOUPE_FEAST_OFFLINE must be file or spark, got {self.feast_offline_store!r}")

    # --- the workspace layout (docs/workspace.md) ----------------------------------------------
    @property
    def world_dir(self) -> Path:
        """The simulated world of this size and seed: its own folder (landing, truth, world.json),
        so generating another world never touches a team's landing folder or another world."""
        return self.home / "worlds" / f"{self.world}-{self.seed}"

    @property
    def landing_dir(self) -> Path:
        """Where exporters drop log files: <landing>/<log_type>/<YYYY-MM-DD>/*.jsonl"""
        if self.source == "simulator":
            return self.world_dir / "landing"
        return self.landing or self.home / "landing"

    @property
    def lake_dir(self) -> Path:
        """Parquet lake: lake/<table>/dt=<YYYY-MM-DD>/"""
        return self.home / "lake"

    @property
    def truth_dir(self) -> Path | None:
        """Simulator ground truth, for evaluation only: never read by training or serving. A team's
        data has none (evaluation then uses realised labels only)."""
        return self.world_dir / "truth" if self.source == "simulator" else None

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def redis_endpoint(self) -> str:
        """REDIS_URL, or where the embedded server runs (the runner starts it on this port)."""
        return self.redis_url or f"redis://127.0.0.1:{self.embedded_redis_port}/0"

    @property
    def dagster_storage_dir(self) -> Path:
        return self.home / "dagster"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def api_token_file(self) -> Path:
        return self.home / "serving" / "api_token"

    @property
    def cursor_secret_file(self) -> Path:
        return self.home / "serving" / "cursor_secret"

    @property
    def mlflow_artifact_root(self) -> Path:
        """Where experiments created here keep their artifacts (a tracking server keeps its own)."""
        return self.home / "mlartifacts"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("LOUPE_HOME") or REPO_ROOT / ".loupe").resolve()
        landing = Path(env["LOUPE_LANDING"]).resolve() if env.get("LOUPE_LANDING") else None
        source = env.get("LOUPE_SOURCE") or "auto"
        if source == "auto":
            source = "landing" if landing or has_files(home / "landing") else "simulator"
        return cls(
            home=home,
            source=source,
            landing=landing,
            vocabulary=Path(env["LOUPE_VOCABULARY"]).resolve() if env.get("LOUPE_VOCABULARY") else None,
            world=env.get("LOUPE_WORLD", "small"),
            seed=int(env.get("LOUPE_SEED", WORLD_SEED)),
            serve=env.get("LOUPE_SERVE", "1") not in ("0", "false", "no"),
            redis_url=env.get("REDIS_URL") or None,
            embedded_redis_port=int(env.get("LOUPE_REDIS_PORT") or 16379),
            spark_master=env.get("SPARK_MASTER") or "local[*]",
            spark_remote=env.get("SPARK_REMOTE") or None,
            spark_driver_memory=env.get("LOUPE_SPARK_DRIVER_MEMORY") or "4g",
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
            feast_offline_store=env.get("LOUPE_FEAST_OFFLINE") or "file",
            feast_registry=env.get("LOUPE_FEAST_REGISTRY") or None,
            dagster_home=Path(env.get("DAGSTER_HOME") or REPO_ROOT / "dagster_home").resolve(),
            serving_config=Path(env["LOUPE_SERVING_CONFIG"]) if env.get("LOUPE_SERVING_CONFIG") else None,
            now=env.get("LOUPE_NOW") or None,
            serving_port=int(env.get("LOUPE_SERVING_PORT") or 3100),
            serving_workers=int(env.get("LOUPE_SERVING_WORKERS") or 2),
            api_token=env.get("LOUPE_API_TOKEN") or None,
            cursor_secret=env.get("LOUPE_CURSOR_SECRET") or None,
        )


@dataclass(frozen=True)
class ServingSecrets:
    """What the ranking service checks callers with (`api_token`, sent as `Authorization: Bearer`)
    and signs its page cursors with (`cursor_secret`)."""

    api_token: str = field(repr=False)
    cursor_secret: str = field(repr=False)


def serving_secrets(settings: Settings, create: bool = True) -> ServingSecrets:
    """The service's token and cursor secret: the environment's (LOUPE_API_TOKEN,
    LOUPE_CURSOR_SECRET), else the workspace's files, generated there when absent and `create`
    (`make run`, the service's first start). Every worker of one service reads the same files."""
    return ServingSecrets(
        settings.api_token or _secret_file(settings.api_token_file, create),
        settings.cursor_secret or _secret_file(settings.cursor_secret_file, create),
    )


def _secret_file(path: Path, create: bool) -> str:
    """The secret in `path`; a new random one put there first if there is none (owner-only file,
    appearing whole: concurrent workers all end up reading the one that was linked first)."""
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path}: no secret here (make run, or the ranking service, writes one)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)  # atomic, and never replaces a secret another process put there
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    value = path.read_text().strip()
    if not value:
        raise ValueError(f"{path} is empty: put a secret there or delete the file to have one generated")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


def export_dagster_env(settings: Settings) -> None:
    """Point Dagster (which reads the environment itself) at our instance and workspace storage.

    dagster_home/dagster.yaml refers to LOUPE_DAGSTER_STORAGE; values already set win.
    """
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    os.environ.setdefault("LOUPE_DAGSTER_STORAGE", str(settings.dagster_storage_dir))


def subprocess_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`, for a child process (e.g. the feast CLI)."""
    return {**os.environ, **extra}


def quiet_mlflow() -> None:
    """MLflow's switches, set through its environment variables (here, the env's one home):
    - no progress bar per artifact download (it floods the Dagster and `make run` consoles);
    - no uv project detection when a model is logged: it copies the repository's uv.lock and
      pyproject.toml (every dependency of the platform) into each logged model, with INFO lines,
      while the ranker's own requirements are declared (training/tracking.py MODEL_PACKAGES)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
