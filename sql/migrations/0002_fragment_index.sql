-- 0002: the fragment index. Fragments of several Fragment Embedding Model (FEM) versions live
-- side by side in ffr.fragments; ffr.fem_versions registers each version (dimension, vector type
-- of its HNSW index, ef_search) and ffr.serving names the ONE version the SQL search functions
-- read. Switching FEM = build the new version beside the old, then flip ffr.serving in one
-- transaction (ffr_lib/index/writer.py: activate_version).
--
-- Why one table with a partial HNSW index per version (and not one table per version): the
-- fragment rows, their filters (speakers, time range, full-text vector) and the foreign key that
-- deletes them with their dialogue are defined once; a version is just a value of
-- embedding_model, and the per-version index is an expression index with a fixed dimension,
--   CREATE INDEX fragments_hnsw_<hash> ON ffr.fragments
--       USING hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) WHERE embedding_model = '<v>';
-- so versions of different dimensions coexist in the dimension-free `embedding vector` column.

-- The logical fragment id (the segmenter's stable id) is the same under every FEM version, so
-- a row is identified by (id, embedding_model), not by id alone.
ALTER TABLE ffr.fragments DROP CONSTRAINT fragments_pkey;
ALTER TABLE ffr.fragments ADD PRIMARY KEY (id, embedding_model);

-- Filter columns, denormalised from the utterances when the fragment is indexed: who speaks in
-- the fragment and the time span it covers (NULL when the dialogue has no timestamps).
ALTER TABLE ffr.fragments
    ADD COLUMN speakers    text[] NOT NULL DEFAULT '{}',
    ADD COLUMN started_at  timestamptz,
    ADD COLUMN ended_at    timestamptz,
    -- English full-text vector for hybrid search (the embedding covers other languages).
    ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED;

CREATE INDEX fragments_tsv_idx ON ffr.fragments USING gin (tsv);
CREATE INDEX fragments_speakers_idx ON ffr.fragments USING gin (speakers);
CREATE INDEX fragments_time_idx ON ffr.fragments (embedding_model, started_at, ended_at);
CREATE INDEX fragments_model_dialogue_idx ON ffr.fragments (embedding_model, dialogue_id);

-- One row per FEM version that has (or had) fragments in the index.
CREATE TABLE ffr.fem_versions (
    embedding_model  text PRIMARY KEY CHECK (embedding_model <> ''),
    dimension        integer NOT NULL CHECK (dimension BETWEEN 1 AND 4000),
    vector_type      text NOT NULL DEFAULT 'halfvec' CHECK (vector_type IN ('vector', 'halfvec')),
    index_name       text NOT NULL UNIQUE,
    hnsw_m           integer NOT NULL DEFAULT 16 CHECK (hnsw_m BETWEEN 2 AND 100),
    ef_construction  integer NOT NULL DEFAULT 64 CHECK (ef_construction BETWEEN 4 AND 1000),
    ef_search        integer NOT NULL DEFAULT 100 CHECK (ef_search BETWEEN 1 AND 1000),
    status           text NOT NULL DEFAULT 'building'
        CHECK (status IN ('building', 'ready', 'retired')),
    model_path       text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    ready_at         timestamptz,
    -- HNSW on vector supports 2,000 dimensions, on halfvec 4,000.
    CHECK (vector_type = 'halfvec' OR dimension <= 2000)
);

-- The serving pointer: at most one row (the boolean key can only be true).
CREATE TABLE ffr.serving (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    embedding_model  text NOT NULL REFERENCES ffr.fem_versions (embedding_model),
    flipped_at       timestamptz NOT NULL DEFAULT now()
);
