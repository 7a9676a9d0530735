//! The configuration reference: one line per setting, kept by each section next to its keys.
//! The README's table is generated from it (`billing-api config reference`) and a test keeps
//! the two, and the loader, in step.
use super::section::KeyDoc;
use super::{Config, ENV_PREFIX};

/// Every setting, section by section, in the order of the reference table.
const SECTIONS: &[&[KeyDoc]] = &[
    super::server::KEYS,
    super::admin::KEYS,
    super::database::KEYS,
    super::auth::KEYS,
    super::idempotency::KEYS,
    super::billing::KEYS,
    super::webhooks::KEYS,
    super::rate_limit::KEYS,
    super::log::KEYS,
    super::shutdown::KEYS,
];

pub fn keys() -> impl Iterator<Item = &'static KeyDoc> {
    SECTIONS.iter().flat_map(|section| section.iter())
}

/// The environment variable for a key: `server.port` is `BILLING_SERVER__PORT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The Markdown table embedded in the README.
pub fn reference_markdown() -> String {
    let defaults = Config::default();
    let rendered = toml::Value::try_from(&defaults).ok();
    let default_of = |key: &str| -> String {
        let (section, name) = key.split_once('.').unwrap_or((key, ""));
        rendered
            .as_ref()
            .and_then(|v| v.get(section))
            .and_then(|v| v.get(name))
            .map(|v| match v {
                toml::Value::String(s) => format!("`{s}`"),
                toml::Value::Array(items) if items.is_empty() => "(empty)".to_owned(),
                toml::Value::Array(items) => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|i| i.as_str().unwrap_or_default().to_owned())
                        .collect();
                    format!("`{}`", items.join(","))
                }
                other => format!("`{other}`"),
            })
            .unwrap_or_else(|| "(unset)".to_owned())
    };
    let mut out = String::from("| Key | Environment variable | Default | Meaning |\n|---|---|---|---|\n");
    for doc in keys() {
        let mut env = format!("`{}`", env_name(doc.key));
        if doc.secret {
            env.push_str(&format!(" or `{}_FILE`", env_name(doc.key)));
        }
        let default = match (doc.default_text, doc.key) {
            (Some(text), _) => text.to_owned(),
            (None, "database.url") => format!("`{}`", super::database::DEFAULT_URL),
            (None, _) if doc.secret => "(unset)".to_owned(),
            (None, key) => default_of(key),
        };
        out.push_str(&format!(
            "| `{}` | {env} | {default} | {} |\n",
            doc.key, doc.description
        ));
    }
    out
}
