-- 0004: ffr_reader, the read-only role of analysts and the search API. A NOLOGIN group role:
-- give people or services their own LOGIN role that is a member of it, e.g.
--   CREATE ROLE analyst LOGIN PASSWORD '...' IN ROLE ffr_reader;
-- (docs/sql.md). It can read dialogues and fragments and call the search functions; it cannot
-- write (no INSERT/UPDATE/DELETE/TRUNCATE grants) and cannot change the schema (no CREATE on
-- schema ffr, owns nothing). Roles are cluster-wide, so the role is created only if missing;
-- the grants below are per database.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ffr_reader') THEN
        CREATE ROLE ffr_reader NOLOGIN;
    END IF;
END $$;

GRANT USAGE ON SCHEMA ffr TO ffr_reader;
GRANT SELECT ON ffr.dialogues, ffr.utterances, ffr.images, ffr.fragments, ffr.fem_versions,
    ffr.serving TO ffr_reader;

-- Functions are executable by PUBLIC by default; make the grant explicit and exclusive.
REVOKE EXECUTE ON FUNCTION
    ffr.serving_model(),
    ffr.fragment_search_sql(text, boolean, boolean, boolean, boolean, boolean),
    ffr.search_fragments(vector, integer, text[], text, timestamptz, timestamptz),
    ffr.hybrid_search(vector, text, integer),
    ffr.similar_fragments(text, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    ffr.serving_model(),
    ffr.fragment_search_sql(text, boolean, boolean, boolean, boolean, boolean),
    ffr.search_fragments(vector, integer, text[], text, timestamptz, timestamptz),
    ffr.hybrid_search(vector, text, integer),
    ffr.similar_fragments(text, integer)
TO ffr_reader;
