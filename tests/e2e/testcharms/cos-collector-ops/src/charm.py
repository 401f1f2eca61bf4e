#!/usr/bin/env python3
# Copyright 2026 the maas-ha charms authors. Licensed under the Apache License, Version 2.0.
"""cos-collector-ops: the collector's side of cos_agent, for the e2e tests.

What grafana-agent (machine charm) and opentelemetry-collector do with cos_agent, with
Prometheus in agent mode in their place: COSAgentRequirer.metrics_jobs becomes the scrape
configuration (run on this machine, as root, because the jobs point at 127.0.0.1 and may name
the principal's TLS files; `confinement: strict` leaves out the jobs the strictly confined
otel snap could not run, see `prometheus_jobs`), an inline CA is handed to Prometheus 2.42
through a file, every sample is remote-written to the endpoints `send-remote-write` names, and
the leader sends
COSAgentRequirer.metrics_alerts there in the app databag's `alert_rules` (the
prometheus_remote_write interface's key, PrometheusRemoteWriteConsumer), where Prometheus
evaluates them.
"""

import json
import logging
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import ops
import yaml
from charms.grafana_agent.v0.cos_agent import COSAgentRequirer

logger = logging.getLogger(__name__)

STATE = Path("/var/lib/cos-collector-ops")
INSTALLED = STATE / "installed"
CONFIG = Path("/etc/cos-collector-ops/agent.yml")
UNIT = Path("/etc/systemd/system/cos-collector-agent.service")
SERVICE = "cos-collector-agent"
# On loopback: nothing outside the machine needs the agent's own API.
LISTEN = "127.0.0.1:9099"
# Where inline CAs become files, one directory per unit (the otel charm's CERT_DIR/<unit>).
CERT_DIR = STATE / "certs"

# What the strictly confined opentelemetry-collector snap may read besides what it is given
# inline: its own snap and data directories (snapd interfaces/apparmor/template.go, the
# `/var/snap/{@{SNAP_NAME},...}/**` and `/snap/...` rules; no other /etc or /var/snap
# file), its `etc-otelcol-config` system-files plug and its `home` plug
# (canonical/opentelemetry-collector-snap snap/snapcraft.yaml `plugs:`).
STRICT_READABLE = (
    "/snap/opentelemetry-collector/",
    "/var/snap/opentelemetry-collector/",
    "/etc/otelcol/config.d/",
    "/home/",
)
TLS_FILE_KEYS = ("ca_file", "cert_file", "key_file")


def _safe(name: str) -> str:
    """A job name as a file name (the otel charm's `_write_ca_certificates_to_disk` rule)."""
    return name.replace("/", "_").replace(" ", "_").replace("-", "_")


def prometheus_jobs(
    jobs: List[Dict], cert_dir: Path, strict: bool
) -> Tuple[List[Dict], Dict[Path, str], List[str]]:
    """The principal's jobs as Debian's Prometheus 2.42 can run them, as the real collectors
    would: (jobs, CA files to write, why each left-out job was left out).

    Both real collectors put COSAgentRequirer.metrics_jobs into a Prometheus scrape
    configuration unchanged (opentelemetry-collector-operator src/charm.py `_reconcile`, the
    `prometheus/cos-agent/<unit>` receiver; grafana-agent-operator src/grafana_agent.py
    `_generate_config`), and both read an inline `tls_config.ca` (prometheus/common
    config/http_config.go `TLSConfig.CA`). Prometheus 2.42 has no such field ("field ca not
    found"), so the PEM goes to a file and `ca_file` names it, as the otel charm does for its
    metrics-endpoint jobs (src/charm.py `_write_ca_certificates_to_disk`,
    src/config_manager.py `update_jobs_with_ca_paths`). Any other tls_config field is kept.
    `ca` with `ca_file` is refused, with prometheus/common's words (`TLSConfig.Validate`, run
    when the configuration is read: the real collector would not start).
    """
    out, files, left_out = [], {}, []
    for job in jobs:
        job = json.loads(json.dumps(job))
        name = job["job_name"]
        tls = job.get("tls_config")
        if tls:
            if tls.get("ca") and tls.get("ca_file"):
                raise RuntimeError(f"job {name}: at most one of ca and ca_file must be configured")
            unreadable = [
                f"{k}={tls[k]}"
                for k in TLS_FILE_KEYS
                if tls.get(k) and not str(tls[k]).startswith(STRICT_READABLE)
            ]
            if strict and unreadable:
                # scrape/manager.go `reload`: "error creating new scrape pool" (newScrapePool
                # cannot build the HTTP client: NewTLSConfig reads these files), the job skipped.
                left_out.append(
                    f"{name}: the strictly confined collector cannot read {', '.join(unreadable)}"
                )
                continue
            if tls.get("ca"):
                path = cert_dir / f"{_safe(name)}_ca.pem"
                files[path] = tls.pop("ca")
                tls["ca_file"] = str(path)
        out.append(job)
    return out, files, left_out


def run(argv):
    """Runs a command; a failure raises with its stderr (the hook fails, Juju retries it)."""
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


