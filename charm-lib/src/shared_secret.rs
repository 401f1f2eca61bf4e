//! One application secret that every unit of the application reads: a password the units must
//! agree on (VRRP's auth_pass, PostgreSQL's system users, MAAS's shared secret).
//!
//! Only the leader may create or change an application-owned secret, and a unit that did not
//! create it cannot find it by label (labels are the owner's), so the leader publishes its id
//! in the peer relation's application databag, which every peer can read. Until the id is
//! there a non-leader has nothing to read and must wait; there is no other channel, and
//! generating its own value would split the application.
//!
//! The leader looks for its label before creating: Juju refuses a second secret with the same
//! label, so a secret that exists without a published id (the id was lost, or leadership moved
//! between the two writes) is adopted rather than duplicated.

use crate::model::{Model, Relation};
use crate::tools::{Databag, SecretOptions};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::fmt;

/// A secret's content: key → value.
pub type Content = BTreeMap<String, String>;

/// How one application secret is named and shared. A `const` per charm keeps the label,
/// the databag key and the description in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSecret<'a> {
    /// The owner label the leader gives the secret.
    pub label: &'a str,
    /// The peer application databag key that carries the secret's id.
    pub key: &'a str,
    /// What `juju secrets` shows the operator.
    pub description: &'a str,
    /// Read with `secret-get --refresh`: needed when the leader rotates the content, so every
    /// unit moves to the new revision.
    pub refresh: bool,
}

/// The secret as this unit sees it in this hook.
#[derive(Clone, PartialEq, Eq)]
pub struct Shared {
    /// Its id, as Juju printed it or as the peer databag carries it (`secret://<model>/<id>`
    /// or `secret:<id>`: compare with [`crate::tools::same_secret`]).
    pub id: String,
    /// Its content.
    pub content: Content,
    /// The leader created it in this hook.
    pub created: bool,
    /// The id is not in the peer application databag yet: the leader must write
    /// `key = id` there ([`SharedSecret::ensure`] does; [`SharedSecret::resolve`] leaves it to
    /// charms that batch their databag writes).
    pub unpublished: bool,
}

// The content is what must never reach a log.
impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("content", &self.content.keys().collect::<Vec<_>>())
            .field("created", &self.created)
            .field("unpublished", &self.unpublished)
            .finish()
    }
}

impl<'a> SharedSecret<'a> {
    /// A shared secret read at the revision the unit tracks.
    pub const fn new(label: &'a str, key: &'a str, description: &'a str) -> SharedSecret<'a> {
        SharedSecret {
            label,
            key,
            description,
            refresh: false,
        }
    }

    /// The same, read with `--refresh` (for content the leader rotates).
    pub const fn refreshing(self) -> SharedSecret<'a> {
        SharedSecret {
            refresh: true,
            ..self
        }
    }

