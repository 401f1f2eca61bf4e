#!/usr/bin/env python3
# Copyright 2026 the maas-ha charms authors. Licensed under the Apache License, Version 2.0.
"""database-requirer-v1-ops: a `database` client on data_interfaces v1, as new charms are built.

ops and Canonical's dpcharmlibs-interfaces from PyPI (data_interfaces v1,
ResourceRequirerEventHandler), both unchanged, against postgresql-ha's `database` relation
(tests only). The library writes its request list on relation-created; on `resource_created`
(and when the endpoints change) this charm records the response the library handed it, then
connects through the endpoint with those credentials, verifying the server against `tls-ca`,
and records what the server says. Everything goes to
/var/lib/database-requirer-v1-ops/<application>/result.json (0600; the password only as its
SHA-256) for the end-to-end test; the status says whether it could connect.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import ops
import psycopg2
from dpcharmlibs.interfaces import (
    RequirerCommonModel,
    ResourceProviderModel,
    ResourceRequirerEventHandler,
)

logger = logging.getLogger(__name__)

BASE = Path("/var/lib/database-requirer-v1-ops")


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


class DatabaseRequirerV1Charm(ops.CharmBase):
    """Asks for a database with `extra-user-roles`, records and tries what it gets."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # Several applications of this charm may share a machine.
        self.state = BASE / self.app.name
        self.result = self.state / "result.json"
        roles = str(self.config.get("extra-user-roles") or "") or None
        self.database = ResourceRequirerEventHandler(
            self,
            "database",
            [RequirerCommonModel(resource=str(self.config["database"]), extra_user_roles=roles)],
            response_model=ResourceProviderModel,
        )
        framework.observe(self.on.install, self._on_install)
        framework.observe(self.database.on.resource_created, self._on_response)
        framework.observe(self.database.on.endpoints_changed, self._on_response)
        framework.observe(self.database.on.read_only_endpoints_changed, self._on_response)
        framework.observe(self.on.collect_unit_status, self._on_collect_status)

    def _on_install(self, _event):
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _on_response(self, event):
        # The library resolves username, password, uris (secret-user) and tls, tls-ca
        # (secret-tls) from the secrets the response names.
        r: ResourceProviderModel = event.response
        got = {
            "resource": r.resource,
            "request-id": r.request_id,
            "endpoints": r.endpoints,
            "read-only-endpoints": r.read_only_endpoints,
            "version": r.version,
            "username": r.username,
            "password": r.password,
            "uris": r.uris,
            "read-only-uris": r.read_only_uris,
            "tls": r.tls,
            "tls-ca": r.tls_ca,
            "secret-user": r.secret_user,
            "secret-tls": r.secret_tls,
        }
        self._record(event.handle.kind, event.relation, got)

    def _record(self, source, relation, got):
        password = got.get("password") or ""
        shown = {k: v for k, v in got.items() if k != "password"}
        for k in ("uris", "read-only-uris"):
            if password and shown.get(k):
                shown[k] = shown[k].replace(f":{password}@", ":<password>@")
        provider_bag = relation.data[relation.app] if relation.app else {}
        requests = json.loads(provider_bag.get("requests") or "[]")
        result = {
            "event": source,
            "relation-id": relation.id,
            "provider": relation.app.name if relation.app else None,
            # The provider's app databag and its answers as the library sees them: which keys,
            # not the values.
            "provider-keys": sorted(provider_bag.keys()),
            "provider-version": provider_bag.get("version"),
            "answer-keys": sorted(k for k, v in requests[0].items() if v is not None)
            if requests
            else [],
            # The request as this unit's library wrote it, for the request-id.
            "requested": json.loads(relation.data[self.app].get("requests") or "[]")
            if self.unit.is_leader()
            else None,
            "got": shown,
            "password-sha256": hashlib.sha256(password.encode()).hexdigest()
            if password
            else None,
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
        checks["endpoint-host"] = host
        conn = psycopg2.connect(
            host=host,
            port=port,
            dbname=got["resource"],
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
                checks["server-address"],
            ) = one_row(
                conn,
                "SELECT current_user, current_database(), current_setting('server_version'),"
                " (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()),"
                " host(inet_server_addr())",
            )
            checks["superuser"], checks["createdb"] = one_row(
                conn,
                "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user",
            )
            execute(conn, "CREATE TABLE IF NOT EXISTS written (n int)")
            execute(conn, "INSERT INTO written VALUES (1)")
            checks["wrote"] = one_row(conn, "SELECT count(*) FROM written")[0]
        finally:
            conn.close()
        # The `uris` the library read from the secret work as they are (libpq takes URIs).
        c2 = psycopg2.connect(got["uris"], connect_timeout=10, **tls)
        try:
            checks["uris-user"] = one_row(c2, "SELECT current_user")[0]
        finally:
            c2.close()
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
    ops.main(DatabaseRequirerV1Charm)
