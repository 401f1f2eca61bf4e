"""Checks charm-lib's cos_agent writer against Canonical's own library.

    python cos-agent-check.py CHARM_DIR OURS_JSON INPUT_JSON

CHARM_DIR holds metadata.yaml, src/prometheus_alert_rules, src/loki_alert_rules and
src/grafana_dashboards; OURS_JSON is the `config` value charm-lib wrote for them; INPUT_JSON is
{"model": ..., "model_uuid": ..., "unit": ..., "scrape_configs": [...], "log_slots": [...]}, the
inputs charm-lib was given.

1. COSAgentProvider (charms.grafana_agent.v0.cos_agent, as opensearch-charms-single-kernel ships
   it, over cosl from PyPI) runs in an ops Harness on the same charm directory and inputs; every
   field of its databag must equal ours (dashboards compared decompressed: the bytes of two
   xz encoders may differ).
2. COSAgentRequirer, as the collector runs it, reads our databag: the scrape jobs, snap log
   endpoints, alert rules and dashboards it hands on must be the ones we meant.
3. The e2e test collector (tests/e2e/testcharms/cos-collector-ops, `prometheus_jobs`) turns
   those jobs into what Debian's Prometheus runs: promtool accepts them, every inline CA is in
   the file its job names; and its stand-in rules hold (`ca` with `ca_file` refused, a job
   naming the principal's files left out under `strict` confinement, kept under `classic`).

Prints what differs and exits 1, or prints a summary and exits 0.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

spec = importlib.util.find_spec("opensearch_single_kernel")
if spec is None or not spec.submodule_search_locations:
    sys.exit("opensearch-charms-single-kernel is not installed (make deps installs it)")
sys.path.insert(0, str(Path(list(spec.submodule_search_locations)[0]) / "lib"))

import ops  # noqa: E402
from charms.grafana_agent.v0 import cos_agent  # noqa: E402
from cosl import LZMABase64  # noqa: E402
from ops.testing import Harness  # noqa: E402

charm_dir = Path(sys.argv[1]).resolve()
ours_text = Path(sys.argv[2]).read_text()
inputs = json.loads(Path(sys.argv[3]).read_text())
meta = (charm_dir / "metadata.yaml").read_text()
app = inputs["unit"].split("/")[0]
failures = []


def check(what, ok):
    if not ok:
        failures.append(what)


class Principal(ops.CharmBase):
    def __init__(self, framework):
        super().__init__(framework)
        self.cos = cos_agent.COSAgentProvider(
            self,
            scrape_configs=inputs["scrape_configs"],
            log_slots=inputs["log_slots"],
        )


# 1. The library's provider on the same files and inputs.
os.chdir(charm_dir)  # the library reads ./src/... relative to the working directory
h = Harness(Principal, meta=meta)
h.set_model_name(inputs["model"])
h.set_model_uuid(inputs["model_uuid"])
h.begin()
rel = h.add_relation("cos-agent", "collector")
h.add_relation_unit(rel, "collector/0")
h.update_relation_data(rel, "collector/0", {})
theirs_text = h.get_relation_data(rel, h.charm.unit.name)["config"]
h.cleanup()

ours = json.loads(ours_text)
theirs = json.loads(theirs_text)
check(f"field names: ours {sorted(ours)} theirs {sorted(theirs)}", sorted(ours) == sorted(theirs))
check(
    f"field order: ours {list(ours)} theirs {list(theirs)}",
    list(ours) == list(theirs),
)
for key in theirs:
    if key == "dashboards":
        mine = [json.loads(LZMABase64.decompress(d)) for d in ours.get(key, [])]
        lib = [json.loads(LZMABase64.decompress(d)) for d in theirs[key]]
        key_uid = lambda d: d.get("uid", "")  # noqa: E731 (the library globs in directory order)
        check(
            f"dashboards differ:\n ours {mine}\n theirs {lib}",
            sorted(mine, key=key_uid) == sorted(lib, key=key_uid),
        )
    else:
        check(
            f"{key} differs:\n ours   {json.dumps(ours.get(key), sort_keys=True)}\n"
            f" theirs {json.dumps(theirs[key], sort_keys=True)}",
            ours.get(key) == theirs[key],
        )
check("the provider model validates ours", cos_agent.CosAgentProviderUnitData(**ours) is not None)


# 2. The requirer, as the collector subordinate runs it, on our databag.
COLLECTOR_META = """
name: collector
subordinate: true
requires:
  cos-agent:
    interface: cos_agent
    scope: container
peers:
  peers:
    interface: collector_peers
