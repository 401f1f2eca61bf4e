#!/usr/bin/env python3
# Copyright 2026 the maas-ha charms authors. Licensed under the Apache License, Version 2.0.
"""database-requirer-ops: a `database` client written the way charm authors write one.

ops and Canonical's data_interfaces library (charms.data_platform_libs.v0, DatabaseRequires),
both unchanged, against postgresql-ha's `database` relation (tests only). On `database_created`
(and when the endpoints change) it records what the library handed it, then connects through
each endpoint with those credentials, verifying the server against `tls-ca`, and records what
the server says. Everything goes to /var/lib/database-requirer-ops/<application>/result.json
(0600; the password only as its SHA-256) for the end-to-end test; the status says whether it
could connect.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import ops
import psycopg2
from charms.data_platform_libs.v0.data_interfaces import (
    DatabaseCreatedEvent,
    DatabaseRequires,
)

logger = logging.getLogger(__name__)

BASE = Path("/var/lib/database-requirer-ops")
FIELDS = [
    "database",
    "endpoints",
    "read-only-endpoints",
    "version",
    "username",
    "password",
    "uris",
    "tls",
    "tls-ca",
]


def first_endpoint(endpoints):
    """`host:port` of the first of a comma-separated list."""
    host, _, port = endpoints.split(",")[0].strip().rpartition(":")
    return host, int(port)


def one_row(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def execute(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)


def error_text(e):
    return (getattr(e, "pgerror", None) or str(e)).strip()


class DatabaseRequirerCharm(ops.CharmBase):
    """Asks for a database with `extra-user-roles`, records and tries what it gets."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # Several applications of this charm may share a machine.
        self.state = BASE / self.app.name
        self.result = self.state / "result.json"
        roles = str(self.config.get("extra-user-roles") or "") or None
        self.database = DatabaseRequires(
            self,
            relation_name="database",
            database_name=str(self.config["database"]),
            extra_user_roles=roles,
        )
        framework.observe(self.on.install, self._on_install)
        framework.observe(self.database.on.database_created, self._on_database_created)
        framework.observe(self.database.on.endpoints_changed, self._on_endpoints_changed)
        framework.observe(
            self.database.on.read_only_endpoints_changed, self._on_endpoints_changed
        )
        framework.observe(self.on.collect_unit_status, self._on_collect_status)

    def _on_install(self, _event):
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _on_database_created(self, event: DatabaseCreatedEvent):
        # What the event carries: the library reads the credentials and `uris` from the secret
        # named by `secret-user`, the rest from the provider's app databag.
        got = {
            "database": event.database,
            "endpoints": event.endpoints,
            "read-only-endpoints": event.read_only_endpoints,
            "version": event.version,
            "username": event.username,
            "password": event.password,
            "uris": event.uris,
            "tls": event.tls,
            "tls-ca": event.tls_ca,
        }
        self._record("database_created", event.relation, got)

    def _on_endpoints_changed(self, event):
        got = self.database.fetch_relation_data([event.relation.id], FIELDS).get(
            event.relation.id, {}
        )
        self._record(event.handle.kind, event.relation, got)

    def _record(self, source, relation, got):
        password = got.get("password") or ""
        shown = {k: v for k, v in got.items() if k != "password"}
        if password and shown.get("uris"):
            shown["uris"] = shown["uris"].replace(f":{password}@", ":<password>@")
        provider_bag = relation.data[relation.app] if relation.app else {}
        result = {
            "event": source,
            "relation-id": relation.id,
            "provider": relation.app.name if relation.app else None,
            # The provider's app databag as the library sees it: which keys, not the values.
            "provider-keys": sorted(provider_bag.keys()),
            "got": shown,
            "password-sha256": hashlib.sha256(got["password"].encode()).hexdigest()
            if got.get("password")
            else None,
            "secret-user": provider_bag.get("secret-user"),
            "checks": {},
        }
        missing = [k for k in ("endpoints", "username", "password", "tls-ca") if not got.get(k)]
        if missing:
            result["error"] = f"not given yet: {', '.join(missing)}"
        else:
            try:
                result["checks"] = self._connect(got)
            except Exception as e:  # noqa: BLE001 -- recorded for the test to show
                logger.exception("could not use the database")
                result["error"] = f"{type(e).__name__}: {error_text(e)}"
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.result.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
        os.replace(tmp, self.result)

    def _connect(self, got):
        ca = self.state / "ca.pem"
        ca.write_text(got["tls-ca"])
        tls = {"sslmode": "verify-full", "sslrootcert": str(ca)}
        checks = {}
        host, port = first_endpoint(got["endpoints"])
        conn = psycopg2.connect(
            host=host,
            port=port,
            dbname=got["database"],
            user=got["username"],
            password=got["password"],
            connect_timeout=10,
            **tls,
        )
        conn.autocommit = True
        try:
            (
                checks["current-user"],
                checks["current-database"],
                checks["server-version"],
                checks["ssl"],
            ) = one_row(
                conn,
                "SELECT current_user, current_database(), current_setting('server_version'),"
                " (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
            )
            checks["superuser"], checks["createdb"], checks["createrole"] = one_row(
                conn,
                "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles"
                " WHERE rolname = current_user",
            )
            checks["member-of"] = one_row(
                conn,
                "SELECT coalesce(array_agg(r.rolname::text ORDER BY r.rolname), '{}')"
                " FROM pg_roles r WHERE pg_has_role(current_user, r.oid, 'MEMBER')"
                " AND r.rolname <> current_user",
            )[0]
            execute(conn, "CREATE TABLE IF NOT EXISTS written (n int)")
            execute(conn, "INSERT INTO written VALUES (1)")
            checks["wrote"] = one_row(conn, "SELECT count(*) FROM written")[0]
            # createdb: a database of its own, then gone again.
            made = f"{got['database']}_made_by_client"
            try:
                execute(conn, f'CREATE DATABASE "{made}"')
                execute(conn, f'DROP DATABASE "{made}"')
                checks["create-database"] = "ok"
            except psycopg2.Error as e:
                checks["create-database"] = error_text(e)
            # Programs on the server (pg_execute_server_program or superuser).
            try:
                execute(conn, "COPY (SELECT 1) TO PROGRAM 'true'")
                checks["copy-to-program"] = "ok"
            except psycopg2.Error as e:
                checks["copy-to-program"] = error_text(e)
        finally:
            conn.close()
        # The `uris` the library read from the secret work as they are (libpq takes URIs).
        with psycopg2.connect(
            got["uris"], connect_timeout=10, **tls
        ) as c2:
            checks["uris-user"] = one_row(c2, "SELECT current_user")[0]
        c2.close()
        if got.get("read-only-endpoints"):
            host, port = first_endpoint(got["read-only-endpoints"])
            with psycopg2.connect(
                host=host,
                port=port,
                dbname=got["database"],
                user=got["username"],
                password=got["password"],
                connect_timeout=10,
                **tls,
            ) as c3:
                checks["read-only-in-recovery"] = one_row(c3, "SELECT pg_is_in_recovery()")[0]
                checks["read-only-sees"] = one_row(c3, "SELECT count(*) FROM written")[0]
            c3.close()
        return checks

    def _on_collect_status(self, event: ops.CollectStatusEvent):
        if not self.model.relations["database"]:
            event.add_status(ops.BlockedStatus("needs a database relation"))
            return
        try:
            result = json.loads(self.result.read_text())
        except (OSError, ValueError):
            event.add_status(ops.WaitingStatus("waiting for the database"))
            return
        if result.get("error"):
            event.add_status(ops.BlockedStatus(f"database: {result['error']}"[:120]))
            return
        checks = result["checks"]
        event.add_status(
            ops.ActiveStatus(
                f"connected as {checks['current-user']} to {checks['current-database']}"
            )
        )


if __name__ == "__main__":  # pragma: nocover
    ops.main(DatabaseRequirerCharm)
