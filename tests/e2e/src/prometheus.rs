//! A real Prometheus in the local model (the `prometheus-ops` test charm on a machine of its
//! own), asked through its HTTP API from that machine: what the observability drills and
//! `make demo` read.

use crate::Deployment;
use anyhow::{ensure, Context, Result};
use serde_json::Value;

/// The Prometheus server on `machine`.
#[derive(Debug, Clone, Copy)]
pub struct Prometheus<'a> {
    /// The machine it runs on (it listens on that machine's 127.0.0.1:9090 and its address).
    pub machine: &'a str,
}

/// One alert: (alertname, state, labels).
pub type Alert = (String, String, Value);

impl Prometheus<'_> {
    /// GET /api/v1/<path> with URL-encoded `params`; its `data`.
    pub fn api(&self, d: &Deployment, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let mut argv = vec!["curl", "-sS", "--max-time", "5", "-G"];
        let encoded: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for p in &encoded {
            argv.extend(["--data-urlencode", p.as_str()]);
        }
        let url = format!("http://127.0.0.1:9090/api/v1/{path}");
        argv.push(&url);
        let out = d.exec(self.machine, &argv)?;
        let v: Value = serde_json::from_str(&out).with_context(|| format!("{path}: {out}"))?;
        ensure!(v["status"] == "success", "{path}: {v}");
        Ok(v["data"].clone())
    }

    /// An instant query's series as (labels, value).
    pub fn query(&self, d: &Deployment, q: &str) -> Result<Vec<(Value, f64)>> {
        let data = self.api(d, "query", &[("query", q)])?;
        Ok(data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let v = s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), v)
            })
            .collect())
    }

    /// The alerts it has now, pending and firing.
    pub fn alerts(&self, d: &Deployment) -> Result<Vec<Alert>> {
        let data = self.api(d, "alerts", &[])?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["state"].as_str().unwrap_or("").to_string(),
                    a["labels"].clone(),
                )
            })
            .collect())
    }

    /// Every unit's certificate exporter reads its files: at least `min` certificates, each
    /// with more than 300 days left (the charms issue for a year, their CA for ten), and no
    /// read error (an exporter up over a wrong path would say x509_read_errors 1 and nothing
    /// else).
    pub fn certificates_read(&self, d: &Deployment, units: &[String], min: usize) -> Result<()> {
        for u in units {
            let all = self.query(d, &format!("x509_cert_not_after{{juju_unit=\"{u}\"}}"))?;
            ensure!(all.len() >= min, "{u}: certificates {all:?}");
            let fresh = self.query(
                d,
                &format!("x509_cert_not_after{{juju_unit=\"{u}\"}} - time() > 300 * 86400"),
            )?;
            ensure!(fresh.len() == all.len(), "{u}: {all:?}, fresh {fresh:?}");
            let errors = self.query(d, &format!("x509_read_errors{{juju_unit=\"{u}\"}}"))?;
            ensure!(
                errors.len() == 1 && errors[0].1 == 0.0,
                "{u}: read errors {errors:?}"
            );
        }
        Ok(())
    }
}