    /// The id published in `app` (the peer application databag), if any.
    pub fn id_in<'b>(&self, app: &'b Databag) -> Option<&'b str> {
        app.get(self.key)
            .map(String::as_str)
            .filter(|id| !id.is_empty())
    }

    /// The published secret's id and content, never created: for readers such as actions,
    /// which must not do the leader's reconcile. `None`: no id is published yet.
    pub fn published(
        &self,
        model: &Model,
        app: &Databag,
    ) -> anyhow::Result<Option<(String, Content)>> {
        match self.id_in(app) {
            Some(id) => Ok(Some((id.to_string(), self.read(model, id)?))),
            None => Ok(None),
        }
    }

    /// The secret, given the peer application databag the caller has already read. The leader
    /// creates it with `generate`'s content if it does not exist; the caller publishes the id
    /// when [`Shared::unpublished`]. `None`: this unit is not the leader and the id is not
    /// published yet (wait for it).
    pub fn resolve(
        &self,
        model: &Model,
        app: &Databag,
        generate: impl FnOnce() -> anyhow::Result<Content>,
    ) -> anyhow::Result<Option<Shared>> {
        if let Some(id) = self.id_in(app) {
            return Ok(Some(Shared {
                content: self.read(model, id)?,
                id: id.to_string(),
                created: false,
                unpublished: false,
            }));
        }
        if !model.is_leader()? {
            return Ok(None);
        }
        if let Some((id, _)) = model.secret_by_label(self.label)? {
            let content = model
                .peek_secret(Some(&id), None)
                .with_context(|| self.unreadable(&id))?;
            return Ok(Some(Shared {
                id,
                content,
                created: false,
                unpublished: true,
            }));
        }
        let content = generate().with_context(|| {
            format!("cannot generate the content of the {:?} secret", self.label)
        })?;
        let id = model.add_secret(&content, &self.options())?;
        Ok(Some(Shared {
            id,
            content,
            created: true,
            unpublished: true,
        }))
    }

    /// [`SharedSecret::resolve`] on the peer relation `peer`, publishing the id when needed.
    pub fn ensure(
        &self,
        model: &Model,
        peer: &Relation,
        generate: impl FnOnce() -> anyhow::Result<Content>,
    ) -> anyhow::Result<Option<Shared>> {
        let shared = self.resolve(model, &peer.my_app_data()?, generate)?;
        if let Some(s) = shared.as_ref().filter(|s| s.unpublished) {
            peer.set_my_app_data(&[(self.key.to_string(), s.id.clone())].into_iter().collect())?;
        }
        Ok(shared)
    }

    /// Leader only: makes the secret hold exactly `content` (created, or a new revision when it
    /// differs), for content that comes from elsewhere (a file the workload wrote) rather than
    /// from the charm. Returns its id, for the caller to publish under [`SharedSecret::key`].
    pub fn put(&self, model: &Model, content: &Content) -> anyhow::Result<String> {
        Ok(self.put_created(model, content)?.0)
    }

    /// [`SharedSecret::put`], and whether it created the secret.
    fn put_created(&self, model: &Model, content: &Content) -> anyhow::Result<(String, bool)> {
        match model.secret_by_label(self.label)? {
            Some((id, _)) => {
                let current = model
                    .peek_secret(Some(&id), None)
                    .with_context(|| self.unreadable(&id))?;
                if &current != content {
                    model.set_secret(&id, content)?;
                }
                Ok((id, false))
            }
            None => Ok((model.add_secret(content, &self.options())?, true)),
        }
    }

    /// Leader only: [`SharedSecret::put`], and whether `app` (the peer application databag)
    /// must get the id. When `app` already names the same secret, its id is kept as written:
    /// `secret-add` prints `secret://<model-uuid>/<id>` and a later lookup by label gives
    /// `secret:<id>`, and a databag that changed form from hook to hook would wake every peer
    /// (and every unit the id is passed on to) for nothing.
    pub fn put_published(
        &self,
        model: &Model,
        app: &Databag,
        content: &Content,
    ) -> anyhow::Result<Shared> {
        let (id, created) = self.put_created(model, content)?;
        let (id, unpublished) = match self.id_in(app) {
            Some(published) if crate::tools::same_secret(published, &id) => {
                (published.to_string(), false)
            }
            _ => (id, true),
        };
        Ok(Shared {
            id,
            content: content.clone(),
            created,
            unpublished,
        })
    }

    fn read(&self, model: &Model, id: &str) -> anyhow::Result<Content> {
        model
            .get_secret(Some(id), None, self.refresh)
            .with_context(|| self.unreadable(id))
    }

    fn unreadable(&self, id: &str) -> String {
        format!(
            "cannot read the {:?} secret {id:?} (its id is in the peer application databag under {:?})",
            self.label, self.key
        )
    }

    fn options(&self) -> SecretOptions {
        SecretOptions {
            label: Some(self.label.into()),
            description: Some(self.description.into()),
            ..Default::default()
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::spec::CharmSpec;
    use crate::testing::{Harness, Relation, Secret, State, Trigger};
    use crate::{Context, Status};

    const META: &str = "
name: demo
summary: s
description: d
peers:
  cluster:
    interface: demo-peers
";
    const SHARED: SharedSecret = SharedSecret::new("demo-auth", "auth-id", "the demo password");

    fn generate() -> anyhow::Result<Content> {
        Ok([("password".to_string(), "s3cr3t-value".to_string())].into())
    }

    // Reports what the unit saw in its status, so each test asserts on the output state.
    fn handle(ctx: &mut Context) -> anyhow::Result<()> {
        let peer = ctx.model.relation("cluster")?.expect("the peer relation");
        let status = match SHARED.ensure(&ctx.model, &peer, generate)? {
            None => Status::waiting("waiting for the leader"),
            Some(s) => Status::active(format!(
                "{} {} created={}",
                s.id,
                s.content.keys().cloned().collect::<Vec<_>>().join(","),
                s.created
            )),
        };
        ctx.status(status);
        Ok(())
    }

    fn harness() -> Harness {
        Harness::from_spec(CharmSpec::parse(META, None, None).unwrap(), handle)
    }

    fn peers(app: &[(&str, &str)]) -> State {
        State::default().with_relation(Relation::peer(1, "cluster").local_app_data(app))
    }

    #[test]
    fn the_leader_creates_the_secret_once_and_publishes_its_id() {
        let out = harness()
            .run(Trigger::LeaderElected, &peers(&[]).leader())
            .unwrap();

        assert_eq!(out.error, None);
        let id = out.state.relation(1).unwrap().local_app_data["auth-id"].clone();
        let secret = out.state.secret(&id).expect("the secret the id names");
        assert_eq!(secret.label.as_deref(), Some("demo-auth"));
        assert_eq!(secret.description.as_deref(), Some("the demo password"));
        assert_eq!(secret.latest_content()["password"], "s3cr3t-value");
        assert_eq!(
            out.state.unit_status,
            Status::active(format!("{id} password created=true"))
        );
        assert!(!out.mentions("s3cr3t-value"));
    }

    #[test]
    fn a_second_run_changes_nothing() {
        let h = harness();
        let first = h.run(Trigger::LeaderElected, &peers(&[]).leader()).unwrap();

        let again = h.run(Trigger::ConfigChanged, &first.state).unwrap();

        assert_eq!(again.error, None);
        assert_eq!(again.state.secrets, first.state.secrets);
        assert_eq!(again.state.relations, first.state.relations);
        let id = &first.state.relation(1).unwrap().local_app_data["auth-id"];
        assert_eq!(
            again.state.unit_status,
            Status::active(format!("{id} password created=false"))
        );
    }

    #[test]
    fn a_leader_adopts_its_labelled_secret_whose_id_was_not_published() {
        let st = peers(&[]).leader().with_secret(
            Secret::owned("secret:old", &[("password", "kept")]).with_label("demo-auth"),
        );

        let out = harness().run(Trigger::LeaderElected, &st).unwrap();

        assert_eq!(out.error, None);
        assert_eq!(out.state.secrets.len(), 1, "no second secret");
        assert_eq!(
            out.state.relation(1).unwrap().local_app_data["auth-id"],
            "secret:old"
        );
    }

    #[test]
    fn a_non_leader_without_the_id_waits() {
        let out = harness().run(Trigger::ConfigChanged, &peers(&[])).unwrap();

        assert_eq!(out.error, None);
        assert_eq!(
            out.state.unit_status,
            Status::waiting("waiting for the leader")
        );
        assert!(out.state.secrets.is_empty());
        assert!(out.state.relation(1).unwrap().local_app_data.is_empty());
    }

    #[test]
    fn a_non_leader_reads_the_content_by_the_published_id() {
        let st = peers(&[("auth-id", "secret:fromleader")])
            .with_secret(Secret::owned("secret:fromleader", &[("password", "abc")]));

        let out = harness().run(Trigger::ConfigChanged, &st).unwrap();

        assert_eq!(out.error, None);
        assert_eq!(
            out.state.unit_status,
            Status::active("secret:fromleader password created=false")
        );
    }

    #[test]
    fn an_unknown_id_is_an_error_that_names_it() {
        for leader in [false, true] {
            let mut st = peers(&[("auth-id", "garbled!")]);
            st.leader = leader;

            let out = harness().run(Trigger::ConfigChanged, &st).unwrap();

            let err = out.error.expect("the hook fails");
            assert!(
                err.contains(r#"cannot read the "demo-auth" secret "garbled!""#)
                    && err.contains(r#"under "auth-id""#)
                    && err.contains("not found"),
                "{err}"
            );
            assert!(
                out.state.secrets.is_empty(),
                "leader {leader}: nothing created"
            );
        }
    }

    // put: the leader mirrors content it did not generate.
    fn handle_put(ctx: &mut Context) -> anyhow::Result<()> {
        let content: Content = [(
            "secret".to_string(),
            ctx.model.config::<serde_json::Value>()?["v"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )]
        .into();
        let id = SHARED.put(&ctx.model, &content)?;
        ctx.status(Status::active(id));
        Ok(())
    }

    #[test]
    fn put_creates_then_adds_a_revision_only_when_the_content_changes() {
        let spec = CharmSpec::parse(
            META,
            Some("options:\n  v:\n    type: string\n    default: one\n    description: v\n"),
            None,
        )
        .unwrap();
        let h = Harness::from_spec(spec, handle_put);
        let st = peers(&[]).leader();

        let first = h.run(Trigger::ConfigChanged, &st).unwrap();
        let same = h.run(Trigger::ConfigChanged, &first.state).unwrap();
        let changed = h
            .run(
                Trigger::ConfigChanged,
                &same.state.clone().with_config("v", "two"),
            )
            .unwrap();

        assert_eq!(first.error, None);
        assert_eq!(first.state.secrets.len(), 1);
        assert_eq!(
            same.state.secrets, first.state.secrets,
            "same content: no revision"
        );
        let s = &changed.state.secrets[0];
        assert_eq!((changed.state.secrets.len(), s.latest()), (1, 2));
        assert_eq!(s.latest_content()["secret"], "two");
        assert_eq!(changed.state.unit_status, Status::active(s.id.clone()));
    }

    // put_published: the leader mirrors content and publishes its id once, in one form.
    fn handle_put_published(ctx: &mut Context) -> anyhow::Result<()> {
        let peer = ctx.model.relation("cluster")?.expect("the peer relation");
        let app = peer.my_app_data()?;
        let content: Content = [("secret".to_string(), "from-the-workload".to_string())].into();
        let s = SHARED.put_published(&ctx.model, &app, &content)?;
        if s.unpublished {
            peer.set_my_app_data(&[(SHARED.key.to_string(), s.id.clone())].into())?;
        }
        ctx.status(Status::active(format!("{} created={}", s.id, s.created)));
        Ok(())
    }

    #[test]
    fn put_published_keeps_the_id_in_the_form_juju_first_printed() {
        let h = Harness::from_spec(
            CharmSpec::parse(META, None, None).unwrap(),
            handle_put_published,
        );

        let first = h.run(Trigger::LeaderElected, &peers(&[]).leader()).unwrap();
        let again = h.run(Trigger::ConfigChanged, &first.state).unwrap();

        assert_eq!(
            (first.error.as_deref(), again.error.as_deref()),
            (None, None)
        );
        // secret-add printed secret://<model-uuid>/<id>; the label lookup of the second run
        // gives secret:<id>, the same secret, so the databag keeps the first form
        let published = &first.state.relation(1).unwrap().local_app_data["auth-id"];
        assert!(
            published.starts_with(&format!("secret://{}/", crate::testing::MODEL_UUID)),
            "{published}"
        );
        assert_eq!(again.state.relations, first.state.relations);
        assert_eq!(again.state.secrets, first.state.secrets);
        assert_eq!(
            first.state.unit_status,
            Status::active(format!("{published} created=true"))
        );
        assert_eq!(
            again.state.unit_status,
            Status::active(format!("{published} created=false"))
        );
        // an id in the databag that names another secret is replaced
        let mut stale = first.state.clone();
        stale.relations[0]
            .local_app_data
            .insert("auth-id".into(), "secret:gone".into());
        let fixed = h.run(Trigger::ConfigChanged, &stale).unwrap();
        assert_eq!(
            fixed.state.relation(1).unwrap().local_app_data["auth-id"],
            first.state.secrets[0].id
        );
    }

    fn handle_published(ctx: &mut Context) -> anyhow::Result<()> {
        let peer = ctx.model.relation("cluster")?.expect("the peer relation");
        let status = match SHARED.published(&ctx.model, &peer.my_app_data()?)? {
            None => Status::waiting("not published"),
            Some((id, content)) => Status::active(format!("{id} {}", content["password"])),
        };
        ctx.status(status);
        Ok(())
    }

    #[test]
    fn published_reads_by_the_id_and_never_creates_even_on_the_leader() {
        let h = Harness::from_spec(
            CharmSpec::parse(META, None, None).unwrap(),
            handle_published,
        );
        let unpublished = peers(&[]).leader().with_secret(
            Secret::owned("secret:old", &[("password", "kept")]).with_label("demo-auth"),
        );
        let published = peers(&[("auth-id", "secret:old")])
            .with_secret(Secret::owned("secret:old", &[("password", "kept")]));

        let none = h.run(Trigger::ConfigChanged, &unpublished).unwrap();
        let read = h.run(Trigger::ConfigChanged, &published).unwrap();

        assert_eq!(none.state.unit_status, Status::waiting("not published"));
        assert_eq!(none.state.secrets, unpublished.secrets, "nothing created");
        assert!(none.state.relation(1).unwrap().local_app_data.is_empty());
        assert_eq!(read.state.unit_status, Status::active("secret:old kept"));
    }

    #[test]
    fn debug_output_hides_the_content() {
        let s = Shared {
            id: "secret:x".into(),
            content: [("password".to_string(), "hunter22".to_string())].into(),
            created: true,
            unpublished: false,
        };
        let shown = format!("{s:?}");
        assert!(
            shown.contains("password") && !shown.contains("hunter22"),
            "{shown}"
        );
    }
}
