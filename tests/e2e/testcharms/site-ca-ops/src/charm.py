#!/usr/bin/env python3
# Copyright 2026 the maas-ha charms authors. Licensed under the Apache License, Version 2.0.
"""site-ca-ops: a tls-certificates v4 provider on Canonical's library, for the e2e tests."""

import logging
from datetime import timedelta
from pathlib import Path

import ops
from charmlibs.interfaces.tls_certificates import (
    Certificate,
    CertificateRequestAttributes,
    PrivateKey,
    ProviderCertificate,
    TLSCertificatesProvidesV4,
)

logger = logging.getLogger(__name__)

LABEL = "site-ca"
PUBLIC = Path("/var/lib/site-ca-ops/ca.pem")


class SiteCACharm(ops.CharmBase):
    """Signs every certificate request on `certificates` with its CA."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.provider = TLSCertificatesProvidesV4(self, "certificates")
        for event in (
            self.on.install,
            self.on.leader_elected,
            self.on.config_changed,
            self.on.update_status,
            self.on["certificates"].relation_joined,
            self.on["certificates"].relation_changed,
        ):
            framework.observe(event, self._reconcile)

    def _ca(self):
        """The CA (key, certificate): from the secret, or made now by the leader."""
        try:
            content = self.model.get_secret(label=LABEL).get_content(refresh=True)
            return PrivateKey.from_string(content["key"]), Certificate.from_string(content["cert"])
        except ops.SecretNotFoundError:
            key = PrivateKey.generate()
            cert = Certificate.generate_self_signed_ca(
                CertificateRequestAttributes(common_name="e2e site CA", is_ca=True),
                key,
                timedelta(days=365),
            )
            self.app.add_secret({"key": str(key), "cert": str(cert)}, label=LABEL)
            return key, cert

    def _reconcile(self, _event):
        if not self.unit.is_leader():
            self.unit.status = ops.ActiveStatus("standby")
            return
        key, ca = self._ca()
        PUBLIC.parent.mkdir(parents=True, exist_ok=True)
        PUBLIC.write_text(str(ca) + "\n")
        signed = 0
        for request in self.provider.get_outstanding_certificate_requests():
            csr = request.certificate_signing_request
            cert = Certificate.generate(csr=csr, ca=ca, ca_private_key=key, validity=timedelta(days=90))
            self.provider.set_relation_certificate(
                ProviderCertificate(
                    relation_id=request.relation_id,
                    certificate=cert,
                    certificate_signing_request=csr,
                    ca=ca,
                    chain=[cert, ca],
                )
            )
            signed += 1
        issued = len(self.provider.get_issued_certificates())
        logger.info("signed %d new request(s); %d certificate(s) issued", signed, issued)
        self.unit.status = ops.ActiveStatus(f"{issued} certificate(s) issued")


if __name__ == "__main__":
    ops.main(SiteCACharm)
