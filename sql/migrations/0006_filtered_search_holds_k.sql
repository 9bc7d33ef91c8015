-- 0006: ffr.search_fragments holds k under selective filters with exact-search recall
-- (issue 18). Measured before this migration (bench/filtered_search.py, 10k PhotoChat +
-- chitchat fragments, BENCHMARKS.md): a dialogue or speaker filter was already served exactly
-- (the planner takes the btree / GIN index and sorts the few matching rows), but a narrow time
-- range was not: the only time index, (embedding_model, started_at, ended_at), bounds one side of
-- the overlap test, so the planner chose the HNSW index, the iterative scan walked up to
-- hnsw.max_scan_tuples before the exact fallback (p50 22-28 ms for 0.2% of the corpus), and
-- between ~1% and ~20% of the corpus the first k rows of the relaxed-order scan missed some of
-- the true top k (recall@10 0.96-0.99, single queries down to 0.5).
--
-- Now:
-- 1. A GiST index on the time span of the fragment (a tstzrange) answers since/until as one
--    range-overlap test, so a narrow time window is as cheap to find as a dialogue.
-- 2. search_fragments counts the fragments that pass the filter, up to ffr.exact_filter_rows
--    (a custom setting, default 1000): when fewer pass, it answers with the exact filtered
--    search (the matching rows through their filter index, ORDER BY the full-precision distance:
--    recall 1 and milliseconds); otherwise with the HNSW iterative scan, which now fetches
--    4k candidates (at least 40) that pass the filter and keeps the k nearest by full-precision
--    distance (the relaxed order no longer decides which k come back). Fewer than k rows from
--    the index still fall back to the exact search. Unfiltered search is unchanged (one query).
-- Same signatures and grants (CREATE OR REPLACE keeps them); the new helper gets its own.

-- The time span as a range. least/greatest: an inverted span (started_at > ended_at, which the
-- writer never produces) must not make tstzrange raise on insert.
CREATE INDEX fragments_span_idx ON ffr.fragments USING gist (
    tstzrange(least(started_at, ended_at), greatest(started_at, ended_at), '[]'))
    WHERE started_at IS NOT NULL AND ended_at IS NOT NULL;

-- The WHERE clause of a search over one version, with the filters present ($3 dialogue ids,
-- $4 speaker, $5 since, $6 until). Only literals and the trusted version name become SQL text.
-- The time filter is the span [started_at, ended_at] overlapping [since, until] (no
-- timestamps, no match). p_span adds the same test as a range overlap that the GiST index above
-- answers (implied by the two comparisons: it changes no result). The count and the exact
-- search use it; the HNSW query leaves it out, or the planner, costing the overlap as very
-- selective, would sort every matching row of a broad window instead of walking the graph.
CREATE FUNCTION ffr.fragment_filter_sql(
    p_model      text,
    p_dialogues  boolean DEFAULT false,
    p_speaker    boolean DEFAULT false,
    p_since      boolean DEFAULT false,
    p_until      boolean DEFAULT false,
    p_span       boolean DEFAULT true
) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = ffr, public, pg_catalog, pg_temp
AS $$
DECLARE
    conds  text[];
    span   text;
