//! Layer 3: the unit's view of its model: identity, leadership, config, relations, secrets,
//! ports, addresses.
//!
//! The app-databag rules of Juju are enforced here, before any tool is called: only the
//! leader writes its application's databag, and a non-leader cannot read its own
//! application's databag on a non-peer relation.

use crate::databag::{from_databag, to_databag};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::tools::{Databag, HookTools, Port, RelationId, SecretInfo, SecretOptions, SecretOwner};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

/// The unit's model, for one hook.
pub struct Model<'r> {
    tools: HookTools<'r>,
    unit: String,
    app: String,
    leader: OnceCell<bool>,
    broken: Option<RelationId>,
}

impl<'r> Model<'r> {
    /// A model for the unit named in `event`, over `tools`.
    pub fn new(tools: HookTools<'r>, event: &Event) -> Model<'r> {
        let broken = event
            .relation()
            .filter(|r| r.phase == crate::event::RelationPhase::Broken)
            .map(|r| r.relation.clone());
        Model {
            tools,
            unit: event.unit.clone(),
            app: event.app.clone(),
            leader: OnceCell::new(),
            broken,
        }
    }

    /// The hook tools, for what the model does not wrap.
    pub fn tools(&self) -> HookTools<'r> {
        self.tools
    }

    /// This unit's name, e.g. `maas-region/0`.
    pub fn unit_name(&self) -> &str {
        &self.unit
    }

    /// This unit's number, e.g. 0.
    pub fn unit_number(&self) -> u32 {
        self.unit
            .rsplit_once('/')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }

    /// This unit's application, e.g. `maas-region`.
    pub fn app_name(&self) -> &str {
        &self.app
    }

    /// Whether this unit is the leader. Asked once per hook: a `true` answer holds for Juju's
    /// lease (30 s), longer than any hook should run.
    pub fn is_leader(&self) -> Result<bool> {
        if let Some(l) = self.leader.get() {
            return Ok(*l);
        }
        let l = self.tools.is_leader()?;
        Ok(*self.leader.get_or_init(|| l))
    }

    /// The charm's config as `T`. A value of the wrong type is an error naming the option.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        let raw = self.tools.config_get()?;
        serde_json::from_value(serde_json::Value::Object(raw))
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// The raw config map, for validation that wants to see every value.
    pub fn config_raw(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(self.tools.config_get()?)
    }

    /// This unit's charm state as `T` ([`crate::charm_state`]); a value that does not fit is
    /// [`Error::State`], naming the key.
    pub fn state<T: DeserializeOwned>(&self) -> Result<T> {
        crate::charm_state::load(&self.tools)
    }

    /// Writes the charm state's differences from `before` to `after`.
    pub fn save_state<T: Serialize>(&self, before: &T, after: &T) -> Result<()> {
        crate::charm_state::save(&self.tools, before, after)
    }

    /// The relations on `endpoint`. In a `-relation-broken` hook the relation being broken is
    /// left out (Juju still lists it, but it is going away: a holistic reconcile must not serve
    /// it); [`Model::event_relation`] still gives it.
    pub fn relations(&self, endpoint: &str) -> Result<Vec<Relation<'_, 'r>>> {
        self.tools
            .relation_ids(endpoint)?
            .into_iter()
            .filter(|id| Some(id) != self.broken.as_ref())
            .map(|id| self.relation_by_id(id))
            .collect()
    }

    /// The one relation on `endpoint`, if any (peer relations, `limit: 1` endpoints).
    pub fn relation(&self, endpoint: &str) -> Result<Option<Relation<'_, 'r>>> {
        Ok(self.relations(endpoint)?.into_iter().next())
    }

    /// The relation with this id. An id of another endpoint, or one this unit is not in, is an
    /// error (the tools would refuse it too; this says which).
    pub fn relation_by_id(&self, id: RelationId) -> Result<Relation<'_, 'r>> {
        let known = self.tools.relation_ids(&id.endpoint)?;
        if !known.contains(&id) {
            return Err(Error::UnknownRelation(format!(
                "relation {id} is not one of {}'s relations on endpoint {:?}",
                self.unit, id.endpoint
            )));
        }
        let units = self.tools.relation_list(&id)?;
        let remote_app = self.tools.relation_list_app(&id)?;
        let is_peer = remote_app.as_deref() == Some(self.app.as_str());
        Ok(Relation {
            model: self,
            id,
            remote_app,
            units,
            is_peer,
        })
    }

