//! The `rpc` relation (interface `maas-rpc`; keys and databags: `contracts::maas_rpc`): what
//! the region offers in its application databag, and what this rack publishes in its unit
//! databag.

use charm_lib::databag::from_databag;
use charm_lib::Databag;
pub use contracts::maas_rpc::RackData;
use contracts::maas_rpc::{keys, RegionData};

/// The endpoint name in metadata.yaml.
pub const ENDPOINT: &str = "rpc";

/// The region application's databag, before the URL is judged: co-location needs only the
/// region hostnames, so a rack on a region host is answered even if the URL were bad.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionOffer {
    /// `maas_url`, if set.
    pub maas_url: Option<String>,
    /// `secret_id` (a Juju secret id), if set.
    pub secret_id: Option<String>,
    /// `regions`: the region units' hostnames (empty when not set yet).
    pub regions: Vec<String>,
    /// `rack_upgrade_lock`: the rack request (`<unit>#<channel>`) that may refresh now.
    pub rack_upgrade_lock: Option<String>,
}

impl RegionOffer {
    /// Reads the region's app databag ([`RegionData`]). A `regions` value that is not a JSON
    /// list of hostnames is an error message for a Blocked status (the region charm wrote
    /// something wrong). Blank values count as missing.
    pub fn from_databag(bag: &Databag) -> Result<RegionOffer, String> {
        let trimmed: Databag = bag
            .iter()
            .map(|(k, v)| (k.clone(), v.trim().to_string()))
            .collect();
        let bad = || {
            let text = trimmed.get(keys::REGIONS).map(String::as_str).unwrap_or("");
            format!(
                "maas-region sent invalid rpc data: regions must be a JSON list of hostnames, got {:?}",
                truncate(text, 60)
            )
        };
        // `regions` is the only key that can fail to parse: the others are text.
        let data: RegionData = from_databag(&trimmed).map_err(|_| bad())?;
        let regions = data
            .regions
            .unwrap_or_default()
            .into_iter()
            .map(|h| {
                let h = h.trim();
                valid_hostname(h).then(|| h.to_string()).ok_or_else(bad)
            })
            .collect::<Result<_, _>>()?;
        Ok(RegionOffer {
            maas_url: data.maas_url,
            secret_id: data.secret_id,
            regions,
            rack_upgrade_lock: data.rack_upgrade_lock.filter(|l| !l.is_empty()),
        })
    }

