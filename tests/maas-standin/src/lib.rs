//! # maas-standin: a test-only stand-in for MAAS
//!
//! **This is not MAAS.** MAAS cannot be installed on the machines where the charms are tested,
//! so this crate imitates MAAS at the interfaces the charms use: the `maas` snap CLI, the deb
//! CLIs (`maas-region`, `maas-rack`), the files MAAS keeps (`regiond.conf`, `rackd.conf`, the
//! shared secret, `maas_id`, `snap_mode`), and daemons that behave like regiond, rackd and named
//! where tests can see it (HTTP ports, a live PostgreSQL connection with heartbeats, region–rack
//! RPC connections with a JSON-lines log on the rack, a process named `named`).
//!
//! Everything is one multi-call binary (`maas-standin`), dispatched on `argv[0]` or on its first
//! argument. No charm may reference this crate: charms run the real command names, and the
//! local model's package catalog (see [`catalog`]) installs this binary under those names.
//!
//! Test-only knobs (never set them in a deployment):
//! - `MAAS_STANDIN_ROOT`: prefix for every absolute path the stand-in reads or writes.
//! - `MAAS_STANDIN_PORTS`: `api,internal,temporal` ports of a region host (nginx's HTTP and
//!   stream servers, Temporal; default `5240,5242,5271`).
//! - `MAAS_STANDIN_METRICS_PORTS`: `region,rack`: the Prometheus exporters' ports (default
//!   `5239,5249`).
//! - `MAAS_STANDIN_RPC_PORTS`: the ports regiond's workers try for RPC (default 5250-5259).
//! - `MAAS_STANDIN_BIND`: the one address nginx, Temporal, the RPC workers and the exporters
//!   listen on (default: all).
//! - `MAAS_STANDIN_HOSTNAME`: the host name a daemon reports (default: the UTS host name).
//! - `MAAS_STANDIN_INTERFACES`: the addresses rackd reports (default: from `ip -4 addr`).
//! - `MAAS_STANDIN_APACHE_PORT`: the apache2 stand-in's port (default 80).
//! - `MAAS_STANDIN_TEMPORAL_METRICS_PORT`: Temporal's Prometheus port on 127.0.0.1 (default
//!   9000; nginx's `temporal-metrics` upstream follows it).
//! - `MAAS_STANDIN_NO_SERVICES=1`: CLIs do not call `systemctl`.
//! - `MAAS_STANDIN_SKIP_ROOT_CHECK=1`: CLIs do not insist on running as root.

#![warn(missing_docs)]

pub mod agent;
pub mod apache2;
pub mod api;
pub mod apiserver;
pub mod argparse;
pub mod catalog;
pub mod cli;
pub mod conf;
pub mod db;
pub mod dhcpd;
pub mod http;
pub mod metrics;
pub mod named;
pub mod nginx;
pub mod paths;
pub mod pebble;
pub mod rackd;
pub mod regiond;
pub mod rpc;
pub mod services;
pub mod snapinfo;
pub mod temporal;
pub mod util;