    /// The relation the current relation hook is about, built from what the environment
    /// already says (Juju guarantees it is this unit's): one tool call instead of three.
    /// `None` outside relation hooks.
    pub fn event_relation(&self, event: &Event) -> Result<Option<Relation<'_, 'r>>> {
        let Some(r) = event.relation() else {
            return Ok(None);
        };
        let units = match r.phase {
            // Juju lists no units in -broken.
            crate::event::RelationPhase::Broken => Vec::new(),
            _ => self.tools.relation_list(&r.relation)?,
        };
        let is_peer = r.remote_app == self.app;
        Ok(Some(Relation {
            model: self,
            id: r.relation.clone(),
            // empty only when Juju named it nowhere (see RelationEvent::remote_app)
            remote_app: Some(r.remote_app.clone()).filter(|a| !a.is_empty()),
            units,
            is_peer,
        }))
    }

    // ---- secrets --------------------------------------------------------------------------

    /// Creates a secret and returns its id. An application-owned secret needs leadership.
    pub fn add_secret(
        &self,
        content: &BTreeMap<String, String>,
        opts: &SecretOptions,
    ) -> Result<String> {
        if opts.owner == SecretOwner::Application && !self.is_leader()? {
            return Err(Error::Access(format!(
                "{} is not the leader and cannot create an application secret",
                self.unit
            )));
        }
        Ok(self.tools.secret_add(content, opts)?)
    }

    /// The content of a secret by id (or by the label this unit gave it). `refresh` makes a
    /// consumer track the latest revision.
    pub fn get_secret(
        &self,
        id: Option<&str>,
        label: Option<&str>,
        refresh: bool,
    ) -> Result<BTreeMap<String, String>> {
        Ok(self.tools.secret_get(id, label, refresh, false)?)
    }

    /// The latest revision's content of a secret this unit or app owns, without tracking it.
    pub fn peek_secret(
        &self,
        id: Option<&str>,
        label: Option<&str>,
    ) -> Result<BTreeMap<String, String>> {
        Ok(self.tools.secret_get(id, label, false, true)?)
    }

    /// A new revision of a secret this app owns (leader only).
    pub fn set_secret(&self, id: &str, content: &BTreeMap<String, String>) -> Result<()> {
        if !self.is_leader()? {
            return Err(Error::Access(format!(
                "{} is not the leader and cannot change an application secret",
                self.unit
            )));
        }
        Ok(self
            .tools
            .secret_set(id, content, &SecretOptions::default())?)
    }

    /// Lets the other side of `relation` (or one unit of it) read a secret.
    pub fn grant_secret(&self, id: &str, relation: &RelationId, unit: Option<&str>) -> Result<()> {
        Ok(self.tools.secret_grant(id, relation, unit)?)
    }

    /// Takes that permission back.
    pub fn revoke_secret(&self, id: &str, relation: &RelationId, unit: Option<&str>) -> Result<()> {
        Ok(self.tools.secret_revoke(id, relation, unit)?)
    }

