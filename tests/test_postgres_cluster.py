"""The throwaway PostgreSQL cluster the warehouse tests run on (revetl/testing/postgres.py)."""

from __future__ import annotations

import os

import adbc_driver_postgresql.dbapi as adbc


def test_each_test_gets_its_own_database_reached_by_the_libpq_variables(postgres_database, postgres_cluster):
    assert os.environ["PGDATABASE"] == postgres_database.name
    assert os.environ["PGHOST"] == "127.0.0.1"
    with adbc.connect(postgres_database.uri) as connection, connection.cursor() as cursor:
        cursor.execute("select current_database(), current_setting('TimeZone'), current_setting('server_version_num')")
        name, zone, version = cursor.fetchall()[0]
    assert (name, zone) == (postgres_database.name, "UTC")
    assert int(version) >= 150000
    assert postgres_database.name in postgres_cluster.sql("select datname from pg_database")


def test_a_wrong_password_is_refused(postgres_database):
    import pytest

    wrong = postgres_database.uri.replace(postgres_database.password, "not-the-password")
    with pytest.raises(Exception, match="password authentication failed"):
        adbc.connect(wrong).close()
