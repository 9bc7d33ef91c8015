-- 0001: the core schema: dialogues with their utterances and images, queries with gold ids,
-- and fragments with their embeddings. Applied once by ffr_lib/db/migrate.py (`ffr db migrate`)
-- inside one transaction; never edit it after it is applied: add 0002_..., 0003_... instead.

CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS ffr;

-- One row per conversation. content_hash = Dialogue.content_hash() (utterances + images, not
-- metadata): the store compares it to decide whether a re-ingested dialogue changed.
CREATE TABLE ffr.dialogues (
    id            text PRIMARY KEY CHECK (id <> ''),
    source        text NOT NULL,
    speakers      text[] NOT NULL DEFAULT '{}',
    metadata      jsonb NOT NULL DEFAULT '{}',
    content_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dialogues_source_idx ON ffr.dialogues (source);

-- Utterance ids are the dialogue-wide 0-based counter of METHOD.md.
CREATE TABLE ffr.utterances (
    dialogue_id  text NOT NULL REFERENCES ffr.dialogues (id) ON DELETE CASCADE,
    idx          integer NOT NULL CHECK (idx >= 0),
    speaker      text NOT NULL,
    text         text NOT NULL DEFAULT '',
    ts           timestamptz,
    PRIMARY KEY (dialogue_id, idx)
);

-- Image ids are a second, separate 0-based counter; an image belongs to the utterance it was
-- sent with (composite FK), so deleting a dialogue or its utterances deletes its images.
CREATE TABLE ffr.images (
    dialogue_id    text NOT NULL REFERENCES ffr.dialogues (id) ON DELETE CASCADE,
    idx            integer NOT NULL CHECK (idx >= 0),
    utterance_idx  integer NOT NULL,
    path           text,
    url            text,
    caption        text,
    ocr_text       text,
    sha256         text,
    width          integer CHECK (width > 0),
    height         integer CHECK (height > 0),
    PRIMARY KEY (dialogue_id, idx),
    FOREIGN KEY (dialogue_id, utterance_idx)
        REFERENCES ffr.utterances (dialogue_id, idx) ON DELETE CASCADE
);
CREATE INDEX images_utterance_idx ON ffr.images (dialogue_id, utterance_idx);

-- dialogue_id NULL = a corpus query (gold per dialogue in metadata->'gold_by_dialogue').
-- Queries die with their dialogue: their gold ids mean nothing without it.
CREATE TABLE ffr.queries (
    id                  text PRIMARY KEY CHECK (id <> ''),
    dialogue_id         text REFERENCES ffr.dialogues (id) ON DELETE CASCADE,
    text                text NOT NULL,
    type                text NOT NULL
        CHECK (type IN ('multimodal', 'utterance-only', 'image-only', 'negative')),
    gold_utterance_ids  integer[] NOT NULL DEFAULT '{}',
    gold_image_ids      integer[] NOT NULL DEFAULT '{}',
    family              text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queries_dialogue_idx ON ffr.queries (dialogue_id);

-- A fragment: a minimal semantic span of one dialogue (utterance ids + image ids) with its text
-- and its embedding under one Fragment Embedding Model version (embedding_model).
--
-- `embedding` is a dimension-free `vector` on purpose: the dimension depends on the FEM
-- (MiniLM 384, e5 384/768, an image-fused model more), and during a FEM switch two versions live
-- side by side in this table. HNSW needs a fixed dimension, so the index migration builds one
-- partial expression index per model version, e.g.
--   CREATE INDEX ... USING hnsw ((embedding::vector(384)) vector_cosine_ops)
--       WHERE embedding_model = 'fem@3';
-- NULL until the fragment is embedded.
CREATE TABLE ffr.fragments (
    id               text PRIMARY KEY CHECK (id <> ''),
    dialogue_id      text NOT NULL REFERENCES ffr.dialogues (id) ON DELETE CASCADE,
    utterance_ids    integer[] NOT NULL DEFAULT '{}',
    image_ids        integer[] NOT NULL DEFAULT '{}',
    text             text NOT NULL,
    content_hash     text NOT NULL,
    embedding_model  text NOT NULL,
    embedding        vector,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (content_hash, embedding_model)
);
CREATE INDEX fragments_dialogue_idx ON ffr.fragments (dialogue_id);
CREATE INDEX fragments_model_idx ON ffr.fragments (embedding_model);
