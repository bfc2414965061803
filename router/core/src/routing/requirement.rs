//! What a conversation needs from an agent in its current routing step.

/// Skill name of a language (`lang:it`).
pub fn language_skill(language: &str) -> String {
    format!("lang:{language}")
}

/// What a conversation needs from an agent in its current routing step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement<'a> {
    /// Customer language (`it`, `en`).
    pub language: &'a str,
    /// Minimum proficiency in the department skill and in the language skill.
    pub min_proficiency: u8,
    /// A further skill the agent needs (after a transfer to a skill or a supervisor).
    pub extra_skill: Option<&'a str>,
}
