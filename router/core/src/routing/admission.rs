//! Admission of a new conversation (DESIGN.md §1): where it goes (the visitor-context
//! rules give the department and the priority), whether there is room for it, and what the
//! customer's profile adds (VIP tier, re-contact, sticky agent) — plain data in, a verdict
//! out. Starting the conversation ([`crate::conversation::start`]) reads the profile
//! between [`place`] and [`admit`], and acts on the result.

use centralino_proto::v1::Priority;

use crate::config::{Config, LimitsConfig, PriorityName, RoutingConfig};
use crate::store::records::ProfileRecord;

/// What admission reads of a start request (its fields already checked).
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Department asked for.
    pub department: &'a str,
    /// Customer language.
    pub language: &'a str,
    /// Page the customer is on (visitor context).
    pub current_page: &'a str,
}

/// Where a new conversation goes, before anything is known about the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Department whose queue it joins.
    pub department: String,
    /// Priority class from the rules.
    pub priority: Priority,
}

/// Why a conversation is not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The department asked for is not configured.
    #[error("unknown department {0:?}")]
    UnknownDepartment(String),
    /// No team serves the customer's language.
    #[error("no team serves language {0:?}")]
    UnsupportedLanguage(String),
    /// The router holds as many live conversations as it may.
    #[error("the node is at its conversation limit")]
    NodeFull,
    /// The department's queue is at its length limit.
    #[error("the {0} queue is full; please try again later")]
    QueueFull(String),
}

impl Refusal {
    /// Returns whether the request itself is wrong (rather than the router full).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::UnknownDepartment(_) | Self::UnsupportedLanguage(_)
        )
    }
}

/// Who serves the customer's language now (from the shifts).
#[derive(Debug, Clone, Copy, Default)]
pub struct Serving<'a> {
    /// Language of the team that serves it now (the customer's or a fallback); `None` when
    /// no team is working.
    pub language: Option<&'a str>,
    /// When a team serving it opens again (Unix ms), if known.
    pub reopens_at_ms: Option<i64>,
}

/// The admission verdict of a new conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Department whose queue it joins.
    pub department: String,
    /// Priority class (rules, then the customer's tier).
    pub priority: Priority,
    /// The customer has talked to us before.
    pub returning: bool,
    /// The customer's last contact ended within the re-contact window.
    pub recontact: bool,
    /// The customer's last agent, while within the sticky (affinity) window.
    pub sticky_agent: Option<String>,
    /// Language of the team that serves it now; `None` when nobody does (offline).
    pub serving_language: Option<String>,
    /// When a team opens again, told only to conversations that start offline.
    pub reopens_at_ms: Option<i64>,
}

impl Admission {
    /// Returns whether nobody serves the customer's language now (the conversation starts
    /// offline: the customer may leave a message or ask for a callback).
    pub fn offline(&self) -> bool {
        self.serving_language.is_none()
    }
}

fn priority(name: PriorityName) -> Priority {
    match name {
        PriorityName::Normal => Priority::Normal,
        PriorityName::High => Priority::High,
        PriorityName::Vip => Priority::Vip,
    }
}

/// Returns where `ask` goes: the department asked for, unless a rule on the current page
/// sends it elsewhere, at the priority of the rules (normal without one); later rules win.
/// Refuses departments `known` does not know and languages no team serves.
pub fn place(
    ask: &Ask<'_>,
    config: &Config,
    known: impl Fn(&str) -> bool,
) -> Result<Placement, Refusal> {
    if !known(ask.department) {
        return Err(Refusal::UnknownDepartment(ask.department.to_string()));
    }
    if !config.languages().contains(ask.language) {
        return Err(Refusal::UnsupportedLanguage(ask.language.to_string()));
    }
    let mut placement = Placement {
        department: ask.department.to_string(),
        priority: Priority::Normal,
    };
    for rule in &config.rules {
        if ask.current_page.contains(&rule.page_contains) {
            if let Some(d) = &rule.department {
                placement.department = d.clone();
            }
            if let Some(p) = rule.priority {
                placement.priority = priority(p);
            }
        }
    }
    Ok(placement)
}

/// Returns whether a router holding `live_conversations`, whose queue for `department`
/// holds `queue_depth` conversations, has room for one more.
pub fn check_room(
    department: &str,
    limits: &LimitsConfig,
    live_conversations: usize,
    queue_depth: usize,
) -> Result<(), Refusal> {
    if live_conversations >= limits.max_live_conversations {
        return Err(Refusal::NodeFull);
    }
    if queue_depth >= limits.max_queue_length {
        return Err(Refusal::QueueFull(department.to_string()));
    }
    Ok(())
}

