"""Broker settings in a postgresql:// URL, so the command line reaches any table."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from taskmaster_core import ConfigurationError, open_broker
from taskmaster_core._cli import main
from taskmaster_postgres import PostgresBroker
from tests.pg_fixtures import unique_schema

pytestmark = pytest.mark.postgres


def as_url(dsn: str, **query: str) -> str:
    if "://" in dsn:
        return f"{dsn}{'&' if '?' in dsn else '?'}{urlencode(query)}"
    params = conninfo_to_dict(dsn)
    dbname = str(params.pop("dbname", ""))
    return f"postgresql:///{quote(dbname)}?{urlencode({**params, **query})}"


def test_url_query_settings_reach_the_broker_and_not_libpq() -> None:
    broker = open_broker(
        "postgresql://u@h/db?schema=My%20Jobs&table=t1&keep_done=yes&listen=0&connect_timeout=3"
    )
    assert isinstance(broker, PostgresBroker)
    assert (broker.names.schema, broker.names.table) == ("My Jobs", "t1")
    assert broker.keep_done is True
    assert broker.listen is False
    assert "schema" not in broker._dsn and "connect_timeout=3" in broker._dsn
    with pytest.raises(ConfigurationError, match="keep_done='maybe' must be true or false"):
        open_broker("postgresql://u@h/db?keep_done=maybe")


def test_the_cli_works_on_the_table_the_url_names(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = unique_schema()
    url = as_url(pg_dsn, schema=schema, table="cli jobs")
    try:
        assert main(["--url", url, "migrate"]) == 0
        assert main(["put", "emails", '{"to": "a@b"}', "--url", url]) == 0
        capsys.readouterr()
        assert main(["stats", "--json", "--url", url]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert (row["queue"], row["ready"]) == ("emails", 1)
        with psycopg.connect(pg_dsn) as conn:
            count = conn.execute(f'SELECT count(*) FROM "{schema}"."cli jobs"').fetchone()
        assert count == (1,)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
