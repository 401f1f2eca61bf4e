#!/usr/bin/env python3
# Copyright 2026 the maas-ha charms authors. Licensed under the Apache License, Version 2.0.
"""prometheus-ops: Prometheus receiving remote-write and evaluating the rules sent to it.

The prometheus_remote_write interface as canonical/prometheus-k8s-operator's library
(lib/charms/prometheus_k8s/v0/prometheus_remote_write.py) speaks it, that library not being on
PyPI: each provider unit writes `remote_write` = {"url": ...} in its unit databag
(PrometheusRemoteWriteProvider._set_endpoint_on_relation); each consumer application's leader
writes its rules as `alert_rules` = {"groups": [...]} in its app databag
(PrometheusRemoteWriteConsumer._push_alerts_to_relation_databag), which the provider loads one
file per application (PrometheusRemoteWriteProvider.alerts) after validating them, telling the
consumer about invalid ones in its app databag's `event` {"errors": ...}.
"""

import json
import logging
import subprocess
from pathlib import Path

import ops

logger = logging.getLogger(__name__)

PORT = 9090
CONFIG = Path("/etc/prometheus/prometheus.yml")
DEFAULTS = Path("/etc/default/prometheus")
RULES = Path("/etc/prometheus/rules")
INSTALLED = Path("/var/lib/prometheus-ops/installed")


def run(argv):
    """Runs a command; a failure raises with its stderr (the hook fails, Juju retries it)."""
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def write(path: Path, text: str) -> bool:
    """Writes `text` to `path` if it differs; whether it did."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.replace(path)
    return True


class PrometheusCharm(ops.CharmBase):
    """One Prometheus server per unit; every consumer's samples and rules go to each."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        for event in (
            self.on.install,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on["receive-remote-write"].relation_joined,
            self.on["receive-remote-write"].relation_changed,
            self.on["receive-remote-write"].relation_departed,
            self.on["receive-remote-write"].relation_broken,
        ):
            framework.observe(event, self._reconcile)

    def _address(self) -> str:
        return str(self.model.get_binding("receive-remote-write").network.bind_address)

    def _rules(self, broken_id):
        """Rule files wanted: {file name: text}, and the applications whose rules are invalid."""
        wanted, invalid = {}, []
        for rel in self.model.relations["receive-remote-write"]:
            if rel.id == broken_id or not rel.app:
                continue
            raw = rel.data[rel.app].get("alert_rules")
            if not raw:
                continue
            name = f"{rel.app.name}-{rel.id}.rules"
            text = json.dumps(json.loads(raw), indent=1)  # JSON is YAML
            check = RULES.parent / "check.rules"
            check.write_text(text)
            p = subprocess.run(["promtool", "check", "rules", str(check)], capture_output=True, text=True)
            check.unlink()
            if p.returncode != 0:
                errors = (p.stdout + p.stderr).strip()
                invalid.append(f"{rel.app.name}: {errors.splitlines()[-1] if errors else 'invalid'}")
                if self.unit.is_leader():
                    rel.data[self.app]["event"] = json.dumps({"valid": False, "errors": errors})
                continue
            if self.unit.is_leader() and rel.data[self.app].get("event"):
                rel.data[self.app]["event"] = ""
            wanted[name] = text
        return wanted, invalid

    def _reconcile(self, event):
        if not INSTALLED.exists():
            self.unit.status = ops.MaintenanceStatus("installing prometheus")
            run(["apt-get", "install", "-y", "prometheus"])
            INSTALLED.parent.mkdir(parents=True, exist_ok=True)
            INSTALLED.touch()
        broken = event.relation.id if isinstance(event, ops.RelationBrokenEvent) else None
        wanted, invalid = self._rules(broken)
        changed = False
        RULES.mkdir(parents=True, exist_ok=True)
        for f in RULES.glob("*.rules"):
            if f.name not in wanted:
                f.unlink()
                changed = True
        for name, text in wanted.items():
            changed |= write(RULES / name, text)
        changed |= write(
            CONFIG,
            "# Written by prometheus-ops: samples arrive by remote-write, nothing is scraped.\n"
            "global:\n"
            f"  evaluation_interval: {self.config['evaluation-interval']}\n"
            "rule_files:\n"
            f"  - {RULES}/*.rules\n",
        )
        changed |= write(
            DEFAULTS,
            'ARGS="--web.enable-remote-write-receiver'
            f' --web.listen-address=:{PORT} --config.file={CONFIG}"\n',
        )
        if changed:
            run(["systemctl", "restart", "prometheus"])
        else:
            run(["systemctl", "start", "prometheus"])
        self.unit.set_ports(PORT)
        url = f"http://{self._address()}:{PORT}/api/v1/write"
        for rel in self.model.relations["receive-remote-write"]:
            if rel.id != broken:
                rel.data[self.unit]["remote_write"] = json.dumps({"url": url})
        if invalid:
            self.unit.status = ops.BlockedStatus(f"invalid alert_rules from {'; '.join(invalid)}")
        else:
            self.unit.status = ops.ActiveStatus(f"{len(wanted)} rule files; remote-write {url}")


if __name__ == "__main__":
    ops.main(PrometheusCharm)
