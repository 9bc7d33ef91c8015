"""Project-wide settings: every environment variable FFR reads, in one typed registry.

:data:`VARIABLES` is the one table (name, default, meaning); the table below, and the one in
README.md's *Settings* section, are generated from it (``python -m ffr_lib.settings`` prints it),
and ``tests/test_settings.py`` checks that every ``FFR_*`` name in the code and the docs is in it
and that every entry is read somewhere. Code reads a variable through its entry at call time
(``PROGRESS_EVERY.get()``), never at import: tests change the environment. An empty value counts
as unset. :data:`DEPLOYMENT_ONLY` names the variables only deployment files read (no FFR code).

"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

REPO_ROOT = Path(__file__).resolve().parent.parent


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _threads(raw: str) -> int:
    return max(1, int(raw))


#: How the text encoders run for inference (``ffr_lib.models.encoder.EncoderRuntime``).
ENCODER_RUNTIMES = ("torch", "onnx")


def _runtime(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ENCODER_RUNTIMES:
        raise ValueError(f"expected one of {', '.join(ENCODER_RUNTIMES)}")
    return value


@dataclass(frozen=True)
class Variable:
    """One environment variable: how it is parsed, its default, what it means.

    ``default`` is a value, or a function of the other settings (called at read time);
    ``shown`` is how the table writes a default that is computed or unset. ``aliases`` are older
    names still honoured (the first one set wins, ``name`` first). A ``lenient`` variable falls
    back to its default on a value it cannot parse; any other raises ``ValueError`` naming it.
    """

    name: str
    meaning: str
    parse: Callable[[str], Any] = str
    default: Any = None
    shown: str | None = None
    aliases: tuple[str, ...] = ()
    lenient: bool = False

    def raw(self) -> str | None:
        """The value set in the environment now (stripped), or None when unset or empty."""
        for key in (self.name, *self.aliases):
            value = os.environ.get(key, "").strip()
            if value:
                return value
        return None

    def is_set(self) -> bool:
        return self.raw() is not None

    def get(self) -> Any:
        """The parsed value, or the default when unset."""
        raw = self.raw()
        if raw is not None:
            try:
                return self.parse(raw)
            except ValueError as exc:
                if not self.lenient:
                    raise ValueError(f"{self.name}={raw!r}: {exc}") from None
        return self.default() if callable(self.default) else self.default

    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        return "unset" if self.default is None else f"`{self.default}`"


# ----------------------------------------------------------------------------- the registry

HOME = Variable(
    "FFR_HOME",
    "local state: embedded Postgres data, MLflow db and artifacts, converted models, "
    "fragments, splits",
    lambda raw: Path(raw).resolve(),
    lambda: (REPO_ROOT / "dagster_home").resolve(),
    shown="`<repo>/dagster_home`",
)
DATABASE_URL = Variable(
    "FFR_DATABASE_URL",
    "any Postgres >= 15 with pgvector >= 0.8; unset starts the embedded server",
)
PG_PORT = Variable(
    "FFR_PG_PORT", "port of the embedded server (listens on 127.0.0.1 only)", int, 55432
)
PGDATA = Variable(
    "FFR_PGDATA",
    "data folder of the embedded server",
    Path,
    lambda: HOME.get() / "pgdata",
    shown="`$FFR_HOME/pgdata`",
)
PHOTOCHAT_DIR = Variable(
    "FFR_PHOTOCHAT_DIR",
    "PhotoChat files, read in place (never copied)",
    Path,
    REPO_ROOT.parent / "shared/data/photochat",
    shown="`../shared/data/photochat`",
)
QMSUM_DIR = Variable(
    "FFR_QMSUM_DIR",
    "QMSum meetings (`train/`, `val/`), read in place (never copied); `ffr eval --dataset qmsum`",
    Path,
    REPO_ROOT.parent / "shared/data/qmsum",
    shown="`../shared/data/qmsum`",
)
MODELS_DIR = Variable(
    "FFR_MODELS_DIR",
    "cache of converted offline weights (SmolLM2 safetensors, e5)",
    Path,
    lambda: HOME.get() / "models",
    shown="`$FFR_HOME/models`",
)
DB_CONNECT_TIMEOUT = Variable(
    "FFR_DB_CONNECT_TIMEOUT",
    "seconds to wait for a database connection (libpq connect_timeout)",
    int,
    10,
)
DB_RETRY_SECONDS = Variable(
    "FFR_DB_RETRY_SECONDS",
    "how long searches retry while the database is unreachable or restarting (0 = no retry)",
    float,
    15.0,
    shown="`15`",
)
INBOX_DIR = Variable(
    "FFR_INBOX_DIR",
    "folder the inbox sensor watches for new dialogue files",
    Path,
    lambda: HOME.get() / "inbox",
    shown="`$FFR_HOME/inbox`",
)
INBOX_SETTLE_SECONDS = Variable(
    "FFR_INBOX_SETTLE_SECONDS",
    "a file must be unchanged this long before the sensor takes it",
    float,
    5.0,
    shown="`5`",
)
REPORTS_DIR = Variable(
    "FFR_REPORTS_DIR",
    "where evaluation reports are written (`<run>/` and `latest/`)",
    Path,
    REPO_ROOT / "reports",
    shown="`<repo>/reports`",
)
EXECUTOR = Variable(
    "FFR_EXECUTOR",
    "`k8s` runs each step in its own pod (infra/README.md); unset = Dagster's default",
    lambda raw: raw.lower(),
)
F2RVLM_PROFILE = Variable(
    "FFR_F2RVLM_PROFILE",
    "default profile of the `f2rvlm_*` assets, read when the definitions load: `cpu-small` (the "
    "demo, whole dialogues), `cpu-small-windowed` (12-turn windows), `cpu-full` (hours on "
    "CPU), `gpu` (SmolLM2 on every MLDR train query, one accelerator), `paper` (Qwen2-VL), `tiny` (tests); with `k8s` a GPU profile "
    "(`paper`, `gpu`) puts the training steps on GPU nodes, a CPU one on CPU nodes",
    default="cpu-small",
)
TORCH_THREADS = Variable(
    "FFR_TORCH_THREADS",
    "forces the torch thread count of FFR's CPU work (encoding, FEM training); unset, 1 thread "
    "when other processes keep the cores busy, else torch's default (ffr_lib.threads). "
    "`FFR_ENCODER_THREADS`, the older name, still works",
    _threads,
    shown="unset (follows the load)",
    aliases=("FFR_ENCODER_THREADS",),
    lenient=True,
)
ENCODER_RUNTIME = Variable(
    "FFR_ENCODER_RUNTIME",
    "how the text encoders (MiniLM, e5, FEM checkpoints) run for inference: indexing, queries, "
    "features. `onnx`: ONNX Runtime, exported once per weights digest into "
    "`$FFR_MODELS_DIR/onnx` (`ffr models prepare`, or on first use) and checked against torch "
    "(cosine >= 0.999), so the model version stays the same; `torch`: sentence-transformers on "
    "torch (the same vectors, ~1.6-1.9x slower on 2 cores: BENCHMARKS.md). Training, `#int8` and "
    "GPU encoders always use torch",
    _runtime,
    "onnx",
)
PROGRESS = Variable(
    "FFR_PROGRESS",
    "`0` turns off the progress lines (and bar) of long steps",
    _flag,
    True,
    shown="`1`",
    lenient=True,
)
PROGRESS_EVERY = Variable(
    "FFR_PROGRESS_EVERY",
    "seconds between two progress lines of a long step",
    float,
    15.0,
    shown="`15`",
    lenient=True,
)
MLFLOW_TRACKING_URI = Variable(
    "MLFLOW_TRACKING_URI",
    "MLflow tracking store",
    default=lambda: f"sqlite:///{HOME.get() / 'mlflow.db'}",
    shown="`sqlite:///$FFR_HOME/mlflow.db`",
)
DAGSTER_HOME = Variable(
    "DAGSTER_HOME",
    "the Dagster instance `ffr ui` and `ffr demo` use (the Makefile sets it to `$FFR_HOME`)",
    lambda raw: Path(raw).resolve(),
    lambda: HOME.get(),
    shown="`$FFR_HOME`",
)
HF_HUB_OFFLINE = Variable(
    "HF_HUB_OFFLINE",
    "`1`: never reach the model hub (`ffr demo` sets it); models resolve to local weights only",
    _flag,
    False,
    shown="unset",
    lenient=True,
)
TRANSFORMERS_OFFLINE = Variable(
    "TRANSFORMERS_OFFLINE",
    "the same as `HF_HUB_OFFLINE` (either one set means offline)",
    _flag,
    False,
    shown="unset",
    lenient=True,
)
HF_HUB_CACHE = Variable(
    "HF_HUB_CACHE",
    "Hugging Face hub cache searched for hub ids",
    shown="`$HF_HOME/hub`",
)
HF_HOME = Variable(
    "HF_HOME", "Hugging Face home (its `hub/` is the cache)", shown="`~/.cache/huggingface`"
)

#: Every variable FFR reads, in the order of the table.
VARIABLES: tuple[Variable, ...] = (
    HOME,
    DATABASE_URL,
    PG_PORT,
    PGDATA,
    PHOTOCHAT_DIR,
    QMSUM_DIR,
    MODELS_DIR,
    DB_CONNECT_TIMEOUT,
    DB_RETRY_SECONDS,
    INBOX_DIR,
    INBOX_SETTLE_SECONDS,
    REPORTS_DIR,
    EXECUTOR,
    F2RVLM_PROFILE,
    TORCH_THREADS,
    ENCODER_RUNTIME,
    PROGRESS,
    PROGRESS_EVERY,
    MLFLOW_TRACKING_URI,
    DAGSTER_HOME,
    HF_HUB_OFFLINE,
    TRANSFORMERS_OFFLINE,
    HF_HUB_CACHE,
    HF_HOME,
)


#: Variables that only deployment files read, never FFR's Python code: name -> where and what.
DEPLOYMENT_ONLY: dict[str, str] = {
    "FFR_PG_PASSWORD": "infra/docker-compose.yml: password of the compose Postgres (default ffr)",
    "FFR_PHOTOCHAT_HOST_DIR": "infra/docker-compose.yml: host folder mounted at FFR_PHOTOCHAT_DIR",
    "FFR_QMSUM_HOST_DIR": "infra/docker-compose.yml: host folder mounted at FFR_QMSUM_DIR",
}


def known_names() -> set[str]:
    """Every variable name the registry knows, aliases included."""
    return {name for v in VARIABLES for name in (v.name, *v.aliases)}


def settings_table() -> str:
    """The markdown table of :data:`VARIABLES` (module docstring, README.md)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{v.name}` | {v.default_text()} | {v.meaning} |" for v in VARIABLES]
    return "\n".join(lines)


__doc__ = (__doc__ or "") + settings_table() + "\n"


# ----------------------------------------------------------------------------- paths, together


class Settings(BaseModel):
    """The locations every stage needs, as the environment says now."""

    home: Path = Field(description="local state folder")
    database_url: str | None = Field(None, description="external Postgres URL; None = embedded")
    pgdata: Path
    photochat_dir: Path
    qmsum_dir: Path
    models_dir: Path
    mlflow_tracking_uri: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            home=HOME.get(),
            database_url=DATABASE_URL.get(),
            pgdata=PGDATA.get(),
            photochat_dir=PHOTOCHAT_DIR.get(),
            qmsum_dir=QMSUM_DIR.get(),
            models_dir=MODELS_DIR.get(),
            mlflow_tracking_uri=MLFLOW_TRACKING_URI.get(),
        )


def get_settings() -> Settings:
    """Settings as the environment says now (not cached: tests change the environment)."""
    return Settings.from_env()


if __name__ == "__main__":
    print(settings_table())
