//! Customer-facing texts in the customer's language: built-in Italian and English, each
//! replaceable per language in the configuration's `[templates.<language>]`.

use crate::config::{Config, Templates};

/// Which text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// Greeting for returning customers.
    WelcomeBack,
    /// Handed over to another language's team.
    Handover,
    /// Nobody can answer now.
    Offline,
    /// Everybody busy / long queue.
    Busy,
    /// Transferred.
    Transferred,
    /// Do not type sensitive data.
    Sensitive,
}

fn built_in(language: &str, text: Text) -> &'static str {
    match (language, text) {
        ("it", Text::WelcomeBack) => "Bentornato, {name}! Un operatore sarà subito da te.",
        ("it", Text::Handover) => "Il servizio in italiano è chiuso: la conversazione continua in {language} con il nostro team. Il servizio in italiano riapre alle {reopens}.",
        ("it", Text::Offline) => "Al momento non c'è nessun operatore disponibile. Riapriamo alle {reopens}. Puoi lasciarci un messaggio e ti ricontatteremo.",
        ("it", Text::Busy) => "Tutti gli operatori sono occupati (attesa stimata: {wait}). Puoi attendere, chiedere di essere richiamato oppure lasciare un messaggio.",
        ("it", Text::Transferred) => "Ti stiamo mettendo in contatto con {to}: resta in linea.",
        ("it", Text::Sensitive) => "Per la tua sicurezza non scrivere in chat numeri di carta, password o altri dati sensibili.",
        (_, Text::WelcomeBack) => "Welcome back, {name}! An agent will be with you shortly.",
        (_, Text::Handover) => "Our {from} service is closed now: the conversation continues in {language} with our team. The {from} service reopens at {reopens}.",
        (_, Text::Offline) => "No agent is available right now. We open again at {reopens}. You can leave us a message and we will get back to you.",
        (_, Text::Busy) => "All our agents are busy (estimated wait: {wait}). You can keep waiting, ask for a callback or leave a message.",
        (_, Text::Transferred) => "We are connecting you with {to}: please stay in the chat.",
        (_, Text::Sensitive) => "For your security, please do not type card numbers, passwords or other sensitive data into the chat.",
    }
}

fn configured(templates: &Templates, text: Text) -> Option<&str> {
    match text {
        Text::WelcomeBack => templates.welcome_back.as_deref(),
        Text::Handover => templates.handover.as_deref(),
        Text::Offline => templates.offline.as_deref(),
        Text::Busy => templates.busy.as_deref(),
        Text::Transferred => templates.transferred.as_deref(),
        Text::Sensitive => templates.sensitive.as_deref(),
    }
}

/// Returns the name of `language` in `in_language` ("inglese", "English").
pub fn language_name(language: &str, in_language: &str) -> String {
    let name = match (in_language, language) {
        ("it", "it") => "italiano",
        ("it", "en") => "inglese",
        ("it", "de") => "tedesco",
        ("it", "fr") => "francese",
        ("it", "es") => "spagnolo",
        (_, "it") => "Italian",
        (_, "en") => "English",
        (_, "de") => "German",
        (_, "fr") => "French",
        (_, "es") => "Spanish",
        (_, other) => other,
    };
    name.to_string()
}

/// Returns `text` in `language` with the placeholders of `values` filled in.
pub fn render(config: &Config, language: &str, text: Text, values: &[(&str, &str)]) -> String {
    let template = config
        .templates
        .get(language)
        .and_then(|t| configured(t, text))
        .unwrap_or_else(|| built_in(language, text));
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    if out.contains("{name}") {
        out = out.replace(", {name}", "").replace("{name}", "");
    }
    out
}

/// Formats a wait in seconds for people ("3 min").
pub fn minutes(secs: u32) -> String {
    format!("{} min", secs.div_ceil(60).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_texts_speak_the_customer_language_and_fill_placeholders() {
        let config = Config::default();
        let it = render(
            &config,
            "it",
            Text::Handover,
            &[("language", "inglese"), ("reopens", "10:00")],
        );
        assert!(it.contains("inglese") && it.contains("10:00"), "{it}");
        let en = render(&config, "en", Text::WelcomeBack, &[("name", "Anna")]);
        assert_eq!(en, "Welcome back, Anna! An agent will be with you shortly.");
        let nameless = render(&config, "it", Text::WelcomeBack, &[]);
        assert_eq!(nameless, "Bentornato! Un operatore sarà subito da te.");
    }

    #[test]
    fn configured_templates_win() {
        let mut config = Config::default();
        config.templates.insert(
            "it".into(),
            Templates {
                busy: Some("Attesa {wait}".into()),
                ..Templates::default()
            },
        );
        assert_eq!(
            render(&config, "it", Text::Busy, &[("wait", "5 min")]),
            "Attesa 5 min"
        );
    }
}
