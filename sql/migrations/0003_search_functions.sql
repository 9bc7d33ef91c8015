-- 0003: the SQL serving functions (documented with psql examples in docs/sql.md).
--
--   ffr.search_fragments(query_embedding, k, dialogue_ids, speaker, since, until)
--   ffr.hybrid_search(query_embedding, query_text, k)
--   ffr.similar_fragments(fragment_id, k)
--
-- All of them read the version named by ffr.serving and are STABLE: PostgreSQL runs every
-- statement of a STABLE function under the snapshot of the calling query, so the serving pointer
-- and the fragment rows are read from ONE snapshot; a flip committed concurrently is seen either
-- entirely or not at all (never mixed versions, never an empty result in between).
--
-- Dynamic SQL: the HNSW index of a version is a partial expression index
-- (embedding::<type>(<dim>) ... WHERE embedding_model = '<version>'). The planner can only use
-- it when the query text contains that cast and that literal, so the query text is built by
-- ffr.fragment_search_sql from the TRUSTED registry row (ffr.fem_versions, written by the
-- indexer, quoted with %L / integers). User input (vector, k, filters) never becomes SQL text: it
-- is always bound as parameters ($1..$6) with EXECUTE ... USING.

CREATE TYPE ffr.fragment_hit AS (
    fragment_id      text,
    dialogue_id      text,
    utterance_ids    integer[],
    image_ids        integer[],
    text             text,
    score            double precision,  -- cosine similarity (search/similar) or RRF score (hybrid)
    embedding_model  text
);

-- The FEM version searches read now (NULL before the first index build).
CREATE FUNCTION ffr.serving_model() RETURNS text
LANGUAGE sql STABLE
SET search_path = ffr, pg_catalog, pg_temp
AS $$ SELECT embedding_model FROM ffr.serving WHERE singleton $$;

