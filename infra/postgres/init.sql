-- First start of the compose Postgres (pgvector/pgvector:pg17): one database per consumer on the
-- one server. The FFR schema itself (tables, HNSW index, search functions, ffr_reader role) is
-- created by the migrations (`ffr db migrate`, the `ffr_migrate` service), not here.
CREATE DATABASE ffr;
CREATE DATABASE dagster;
CREATE DATABASE mlflow;
\connect ffr
CREATE EXTENSION IF NOT EXISTS vector;
