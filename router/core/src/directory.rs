//! The router's reading of the live agent directory ([`centralino_base::directory`]): the
//! seed an empty directory gets from the configuration file, the checks a document written
//! through the Admin API passes ([`check_document`]), and a department's settings as they
//! are now ([`department`]).
//!
//! What changes at run time: agents (created, updated, disabled), teams (language,
//! schedule, holidays), canned responses, and departments: created (every router starts
//! its queue — in a cluster the owner of the department's partition — within a second),
//! and their routing steps, strategy, auto-accept and display name changed. A
//! department's skill is fixed once it exists; a department of the configuration file
//! stays (disabling one created at run time takes no new conversations).

use centralino_base::directory::{self, Snapshot};
use centralino_record::{DirectoryEntry, DirectoryKind};
use serde_json::Value;

use crate::config::{Config, DepartmentConfig};

/// What the Admin API shows instead of a stored password hash.
pub const REDACTED: &str = "(set)";

/// Returns the configuration file's directory, to seed an empty record with: agents,
/// teams, departments and canned responses (ids: agent id, team name, department name,
/// [`directory::canned_id`]).
pub fn seed_entries(config: &Config) -> Vec<(DirectoryKind, String, Value)> {
    let mut out = Vec::new();
    let json = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    for team in &config.teams {
        out.push((
            DirectoryKind::Team,
            team.name.clone(),
            json(serde_json::to_value(team)),
        ));
    }
    for d in &config.departments {
        out.push((
            DirectoryKind::Department,
            d.name.clone(),
            json(serde_json::to_value(d)),
        ));
    }
    for agent in &config.agents {
        out.push((
            DirectoryKind::Agent,
            agent.id.clone(),
            json(serde_json::to_value(agent)),
        ));
    }
    for canned in &config.canned {
        out.push((
            DirectoryKind::CannedResponse,
            directory::canned_id(canned),
            json(serde_json::to_value(canned)),
        ));
    }
    out.retain(|(_, _, doc)| !doc.is_null());
    out
}

/// Returns the settings of the department `name` as the directory holds them now (the
/// configuration file's when the directory has none, or one that no longer reads).
pub fn department(config: &Config, snapshot: &Snapshot, name: &str) -> Option<DepartmentConfig> {
    let live = snapshot
        .departments
        .get(name)
        .and_then(|doc| parse_department(name, doc).ok());
    match config.department(name) {
        Some(configured) => Some(
            live.filter(|d| d.skill() == configured.skill())
                .unwrap_or_else(|| configured.clone()),
        ),
        // Created at run time (a disabled one is not in the snapshot).
        None => live,
    }
}

/// Returns the names of every department now: the configuration file's and those created
/// at run time through the directory (enabled ones).
pub fn department_names(
    config: &Config,
    snapshot: &Snapshot,
) -> std::collections::BTreeSet<String> {
    config
        .departments
        .iter()
        .map(|d| d.name.clone())
        .chain(
            snapshot
                .departments
                .keys()
                .filter(|name| department(config, snapshot, name).is_some())
                .cloned(),
        )
        .collect()
}

/// Reads a department document (the fields of `[[departments]]`; `name` may be left out,
/// else it must be `name`).
fn parse_department(name: &str, doc: &Value) -> Result<DepartmentConfig, String> {
    let mut d: DepartmentConfig =
        serde_json::from_value(doc.clone()).map_err(|e| format!("department document: {e}"))?;
    if d.name.is_empty() {
        d.name = name.to_string();
    }
    if d.name != name {
        return Err(format!(
            "department document: name {:?} is not the entry's id {name:?}",
            d.name
        ));
    }
    Ok(d)
}

