-- Runs once, when the postgres service initialises its empty volume: the integration's staging database
-- beside Airflow's metadata database, owned by the same user (POSTGRES_USER runs this script).
-- docker/.env names it in AIRFLOW_CONN_STARMAMUT_STAGING; config/shops.yaml uses it via staging_conn_id.
CREATE DATABASE starmamut_staging;
