-- Databases beside Airflow's on the compose Postgres: MLflow's tracking store and the optimizer's store
-- (never the Airflow metadata database). Run once, by the postgres image, on an empty data volume.
CREATE DATABASE mlflow;
CREATE DATABASE sda;