/// Checks a document written through the Admin API against the directory as it is now and
/// returns what to store, or what is wrong (nothing is stored then).
///
/// - agent: [`directory::parse_agent`]; its team exists; plaintext `password` only in dev
///   mode; without `password_hash` and `password` the stored hash is kept (so a document
///   read back, where the hash shows as [`REDACTED`], can be written again); a new agent
///   needs a secret unless `[oidc]` is configured (the token's agent claim names the id).
/// - team: [`directory::parse_team`] (language, schedule, holidays).
/// - department: new (a name of `A-Z a-z 0-9 _ -`) or existing with its skill unchanged,
///   steps with proficiency 1–5 and increasing `after_secs`, overflow targets that are
///   other departments.
/// - canned response: [`directory::parse_canned`]; its department, when set, exists.
pub fn check_document(
    kind: DirectoryKind,
    id: &str,
    mut doc: Value,
    config: &Config,
    snapshot: &Snapshot,
    existing: Option<&DirectoryEntry>,
) -> Result<Value, String> {
    if id.trim().is_empty() || id.len() > directory::MAX_NAME {
        return Err(format!(
            "id must not be empty nor longer than {} bytes",
            directory::MAX_NAME
        ));
    }
    if !doc.is_object() {
        return Err("the document must be a JSON object".to_string());
    }
    let dev = config.node.dev_mode;
    match kind {
        DirectoryKind::Agent => {
            if let Some(obj) = doc.as_object_mut() {
                const SECRETS: [&str; 2] = ["password", "password_hash"];
                let stored = |key: &str| {
                    existing
                        .and_then(|e| e.doc.get(key))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                };
                // A secret shown redacted, or none given at all: the stored one stays.
                let given = SECRETS.iter().any(|k| {
                    obj.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty() && s != REDACTED)
                });
                for key in SECRETS {
                    let redacted = obj.get(key).and_then(Value::as_str) == Some(REDACTED);
                    if redacted || !given {
                        obj.remove(key);
                    }
                    if !given {
                        if let Some(value) = stored(key) {
                            obj.insert(key.into(), value);
                        }
                    }
                }
            }
            let agent = directory::parse_agent(id, &doc)?;
            if !agent.team.is_empty() && !snapshot.teams.contains_key(&agent.team) {
                return Err(format!("agent {id:?}: unknown team {:?}", agent.team));
            }
            if !agent.oidc_subject.is_empty() {
                if let Some(other) = snapshot
                    .agents
                    .values()
                    .find(|a| a.config.id != id && a.config.oidc_subject == agent.oidc_subject)
                {
                    return Err(format!(
                        "agent {id:?}: oidc_subject is agent {:?}'s already",
                        other.config.id
                    ));
                }
            }
            if !dev && !agent.password.is_empty() {
                return Err(format!(
                    "agent {id:?}: plaintext passwords are accepted only in dev mode; \
                     use password_hash (`centralino hash-password`)"
                ));
            }
            if !dev && centralino_base::credentials::is_placeholder(&agent.password_hash) {
                return Err(format!(
                    "agent {id:?}: password_hash is the example configuration's published hash"
                ));
            }
            if !dev
                && agent.password.is_empty()
                && agent.password_hash.is_empty()
                && !config.oidc.enabled()
            {
                return Err(format!(
                    "agent {id:?}: the agent has no secret (no password_hash, no [oidc])"
                ));
            }
            serde_json::to_value(agent).map_err(|e| e.to_string())
        }
        DirectoryKind::Team => {
            let team = directory::parse_team(id, &doc)?;
            serde_json::to_value(team).map_err(|e| e.to_string())
        }
        DirectoryKind::Department => {
            let d = parse_department(id, &doc)?;
            // The skill is fixed once the department exists (conversations waiting in it
            // were placed by it); a new department takes any.
            let existing = department(config, snapshot, id);
            if let Some(existing) = &existing {
                if d.skill() != existing.skill() {
                    return Err(format!(
                        "department {id:?}: the skill cannot change at run time ({:?})",
                        existing.skill()
                    ));
                }
            }
            if !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            {
                return Err(format!(
                    "department {id:?}: the name must be of A-Z a-z 0-9 _ -"
                ));
            }
            let mut last = None;
            for step in &d.steps {
                if !(1..=5).contains(&step.min_proficiency) {
                    return Err(format!(
                        "department {id:?}: step min_proficiency must be 1..=5"
                    ));
                }
                if last.is_some_and(|l| step.after_secs <= l) {
                    return Err(format!(
                        "department {id:?}: steps must have increasing after_secs"
                    ));
                }
                last = Some(step.after_secs);
                if let Some(target) = &step.overflow_to {
                    if target == id {
                        return Err(format!("department {id:?} overflows to itself"));
                    }
                    if department(config, snapshot, target).is_none() {
                        return Err(format!(
                            "department {id:?}: overflow_to unknown department {target:?}"
                        ));
                    }
                }
            }
            serde_json::to_value(d).map_err(|e| e.to_string())
        }
        DirectoryKind::CannedResponse => {
            let canned = directory::parse_canned(&doc)?;
            if !canned.department.is_empty()
                && department(config, snapshot, &canned.department).is_none()
            {
                return Err(format!(
                    "canned response {id:?}: unknown department {:?}",
                    canned.department
                ));
            }
            serde_json::to_value(canned).map_err(|e| e.to_string())
        }
    }
}