    /// The region host this host is, if any (hostnames compare case-insensitively and without
    /// their domain, since Juju machines may report either form).
    pub fn region_named(&self, hostname: &str) -> Option<&str> {
        let me = short_name(hostname);
        self.regions
            .iter()
            .find(|r| short_name(r) == me)
            .map(String::as_str)
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// The host part of a (possibly qualified) hostname, lowercased.
pub fn short_name(hostname: &str) -> String {
    hostname
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Checks that `url` is a URL a rack can register with: `http://host[:port]/MAAS[/...]`. The
/// error is the reason, for a Blocked status.
///
/// Enrolment is http. rackd fetches `<maas_url>/rpc/` with Twisted's `Agent` and no CA of the
/// region's (`ClusterClientService._build_rpc_info_urls`/`_fetch_rpc_info` in MAAS's
/// src/provisioningserver/rpc/clusterservice.py; `maas init rack` takes no certificate), and a
/// region with TLS on keeps `/MAAS/rpc/`, metadata and images on plain http for exactly that
/// (the second `server` of src/maasserver/templates/http/regiond.nginx.conf.template). So an
/// https URL is refused, naming maas-region's `maas-url` option that produced it.
pub fn validate_maas_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!("maas-region sent an invalid MAAS URL {url:?} ({why}); expected http://<host>[:port]/MAAS"))
    };
    if url.starts_with("https://") {
        return Err(format!("maas-region sent an https MAAS URL {url:?}: racks enrol over http (MAAS keeps /MAAS/rpc/ on http when TLS is on); set maas-region's maas-url to http://<host>[:port]/MAAS"));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return bad("not http");
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains spaces");
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return bad("credentials do not belong in it");
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return bad("unclosed IPv6 address");
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return bad("bad IPv6 address");
        }
        if !after.is_empty() && !valid_port(after.strip_prefix(':').unwrap_or("x")) {
            return bad("bad port");
        }
        addr
    } else {
        let (h, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if port.is_some_and(|p| !valid_port(p)) {
            return bad("bad port");
        }
        if !valid_hostname(h) {
            return bad("no valid host");
        }
        h
    };
    if host.is_empty() {
        return bad("no host");
    }
    if path.contains(['?', '#']) {
        return bad("query or fragment");
    }
    if !(path == "/MAAS" || path.starts_with("/MAAS/")) {
        return bad("path must be /MAAS");
    }
    // MAAS's own validator (`ExtendedURL`, through `ClusterConfiguration.maas_url`): a deb's
    // `maas-rack register --url` refuses what it refuses with a traceback, and a snap's `maas
    // init rack` writes it unchecked for rackd to fail on. Refused here first, by its rules.
    if let Err(why) = contracts::maas_rpc::maas_accepts_url(url) {
        return bad(&format!("MAAS does not accept it: {why}"));
    }
    Ok(())
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.chars().all(|c| c.is_ascii_digit())
        && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use charm_lib::testing::bag;

    #[test]
    fn offer_reads_all_three_keys() {
        let o = RegionOffer::from_databag(&bag(&[
            ("maas_url", "http://10.77.0.200/MAAS"),
            ("secret_id", "secret:abc"),
            ("regions", r#"["region-a","Region-B.maas"]"#),
        ]))
        .unwrap();
        assert_eq!(o.maas_url.as_deref(), Some("http://10.77.0.200/MAAS"));
        assert_eq!(o.secret_id.as_deref(), Some("secret:abc"));
        assert_eq!(o.region_named("region-b"), Some("Region-B.maas"));
        assert_eq!(o.region_named("REGION-A.example.com"), Some("region-a"));
        assert_eq!(o.region_named("rack-1"), None);
    }

    #[test]
    fn empty_values_count_as_missing() {
        let o = RegionOffer::from_databag(&bag(&[("maas_url", ""), ("secret_id", " ")])).unwrap();
        assert_eq!(o, RegionOffer::default());
    }

    #[test]
    fn garbage_regions_are_refused_with_the_reason() {
        for g in ["region-a", "{\"a\":1}", "[1,2]", "[\"bad host\"]", "[\"\"]"] {
            let e = RegionOffer::from_databag(&bag(&[("regions", g)])).unwrap_err();
            assert!(
                e.starts_with(
                    "maas-region sent invalid rpc data: regions must be a JSON list of hostnames"
                ),
                "{g}: {e}"
            );
        }
    }

    #[test]
    fn maas_urls() {
        for ok in [
            "http://10.77.0.200/MAAS",
            "http://maas.example:5240/MAAS/",
            "http://[fd00::1]:5240/MAAS",
            "http://region-a:5240/MAAS/api/2.0/",
        ] {
            assert_eq!(validate_maas_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("ftp://10.0.0.1/MAAS", "not http"),
            ("http://10.0.0.1/", "path must be /MAAS"),
            ("http://10.0.0.1/MAASX", "path must be /MAAS"),
            ("http:///MAAS", "no valid host"),
            ("http://10.0.0.1:99999/MAAS", "bad port"),
            ("http://u:p@10.0.0.1/MAAS", "credentials"),
            ("http://10.0.0.1/MAAS?x=1", "query"),
            ("http://bad host/MAAS", "contains spaces"),
            // Past the charm's own checks, refused by MAAS's `ExtendedURL`.
            (
                "http://region-/MAAS",
                "MAAS does not accept it: \"region-\" is not a host name",
            ),
            (
                "http://[fd00:1::]:5240/MAAS",
                "MAAS does not accept it: [fd00:1::] is not an IPv6 address",
            ),
        ] {
            let e = validate_maas_url(bad).unwrap_err();
            assert!(
                e.contains(why) && e.ends_with("expected http://<host>[:port]/MAAS"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            validate_maas_url("https://maas.example:5443/MAAS/"),
            Err("maas-region sent an https MAAS URL \"https://maas.example:5443/MAAS/\": racks enrol over http (MAAS keeps /MAAS/rpc/ on http when TLS is on); set maas-region's maas-url to http://<host>[:port]/MAAS".to_string())
        );
    }
}
