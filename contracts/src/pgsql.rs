//! `pgsql` (endpoint `db`): maas-region (requires) ⇄ postgresql-ha (provides).
//!
//! The legacy pgsql protocol, extended so that a client that reads Juju secrets never gets a
//! password in clear: the client asks in its unit databag (its leader may also use the app
//! databag), every server unit answers the same in its unit databag. Other pgsql clients
//! (reactive charms) speak it too, so the server reads leniently what a client sent.

use serde::{Deserialize, Serialize};

/// The interface name in both charms' metadata.yaml.
pub const INTERFACE: &str = "pgsql";

/// The content keys of the `secret-user` secret.
pub mod secret_keys {
    /// The role.
    pub const USERNAME: &str = "username";
    /// Its password.
    pub const PASSWORD: &str = "password";
}

/// The key names.
pub mod keys {
    /// Client: the database wanted (default: the client application's name). Server: the
    /// relation's database.
    pub const DATABASE: &str = "database";
    /// Client: optional comma list of roles; server: echoed once granted.
    pub const ROLES: &str = "roles";
    /// Client: optional comma list of extensions; server: echoed once all are created.
    pub const EXTENSIONS: &str = "extensions";
    /// Client: JSON list of fields it wants in secrets, e.g. `["username","password"]`.
    pub const REQUESTED_SECRETS: &str = "requested-secrets";
    /// Server: the writable address.
    pub const HOST: &str = "host";
    /// Server: the port.
    pub const PORT: &str = "port";
    /// Server: the relation's role.
    pub const USER: &str = "user";
    /// Server: the password, only for a client that did not send `requested-secrets`.
    pub const PASSWORD: &str = "password";
    /// Server: the Juju secret id with [`super::secret_keys`], granted to the relation.
    pub const SECRET_USER: &str = "secret-user";
    /// Server: libpq string of the primary.
    pub const MASTER: &str = "master";
    /// Server: newline-separated libpq strings of the replicas.
    pub const STANDBYS: &str = "standbys";
    /// Server: space-separated client unit names allowed by pg_hba.
    pub const ALLOWED_UNITS: &str = "allowed-units";
    /// Server: comma-separated CIDRs allowed by pg_hba.
    pub const ALLOWED_SUBNETS: &str = "allowed-subnets";
    /// Server: this unit's role, `master`, `hot standby` or `standalone`.
    pub const STATE: &str = "state";
    /// Server: PostgreSQL's major version.
    pub const VERSION: &str = "version";
    /// Server: the CA (PEM) that signs the server's certificate.
    pub const TLS_CA: &str = "tls-ca";

    /// Every key a server writes ([`super::ServerData`]'s fields): a server deletes the ones
    /// it no longer wants.
    pub const SERVER: [&str; 15] = [
        TLS_CA,
        ROLES,
        EXTENSIONS,
        HOST,
        PORT,
        DATABASE,
        USER,
        PASSWORD,
        SECRET_USER,
        MASTER,
        STANDBYS,
        ALLOWED_UNITS,
        ALLOWED_SUBNETS,
        STATE,
        VERSION,
    ];
}

/// What a client asks for. `None` deletes the key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClientRequest {
    /// `database`.
    #[serde(default)]
    pub database: Option<String>,
    /// `roles`: comma list, as the client writes it.
    #[serde(default)]
    pub roles: Option<String>,
    /// `extensions`: comma list, as the client writes it.
    #[serde(default)]
    pub extensions: Option<String>,
    /// `requested-secrets` (JSON): present means "send credentials as a secret".
    #[serde(default)]
    pub requested_secrets: Option<Vec<String>>,
}

