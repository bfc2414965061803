//! The live agent directory: agents (with their disabled state), teams, canned responses
//! and departments as one immutable [`Snapshot`], replaced whole on every change, with a
//! version that wakes whoever follows it.
//!
//! The system of record holds the directory (issue 11); a follower on every node applies
//! its change feed here, and everything that reads agents, teams or canned responses at
//! run time (logins, the agent actors' skills and capacity, shift checks, canned lookups,
//! the router's department settings) reads the current snapshot. Before the record is read
//! (and in unit tests) the snapshot is the configuration file's ([`Directory::from_config`]).
//!
//! Documents are JSON; [`parse_agent`], [`parse_team`] and [`parse_canned`] read and check
//! them (departments are the router's to read: this crate does not know their type).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::watch;

use crate::config::{AgentConfig, AgentNodeConfig, CannedConfig, TeamConfig};

/// An agent of the directory.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    /// The agent's document.
    pub config: Arc<AgentConfig>,
    /// A disabled agent gets no offers and cannot log in.
    pub disabled: bool,
}

/// One state of the directory. Disabled teams, canned responses and departments are left
/// out (a disabled team counts as unknown); disabled agents are kept, marked.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Agents by id.
    pub agents: BTreeMap<String, AgentEntry>,
    /// Teams by name.
    pub teams: BTreeMap<String, TeamConfig>,
    /// Canned responses by their directory id.
    pub canned: BTreeMap<String, CannedConfig>,
    /// Department documents by name (the router parses them).
    pub departments: BTreeMap<String, Value>,
}

impl Snapshot {
    /// Returns the agent `id` unless unknown or disabled.
    pub fn enabled_agent(&self, id: &str) -> Option<&Arc<AgentConfig>> {
        self.agents
            .get(id)
            .filter(|a| !a.disabled)
            .map(|a| &a.config)
    }
}

/// Which part of the directory a change is about (the record's kinds, as strings here so
/// that this crate needs no record types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// An agent.
    Agent,
    /// A team.
    Team,
    /// A department.
    Department,
    /// A canned response.
    Canned,
}

impl Part {
    /// Returns the kind's name (the record's, e.g. `canned_response`).
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Agent => "agent",
            Part::Team => "team",
            Part::Department => "department",
            Part::Canned => "canned_response",
        }
    }

    /// Returns the kind named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Part::Agent, Part::Team, Part::Department, Part::Canned]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// One document of a snapshot, as [`Snapshot::documents`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Its kind.
    pub part: Part,
    /// Its id.
    pub id: String,
    /// The document.
    pub doc: Value,
    /// Whether it is disabled (agents only: other kinds are left out when disabled).
    pub disabled: bool,
}

impl Snapshot {
    /// Sets (`Some`) or removes (`None`) one document in place, as [`Directory::apply`]
    /// describes.
    pub fn set(&mut self, part: Part, id: &str, doc: Option<&Value>, disabled: bool) {
        let hidden = disabled && part != Part::Agent;
        let doc = doc.filter(|_| !hidden);
        match part {
            Part::Agent => match doc.map(|d| parse_agent(id, d)) {
                Some(Ok(config)) => {
                    self.agents.insert(
                        id.to_string(),
                        AgentEntry {
                            config: Arc::new(config),
                            disabled,
                        },
                    );
                }
                _ => {
                    self.agents.remove(id);
                }
            },
            Part::Team => match doc.map(|d| parse_team(id, d)) {
                Some(Ok(team)) => {
                    self.teams.insert(id.to_string(), team);
                }
                _ => {
                    self.teams.remove(id);
                }
            },
            Part::Canned => match doc.map(parse_canned) {
                Some(Ok(canned)) => {
                    self.canned.insert(id.to_string(), canned);
                }
                _ => {
                    self.canned.remove(id);
                }
            },
            Part::Department => match doc {
                Some(doc) => {
                    self.departments.insert(id.to_string(), doc.clone());
                }
                None => {
                    self.departments.remove(id);
                }
            },
        }
    }

    /// Returns every document of this snapshot (to hand it to another node).
    pub fn documents(&self) -> Vec<Document> {
        let json = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
        let mut out = Vec::new();
        for (id, a) in &self.agents {
            out.push(Document {
                part: Part::Agent,
                id: id.clone(),
                doc: json(serde_json::to_value(&*a.config)),
                disabled: a.disabled,
            });
        }
        for (id, t) in &self.teams {
            out.push(Document {
                part: Part::Team,
                id: id.clone(),
                doc: json(serde_json::to_value(t)),
                disabled: false,
            });
        }
        for (id, c) in &self.canned {
            out.push(Document {
                part: Part::Canned,
                id: id.clone(),
                doc: json(serde_json::to_value(c)),
                disabled: false,
            });
        }
        for (id, d) in &self.departments {
            out.push(Document {
                part: Part::Department,
                id: id.clone(),
                doc: d.clone(),
                disabled: false,
            });
        }
        out
    }

    /// Returns the snapshot of `documents` (those that do not read are left out).
    pub fn from_documents(documents: impl IntoIterator<Item = Document>) -> Self {
        let mut snapshot = Snapshot::default();
        for d in documents {
            snapshot.set(d.part, &d.id, Some(&d.doc), d.disabled);
        }
        snapshot
    }
}

