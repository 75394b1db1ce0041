#!/bin/sh
# Runs once, when the compose PostgreSQL starts on an empty volume (docker-entrypoint-initdb.d):
# creates the three databases and applies database/schema/*.sql (mounted at /schema), each
# file to the database database/schema.py applies it to.
set -eu

psql_as_admin() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" "$@"
}

for database in user_db catalog_db engagement_db; do
    psql_as_admin --dbname postgres --command "CREATE DATABASE $database"
done

apply() {  # apply DATABASE FILE
    echo "applying $2 to $1"
    psql_as_admin --dbname "$1" --file "${SCHEMA_DIR:-/schema}/$2"
}
apply user_db user_db.sql
apply catalog_db catalog_db.sql
apply engagement_db engagement_db.sql
apply engagement_db model.sql
