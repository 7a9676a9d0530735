//! `metadata`: a small bag of string key/value pairs a client attaches to an object.
use std::collections::BTreeMap;

use super::text::is_control;

pub const MAX_KEYS: usize = 50;
pub const MAX_KEY_LEN: usize = 40;
pub const MAX_VALUE_LEN: usize = 500;

pub type Metadata = BTreeMap<String, String>;

/// The problems with a metadata map, as (field suffix, message).
pub fn problems(metadata: &Metadata) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if metadata.len() > MAX_KEYS {
        out.push((String::new(), format!("at most {MAX_KEYS} keys")));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.chars().count() > MAX_KEY_LEN {
            out.push((format!(".{key}"), format!("keys are 1 to {MAX_KEY_LEN} characters")));
        }
        if key.chars().chain(value.chars()).any(is_control) {
            out.push((
                format!(".{key}"),
                "keys and values must not contain control characters".to_owned(),
            ));
        }
        if value.chars().count() > MAX_VALUE_LEN {
            out.push((
                format!(".{key}"),
                format!("values are at most {MAX_VALUE_LEN} characters"),
            ));
        }
    }
    out
}