"""


class Collector(ops.CharmBase):
    def __init__(self, framework):
        super().__init__(framework)
        self.cos = cos_agent.COSAgentRequirer(self, is_tracing_ready=lambda: False)


c = Harness(Collector, meta=COLLECTOR_META)
c.set_model_name(inputs["model"])
c.set_model_uuid(inputs["model_uuid"])
c.set_leader(True)
c.begin()
c.add_relation("peers", "collector")
crel = c.add_relation("cos-agent", app)
c.add_relation_unit(crel, inputs["unit"])
c.update_relation_data(crel, inputs["unit"], {"config": ours_text})
cos = c.charm.cos

want_jobs = []
for job in ours["metrics_scrape_jobs"]:
    job = json.loads(json.dumps(job))
    for sc in job.get("static_configs", []):
        sc["labels"] = {
            **sc.get("labels", {}),
            "juju_model": inputs["model"],
            "juju_model_uuid": inputs["model_uuid"],
            "juju_application": app,
            "juju_unit": inputs["unit"],
        }
    want_jobs.append(job)
check(f"requirer's jobs: {cos.metrics_jobs} want {want_jobs}", cos.metrics_jobs == want_jobs)
check(
    f"requirer's log slots: {cos.snap_log_endpoints}",
    [f"{e.owner}:{e.name}" for e in cos.snap_log_endpoints] == inputs["log_slots"],
)
alerts = cos.metrics_alerts
check(
    f"requirer's metrics alerts: {alerts}",
    list(alerts.values()) == [ours["metrics_alert_rules"]],
)
logs = cos.logs_alerts
check(
    f"requirer's log alerts: {logs}",
    list(logs.values()) == ([ours["log_alert_rules"]] if ours["log_alert_rules"] else []),
)
dashboards = cos.dashboards
check(
    f"requirer's dashboards: {[d['title'] for d in dashboards]}",
    [d["content"] for d in dashboards]
    == [json.loads(LZMABase64.decompress(d)) for d in ours["dashboards"]],
)
c.cleanup()


# 3. The test collector's handling of those jobs.
def collector_module():
    path = Path(__file__).resolve().parents[1] / "e2e/testcharms/cos-collector-ops/src/charm.py"
    spec = importlib.util.spec_from_file_location("cos_collector_ops", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import yaml  # noqa: E402

collector = collector_module()
with tempfile.TemporaryDirectory() as tmp:
    cert_dir = Path(tmp) / "certs"
    named = [dict(j, job_name=j.get("job_name") or f"job-{i}") for i, j in enumerate(want_jobs)]
    jobs, files, left = collector.prometheus_jobs(named, cert_dir, strict=False)
    check(f"classic confinement leaves nothing out: {left}", left == [] and len(jobs) == len(named))
    for theirs_job, job in zip(named, jobs):
        tls = job.get("tls_config") or {}
        ca = (theirs_job.get("tls_config") or {}).get("ca")
        check(f"{job['job_name']}: no inline ca left for Prometheus 2.42: {tls}", "ca" not in tls)
        if ca:
            check(
                f"{job['job_name']}: its ca_file holds the job's CA: {tls}",
                files.get(Path(tls.get("ca_file", ""))) == ca,
            )
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool is missing (Debian's prometheus package): the configuration was not checked")
    else:
        conf = Path(tmp) / "agent.yml"
        conf.write_text(yaml.safe_dump({"scrape_configs": jobs}))
        p = subprocess.run(
            [promtool, "check", "config", "--syntax-only", str(conf)], capture_output=True, text=True
        )
        check(f"promtool refuses the collector's jobs: {p.stdout}{p.stderr}", p.returncode == 0)

    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    base = {"job_name": "j", "static_configs": [{"targets": ["localhost:1"]}], "scheme": "https"}
    try:
        collector.prometheus_jobs(
            [dict(base, tls_config={"ca": pem, "ca_file": "/x.pem"})], cert_dir, strict=False
        )
        check("ca with ca_file is refused", False)
    except RuntimeError as e:
        check(f"ca with ca_file: {e}", "at most one of ca and ca_file" in str(e))
    principal_files = dict(base, tls_config={"ca": pem, "cert_file": "/etc/p/c.pem", "key_file": "/etc/p/k.pem"})
    kept, _, left = collector.prometheus_jobs([principal_files], cert_dir, strict=True)
    check(f"strict: a job naming the principal's key is left out: {kept} {left}", kept == [] and len(left) == 1)
    check(f"strict: the reason names the file: {left}", left and "key_file=/etc/p/k.pem" in left[0])
    kept, _, left = collector.prometheus_jobs([principal_files], cert_dir, strict=False)
    check(f"classic: the same job is kept: {kept} {left}", len(kept) == 1 and left == [])
    kept, files, left = collector.prometheus_jobs([dict(base, tls_config={"ca": pem})], cert_dir, strict=True)
    check(
        f"strict: an inline ca alone is kept, through a file of the collector's: {kept} {left}",
        left == [] and list(files.values()) == [pem] and kept[0]["tls_config"] == {"ca_file": str(next(iter(files)))},
    )

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(
    f"cos_agent (LIBPATCH {cos_agent.LIBPATCH}) agrees: {len(ours['metrics_scrape_jobs'])} jobs, "
    f"{len(ours['metrics_alert_rules'].get('groups', []))} metrics rule groups, "
    f"{len(ours['log_alert_rules'].get('groups', []))} log rule groups, "
    f"{len(ours['dashboards'])} dashboards"
)