/// Returns the verdict on a placed conversation at `now_ms`, given the customer's
/// `profile` (if any) and who serves their language now.
///
/// - A VIP tier raises the priority to VIP, whatever the rules said.
/// - A customer with earlier contacts is returning.
/// - A last contact that ended at most `recontact_window_secs` ago makes a re-contact.
/// - The last agent becomes the sticky agent when that contact ended at most
///   `sticky_window_secs` ago.
pub fn admit(
    placement: Placement,
    profile: Option<&ProfileRecord>,
    serving: Serving<'_>,
    routing: &RoutingConfig,
    now_ms: i64,
) -> Admission {
    let within = |window_secs: u64| {
        let window_ms = window_secs as i64 * 1000;
        move |p: &&ProfileRecord| p.last_contact_ms > 0 && now_ms - p.last_contact_ms <= window_ms
    };
    let priority = if profile.is_some_and(|p| p.tier == "vip") {
        Priority::Vip
    } else {
        placement.priority
    };
    Admission {
        department: placement.department,
        priority,
        returning: profile.is_some_and(|p| p.contacts > 0),
        recontact: profile
            .filter(within(routing.recontact_window_secs))
            .is_some(),
        sticky_agent: profile
            .filter(within(routing.sticky_window_secs))
            .and_then(|p| p.last_agent.clone()),
        serving_language: serving.language.map(str::to_string),
        reopens_at_ms: serving.reopens_at_ms.filter(|_| serving.language.is_none()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{DepartmentConfig, RuleConfig};
    use centralino_base::config::TeamConfig;

    const DAY_MS: i64 = 24 * 3600 * 1000;
    const NOW: i64 = 100 * DAY_MS;

    fn config() -> Config {
        let department = |name: &str| DepartmentConfig {
            name: name.to_string(),
            ..Default::default()
        };
        let team = |language: &str| TeamConfig {
            name: language.to_string(),
            language: language.to_string(),
            schedule: None,
        };
        let rule =
            |page: &str, department: Option<&str>, priority: Option<PriorityName>| RuleConfig {
                page_contains: page.to_string(),
                department: department.map(str::to_string),
                priority,
            };
        Config {
            departments: vec![department("sales"), department("support")],
            teams: vec![team("it"), team("en")],
            rules: vec![
                rule("/checkout", Some("sales"), Some(PriorityName::High)),
                rule("/checkout/help", Some("support"), None),
                rule("/gold", None, Some(PriorityName::Vip)),
            ],
            ..Default::default()
        }
    }

    fn ask<'a>(department: &'a str, page: &'a str) -> Ask<'a> {
        Ask {
            department,
            language: "it",
            current_page: page,
        }
    }

    fn placed(department: &str, priority: Priority) -> Placement {
        Placement {
            department: department.to_string(),
            priority,
        }
    }

    fn profile(contacts: u32, last_contact_ms: i64, last_agent: Option<&str>) -> ProfileRecord {
        ProfileRecord {
            customer_id: "c".into(),
            contacts,
            last_contact_ms,
            last_agent: last_agent.map(str::to_string),
            ..Default::default()
        }
    }

    fn serving_it() -> Serving<'static> {
        Serving {
            language: Some("it"),
            reopens_at_ms: None,
        }
    }

    #[test]
    fn without_a_matching_rule_the_department_asked_for_at_normal_priority() {
        let config = config();
        assert_eq!(
            place(&ask("support", "/home"), &config, |d| config
                .department(d)
                .is_some()),
            Ok(placed("support", Priority::Normal))
        );
    }

    #[test]
    fn a_page_rule_gives_department_and_priority_and_later_rules_win() {
        let config = config();
        assert_eq!(
            place(&ask("support", "/checkout/pay"), &config, |d| config
                .department(d)
                .is_some()),
            Ok(placed("sales", Priority::High))
        );
        assert_eq!(
            place(&ask("sales", "/checkout/help"), &config, |d| config
                .department(d)
                .is_some()),
            Ok(placed("support", Priority::High)),
            "the second rule moves it to support and keeps the first rule's priority"
        );
        assert_eq!(
            place(&ask("support", "/gold/checkout"), &config, |d| config
                .department(d)
                .is_some()),
            Ok(placed("sales", Priority::Vip))
        );
    }

    #[test]
    fn unknown_departments_and_languages_are_refused() {
        let config = config();
        assert_eq!(
            place(&ask("nope", "/checkout"), &config, |d| config
                .department(d)
                .is_some()),
            Err(Refusal::UnknownDepartment("nope".into())),
            "checked before any rule could send it elsewhere"
        );
        let german = Ask {
            language: "de",
            ..ask("sales", "/")
        };
        assert_eq!(
            place(&german, &config, |d| config.department(d).is_some()),
            Err(Refusal::UnsupportedLanguage("de".into()))
        );
        assert!(Refusal::UnknownDepartment("nope".into()).is_bad_request());
        assert_eq!(
            Refusal::UnknownDepartment("nope".into()).to_string(),
            "unknown department \"nope\""
        );
    }

    #[test]
    fn a_full_router_or_queue_refuses() {
        let limits = LimitsConfig {
            max_live_conversations: 10,
            max_queue_length: 3,
            ..Default::default()
        };
        assert_eq!(check_room("sales", &limits, 9, 2), Ok(()));
        assert_eq!(check_room("sales", &limits, 10, 0), Err(Refusal::NodeFull));
        assert_eq!(
            check_room("sales", &limits, 0, 3),
            Err(Refusal::QueueFull("sales".into()))
        );
        assert!(!Refusal::NodeFull.is_bad_request());
    }

    #[test]
    fn a_new_customer_is_neither_returning_nor_recontact_nor_sticky() {
        let routing = RoutingConfig::default();
        let a = admit(
            placed("sales", Priority::High),
            None,
            serving_it(),
            &routing,
            NOW,
        );
        assert_eq!(
            a,
            Admission {
                department: "sales".into(),
                priority: Priority::High,
                returning: false,
                recontact: false,
                sticky_agent: None,
                serving_language: Some("it".into()),
                reopens_at_ms: None,
            }
        );
        assert!(!a.offline());
    }

    #[test]
    fn a_vip_tier_raises_the_priority() {
        let routing = RoutingConfig::default();
        let vip = ProfileRecord {
            tier: "vip".into(),
            ..profile(0, 0, None)
        };
        let a = admit(
            placed("sales", Priority::Normal),
            Some(&vip),
            serving_it(),
            &routing,
            NOW,
        );
        assert_eq!(a.priority, Priority::Vip);
        let gold = ProfileRecord {
            tier: "gold".into(),
            ..profile(0, 0, None)
        };
        let a = admit(
            placed("sales", Priority::High),
            Some(&gold),
            serving_it(),
            &routing,
            NOW,
        );
        assert_eq!(a.priority, Priority::High, "only the vip tier counts");
    }

    #[test]
    fn recontact_only_within_the_window() {
        let routing = RoutingConfig::default();
        let window = routing.recontact_window_secs as i64 * 1000;
        let at = |last_contact_ms| {
            admit(
                placed("sales", Priority::Normal),
                Some(&profile(3, last_contact_ms, None)),
                serving_it(),
                &routing,
                NOW,
            )
        };
        assert!(at(NOW - DAY_MS).recontact, "one day ago");
        assert!(at(NOW - window).recontact, "exactly at the window's end");
        assert!(!at(NOW - window - 1).recontact, "just outside");
        assert!(!at(0).recontact, "never completed a conversation");
        assert!(at(NOW - window - 1).returning, "returning all the same");
        assert!(
            !admit(
                placed("sales", Priority::Normal),
                Some(&profile(0, 0, None)),
                serving_it(),
                &routing,
                NOW,
            )
            .returning,
            "a profile without contacts is not returning"
        );
    }

    #[test]
    fn the_last_agent_is_sticky_only_within_the_affinity_window() {
        let routing = RoutingConfig {
            sticky_window_secs: 3600,
            recontact_window_secs: 7 * 24 * 3600,
            ..Default::default()
        };
        let at = |last_contact_ms, agent| {
            admit(
                placed("sales", Priority::Normal),
                Some(&profile(1, last_contact_ms, agent)),
                serving_it(),
                &routing,
                NOW,
            )
        };
        assert_eq!(
            at(NOW - 3_600_000, Some("giulia")).sticky_agent.as_deref(),
            Some("giulia")
        );
        let later = at(NOW - 3_600_001, Some("giulia"));
        assert_eq!(later.sticky_agent, None, "outside the sticky window");
        assert!(later.recontact, "still a re-contact: the windows differ");
        assert_eq!(at(NOW - 60_000, None).sticky_agent, None, "no last agent");
        assert_eq!(
            at(0, Some("giulia")).sticky_agent,
            None,
            "no completed contact"
        );
    }

    #[test]
    fn nobody_serving_makes_it_offline_with_the_reopening_time() {
        let routing = RoutingConfig::default();
        let closed = Serving {
            language: None,
            reopens_at_ms: Some(NOW + 3_600_000),
        };
        let a = admit(
            placed("sales", Priority::Normal),
            None,
            closed,
            &routing,
            NOW,
        );
        assert!(a.offline());
        assert_eq!(a.reopens_at_ms, Some(NOW + 3_600_000));
        let fallback = Serving {
            language: Some("en"),
            reopens_at_ms: Some(NOW + 3_600_000),
        };
        let a = admit(
            placed("sales", Priority::Normal),
            None,
            fallback,
            &routing,
            NOW,
        );
        assert!(!a.offline());
        assert_eq!(a.serving_language.as_deref(), Some("en"));
        assert_eq!(a.reopens_at_ms, None, "only told when offline");
    }
}
