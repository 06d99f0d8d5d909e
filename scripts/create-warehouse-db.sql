-- The warehouse lives beside the Airflow metadata DB on the compose PostgreSQL (demo password; override in .env).
CREATE USER reserving WITH PASSWORD 'reserving';
CREATE DATABASE reserving OWNER reserving;
