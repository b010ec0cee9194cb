#!/bin/bash
# Runs once, when the postgres container initialises its data folder:
# the application's role and database, which pgvigil's [databases.appdb]
# and [users.app] point at.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v app_password="$APP_PASSWORD" <<'SQL'
CREATE ROLE app LOGIN PASSWORD :'app_password';
CREATE DATABASE appdb OWNER app;
SQL