-- The query text of a top-k search over one version. Columns: id .. text, distance (what the
-- index orders by: halfvec precision for a halfvec index), embedding_model, exact_distance
-- (full precision: candidates are re-ranked and scored by it). Parameters of the returned SQL:
-- $1 query vector, $2 k, $3 dialogue ids (text[]), $4 speaker, $5 since, $6 until.
-- p_exact = true orders by the full-precision distance on the raw column (no index: exact
-- search, used as the fallback of selective filters and as the reference of the recall check).
CREATE FUNCTION ffr.fragment_search_sql(
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
    v      ffr.fem_versions%ROWTYPE;
    dist   text;
    conds  text[];
BEGIN
    SELECT * INTO v FROM ffr.fem_versions fv WHERE fv.embedding_model = p_model;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown FEM version %', p_model USING ERRCODE = 'undefined_object';
    END IF;
    IF p_exact THEN
        dist := 'f.embedding <=> $1';
    ELSE
        -- Must match the index expression exactly (see writer.py: hnsw_index_sql).
        dist := format('f.embedding::%s(%s) <=> $1::%s(%s)',
                       v.vector_type, v.dimension, v.vector_type, v.dimension);
    END IF;
    conds := ARRAY[format('f.embedding_model = %L', p_model), 'f.embedding IS NOT NULL'];
    IF p_dialogues THEN conds := conds || 'f.dialogue_id = ANY($3)'::text; END IF;
    IF p_speaker THEN conds := conds || 'f.speakers @> ARRAY[$4]'::text; END IF;
    IF p_since THEN conds := conds || 'f.ended_at >= $5'::text; END IF;
    IF p_until THEN conds := conds || 'f.started_at <= $6'::text; END IF;
    RETURN format(
        'SELECT f.id, f.dialogue_id, f.utterance_ids, f.image_ids, f.text, %s AS distance, '
        'f.embedding_model, f.embedding <=> $1 AS exact_distance '
        'FROM ffr.fragments f WHERE %s ORDER BY distance LIMIT $2',
        dist, array_to_string(conds, ' AND '));
END $$;

-- Filtered k-nearest-neighbour search over the serving version. Filters combine with AND;
-- NULL means "no filter". since/until keep fragments whose time span overlaps
-- [since, until] (fragments without timestamps never match a time filter).
--
-- Still k rows when the filter is selective: pgvector 0.8 iterative index scans
-- (hnsw.iterative_scan = relaxed_order) keep scanning the HNSW graph until k rows pass the
-- filter (up to hnsw.max_scan_tuples); if that still yields fewer than k rows, the function
-- answers with an exact filtered search instead, so it returns min(k, matching fragments) rows.
CREATE FUNCTION ffr.search_fragments(
    query_embedding  vector,
    k                integer,
    dialogue_ids     text[] DEFAULT NULL,
    speaker          text DEFAULT NULL,
    since            timestamptz DEFAULT NULL,
    until            timestamptz DEFAULT NULL
) RETURNS SETOF ffr.fragment_hit
LANGUAGE plpgsql STABLE
SET search_path = ffr, public, pg_catalog, pg_temp
SET hnsw.iterative_scan = relaxed_order
SET hnsw.ef_search = 100
AS $$
#variable_conflict use_variable
DECLARE
    v_model     text;
    v           ffr.fem_versions%ROWTYPE;
    v_hits      ffr.fragment_hit[];
    v_filtered  boolean := dialogue_ids IS NOT NULL OR speaker IS NOT NULL
                           OR since IS NOT NULL OR until IS NOT NULL;
    v_wrap      constant text :=
        'SELECT array_agg(ROW(h.id, h.dialogue_id, h.utterance_ids, h.image_ids, h.text, '
        '1 - h.exact_distance, h.embedding_model)::ffr.fragment_hit '
        'ORDER BY h.exact_distance, h.id) '
        'FROM (%s) h';
BEGIN
    IF query_embedding IS NULL THEN
        RAISE EXCEPTION 'query_embedding must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000, got %', k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.embedding_model INTO v_model FROM ffr.serving s WHERE s.singleton;
    IF v_model IS NULL THEN
        RAISE EXCEPTION 'no FEM version is serving yet: build the fragment index first'
            USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO v FROM ffr.fem_versions fv WHERE fv.embedding_model = v_model;
    IF vector_dims(query_embedding) <> v.dimension THEN
        RAISE EXCEPTION 'query_embedding has % dimensions, the serving FEM % has %',
            vector_dims(query_embedding), v_model, v.dimension
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Restored when the function returns (it has its own SET hnsw.ef_search).
    PERFORM set_config('hnsw.ef_search', greatest(v.ef_search, k)::text, true);

    EXECUTE format(v_wrap, ffr.fragment_search_sql(v_model, false, dialogue_ids IS NOT NULL,
                   speaker IS NOT NULL, since IS NOT NULL, until IS NOT NULL))
        INTO v_hits USING query_embedding, k, dialogue_ids, speaker, since, until;
    IF v_filtered AND coalesce(cardinality(v_hits), 0) < k THEN
        EXECUTE format(v_wrap, ffr.fragment_search_sql(v_model, true, dialogue_ids IS NOT NULL,
                       speaker IS NOT NULL, since IS NOT NULL, until IS NOT NULL))
            INTO v_hits USING query_embedding, k, dialogue_ids, speaker, since, until;
    END IF;
    RETURN QUERY
    SELECT u.fragment_id, u.dialogue_id, u.utterance_ids, u.image_ids, u.text, u.score,
           u.embedding_model
    FROM unnest(v_hits) WITH ORDINALITY AS u
    ORDER BY u.ordinality;
END $$;

-- Reciprocal-rank fusion (k0 = 60) of English full-text search and vector search over the
-- serving version: score = sum over the two lists of 1 / (60 + rank). Each list contributes its
-- top max(5k, 50) candidates. query_embedding NULL = full-text only; query_text NULL or empty =
-- vector only.
CREATE FUNCTION ffr.hybrid_search(
    query_embedding  vector,
    query_text       text,
    k                integer
) RETURNS SETOF ffr.fragment_hit
LANGUAGE plpgsql STABLE
SET search_path = ffr, public, pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v_model  text;
    v_depth  integer;
    v_query  tsquery;
    v_vec    text[] := '{}';
BEGIN
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000, got %', k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.embedding_model INTO v_model FROM ffr.serving s WHERE s.singleton;
    IF v_model IS NULL THEN
        RAISE EXCEPTION 'no FEM version is serving yet: build the fragment index first'
            USING ERRCODE = 'no_data_found';
    END IF;
    v_depth := least(greatest(5 * k, 50), 1000);
    v_query := websearch_to_tsquery('english'::regconfig, coalesce(query_text, ''));
    IF query_embedding IS NOT NULL THEN
        -- search_fragments returns its rows best first.
        SELECT coalesce(array_agg(s.fragment_id ORDER BY s.n), '{}') INTO v_vec
        FROM ffr.search_fragments(query_embedding, v_depth)
             WITH ORDINALITY AS s(fragment_id, dialogue_id, utterance_ids, image_ids, text,
                                  score, embedding_model, n);
    END IF;
    RETURN QUERY
    WITH vec AS (
        SELECT u.id, u.r FROM unnest(v_vec) WITH ORDINALITY AS u(id, r)
    ), fts AS (
        SELECT t.id, row_number() OVER (ORDER BY t.rank DESC, t.id) AS r
        FROM (
            SELECT f.id, ts_rank_cd(f.tsv, v_query) AS rank
            FROM ffr.fragments f
            WHERE f.embedding_model = v_model AND f.tsv @@ v_query
            ORDER BY rank DESC, f.id
            LIMIT v_depth
        ) t
    ), fused AS (
        SELECT coalesce(vec.id, fts.id) AS id,
               coalesce(1.0 / (60 + vec.r), 0) + coalesce(1.0 / (60 + fts.r), 0) AS score
        FROM vec FULL OUTER JOIN fts ON vec.id = fts.id
    )
    SELECT f.id, f.dialogue_id, f.utterance_ids, f.image_ids, f.text,
           fused.score::double precision, f.embedding_model
    FROM fused
    JOIN ffr.fragments f ON f.id = fused.id AND f.embedding_model = v_model
    ORDER BY fused.score DESC, f.id
    LIMIT k;
END $$;

-- The k fragments nearest to a stored fragment (itself excluded), in the serving version.
CREATE FUNCTION ffr.similar_fragments(
    fragment_id  text,
    k            integer
) RETURNS SETOF ffr.fragment_hit
LANGUAGE plpgsql STABLE
SET search_path = ffr, public, pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v_embedding  vector;
BEGIN
    IF k IS NULL OR k < 1 OR k > 999 THEN
        RAISE EXCEPTION 'k must be between 1 and 999, got %', k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT f.embedding INTO v_embedding
    FROM ffr.fragments f JOIN ffr.serving s ON s.embedding_model = f.embedding_model
    WHERE f.id = fragment_id AND s.singleton;
    IF v_embedding IS NULL THEN
        RAISE EXCEPTION 'fragment % is not in the serving index', fragment_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
    SELECT s.* FROM ffr.search_fragments(v_embedding, k + 1) s
    WHERE s.fragment_id <> fragment_id
    ORDER BY s.score DESC, s.fragment_id
    LIMIT k;
END $$;