/// What every server unit answers (the same on each). Values are text as they travel: the
/// client judges them (a `port` that is not a port keeps it waiting, naming the value).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServerData {
    /// `host`.
    #[serde(default)]
    pub host: Option<String>,
    /// `port` (`5432`).
    #[serde(default)]
    pub port: Option<String>,
    /// `database`.
    #[serde(default)]
    pub database: Option<String>,
    /// `user`.
    #[serde(default)]
    pub user: Option<String>,
    /// `password` (legacy clients only).
    #[serde(default)]
    pub password: Option<String>,
    /// `secret-user`.
    #[serde(default)]
    pub secret_user: Option<String>,
    /// `master`.
    #[serde(default)]
    pub master: Option<String>,
    /// `standbys`.
    #[serde(default)]
    pub standbys: Option<String>,
    /// `allowed-units`.
    #[serde(default)]
    pub allowed_units: Option<String>,
    /// `allowed-subnets`.
    #[serde(default)]
    pub allowed_subnets: Option<String>,
    /// `roles`, echoed.
    #[serde(default)]
    pub roles: Option<String>,
    /// `extensions`, echoed.
    #[serde(default)]
    pub extensions: Option<String>,
    /// `state`.
    #[serde(default)]
    pub state: Option<String>,
    /// `version`.
    #[serde(default)]
    pub version: Option<String>,
    /// `tls-ca`.
    #[serde(default)]
    pub tls_ca: Option<String>,
}

impl ServerData {
    /// Whether `unit` is in `allowed-units`.
    pub fn allows(&self, unit: &str) -> bool {
        self.allowed_units
            .as_deref()
            .is_some_and(|a| a.split_whitespace().any(|u| u == unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bag, from_databag, to_databag};

    #[test]
    fn a_client_request_round_trips_in_todays_wire_format() {
        let r = ClientRequest {
            database: Some("maas".into()),
            requested_secrets: Some(
                [
                    "username",
                    "password",
                    "tls",
                    "tls-ca",
                    "uris",
                    "read-only-uris",
                ]
                .map(String::from)
                .to_vec(),
            ),
            ..ClientRequest::default()
        };
        let b = to_databag(&r).unwrap();
        assert_eq!(b[keys::DATABASE], "maas");
        assert_eq!(
            b[keys::REQUESTED_SECRETS],
            r#"["username","password","tls","tls-ca","uris","read-only-uris"]"#
        );
        assert_eq!(b[keys::ROLES], "", "not asked: no value");
        assert_eq!(b[keys::EXTENSIONS], "");
        assert_eq!(from_databag::<ClientRequest>(&b).unwrap(), r);
    }

    #[test]
    fn the_server_key_list_is_every_field_of_server_data() {
        // A default ServerData writes every field (as "", which deletes it).
        let written: std::collections::BTreeSet<String> = to_databag(&ServerData::default())
            .unwrap()
            .into_keys()
            .collect();
        let listed: std::collections::BTreeSet<String> =
            keys::SERVER.iter().map(|k| k.to_string()).collect();
        assert_eq!(listed, written);
        assert_eq!(listed.len(), keys::SERVER.len(), "no key listed twice");
    }

    #[test]
    fn server_data_round_trips_in_todays_wire_format() {
        let d = ServerData {
            host: Some("10.0.0.100".into()),
            port: Some("5432".into()),
            database: Some("maas".into()),
            user: Some("relation_3".into()),
            secret_user: Some("secret:abc".into()),
            master: Some(
                "host=10.0.0.100 port=5432 dbname=maas user=relation_3 sslmode=require".into(),
            ),
            standbys: Some(
                "host=10.0.0.11 port=5432 dbname=maas user=relation_3 sslmode=require".into(),
            ),
            allowed_units: Some("maas-region/0 maas-region/1".into()),
            allowed_subnets: Some("10.0.0.20/32,10.0.0.21/32".into()),
            state: Some("master".into()),
            version: Some("16".into()),
            ..ServerData::default()
        };
        let b = to_databag(&d).unwrap();
        for (k, v) in [
            (keys::HOST, "10.0.0.100"),
            (keys::PORT, "5432"),
            (keys::SECRET_USER, "secret:abc"),
            (keys::ALLOWED_UNITS, "maas-region/0 maas-region/1"),
            (keys::ALLOWED_SUBNETS, "10.0.0.20/32,10.0.0.21/32"),
            (keys::STATE, "master"),
            (keys::VERSION, "16"),
            (keys::PASSWORD, ""),
        ] {
            assert_eq!(b[k], v, "{k}");
        }
        assert_eq!(from_databag::<ServerData>(&b).unwrap(), d);
        assert!(d.allows("maas-region/1"));
        assert!(!d.allows("maas-region/2"));
    }

    #[test]
    fn nothing_sent_yet_reads_as_nothing() {
        assert_eq!(
            from_databag::<ServerData>(&bag(&[])).unwrap(),
            ServerData::default()
        );
    }
}
