//! The state a test describes before an event, and reads after it.

use crate::machine::{CmdOutput, FileOptions};
use crate::status::Status;
use crate::tools::{Databag, Port};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Everything the unit can observe, before or after one event.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Whether this unit is the leader.
    pub leader: bool,
    /// Config set by the operator (defaults come from config.yaml).
    pub config: BTreeMap<String, serde_json::Value>,
    /// The unit's relations.
    pub relations: Vec<Relation>,
    /// Secrets this unit owns or can see.
    pub secrets: Vec<Secret>,
    /// Opened ports.
    pub opened_ports: BTreeSet<Port>,
    /// The unit's status.
    pub unit_status: Status,
    /// The application's status.
    pub app_status: Status,
    /// What `application-version-set` last said.
    pub workload_version: String,
    /// The unit's network: what `network-get` answers for every binding.
    pub network: Network,
    /// Controller-side charm state (`state-get`/`state-set`).
    pub stored: BTreeMap<String, String>,
    /// Resources attached to the application: name → file path.
    pub resources: BTreeMap<String, PathBuf>,
    /// The unit's host.
    pub machine: MachineState,
}

impl Default for State {
    fn default() -> Self {
        State {
            leader: false,
            config: BTreeMap::new(),
            relations: Vec::new(),
            secrets: Vec::new(),
            opened_ports: BTreeSet::new(),
            unit_status: Status::unknown(),
            app_status: Status::unknown(),
            workload_version: String::new(),
            network: Network::default(),
            stored: BTreeMap::new(),
            resources: BTreeMap::new(),
            machine: MachineState::default(),
        }
    }
}

impl State {
    /// The relation with this id.
    pub fn relation(&self, id: u32) -> Option<&Relation> {
        self.relations.iter().find(|r| r.id == id)
    }

    /// The first relation on `endpoint`.
    pub fn relation_on(&self, endpoint: &str) -> Option<&Relation> {
        self.relations.iter().find(|r| r.endpoint == endpoint)
    }

    /// The secret with this id (in any of Juju's forms: `secret://<uuid>/<id>`, `secret:<id>`,
    /// `<id>`) or owner label.
    pub fn secret(&self, id_or_label: &str) -> Option<&Secret> {
        self.secrets.iter().find(|s| {
            crate::tools::same_secret(&s.id, id_or_label) || s.label.as_deref() == Some(id_or_label)
        })
    }

    /// Sets a config value (builder style).
    pub fn with_config(mut self, key: &str, value: impl Into<serde_json::Value>) -> State {
        self.config.insert(key.to_string(), value.into());
        self
    }

    /// Adds a relation (builder style).
    pub fn with_relation(mut self, r: Relation) -> State {
        self.relations.push(r);
        self
    }

    /// Adds a secret (builder style).
    pub fn with_secret(mut self, s: Secret) -> State {
        self.secrets.push(s);
        self
    }

    /// Makes this unit the leader (builder style).
    pub fn leader(mut self) -> State {
        self.leader = true;
        self
    }
}

/// The unit's single network, as `network-get` reports it for any binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// The unit's address.
    pub address: String,
    /// Its subnet.
    pub cidr: String,
    /// The interface it is on.
    pub interface: String,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            address: "10.0.0.10".into(),
            cidr: "10.0.0.0/24".into(),
            interface: "eth0".into(),
        }
    }
}

/// Which side of a relation it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// A relation between two applications.
    Regular,
    /// A peer relation among this application's units.
    Peer,
}

/// One relation as this unit sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// The relation number (`<endpoint>:<id>`).
    pub id: u32,
    /// The local endpoint.
    pub endpoint: String,
    /// Regular or peer.
    pub kind: RelationKind,
    /// The remote application (ignored for peers: it is this application).
    pub remote_app: String,
    /// This application's databag.
    pub local_app_data: Databag,
    /// This unit's databag.
    pub local_unit_data: Databag,
    /// The remote application's databag (for peers, unused: peers share `local_app_data`).
    pub remote_app_data: Databag,
    /// Remote units by number (peers: the other units of this application) and their databags.
    pub remote_units: BTreeMap<u32, Databag>,
}

impl Relation {
    /// A relation `id` on `endpoint` to `remote_app`, with no remote units yet.
    pub fn new(id: u32, endpoint: &str, remote_app: &str) -> Relation {
        Relation {
            id,
            endpoint: endpoint.into(),
            kind: RelationKind::Regular,
            remote_app: remote_app.into(),
            local_app_data: Databag::new(),
            local_unit_data: Databag::new(),
            remote_app_data: Databag::new(),
            remote_units: BTreeMap::new(),
        }
    }

    /// A peer relation `id` on `endpoint`.
    pub fn peer(id: u32, endpoint: &str) -> Relation {
        Relation {
            kind: RelationKind::Peer,
            ..Relation::new(id, endpoint, "")
        }
    }

    /// Adds remote unit `n` with its databag.
    pub fn remote_unit(mut self, n: u32, data: &[(&str, &str)]) -> Relation {
        self.remote_units.insert(n, bag(data));
        self
    }

    /// Sets the remote application's databag.
    pub fn remote_app_data(mut self, data: &[(&str, &str)]) -> Relation {
        self.remote_app_data = bag(data);
        self
    }

    /// Sets this application's databag.
    pub fn local_app_data(mut self, data: &[(&str, &str)]) -> Relation {
        self.local_app_data = bag(data);
        self
    }

