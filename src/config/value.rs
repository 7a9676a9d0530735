//! Typed reading of raw values, so each setting reports its own problem instead of the first one
//! stopping the rest.
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::layers::{FILE_SUFFIX, Layers, Origin, Raw};

/// A setting type that can be read from a TOML value or from an environment variable's text.
pub trait FromRaw: Sized {
    /// What a valid value looks like, for error messages.
    const EXPECTED: &'static str;
    fn from_raw(raw: &Raw) -> Option<Self>;
}

fn integer(raw: &Raw) -> Option<i64> {
    match raw {
        Raw::Toml(toml::Value::Integer(i)) => Some(*i),
        Raw::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

macro_rules! from_raw_unsigned {
    ($($t:ty => $expected:literal),*) => {$(
        impl FromRaw for $t {
            const EXPECTED: &'static str = $expected;
            fn from_raw(raw: &Raw) -> Option<Self> {
                integer(raw).and_then(|i| <$t>::try_from(i).ok())
            }
        }
    )*};
}
from_raw_unsigned!(
    u16 => "a whole number from 0 to 65535",
    u32 => "a whole number from 0 to 4294967295",
    u64 => "a whole number of at least 0",
    usize => "a whole number of at least 0"
);

impl FromRaw for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_raw(raw: &Raw) -> Option<Self> {
        match raw {
            Raw::Toml(toml::Value::Boolean(b)) => Some(*b),
            Raw::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

impl FromRaw for String {
    const EXPECTED: &'static str = "a string";
    fn from_raw(raw: &Raw) -> Option<Self> {
        match raw {
            Raw::Toml(toml::Value::String(s)) => Some(s.clone()),
            Raw::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromRaw for PathBuf {
    const EXPECTED: &'static str = "a file path";
    fn from_raw(raw: &Raw) -> Option<Self> {
        String::from_raw(raw).filter(|s| !s.is_empty()).map(PathBuf::from)
    }
}

impl FromRaw for Duration {
    const EXPECTED: &'static str = "a duration such as \"500ms\", \"30s\" or \"5m\" (a bare number is seconds)";
    fn from_raw(raw: &Raw) -> Option<Self> {
        match raw {
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok().map(Duration::from_secs),
            Raw::Toml(toml::Value::String(s)) | Raw::Text(s) => {
                let s = s.trim();
                match s.parse::<u64>() {
                    Ok(secs) => Some(Duration::from_secs(secs)),
                    Err(_) => humantime::parse_duration(s).ok(),
                }
            }
            _ => None,
        }
    }
}

impl FromRaw for IpAddr {
    const EXPECTED: &'static str = "an IP address such as 127.0.0.1, 0.0.0.0 or ::";
    fn from_raw(raw: &Raw) -> Option<Self> {
        String::from_raw(raw)?.trim().parse().ok()
    }
}

/// Lists are TOML arrays of strings, or comma-separated text in the environment.
impl FromRaw for Vec<String> {
    const EXPECTED: &'static str = "a list of strings (comma-separated in the environment)";
    fn from_raw(raw: &Raw) -> Option<Self> {
        match raw {
            Raw::Toml(toml::Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
            Raw::Text(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Lists of durations: a TOML array, or comma-separated text (`5s,5m,1h`).
impl FromRaw for Vec<Duration> {
    const EXPECTED: &'static str =
        "a list of durations such as [\"5s\", \"5m\", \"1h\"] (comma-separated in the environment)";
    fn from_raw(raw: &Raw) -> Option<Self> {
        match raw {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|v| Duration::from_raw(&Raw::Toml(v.clone())))
                .collect(),
            Raw::Text(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Duration::from_raw(&Raw::Text(s.to_owned())))
                .collect(),
            _ => None,
        }
    }
}

impl Layers {
    /// The value of `key`, or `default` when it is not set. A bad value is recorded as a problem
    /// (and the default used so that reading can go on and report the others).
    pub fn get<T: FromRaw>(&mut self, key: &str, default: T) -> T {
        self.get_opt(key).unwrap_or(default)
    }

    pub fn get_opt<T: FromRaw>(&mut self, key: &str) -> Option<T> {
        let entry = self.take(key)?;
        match T::from_raw(&entry.raw) {
            Some(v) => Some(v),
            None => {
                let message = format!("invalid value {}: expected {}", entry.raw, T::EXPECTED);
                self.problem(key, Some(entry.origin), message);
                None
            }
        }
    }

    /// A secret is set directly (`key`) or read from the file named by `key_file`
    /// (`BILLING_..._FILE` in the environment), never both. A relative file path is looked up in
    /// systemd's `$CREDENTIALS_DIRECTORY` when that is set.
    pub fn secret(&mut self, key: &str, credentials_dir: Option<&str>) -> Option<SecretString> {
        let file_key = format!("{key}{FILE_SUFFIX}");
        let direct = self.take(key);
        let file = self.take(&file_key);
        match (direct, file) {
            (Some(d), Some(f)) => {
                let message = format!("set either {key} ({}) or {file_key} ({}), not both", d.origin, f.origin);
                self.problem(key, None, message);
                None
            }
            (Some(direct), None) => match String::from_raw(&direct.raw) {
                Some(value) => Some(SecretString::from(value)),
                None => {
                    // Never echo the value: it is a secret even when it is malformed.
                    self.problem(key, Some(direct.origin), "invalid value: expected a string");
                    None
                }
            },
            (None, Some(file)) => {
                let Some(path) = PathBuf::from_raw(&file.raw) else {
                    self.problem(&file_key, Some(file.origin), "invalid value: expected a file path");
                    return None;
                };
                let path = match credentials_dir {
                    Some(dir) if path.is_relative() => PathBuf::from(dir).join(path),
                    _ => path,
                };
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some(SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned())),
                    Err(e) => {
                        let message = format!("cannot read secret file {}: {e}", path.display());
                        self.problem(&file_key, Some(file.origin), message);
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// Where `key` (or, for a secret, `key_file`) was set, for `config show`.
    pub fn secret_origin(&self, key: &str) -> Origin {
        match self.origin_of(&format!("{key}{FILE_SUFFIX}")) {
            Origin::Default => self.origin_of(key),
            file_origin => file_origin,
        }
    }
}

/// How `config show` writes durations: `30s`, `1h 30m`.
pub fn as_humantime<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn as_humantime_list<S: serde::Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ds.iter().map(|d| humantime::format_duration(*d).to_string()))
}

/// Secrets are never shown, set or not.
pub fn redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

pub fn redacted_opt<S: serde::Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}