class CollectorCharm(ops.CharmBase):
    """Scrapes what the principal offers and forwards samples and alert rules."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # Tracing is not collected here: the library must then write no receiver URLs.
        self.cos = COSAgentRequirer(self, is_tracing_ready=lambda: False)
        for event in (
            self.on.install,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on.leader_elected,
            self.cos.on.data_changed,
            self.on["cos-agent"].relation_changed,
            self.on["cos-agent"].relation_departed,
            self.on["peers"].relation_changed,
            self.on["peers"].relation_departed,
            self.on["send-remote-write"].relation_joined,
            self.on["send-remote-write"].relation_changed,
            self.on["send-remote-write"].relation_departed,
            self.on["send-remote-write"].relation_broken,
        ):
            framework.observe(event, self._reconcile)

    def _endpoints(self, broken_id=None):
        """The remote_write URLs the provider units wrote (PrometheusRemoteWriteConsumer.endpoints)."""
        urls = []
        for rel in self.model.relations["send-remote-write"]:
            if rel.id == broken_id:
                continue
            for unit in rel.units:
                raw = rel.data[unit].get("remote_write")
                if raw:
                    urls.append(json.loads(raw)["url"])
        return sorted(urls)

    def _agent_config(self, urls, strict):
        """The agent's configuration, the CA files it names, and the jobs left out (why)."""
        interval = self.config["scrape-interval"]
        jobs = []
        names = set()
        for i, job in enumerate(self.cos.metrics_jobs):
            job = dict(job)
            # Prometheus refuses two jobs of one name; a provider may leave the name out.
            name = job.get("job_name") or f"job-{i}"
            while name in names:
                name = f"{name}-{i}"
            names.add(name)
            job["job_name"] = name
            jobs.append(job)
        cert_dir = CERT_DIR / self.unit.name.replace("/", "_")
        jobs, files, left_out = prometheus_jobs(jobs, cert_dir, strict)
        config = {
            # a scrape may not outlast the interval (Prometheus refuses the configuration)
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": jobs,
            "remote_write": [{"url": u} for u in urls],
        }
        return config, cert_dir, files, left_out

    def _agent(self, urls, strict):
        STATE.mkdir(parents=True, exist_ok=True)
        CONFIG.parent.mkdir(parents=True, exist_ok=True)
        config, cert_dir, files, left_out = self._agent_config(urls, strict)
        for why in left_out:
            logger.warning("scrape job left out: %s", why)
        # The CA files before the configuration that names them; a CA certificate is public.
        cert_dir.mkdir(parents=True, exist_ok=True)
        for path, pem in files.items():
            if not path.exists() or path.read_text() != pem:
                path.write_text(pem)
                path.chmod(0o644)
        for old in cert_dir.iterdir():
            if old not in files:
                old.unlink()
        text = yaml.safe_dump(config, sort_keys=False)
        unit = (
            "[Unit]\nDescription=Prometheus in agent mode: cos_agent scrape jobs, remote-written (tests)\n\n"
            "[Service]\n"
            "ExecStart=/usr/bin/prometheus --enable-feature=agent"
            f" --config.file={CONFIG} --storage.agent.path={STATE}/agent"
            f" --web.listen-address={LISTEN}\n"
            "Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"
        )
        changed = False
        if not CONFIG.exists() or CONFIG.read_text() != text:
            tmp = CONFIG.with_suffix(".new")
            tmp.write_text(text)
            # Refuse a configuration Prometheus would refuse, with promtool's words.
            p = subprocess.run(["promtool", "check", "config", "--syntax-only", str(tmp)], capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"the scrape configuration is invalid: {(p.stdout + p.stderr).strip()}")
            tmp.replace(CONFIG)
            changed = True
        if not UNIT.exists() or UNIT.read_text() != unit:
            UNIT.write_text(unit)
            run(["systemctl", "daemon-reload"])
            changed = True
        run(["systemctl", "enable", SERVICE])
        run(["systemctl", "restart" if changed else "start", SERVICE])
        return left_out

    def _forward_rules(self):
        """The leader hands every principal's rules on, in one rule file's shape."""
        if not self.unit.is_leader():
            return
        groups = []
        for rules in self.cos.metrics_alerts.values():
            groups.extend(rules.get("groups", []))
        for rel in self.model.relations["send-remote-write"]:
            rel.data[self.app]["alert_rules"] = json.dumps({"groups": groups}) if groups else ""

    def _reconcile(self, event):
        # Debian's prometheus package starts its own server on :9090 (its postinst enables
        # prometheus.service); this machine needs only the agent.
        if not INSTALLED.exists():
            self.unit.status = ops.MaintenanceStatus("installing prometheus")
            run(["apt-get", "install", "-y", "prometheus"])
            run(["systemctl", "disable", "prometheus"])
            run(["systemctl", "stop", "prometheus"])
            STATE.mkdir(parents=True, exist_ok=True)
            INSTALLED.touch()
        confinement = self.config["confinement"]
        if confinement not in ("classic", "strict"):
            self.unit.status = ops.BlockedStatus(
                f"config option confinement: {confinement!r} is neither classic nor strict"
            )
            return
        broken = event.relation.id if isinstance(event, ops.RelationBrokenEvent) else None
        urls = self._endpoints(broken)
        left_out = self._agent(urls, confinement == "strict")
        self._forward_rules()
        jobs = len(self.cos.metrics_jobs) - len(left_out)
        if not self.model.relations["cos-agent"]:
            self.unit.status = ops.BlockedStatus("no principal on cos-agent")
        elif not urls:
            self.unit.status = ops.WaitingStatus(f"{jobs} jobs scraped, no send-remote-write endpoint yet")
        else:
            # Active still: the real collector runs the other jobs; the status says which
            # were left out, so a test can read it.
            skipped = f" ({len(left_out)} left out: {'; '.join(left_out)})" if left_out else ""
            self.unit.status = ops.ActiveStatus(f"{jobs} jobs -> {', '.join(urls)}{skipped}")


if __name__ == "__main__":
    ops.main(CollectorCharm)