    /// Sets this unit's databag.
    pub fn local_unit_data(mut self, data: &[(&str, &str)]) -> Relation {
        self.local_unit_data = bag(data);
        self
    }
}

/// Builds a databag from pairs.
pub fn bag(pairs: &[(&str, &str)]) -> Databag {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Who holds a secret, from this unit's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHolder {
    /// This application owns it (the leader manages it).
    App,
    /// This unit owns it.
    Unit,
    /// Another application owns it and granted it to this unit.
    Consumer,
}

/// A secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// `secret:<xid>`.
    pub id: String,
    /// Whose it is.
    pub holder: SecretHolder,
    /// Content per revision; revision N is `revisions[N-1]`.
    pub revisions: Vec<BTreeMap<String, String>>,
    /// For a consumer: the revision it tracks (0 = none seen yet, the latest is read first).
    pub tracked: u32,
    /// The label this unit gave it.
    pub label: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Grants: relation id → unit (None = the whole remote application).
    pub grants: BTreeMap<u32, Option<String>>,
}

impl Secret {
    /// A secret owned by this application with one revision of `content`.
    pub fn owned(id: &str, content: &[(&str, &str)]) -> Secret {
        Secret {
            id: id.into(),
            holder: SecretHolder::App,
            revisions: vec![bag(content).into_iter().collect()],
            tracked: 1,
            label: None,
            description: None,
            grants: BTreeMap::new(),
        }
    }

    /// A secret another application granted to this unit.
    pub fn granted(id: &str, content: &[(&str, &str)]) -> Secret {
        Secret {
            holder: SecretHolder::Consumer,
            tracked: 0,
            ..Secret::owned(id, content)
        }
    }

    /// Adds a revision (as the owner would with `secret-set`).
    pub fn with_revision(mut self, content: &[(&str, &str)]) -> Secret {
        self.revisions.push(bag(content).into_iter().collect());
        self
    }

    /// Gives it a label.
    pub fn with_label(mut self, label: &str) -> Secret {
        self.label = Some(label.into());
        self
    }

    /// The latest revision number.
    pub fn latest(&self) -> u32 {
        self.revisions.len() as u32
    }

    /// The latest content.
    pub fn latest_content(&self) -> &BTreeMap<String, String> {
        self.revisions
            .last()
            .expect("a secret has at least one revision")
    }
}

/// A file in the virtual filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VFile {
    /// Content (empty for directories).
    pub content: Vec<u8>,
    /// Owner, group, mode.
    pub options: FileOptions,
    /// Whether it is a directory.
    pub is_dir: bool,
}

impl VFile {
    /// The content as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }
}

/// A systemd service as the testing machine tracks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    /// Running.
    pub active: bool,
    /// Enabled at boot.
    pub enabled: bool,
}

/// A scripted answer: when a command's argv starts with `prefix`, it gets `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    /// Leading argv (program first).
    pub prefix: Vec<String>,
    /// What the command prints and exits with.
    pub output: CmdOutput,
    /// How many matching commands it answers before it is used up and the next match (or the
    /// built-in behaviour) answers; `None`: every one. A command that fails a few times and
    /// then succeeds is two responders, the first with `Some(n)`.
    pub times: Option<u32>,
}

/// The unit's host, in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineState {
    /// Files and directories.
    pub files: BTreeMap<PathBuf, VFile>,
    /// Services by unit name.
    pub services: BTreeMap<String, Service>,
    /// Installed Debian packages.
    pub packages: BTreeSet<String>,
    /// Installed snaps and their channels.
    pub snaps: BTreeMap<String, String>,
    /// Every command run so far (argv, program first), oldest first.
    pub commands: Vec<Vec<String>>,
    /// Scripted answers; the first whose prefix matches (and is not used up) wins. Unmatched commands succeed
    /// silently (after the built-in systemctl/apt-get/snap behaviour).
    pub responders: Vec<Responder>,
}

impl MachineState {
    /// Scripts `argv_prefix` to answer `output` (builder style).
    pub fn respond(mut self, argv_prefix: &[&str], output: CmdOutput) -> MachineState {
        self.responders.push(Responder {
            prefix: argv_prefix.iter().map(|s| s.to_string()).collect(),
            output,
            times: None,
        });
        self
    }

    /// Scripts `argv_prefix` to answer `output` to its next `times` runs only, ahead of any
    /// other answer for it (builder style): e.g. a command that fails twice, then succeeds.
    pub fn respond_times(
        mut self,
        argv_prefix: &[&str],
        output: CmdOutput,
        times: u32,
    ) -> MachineState {
        self.responders.insert(
            0,
            Responder {
                prefix: argv_prefix.iter().map(|s| s.to_string()).collect(),
                output,
                times: Some(times),
            },
        );
        self
    }

    /// Adds a file (builder style).
    pub fn with_file(mut self, path: &str, content: &str, options: FileOptions) -> MachineState {
        self.files.insert(
            PathBuf::from(path),
            VFile {
                content: content.as_bytes().to_vec(),
                options,
                is_dir: false,
            },
        );
        self
    }

    /// A file's content as text, if it exists.
    pub fn text(&self, path: &str) -> Option<String> {
        self.files.get(std::path::Path::new(path)).map(VFile::text)
    }

    /// Whether a service is running.
    pub fn is_active(&self, unit: &str) -> bool {
        self.services.get(unit).is_some_and(|s| s.active)
    }
}
