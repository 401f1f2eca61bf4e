"""Runs Canonical's data_interfaces v1 requirer (PyPI dpcharmlibs-interfaces,
ResourceRequirerEventHandler) against what postgresql-ha writes, in an ops Harness.

    python data-interfaces-v1-check.py request RESOURCE EXTRA_USER_ROLES
        prints the requirer's app databag after relation-created (its `version` and `requests`).
    python data-interfaces-v1-check.py answer < INPUT_JSON
        INPUT_JSON is {"requirer_app": <what `request` printed>, "provider_app": <the provider's
        app databag>, "secrets": {<id>: <content>}}; the requirer's databag is restored, the
        provider's secrets are added as the provider's (their ids in the databag mapped to the
        Harness's), the provider's databag is set, and it prints what `resource_created` handed
        the charm, or {"error": ...} (the library raising is an answer too).
"""

import json
import sys
import warnings

warnings.simplefilter("ignore")

import ops  # noqa: E402
from dpcharmlibs.interfaces import (  # noqa: E402
    RequirerCommonModel,
    ResourceProviderModel,
    ResourceRequirerEventHandler,
)
from ops.testing import Harness  # noqa: E402

META = "name: requirer\nrequires:\n  database:\n    interface: postgresql_client\n    limit: 1\n"
RESOURCE = {"name": "appdb", "roles": None}


class Requirer(ops.CharmBase):
    def __init__(self, framework):
        super().__init__(framework)
        self.database = ResourceRequirerEventHandler(
            self,
            "database",
            [RequirerCommonModel(resource=RESOURCE["name"], extra_user_roles=RESOURCE["roles"])],
            response_model=ResourceProviderModel,
        )
        self.got = None
        framework.observe(self.database.on.resource_created, self._created)

    def _created(self, event):
        r = event.response
        self.got = {
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
        }


def harness():
    h = Harness(Requirer, meta=META)
    h.set_leader(True)
    h.begin()
    return h


if sys.argv[1] == "request":
    RESOURCE.update(name=sys.argv[2], roles=sys.argv[3] or None)
    h = harness()
    rid = h.add_relation("database", "postgresql-ha")
    print(json.dumps(dict(h.get_relation_data(rid, "requirer"))))
    sys.exit(0)

inputs = json.load(sys.stdin)
requests = json.loads(inputs["requirer_app"]["requests"])
RESOURCE.update(name=requests[0]["resource"], roles=requests[0].get("extra-user-roles"))
h = harness()
with h.hooks_disabled():
    rid = h.add_relation("database", "postgresql-ha")
    h.update_relation_data(rid, "requirer", inputs["requirer_app"])
    h.add_relation_unit(rid, "postgresql-ha/0")
provider = dict(inputs["provider_app"])
# Longest first: no id is replaced inside a longer one.
for ours, content in sorted(inputs["secrets"].items(), key=lambda kv: -len(kv[0])):
    theirs = h.add_model_secret("postgresql-ha", content)
    h.grant_secret(theirs, "requirer")
    provider = {k: v.replace(ours, theirs) for k, v in provider.items()}
try:
    h.update_relation_data(rid, "postgresql-ha", provider)
except Exception as e:  # noqa: BLE001 -- the library refusing the answer is the result
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    sys.exit(0)
print(json.dumps(h.charm.got if h.charm.got is not None else {"error": "no resource_created"}))
