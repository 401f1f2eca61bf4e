#!/usr/bin/env python3
# Copyright 2026 the maas-ha charms authors. Licensed under the Apache License, Version 2.0.
"""cos-collector-ops: the collector's side of cos_agent, for the e2e tests.

What grafana-agent (machine charm) does with cos_agent, with Prometheus in agent mode in its
place: COSAgentRequirer.metrics_jobs becomes the scrape configuration (run on this machine, as
root, because the jobs point at 127.0.0.1 and name the principal's TLS files), every sample is
remote-written to the endpoints `send-remote-write` names, and the leader sends
COSAgentRequirer.metrics_alerts there in the app databag's `alert_rules` (the
prometheus_remote_write interface's key, PrometheusRemoteWriteConsumer), where Prometheus
evaluates them.
"""

import json
import logging
import subprocess
from pathlib import Path

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

    def _agent_config(self, urls):
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
        return {
            # a scrape may not outlast the interval (Prometheus refuses the configuration)
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": jobs,
            "remote_write": [{"url": u} for u in urls],
        }

    def _agent(self, urls):
        STATE.mkdir(parents=True, exist_ok=True)
        CONFIG.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self._agent_config(urls), sort_keys=False)
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
        broken = event.relation.id if isinstance(event, ops.RelationBrokenEvent) else None
        urls = self._endpoints(broken)
        self._agent(urls)
        self._forward_rules()
        jobs = len(self.cos.metrics_jobs)
        if not self.model.relations["cos-agent"]:
            self.unit.status = ops.BlockedStatus("no principal on cos-agent")
        elif not urls:
            self.unit.status = ops.WaitingStatus(f"{jobs} jobs scraped, no send-remote-write endpoint yet")
        else:
            self.unit.status = ops.ActiveStatus(f"{jobs} jobs -> {', '.join(urls)}")


if __name__ == "__main__":
    ops.main(CollectorCharm)