    /// Metadata of an owned secret found by label, if it exists.
    pub fn secret_by_label(&self, label: &str) -> Result<Option<(String, SecretInfo)>> {
        match self.tools.secret_info_get(None, Some(label)) {
            Ok(m) => Ok(m
                .into_iter()
                .next()
                .map(|(xid, info)| (format!("secret:{xid}"), info))),
            Err(e) if e.stderr().is_some_and(|s| s.contains("not found")) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    // ---- ports and addresses ----------------------------------------------------------------

    /// Makes exactly `wanted` the opened ports: opens what is missing, closes the rest.
    pub fn set_ports(&self, wanted: &[Port]) -> Result<()> {
        let current: BTreeSet<Port> = self.tools.opened_ports()?.into_iter().collect();
        let wanted: BTreeSet<Port> = wanted.iter().copied().collect();
        for p in current.difference(&wanted) {
            self.tools.close_port(*p)?;
        }
        for p in wanted.difference(&current) {
            self.tools.open_port(*p)?;
        }
        Ok(())
    }

    /// The address others should use to reach this unit on `binding` (e.g. `juju-info` or an
    /// endpoint name).
    pub fn ingress_address(&self, binding: &str) -> Result<Option<String>> {
        Ok(self
            .tools
            .network_get(binding, None)?
            .ingress_addresses
            .into_iter()
            .next())
    }

    /// Sets the workload version shown by `juju status`.
    pub fn set_workload_version(&self, version: &str) -> Result<()> {
        Ok(self.tools.application_version_set(version)?)
    }
}

/// One relation of this unit.
pub struct Relation<'m, 'r> {
    model: &'m Model<'r>,
    id: RelationId,
    remote_app: Option<String>,
    units: Vec<String>,
    is_peer: bool,
}

impl<'m, 'r> Relation<'m, 'r> {
    /// Its id, e.g. `db:3`.
    pub fn id(&self) -> &RelationId {
        &self.id
    }

    /// The application at the other end (this app for a peer relation); `None` when Juju no
    /// longer knows it (a `-broken` hook).
    pub fn remote_app(&self) -> Option<&str> {
        self.remote_app.as_deref()
    }

    /// The remote units (the other peers for a peer relation).
    pub fn units(&self) -> &[String] {
        &self.units
    }

    /// Whether this is a peer relation.
    pub fn is_peer(&self) -> bool {
        self.is_peer
    }

    /// A unit's databag (a remote unit's, or this unit's own).
    pub fn unit_data(&self, unit: &str) -> Result<Databag> {
        Ok(self.model.tools.relation_get(&self.id, unit, false)?)
    }

    /// This unit's own databag.
    pub fn my_unit_data(&self) -> Result<Databag> {
        self.unit_data(&self.model.unit)
    }

    /// The remote application's databag (readable by every unit).
    pub fn remote_app_data(&self) -> Result<Databag> {
        match &self.remote_app {
            Some(app) => Ok(self.model.tools.relation_get(&self.id, app, true)?),
            None => Ok(Databag::new()),
        }
    }

    /// This application's databag: every peer reads it; on other relations only the leader.
    pub fn my_app_data(&self) -> Result<Databag> {
        if !self.is_peer && !self.model.is_leader()? {
            return Err(Error::Access(format!(
                "{} is not leader and cannot read its own application databag on relation {}",
                self.model.unit, self.id
            )));
        }
        Ok(self
            .model
            .tools
            .relation_get(&self.id, &self.model.app, true)?)
    }

    /// Writes changes to this unit's databag (an empty value deletes a key).
    pub fn set_my_unit_data(&self, changes: &Databag) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        Ok(self.model.tools.relation_set(&self.id, changes, false)?)
    }

    /// Writes changes to this application's databag: leader only.
    pub fn set_my_app_data(&self, changes: &Databag) -> Result<()> {
        if !self.model.is_leader()? {
            return Err(Error::Access(format!(
                "{} is not leader and cannot write application data on relation {}",
                self.model.unit, self.id
            )));
        }
        if changes.is_empty() {
            return Ok(());
        }
        Ok(self.model.tools.relation_set(&self.id, changes, true)?)
    }

    /// A unit's databag as `T`.
    pub fn read_unit<T: DeserializeOwned>(&self, unit: &str) -> Result<T> {
        self.decode(unit, &self.unit_data(unit)?)
    }

    /// The remote application's databag as `T`.
    pub fn read_remote_app<T: DeserializeOwned>(&self) -> Result<T> {
        let owner = self.remote_app.clone().unwrap_or_default();
        self.decode(&owner, &self.remote_app_data()?)
    }

    /// This application's databag as `T` (same rules as [`Relation::my_app_data`]).
    pub fn read_my_app<T: DeserializeOwned>(&self) -> Result<T> {
        self.decode(&self.model.app, &self.my_app_data()?)
    }

    /// Writes `value`'s fields to this unit's databag (`None` fields delete their key).
    pub fn write_my_unit<T: Serialize>(&self, value: &T) -> Result<()> {
        self.set_my_unit_data(&self.encode(&self.model.unit, value)?)
    }

    /// Writes `value`'s fields to this application's databag: leader only.
    pub fn write_my_app<T: Serialize>(&self, value: &T) -> Result<()> {
        self.set_my_app_data(&self.encode(&self.model.app, value)?)
    }

    fn decode<T: DeserializeOwned>(&self, owner: &str, bag: &Databag) -> Result<T> {
        from_databag(bag).map_err(|problem| Error::Databag {
            relation: self.id.clone(),
            owner: owner.to_string(),
            problem,
        })
    }

    fn encode<T: Serialize>(&self, owner: &str, value: &T) -> Result<Databag> {
        to_databag(value).map_err(|problem| Error::Databag {
            relation: self.id.clone(),
            owner: owner.to_string(),
            problem,
        })
    }
}