/// The live directory: a cheap handle, shared by everything on the node that reads it.
#[derive(Clone)]
pub struct Directory {
    current: Arc<RwLock<Arc<Snapshot>>>,
    version: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("version", &self.version())
            .finish()
    }
}

impl Default for Directory {
    fn default() -> Self {
        Self::new(Snapshot::default())
    }
}

impl Directory {
    /// Returns a directory holding `snapshot` at version 0.
    pub fn new(snapshot: Snapshot) -> Self {
        let (version, _) = watch::channel(0);
        Self {
            current: Arc::new(RwLock::new(Arc::new(snapshot))),
            version: Arc::new(version),
        }
    }

    /// Returns a directory of the configuration file's agents, teams and canned responses
    /// (canned ids as [`canned_id`] makes them; no departments: the router adds those).
    pub fn from_config(config: &AgentNodeConfig) -> Self {
        Self::new(snapshot_of(config))
    }

    /// Returns the current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// Returns the version: it grows with every change.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Returns a receiver that sees every new version.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Replaces the whole snapshot (the follower's first read of the record).
    pub fn replace(&self, snapshot: Snapshot) {
        *self.current.write() = Arc::new(snapshot);
        self.bump();
    }

    /// Sets (`Some`) or removes (`None`) one document; `disabled` marks agents and leaves
    /// other kinds out. A document that does not parse removes the entry (the record holds
    /// only documents the admin API checked, so this is a newer writer's format).
    pub fn apply(&self, part: Part, id: &str, doc: Option<&Value>, disabled: bool) {
        {
            let mut current = self.current.write();
            let mut next = (**current).clone();
            next.set(part, id, doc, disabled);
            *current = Arc::new(next);
        }
        self.bump();
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// Returns the snapshot of the configuration file's directory.
pub fn snapshot_of(config: &AgentNodeConfig) -> Snapshot {
    Snapshot {
        agents: config
            .agents
            .iter()
            .map(|a| {
                (
                    a.id.clone(),
                    AgentEntry {
                        config: Arc::new(a.clone()),
                        disabled: false,
                    },
                )
            })
            .collect(),
        teams: config
            .teams
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect(),
        canned: config
            .canned
            .iter()
            .map(|c| (canned_id(c), c.clone()))
            .collect(),
        departments: BTreeMap::new(),
    }
}

/// Returns the directory id of a canned response from the configuration file:
/// `<language>/<department>/<shortcut>` (department `*` for every department).
pub fn canned_id(c: &CannedConfig) -> String {
    let department = if c.department.is_empty() {
        "*"
    } else {
        &c.department
    };
    format!("{}/{department}/{}", c.language, c.shortcut)
}

/// Most skills of one agent.
pub const MAX_SKILLS: usize = 64;
/// Longest name, id, team or skill name.
pub const MAX_NAME: usize = 128;
/// Longest canned response text.
pub const MAX_CANNED_TEXT: usize = 4096;

fn check_name(value: &str, what: &str, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_NAME {
        return Err(format!("{what} is longer than {MAX_NAME} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} holds control characters"));
    }
    Ok(())
}

/// Reads an agent document (the fields of `[[agents]]`; `id` may be left out, else it
/// must be `id`) and checks what one document can: id and name, capacity 1–64, skills
/// with proficiency 1–5, at most one of `password` and `password_hash`, a well-formed
/// argon2id hash. Whether the team exists and whether plaintext is allowed are the
/// caller's to check.
pub fn parse_agent(id: &str, doc: &Value) -> Result<AgentConfig, String> {
    let mut agent: AgentConfig =
        serde_json::from_value(doc.clone()).map_err(|e| format!("agent document: {e}"))?;
    if agent.id.is_empty() {
        agent.id = id.to_string();
    }
    if agent.id != id {
        return Err(format!(
            "agent document: id {:?} is not the entry's id {id:?}",
            agent.id
        ));
    }
    check_name(&agent.id, "agent id", true)?;
    check_name(&agent.name, "agent name", false)?;
    check_name(&agent.team, "agent team", false)?;
    if agent.capacity == 0 || agent.capacity > 64 {
        return Err(format!("agent {id:?}: capacity must be 1..=64"));
    }
    if agent.skills.len() > MAX_SKILLS {
        return Err(format!("agent {id:?}: at most {MAX_SKILLS} skills"));
    }
    for (skill, level) in &agent.skills {
        check_name(skill, "skill name", true)?;
        if !(1..=5).contains(level) {
            return Err(format!(
                "agent {id:?}: skill {skill:?} proficiency must be 1..=5"
            ));
        }
    }
    if !agent.password.is_empty() && !agent.password_hash.is_empty() {
        return Err(format!(
            "agent {id:?}: set password_hash or password, not both"
        ));
    }
    if !agent.password_hash.is_empty() {
        crate::credentials::check_password_hash(&agent.password_hash)
            .map_err(|e| format!("agent {id:?}: password_hash: {e}"))?;
    }
    Ok(agent)
}

/// Reads a team document (the fields of `[[teams]]`; `name` may be left out, else it must
/// be `name`) and checks its schedule.
pub fn parse_team(name: &str, doc: &Value) -> Result<TeamConfig, String> {
    let mut team: TeamConfig =
        serde_json::from_value(doc.clone()).map_err(|e| format!("team document: {e}"))?;
    if team.name.is_empty() {
        team.name = name.to_string();
    }
    if team.name != name {
        return Err(format!(
            "team document: name {:?} is not the entry's id {name:?}",
            team.name
        ));
    }
    check_name(&team.name, "team name", true)?;
    check_name(&team.language, "team language", true)?;
    if let Some(schedule) = &team.schedule {
        crate::schedule::Schedule::parse(schedule).map_err(|e| format!("team {name:?}: {e}"))?;
    }
    Ok(team)
}

/// Reads a canned response document (the fields of `[[canned]]`) and checks it: the
/// shortcut starts with `/`, the text is not empty.
pub fn parse_canned(doc: &Value) -> Result<CannedConfig, String> {
    let canned: CannedConfig = serde_json::from_value(doc.clone())
        .map_err(|e| format!("canned response document: {e}"))?;
    check_name(&canned.shortcut, "canned response shortcut", true)?;
    check_name(&canned.department, "canned response department", false)?;
    check_name(&canned.language, "canned response language", false)?;
    if !canned.shortcut.starts_with('/') {
        return Err("canned response: the shortcut starts with /".to_string());
    }
    if canned.text.trim().is_empty() || canned.text.len() > MAX_CANNED_TEXT {
        return Err(format!(
            "canned response: the text must not be empty nor longer than {MAX_CANNED_TEXT} bytes"
        ));
    }
    Ok(canned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_documents_are_checked() {
        let ok = parse_agent(
            "anna",
            &json!({"name": "Anna", "team": "it", "capacity": 2, "skills": {"sales": 3}}),
        )
        .unwrap();
        assert_eq!(ok.id, "anna");
        assert_eq!(ok.capacity, 2);
        for (doc, needle) in [
            (json!({"capacity": 0}), "capacity"),
            (json!({"skills": {"sales": 9}}), "proficiency"),
            (json!({"id": "bruno"}), "not the entry's id"),
            (json!({"colour": "red"}), "unknown field"),
            (json!({"password_hash": "plain"}), "password_hash"),
            (json!({"password": "a", "password_hash": "b"}), "not both"),
        ] {
            let err = parse_agent("anna", &doc).unwrap_err();
            assert!(err.contains(needle), "{doc}: {err}");
        }
    }

    #[test]
    fn changes_replace_the_snapshot_and_bump_the_version() {
        let directory = Directory::default();
        let mut seen = directory.subscribe();
        let doc = json!({"name": "Anna", "capacity": 2});
        directory.apply(Part::Agent, "anna", Some(&doc), false);
        assert!(seen.has_changed().unwrap());
        seen.borrow_and_update();
        let before = directory.snapshot();
        directory.apply(Part::Agent, "anna", Some(&doc), true);
        assert!(seen.has_changed().unwrap());
        assert!(
            before.enabled_agent("anna").is_some(),
            "old snapshots stay as they were"
        );
        assert!(directory.snapshot().enabled_agent("anna").is_none());
        assert!(directory.snapshot().agents["anna"].disabled);
        let canned = json!({"shortcut": "/hi", "text": "Ciao"});
        directory.apply(Part::Canned, "x", Some(&canned), true);
        assert!(
            directory.snapshot().canned.is_empty(),
            "disabled canned responses are left out"
        );
        directory.apply(Part::Canned, "x", Some(&canned), false);
        assert_eq!(directory.snapshot().canned["x"].text, "Ciao");
        assert_eq!(directory.version(), 4);
    }

    #[test]
    fn a_snapshot_travels_as_documents() {
        let directory = Directory::default();
        directory.apply(Part::Agent, "anna", Some(&json!({"capacity": 2})), true);
        directory.apply(Part::Team, "it", Some(&json!({"language": "it"})), false);
        directory.apply(
            Part::Canned,
            "c",
            Some(&json!({"shortcut": "/a", "text": "t"})),
            false,
        );
        directory.apply(
            Part::Department,
            "sales",
            Some(&json!({"auto_accept": true})),
            false,
        );
        let snapshot = directory.snapshot();
        let copy = Snapshot::from_documents(snapshot.documents());
        assert_eq!(copy.documents(), snapshot.documents());
        assert!(copy.agents["anna"].disabled);
        assert_eq!(Part::parse("canned_response"), Some(Part::Canned));
    }

    #[test]
    fn team_documents_check_their_schedule() {
        let err = parse_team(
            "it",
            &json!({"language": "it", "schedule": {"timezone": "Mars/Olympus"}}),
        )
        .unwrap_err();
        assert!(err.contains("team \"it\""), "{err}");
        assert!(parse_team("it", &json!({"language": ""})).is_err());
        assert_eq!(
            parse_team("it", &json!({"language": "it"})).unwrap().name,
            "it"
        );
    }
}