BEGIN
    conds := ARRAY[format('f.embedding_model = %L', p_model), 'f.embedding IS NOT NULL'];
    IF p_dialogues THEN conds := conds || 'f.dialogue_id = ANY($3)'::text; END IF;
    IF p_speaker THEN conds := conds || 'f.speakers @> ARRAY[$4]'::text; END IF;
    IF p_since THEN conds := conds || 'f.ended_at >= $5'::text; END IF;
    IF p_until THEN conds := conds || 'f.started_at <= $6'::text; END IF;
    IF p_span AND (p_since OR p_until) THEN
        span := CASE
            WHEN p_since AND p_until THEN 'tstzrange(least($5, $6), greatest($5, $6), ''[]'')'
            WHEN p_since THEN 'tstzrange($5, NULL, ''[]'')'
            ELSE 'tstzrange(NULL, $6, ''[]'')'
        END;
        conds := conds || ARRAY[
            'f.started_at IS NOT NULL', 'f.ended_at IS NOT NULL',
            'tstzrange(least(f.started_at, f.ended_at), greatest(f.started_at, f.ended_at), '
            '''[]'') && ' || span];
    END IF;
    RETURN array_to_string(conds, ' AND ');
END $$;

-- As in 0003, with the WHERE clause of ffr.fragment_filter_sql (the range test only in the
-- exact search).
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
    v      ffr.fem_versions%ROWTYPE;
    dist   text;
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
    RETURN format(
        'SELECT f.id, f.dialogue_id, f.utterance_ids, f.image_ids, f.text, %s AS distance, '
        'f.embedding_model, f.embedding <=> $1 AS exact_distance '
        'FROM ffr.fragments f WHERE %s ORDER BY distance LIMIT $2',
        dist, ffr.fragment_filter_sql(p_model, p_dialogues, p_speaker, p_since, p_until,
                                      p_exact));
END $$;

-- Filtered k-nearest-neighbour search over the serving version (see 0003 and the head of this
-- file). Returns min(k, matching fragments) rows, best first.
CREATE OR REPLACE FUNCTION ffr.search_fragments(
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
    v_exact     boolean := false;
    v_limit     integer;
    v_matching  integer;
    v_fetch     integer := k;
    -- The k nearest of the rows of the inner query ($7 = k), best first, scored by the
    -- full-precision distance.
    v_wrap      constant text :=
        'SELECT array_agg(ROW(h.id, h.dialogue_id, h.utterance_ids, h.image_ids, h.text, '
        '1 - h.exact_distance, h.embedding_model)::ffr.fragment_hit '
        'ORDER BY h.exact_distance, h.id) '
        'FROM (SELECT * FROM (%s) h0 ORDER BY h0.exact_distance, h0.id LIMIT $7) h';
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

    IF v_filtered THEN
        -- Selective filter: count the matching rows (through their filter index), stopping at
        -- the limit; fewer = the exact search over them is cheap and exact.
        -- ffr.exact_filter_rows 0 = always the index.
        v_limit := greatest(coalesce(
            nullif(current_setting('ffr.exact_filter_rows', true), '')::integer, 1000), 0);
        IF v_limit > 0 THEN
            EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM ffr.fragments f WHERE %s '
                           'LIMIT $7) c',
                           ffr.fragment_filter_sql(v_model, dialogue_ids IS NOT NULL,
                                                   speaker IS NOT NULL, since IS NOT NULL,
                                                   until IS NOT NULL))
                INTO v_matching
                USING query_embedding, k, dialogue_ids, speaker, since, until, v_limit;
            IF v_matching = 0 THEN
                RETURN;
            END IF;
            v_exact := v_matching < v_limit;
        END IF;
        v_fetch := least(greatest(4 * k, 40), 1000);
    END IF;
    IF NOT v_exact THEN
        EXECUTE format(v_wrap, ffr.fragment_search_sql(v_model, false, dialogue_ids IS NOT NULL,
                       speaker IS NOT NULL, since IS NOT NULL, until IS NOT NULL))
            INTO v_hits USING query_embedding, v_fetch, dialogue_ids, speaker, since, until, k;
    END IF;
    IF v_exact OR (v_filtered AND coalesce(cardinality(v_hits), 0) < k) THEN
        EXECUTE format(v_wrap, ffr.fragment_search_sql(v_model, true, dialogue_ids IS NOT NULL,
                       speaker IS NOT NULL, since IS NOT NULL, until IS NOT NULL))
            INTO v_hits USING query_embedding, k, dialogue_ids, speaker, since, until, k;
    END IF;
    RETURN QUERY
    SELECT u.fragment_id, u.dialogue_id, u.utterance_ids, u.image_ids, u.text, u.score,
           u.embedding_model
    FROM unnest(v_hits) WITH ORDINALITY AS u
    ORDER BY u.ordinality;
END $$;

REVOKE EXECUTE ON FUNCTION
    ffr.fragment_filter_sql(text, boolean, boolean, boolean, boolean, boolean)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    ffr.fragment_filter_sql(text, boolean, boolean, boolean, boolean, boolean)
TO ffr_reader;