/// Returns a document as the Admin API shows it: an agent's password hash and plaintext
/// password replaced by [`REDACTED`].
pub fn redacted(kind: DirectoryKind, doc: &Value) -> Value {
    let mut doc = doc.clone();
    if kind == DirectoryKind::Agent {
        if let Some(obj) = doc.as_object_mut() {
            for key in ["password_hash", "password"] {
                if obj
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                {
                    obj.insert(key.into(), Value::String(REDACTED.into()));
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config::from_toml(crate::config::EXAMPLE_CONFIG, Vec::new()).unwrap()
    }

    fn snapshot(config: &Config) -> Snapshot {
        directory::snapshot_of(&config.agent_node())
    }

    #[test]
    fn the_seed_holds_every_kind_of_the_file() {
        let config = config();
        let seed = seed_entries(&config);
        for kind in DirectoryKind::ALL {
            assert!(seed.iter().any(|(k, _, _)| *k == kind), "{kind:?}");
        }
        let agents = seed
            .iter()
            .filter(|(k, _, _)| *k == DirectoryKind::Agent)
            .count();
        assert_eq!(agents, config.agents.len());
    }

    #[test]
    fn bad_documents_are_refused_with_the_reason() {
        let mut config = config();
        config.node.dev_mode = false;
        let mut snap = snapshot(&config);
        let team = config.teams[0].name.clone();
        let dept = config.departments[0].name.clone();
        let cases = [
            (
                DirectoryKind::Agent,
                "x",
                json!({"team": "nope", "password_hash": ""}),
                "unknown team",
            ),
            (
                DirectoryKind::Agent,
                "x",
                json!({"team": team, "password": "pw"}),
                "dev mode",
            ),
            (
                DirectoryKind::Agent,
                "x",
                json!({"team": team}),
                "no secret",
            ),
            (
                DirectoryKind::Agent,
                "x",
                json!({"team": team, "capacity": 99}),
                "capacity",
            ),
            (
                DirectoryKind::Department,
                "new one",
                json!({}),
                "the name must be",
            ),
            (
                DirectoryKind::Department,
                &dept,
                json!({"skill": "something-else"}),
                "skill cannot change",
            ),
            (
                DirectoryKind::Department,
                &dept,
                json!({"steps": [{"after_secs": 0, "overflow_to": "nope"}]}),
                "unknown department",
            ),
            (
                DirectoryKind::Department,
                &dept,
                json!({"steps": [{"after_secs": 5}, {"after_secs": 1}]}),
                "increasing",
            ),
            (
                DirectoryKind::CannedResponse,
                "c",
                json!({"shortcut": "x", "text": "t"}),
                "shortcut",
            ),
            (
                DirectoryKind::Team,
                "t",
                json!({"language": "it", "bogus": 1}),
                "unknown field",
            ),
            (DirectoryKind::Team, "t", json!("text"), "JSON object"),
        ];
        for (kind, id, doc, needle) in cases {
            let err = check_document(kind, id, doc.clone(), &config, &snap, None).unwrap_err();
            assert!(err.contains(needle), "{kind:?} {doc}: {err}");
        }
        // A new department is accepted; once in the directory it is a department like the
        // file's (an overflow target, its skill fixed).
        let created = check_document(
            DirectoryKind::Department,
            "warranty",
            json!({}),
            &config,
            &snap,
            None,
        )
        .expect("a new department");
        snap.departments.insert("warranty".into(), created);
        assert!(department(&config, &snap, "warranty").is_some());
        assert!(department_names(&config, &snap).contains("warranty"));
        check_document(
            DirectoryKind::Department,
            &dept,
            json!({"steps": [{"after_secs": 0, "min_proficiency": 1, "overflow_to": "warranty"}]}),
            &config,
            &snap,
            None,
        )
        .expect("overflow to a department created at run time");
        let err = check_document(
            DirectoryKind::Department,
            "warranty",
            json!({"skill": "sales"}),
            &config,
            &snap,
            None,
        )
        .unwrap_err();
        assert!(err.contains("skill cannot change"), "{err}");
    }

    #[test]
    fn a_redacted_hash_keeps_the_stored_one() {
        let mut config = config();
        config.node.dev_mode = false;
        let snap = snapshot(&config);
        let hash = centralino_base::credentials::hash_password("s3cret-long-enough").unwrap();
        let team = config.teams[0].name.clone();
        let stored = DirectoryEntry {
            kind: DirectoryKind::Agent,
            id: "x".into(),
            version: 1,
            disabled: false,
            doc: json!({"id": "x", "team": team, "password_hash": hash}),
            updated_at_ms: 0,
            updated_by: "t".into(),
        };
        let shown = redacted(DirectoryKind::Agent, &stored.doc);
        assert_eq!(shown["password_hash"], REDACTED);
        let again = check_document(
            DirectoryKind::Agent,
            "x",
            shown,
            &config,
            &snap,
            Some(&stored),
        )
        .unwrap();
        assert_eq!(again["password_hash"], hash);
    }

    #[test]
    fn a_department_reads_live_but_keeps_its_skill() {
        let config = config();
        let name = config.departments[0].name.clone();
        let mut snap = snapshot(&config);
        snap.departments
            .insert(name.clone(), json!({"auto_accept": true, "skill": "other"}));
        let d = department(&config, &snap, &name).unwrap();
        assert_eq!(
            d.auto_accept, config.departments[0].auto_accept,
            "skill changed: ignored"
        );
        snap.departments.insert(
            name.clone(),
            json!({"auto_accept": !config.departments[0].auto_accept, "skill": config.departments[0].skill}),
        );
        let d = department(&config, &snap, &name).unwrap();
        assert_ne!(d.auto_accept, config.departments[0].auto_accept);
    }
}
