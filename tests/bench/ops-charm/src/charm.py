#!/usr/bin/env python3
"""The benchmark's Python baseline: the same work as bench-charm, on ops."""
import os

import ops


class BenchCharm(ops.CharmBase):
    def __init__(self, framework):
        super().__init__(framework)
        framework.observe(self.on.config_changed, self._reconcile)
        framework.observe(self.on["db"].relation_changed, self._reconcile)

    def _reconcile(self, event):
        port, name = self.config["port"], self.config["name"]
        text = f"name={name}\nport={port}\n"
        if isinstance(event, ops.RelationChangedEvent) and event.unit is not None:
            for k, v in sorted(event.relation.data[event.unit].items()):
                text += f"{k}={v}\n"
        out = os.environ.get("BENCH_OUT", "/tmp/bench-ops-charm.conf")
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        self.unit.status = ops.ActiveStatus(f"{name} on {port}")


if __name__ == "__main__":
    ops.main(BenchCharm)
