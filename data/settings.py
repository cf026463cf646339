"""The one module that reads the environment. Everything else receives a `Settings`.

Every path and URL has an embedded default, so a fresh clone runs with no configuration; production
points the same code at real services through environment variables. Each field of `Settings` names
its variable, default and meaning once; `python -m data.settings` prints them as a table.

`Settings.from_env()` reads the environment (pydantic-settings); `Settings(...)` in code and tests is
exactly what it is given, so a variable in the caller's shell never leaks into a test's workspace.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from data.columns import WORLD_SEED, WORLD_SIZES

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("landing", "simulator")


def has_files(folder: Path) -> bool:
    """Whether a landing folder holds any file at all (a team's export, whatever its shape)."""
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def embedded_url(port: int) -> str:
    """The URL of an embedded Valkey server the runner starts on this machine."""
    return f"redis://127.0.0.1:{port}/0"


def _var(name: str, default: Any, doc: str, **kw: Any) -> Any:
    """A field read from the environment variable `name`."""
    return Field(default, validation_alias=name, description=doc, **kw)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True,
                                      extra="ignore", case_sensitive=True, env_ignore_empty=True)

    home: Path = _var("LOUPE_HOME", REPO_ROOT / ".loupe",
                      "workspace: landing, lake, truth, registries, logs (docs/workspace.md)")
    landing: Path | None = _var("LOUPE_LANDING", None,
                                "a team's landing folder (read only): run on it, no simulator; "
                                "unset: <LOUPE_HOME>/landing")
    # after home and landing: "auto" is resolved from them
    source: Literal["landing", "simulator"] = _var(
        "LOUPE_SOURCE", "auto", "landing (LOUPE_LANDING, else <LOUPE_HOME>/landing), simulator, or auto: landing "
        "when that folder holds files, else simulator", validate_default=True)
    vocabulary: Path | None = _var("LOUPE_VOCABULARY", None,
                                   "engagement types (with their role in labels) and impression sources; "
                                   "unset: data/vocabulary.toml")
    world: str = _var("LOUPE_WORLD", "small", f"simulated world size: {', '.join(WORLD_SIZES)}")
    seed: int = _var("LOUPE_SEED", WORLD_SEED, "seed of the simulated world")
    serve: bool = _var("LOUPE_SERVE", True, "make run: keep UIs/service up at the end (1/0, true/false)")
    redis_url: str | None = _var("REDIS_URL", None,
                                 "Redis 7 / Valkey / Redis Cluster URL; unset: embedded Valkey under LOUPE_HOME")
    embedded_redis_port: int = _var("LOUPE_REDIS_PORT", 16379, "port of the embedded Valkey server")
    stream_url: str | None = _var("LOUPE_STREAM_URL", None,
                                  "the event stream's Valkey/Redis 7+ (appendonly yes), or a node of a Redis "
                                  "Cluster whose primaries all have it; unset: an embedded Valkey under "
                                  "LOUPE_HOME that fsyncs every write (docs/event_stream.md)")
    stream_port: int = _var("LOUPE_STREAM_PORT", 16380, "port of the embedded event stream server")
    stream_partitions: int = _var("LOUPE_STREAM_PARTITIONS", 4, "stream keys the events are spread over by "
                                  "entity (fixed for a stream's life: another count is refused)", ge=1)
    spark_master: str = _var("SPARK_MASTER", "local[*]", "Spark master (e.g. spark://host:7077)")
    spark_remote: str | None = _var("SPARK_REMOTE", None, "Spark Connect URL (sc://host:15002); wins over "
                                    "SPARK_MASTER")
    spark_driver_memory: str = _var("LOUPE_SPARK_DRIVER_MEMORY", "4g", "driver memory of a local Spark")
    spark_concurrent_jobs: int = _var("LOUPE_SPARK_CONCURRENT_JOBS", 3, "Spark jobs a day's ingest or feature "
                                      "step submits at once (a day's small jobs are latency-bound)", ge=1)
    mlflow_tracking_uri: str | None = _var("MLFLOW_TRACKING_URI", None,
                                           "MLflow tracking + registry; unset: sqlite:///<LOUPE_HOME>/mlflow.db")
    feast_offline_store: Literal["file", "spark"] = _var("LOUPE_FEAST_OFFLINE", "file",
                                                         "Feast offline store: file or spark")
    feast_registry: str | None = _var("LOUPE_FEAST_REGISTRY", None,
                                      "Feast registry: a file, or a SQL URL; unset: <LOUPE_HOME>/feast/registry.db")
    dagster_home: Path = _var("DAGSTER_HOME", REPO_ROOT / "dagster_home", "Dagster instance folder (dagster.yaml)")
    serving_config: Path | None = _var("LOUPE_SERVING_CONFIG", None,
                                       "the ranking service's config file; unset: serving/config.toml")
    training_config: Path | None = _var("LOUPE_TRAINING_CONFIG", None,
                                        "the ranker training config file; unset: training/config.toml")
    now: str | None = _var("LOUPE_NOW", None, "the service's clock starts here (ISO-8601), replaying the "
                           "simulated world; unset: the wall clock")
    clock_speed: float = _var("LOUPE_CLOCK_SPEED", 1.0, "simulated seconds per real second of the clock LOUPE_NOW "
                              "starts (live mode plays a day in accelerated time)", gt=0)
    clock_anchor_ms: int | None = _var("LOUPE_CLOCK_ANCHOR_MS", None, "the real epoch ms at which the clock reads "
                                       "LOUPE_NOW, shared by processes that must agree on the time (live mode); "
                                       "unset: when the process starts its clock")
    live: bool = _var("LOUPE_LIVE", False, "make run: after the pipeline, simulated users use the ranking service "
                      "for a simulated day (make live; docs/live_mode.md)")
    live_hours: float = _var("LOUPE_LIVE_HOURS", 24.0, "simulated hours live mode plays, from the clock's "
                                   "start (LOUPE_NOW; by default the end of the last day): 24 plays the next day", gt=0)
    live_ab: bool = _var("LOUPE_LIVE_AB", False, "make live: the ranking service splits the simulated users into "
                         "a control and a treatment arm, half each, and live mode measures each (docs/live_mode.md)")
    live_treatment: str = _var("LOUPE_LIVE_TREATMENT", "heuristic", "make live's A/B (LOUPE_LIVE_AB): what the "
                               "treatment arm serves on both surfaces instead of the champion: heuristic, "
                               "@<alias>, :<version>, <model>@<alias> or <model>:<version> (docs/serving.md)")
    serving_port: int = _var("LOUPE_SERVING_PORT", 3100, "port of the ranking service (make run)")
    serving_workers: int = _var("LOUPE_SERVING_WORKERS", 2, "ranking service worker processes (one per core: "
                                "Python runs one request's stages at a time per process)")
    api_token: str | None = _var("LOUPE_API_TOKEN", None, "the bearer token callers of the ranking service "
                                 "send; unset: <LOUPE_HOME>/serving/api_token, generated if absent", repr=False)
    cursor_secret: str | None = _var("LOUPE_CURSOR_SECRET", None, "the key the ranking service signs its page "
                                     "cursors with (the same for every worker and instance behind one "
                                     "balancer); unset: <LOUPE_HOME>/serving/cursor_secret, generated if "
                                     "absent", repr=False)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings,)  # the environment is read by from_env only (see the module's docstring)

    @field_validator("home", "landing", "vocabulary", "dagster_home")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return path.resolve() if path is not None else None

    @field_validator("source", mode="before")
    @classmethod
    def _resolve_auto(cls, source: str, info: ValidationInfo) -> str:
        if source != "auto":
            return source
        home = info.data.get("home")
        return "landing" if info.data.get("landing") or (home and has_files(home / "landing")) else "simulator"

    @field_validator("world")
    @classmethod
    def _known_world(cls, world: str) -> str:
        if world not in WORLD_SIZES:
            raise ValueError(f"LOUPE_WORLD must be one of {WORLD_SIZES}, got {world!r}")
        return world

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The environment's settings (`env`: a mapping standing in for it, in tests); an empty
        variable counts as unset."""
        if env is None:
            values = EnvSettingsSource(cls, case_sensitive=True, env_ignore_empty=True)()
        else:
            values = {name: value for name, value in env.items() if value}
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated like the original (tests, benchmarks, the runner)."""
        return type(self)(**{**self.model_dump(), **changes})

    def to_env(self) -> dict[str, str]:
        """These settings as the environment variables `from_env` reads (unset ones left out): a child
        process (the ranking service) gets exactly these settings, nothing inherited."""
        values = self.model_dump()
        return {f.validation_alias: str(values[name]) for name, f in type(self).model_fields.items()
                if values[name] is not None}

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

    def log_vocabulary(self):
        """The log vocabulary these settings name (LOUPE_VOCABULARY, else the shipped one), parsed
        once per process."""
        from data.vocabulary import load_vocabulary

        return load_vocabulary(str(self.vocabulary) if self.vocabulary else None)

    @property
    def truth_dir(self) -> Path | None:
        """Simulator ground truth, for evaluation only: never read by training or serving. A team's
        data has none (evaluation then uses realised labels only)."""
        return self.world_dir / "truth" if self.source == "simulator" else None

    @property
    def live_posts_file(self) -> Path:
        """The hidden qualities of the posts live mode published in this world (data/world/live.py
        LivePosts): read back by the next play, and by an evaluation of the days it played."""
        return self.home / "live" / f"{self.world_dir.name}-posts.npz"

    @property
    def live_regret_file(self) -> Path:
        """What the simulated viewers pushed away in live mode's plays of this world, remembered by
        the next play (data/world/regret.py)."""
        return self.home / "live" / f"{self.world_dir.name}-regret.npz"

    @property
    def live_played_file(self) -> Path:
        """When live mode's last play in this world ended (pipelines/live.py): the days it played to
        their end are ingested with the world's (pipelines/operations.py prepare_landing)."""
        return self.home / "live" / f"{self.world_dir.name}-played.json"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def redis_endpoint(self) -> str:
        """REDIS_URL, or where the embedded server runs (the runner starts it on this port)."""
        return self.redis_url or embedded_url(self.embedded_redis_port)

    @property
    def stream_dir(self) -> Path:
        return self.home / "stream"

    @property
    def stream_endpoint(self) -> str:
        """LOUPE_STREAM_URL, or where the embedded stream server runs."""
        return self.stream_url or embedded_url(self.stream_port)

    @property
    def dagster_storage_dir(self) -> Path:
        return self.home / "dagster"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def search_index_file(self) -> Path:
        """The post search index (SQLite FTS5, candidate_gen/search/): Loupe's own, rebuilt from the
        lake by the candidates/search_index asset, kept fresh by the search index worker."""
        return self.home / "search" / "posts.sqlite"

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


