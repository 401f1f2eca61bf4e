#!/usr/bin/env python3
# Copyright 2026 the maas-ha charms authors. Licensed under the Apache License, Version 2.0.
"""s3-provider-ops: an S3 server and an `s3` interface provider, for the e2e tests."""

import json
import logging
import secrets
import subprocess
import time
from pathlib import Path

import ops

logger = logging.getLogger(__name__)

STATE = Path("/var/lib/s3-provider-ops")
KEY = STATE / "key.pem"
CERT = STATE / "cert.pem"
KEYS = STATE / "credentials.json"
NGINX_CONF = STATE / "nginx.conf"
UNITS = {
    "s3-moto": "/etc/systemd/system/s3-moto.service",
    "s3-nginx": "/etc/systemd/system/s3-nginx.service",
}
MOTO_PORT = 9000
TLS_PORT = 9443


class S3ProviderCharm(ops.CharmBase):
    """Serves one bucket over TLS and hands its address and keys to `s3-credentials`."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.update_status,
            self.on.leader_elected,
            self.on["s3-credentials"].relation_joined,
            self.on["s3-credentials"].relation_changed,
        ):
            framework.observe(event, self._reconcile)

    def _address(self) -> str:
        return str(self.model.get_binding("s3-credentials").network.bind_address)

    def _server(self, address: str):
        STATE.mkdir(parents=True, exist_ok=True)
        if not CERT.exists():
            # The address twice in subjectAltName: pgBackRest 2.45 matches its endpoint by text
            # against the DNS entries (the common name without them), never an IP entry
            # (tls/client.c tlsClientHostVerify), while Python's ssl (s3cmd, maas-region's
            # backups) matches an IP address against IP entries only.
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                 "-keyout", str(KEY), "-out", str(CERT), "-subj", f"/CN={address}",
                 "-addext", f"subjectAltName=IP:{address},DNS:{address}"],
                check=True, capture_output=True,
            )
            KEY.chmod(0o600)
        NGINX_CONF.write_text(
            "worker_processes 1;\n"
            f"pid {STATE}/nginx.pid;\n"
            f"error_log {STATE}/nginx-error.log;\n"
            "events {}\n"
            "http {\n"
            "  access_log off;\n"
            "  client_max_body_size 0;\n"
            "  proxy_request_buffering off;\n"
            "  server {\n"
            f"    listen {TLS_PORT} ssl;\n"
            f"    ssl_certificate {CERT};\n"
            f"    ssl_certificate_key {KEY};\n"
            "    location / {\n"
            f"      proxy_pass http://127.0.0.1:{MOTO_PORT};\n"
            "      proxy_set_header Host $http_host;\n"
            "      proxy_http_version 1.1;\n"
            "    }\n"
            "  }\n"
            "}\n"
        )
        venv = Path(self.charm_dir) / "venv"
        moto = (
            "[Unit]\nDescription=moto S3 server (tests)\n\n[Service]\n"
            f"Environment=PYTHONPATH={venv}\n"
            "ExecStart=/usr/bin/python3 -c \"from moto.server import main; "
            f"main(['-H', '127.0.0.1', '-p', '{MOTO_PORT}'])\"\n"
            "Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"
        )
        nginx = (
            "[Unit]\nDescription=TLS in front of the moto S3 server (tests)\nAfter=s3-moto.service\n\n"
            f"[Service]\nExecStart=/usr/sbin/nginx -c {NGINX_CONF} -g 'daemon off;'\n"
            "Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"
        )
        changed = False
        for name, text in (("s3-moto", moto), ("s3-nginx", nginx)):
            path = Path(UNITS[name])
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                changed = True
        if changed:
            subprocess.run(["systemctl", "daemon-reload"], check=True)
        for name in UNITS:
            subprocess.run(["systemctl", "enable", "--now", name], check=True)
        self.unit.set_ports(TLS_PORT)

    def _bucket(self, bucket: str, creds: dict):
        import boto3  # from venv/, with moto

        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{MOTO_PORT}",
            aws_access_key_id=creds["access-key"],
            aws_secret_access_key=creds["secret-key"],
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
                break
            except Exception as e:  # the server is still starting
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 server did not answer: {e}") from e
                time.sleep(0.5)
        if bucket not in names:
            client.create_bucket(Bucket=bucket)

    def _credentials(self) -> dict:
        if not KEYS.exists():
            KEYS.write_text(json.dumps({
                "access-key": "AK" + secrets.token_hex(8).upper(),
                "secret-key": secrets.token_urlsafe(30),
            }))
            KEYS.chmod(0o600)
        return json.loads(KEYS.read_text())

    def _reconcile(self, _event):
        address = self._address()
        self._server(address)
        creds = self._credentials()
        bucket = self.config["bucket"]
        self._bucket(bucket, creds)
        if self.unit.is_leader():
            for rel in self.model.relations["s3-credentials"]:
                # As S3Provider: answer once the requirer has named a bucket.
                if not rel.app or not rel.data[rel.app].get("bucket"):
                    continue
                info = {
                    "access-key": creds["access-key"],
                    "secret-key": creds["secret-key"],
                    "bucket": bucket,
                    "endpoint": f"https://{address}:{TLS_PORT}",
                    "path": self.config["path"],
                    "region": self.config["region"],
                    "s3-uri-style": "path",
                    # S3Provider.update_connection_info: list options as JSON.
                    "tls-ca-chain": json.dumps([CERT.read_text()]),
                }
                rel.data[self.app].update(info)
        self.unit.status = ops.ActiveStatus(f"serving s3://{bucket} on https://{address}:{TLS_PORT}")


if __name__ == "__main__":
    ops.main(S3ProviderCharm)
