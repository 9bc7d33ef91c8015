-- 0007: the full-text side of ffr.hybrid_search ranks by BM25 (k1 1.2, b 0.75) instead of
-- ts_rank. ts_rank has no inverse document frequency: under "any word" (0005) a fragment that
-- repeats a word every fragment has ("said", "like") ranked beside one that holds the question's
-- rare word, so the full-text list found the asked-about chat less often than BM25 over the same
-- fragments does (MLDR val corpus-style, chat ranked first: hybrid 0.361, BM25 0.421;
-- BENCHMARKS.md). Document frequencies live in ffr.lexeme_stats, per FEM version, refreshed by
-- the index writer after each write (ffr.refresh_text_stats) and, for the versions already
-- indexed, by this migration. Without stats for the serving version the full-text side keeps
-- ts_rank. Same signature and grants for hybrid_search.

CREATE TABLE ffr.lexeme_stats (
    embedding_model  text NOT NULL,
    lexeme           text NOT NULL,
    fragments        integer NOT NULL CHECK (fragments > 0),
    PRIMARY KEY (embedding_model, lexeme)
);

CREATE TABLE ffr.text_stats (
    embedding_model  text PRIMARY KEY,
    fragments        integer NOT NULL,
    mean_lexemes     double precision NOT NULL
);

-- Recount one version's document frequencies (ts_stat over its fragments' tsv) and mean
-- length (distinct lexemes per fragment). Idempotent; runs in the caller's transaction.
CREATE FUNCTION ffr.refresh_text_stats(p_model text) RETURNS integer
LANGUAGE plpgsql
SET search_path = ffr, public, pg_catalog, pg_temp
AS $$
DECLARE
    v_rows integer;
BEGIN
    DELETE FROM ffr.lexeme_stats WHERE embedding_model = p_model;
    INSERT INTO ffr.lexeme_stats (embedding_model, lexeme, fragments)
    SELECT p_model, s.word, s.ndoc
    FROM ts_stat(format('SELECT tsv FROM ffr.fragments WHERE embedding_model = %L', p_model)) s;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    INSERT INTO ffr.text_stats (embedding_model, fragments, mean_lexemes)
    SELECT p_model, count(*), coalesce(avg(length(f.tsv)), 0)
    FROM ffr.fragments f WHERE f.embedding_model = p_model
    ON CONFLICT (embedding_model) DO UPDATE
        SET fragments = EXCLUDED.fragments, mean_lexemes = EXCLUDED.mean_lexemes;
    RETURN v_rows;
END $$;

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
    v_docs   integer;
    v_mean   double precision;
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
    SELECT t.fragments, t.mean_lexemes INTO v_docs, v_mean
    FROM ffr.text_stats t WHERE t.embedding_model = v_model;
    IF query_embedding IS NOT NULL THEN
        -- search_fragments returns its rows best first.
        SELECT coalesce(array_agg(s.fragment_id ORDER BY s.n), '{}') INTO v_vec
        FROM ffr.search_fragments(query_embedding, v_depth)
             WITH ORDINALITY AS s(fragment_id, dialogue_id, utterance_ids, image_ids, text,
                                  score, embedding_model, n);
    END IF;
    RETURN QUERY
    WITH words AS (
        -- The query's lexemes with their BM25 idf (none without stats: ts_rank below).
        SELECT w.lexeme,
               ln(1 + (v_docs - ls.fragments + 0.5) / (ls.fragments + 0.5)) AS idf
        FROM unnest(tsvector_to_array(to_tsvector('english'::regconfig,
                                                  coalesce(query_text, '')))) AS w(lexeme)
        JOIN ffr.lexeme_stats ls ON ls.embedding_model = v_model AND ls.lexeme = w.lexeme
        WHERE v_docs IS NOT NULL AND v_mean > 0
    ), vec AS (
        SELECT u.id, u.r FROM unnest(v_vec) WITH ORDINALITY AS u(id, r)
    ), fts AS (
        SELECT t.id, row_number() OVER (ORDER BY t.rank DESC, t.id) AS r
        FROM (
            SELECT f.id,
                   CASE WHEN v_docs IS NULL OR v_mean <= 0 THEN ts_rank(f.tsv, v_query, 1)
                   ELSE (SELECT coalesce(sum(
                            words.idf * e.tf * 2.2
                            / (e.tf + 1.2 * (0.25 + 0.75 * length(f.tsv) / v_mean))), 0)
                         FROM (SELECT u.lexeme, coalesce(array_length(u.positions, 1), 1) AS tf
                               FROM unnest(f.tsv) AS u) e
                         JOIN words ON words.lexeme = e.lexeme)
                   END AS rank
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

GRANT SELECT ON ffr.lexeme_stats, ffr.text_stats TO ffr_reader;
REVOKE EXECUTE ON FUNCTION ffr.refresh_text_stats(text) FROM PUBLIC;

-- The versions already indexed get their statistics now.
SELECT ffr.refresh_text_stats(v.embedding_model)
FROM (SELECT DISTINCT embedding_model FROM ffr.fragments) v;