def export_spark_env() -> None:
    """PySpark starts its Python workers with the interpreter the environment names (PYSPARK_PYTHON),
    read when a context starts: this one, with its packages (ingestion's line rules run there).
    A value already set wins."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def subprocess_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`, for a child process (e.g. the feast CLI)."""
    return {**os.environ, **extra}


def child_env(settings: Settings | None, **extra: str) -> dict[str, str]:
    """The environment of a child process that runs on exactly `settings` (none: on its defaults):
    this process's environment without any variable Settings reads, then `settings.to_env()`, then
    `extra`. Nothing of the caller's shell settings is inherited."""
    names = settings_variables()
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(settings.to_env() if settings else {})
    env.update(extra)
    return env


def quiet_mlflow() -> None:
    """MLflow's switches, set through its environment variables (here, the env's one home):
    - no progress bar per artifact download (it floods the Dagster and `make run` consoles);
    - no uv project detection when a model is logged: it copies the repository's uv.lock and
      pyproject.toml (every dependency of the platform) into each logged model, with INFO lines,
      while the ranker's own requirements are declared (training/tracking.py MODEL_PACKAGES)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")


def settings_variables() -> frozenset[str]:
    """The names of the environment variables `Settings` reads."""
    return frozenset(f.validation_alias for f in Settings.model_fields.values())


def variables_table() -> str:
    """Every variable `Settings` reads, its default and what it sets (`python -m data.settings`)."""
    rows = []
    for f in Settings.model_fields.values():
        default = "unset" if f.default is None else str(f.default)
        rows.append(f"{f.validation_alias} ({default}): {f.description}")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(variables_table() + "\n")
