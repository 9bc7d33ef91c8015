-- 0005: ffr.hybrid_search matches ANY of the query's words on the full-text side, ranked by
-- ts_rank with length normalisation (more matched words and rarer ones rank higher), instead of
-- websearch_to_tsquery's ALL of them: a natural-language question ("what did they say about the
-- flat in Lisbon?") almost never has every word in one fragment, so under AND the full-text list
-- was empty for most questions and hybrid search returned the vector search's order (measured on
-- MLDR test, corpus-style queries: R@20 0.339 hybrid vs 0.337 vector). Same signature and
-- grants (CREATE OR REPLACE keeps them).

-- Reciprocal-rank fusion (k0 = 60) of English full-text search and vector search over the
-- serving version: score = sum over the two lists of 1 / (60 + rank). Each list contributes its
-- top max(5k, 50) candidates. query_embedding NULL = full-text only; query_text NULL or empty =
-- vector only.
CREATE OR REPLACE FUNCTION ffr.hybrid_search(
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
    -- Any of the query's words (stemmed, stop words dropped), not all of them: a question
    -- rarely shares every word with its answer.
    v_query := nullif(replace(plainto_tsquery('english'::regconfig,
                                              coalesce(query_text, ''))::text, ' & ', ' | '),
                      '')::tsquery;
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
            SELECT f.id, ts_rank(f.tsv, v_query, 1) AS rank
            FROM ffr.fragments f
            WHERE v_query IS NOT NULL AND f.embedding_model = v_model AND f.tsv @@ v_query
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
