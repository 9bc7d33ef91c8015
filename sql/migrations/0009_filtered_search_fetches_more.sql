-- 0009: a broad filter re-ranks more candidates. Above ffr.exact_filter_rows matching fragments,
-- search_fragments takes the HNSW iterative scan, fetches the first filtered rows in the
-- scan's relaxed order and keeps the k nearest by the full-precision distance. At 100,005 real
-- MiniLM fragments (issue 18, BENCHMARKS.md "Search at 100k on real vectors") a time window
-- holding 20% of the corpus recalled 0.941@10 fetching max(4k, 40) rows (0.947 even at
-- ef_search 200), 0.970 fetching 100 and 0.984 fetching 200, for ~2 ms more: the scan order is
-- only approximately by distance, so the true neighbours sit deeper in it. Now max(10k, 100)
-- rows, at most 1000. Nothing else changes: same signature, grants and behaviour otherwise.

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
        v_fetch := least(greatest(10 * k, 100), 1000);
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
