-- 0008: a fragment is found by its best part (issue 14, "the index sees every word").
--
-- The encoder reads a window of tokens; a real meeting fragment is often longer. Since 0002 the
-- index embeds such a text in line-aligned chunks that each fit the window and stores their
-- token-weighted mean as the fragment's vector (ffr_lib/fem/fragment_text.py, ChunkedEmbedder).
-- A mean dilutes: one relevant line at the end of a 300-word fragment moves it little. Now the
-- vector of every chunk of a long fragment is kept in ffr.fragment_parts, and a fragment's
-- distance to a query is that of its nearest part (or of its own vector, if nearer). Fragments
-- that fit the window have no parts and score as before.
--
-- Measured before this migration (QMSum val, 35 meetings, 2,500 fragments of which 14.6% are
-- longer than the window, 237 queries, untrained MiniLM, BENCHMARKS.md): evidence recall@10
-- over utterances 0.122 by the mean, 0.148 by the best part; the right meeting first 41.4% ->
-- 45.6% of the time. Re-ranking only the mean's nearest 200 recovered a third of that, so the
-- parts get their own HNSW index per version (built beside the fragments' one, see
-- ffr_lib/index/writer.py) and the search takes candidates from both.
--
-- Same signatures and grants for the search functions; CREATE OR REPLACE keeps them.

CREATE TABLE ffr.fragment_parts (
    fragment_id      text NOT NULL,
    embedding_model  text NOT NULL,
    part             smallint NOT NULL CHECK (part >= 0),
    embedding        vector NOT NULL,
    PRIMARY KEY (fragment_id, embedding_model, part),
    FOREIGN KEY (fragment_id, embedding_model)
        REFERENCES ffr.fragments (id, embedding_model) ON DELETE CASCADE
);
CREATE INDEX fragment_parts_model_idx ON ffr.fragment_parts (embedding_model);

GRANT SELECT ON ffr.fragment_parts TO ffr_reader;

-- The query of a search over one version (as in 0006), each row's distance being that of the
-- fragment's nearest part or its own vector, whichever is nearer. The exact search scores every
-- fragment that passes the filter; the index search takes the $2 nearest fragments by their own
-- vector and the $2 nearest parts (both through their HNSW indexes, whose expressions these
-- ORDER BYs must match: writer.py hnsw_index_sql), then scores that union exactly.
CREATE OR REPLACE FUNCTION ffr.fragment_search_sql(
    p_model      text,
    p_exact      boolean DEFAULT false,
    p_dialogues  boolean DEFAULT false,
    p_speaker    boolean DEFAULT false,
    p_since      boolean DEFAULT false,
    p_until      boolean DEFAULT false
) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = ffr, public, pg_catalog, pg_temp
AS $$
DECLARE
    v        ffr.fem_versions%ROWTYPE;
    typ      text;
    filt     text;
    parts    text;
    best     constant text :=
        'least(f.embedding <=> $1, (SELECT min(p.embedding <=> $1) FROM ffr.fragment_parts p '
        'WHERE p.fragment_id = f.id AND p.embedding_model = f.embedding_model))';
    columns  constant text :=
        'f.id, f.dialogue_id, f.utterance_ids, f.image_ids, f.text, b.d AS distance, '
        'f.embedding_model, b.d AS exact_distance';
BEGIN
    SELECT * INTO v FROM ffr.fem_versions fv WHERE fv.embedding_model = p_model;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown FEM version %', p_model USING ERRCODE = 'undefined_object';
    END IF;
    filt := ffr.fragment_filter_sql(p_model, p_dialogues, p_speaker, p_since, p_until, p_exact);
    IF p_exact THEN
        RETURN format('SELECT %s FROM ffr.fragments f CROSS JOIN LATERAL (SELECT %s AS d) b '
                      'WHERE %s ORDER BY distance, f.id LIMIT $2', columns, best, filt);
    END IF;
    typ := format('%s(%s)', v.vector_type, v.dimension);
    IF p_dialogues OR p_speaker OR p_since OR p_until THEN
        parts := format('SELECT p.fragment_id FROM ffr.fragment_parts p JOIN ffr.fragments f '
                        'ON f.id = p.fragment_id AND f.embedding_model = p.embedding_model '
                        'WHERE p.embedding_model = %L AND %s '
                        'ORDER BY p.embedding::%s <=> $1::%s LIMIT $2', p_model, filt, typ, typ);
    ELSE
        -- No filter: no join, so the planner walks the parts' HNSW index alone.
        parts := format('SELECT p.fragment_id FROM ffr.fragment_parts p '
                        'WHERE p.embedding_model = %L '
                        'ORDER BY p.embedding::%s <=> $1::%s LIMIT $2', p_model, typ, typ);
    END IF;
    RETURN format(
        'SELECT %s FROM ((SELECT f.id FROM ffr.fragments f WHERE %s '
        'ORDER BY f.embedding::%s <=> $1::%s LIMIT $2) UNION (%s)) c(id) '
        'JOIN ffr.fragments f ON f.id = c.id AND f.embedding_model = %L '
        'CROSS JOIN LATERAL (SELECT %s AS d) b ORDER BY distance, f.id LIMIT $2',
        columns, filt, typ, typ, parts, p_model, best);
END $$;
