//! The raw layers of configuration (defaults < TOML file < environment) and where each value came from.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variables that configure the service start with this prefix; `__` separates the
/// section from the key: `BILLING_SERVER__PORT` is `server.port`.
pub const ENV_PREFIX: &str = "BILLING_";
/// Names the TOML file to read (the `--config` flag wins over it).
pub const CONFIG_FILE_ENV: &str = "BILLING_CONFIG";
/// Debug builds serve `/__test/*` routes (slow, panic, echo, db) when this variable is `1`, so
/// process-level tests can exercise timeouts, panics and draining. Release builds have none,
/// and there the variable is an unknown setting like any other.
pub const TEST_ROUTES_ENV: &str = "BILLING_TEST_ROUTES";
/// Suffix of a key (or an environment variable) that names a file holding a secret value.
pub const FILE_SUFFIX: &str = "_file";

/// Where a setting's value came from, reported with every problem and by `config show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(name) => write!(f, "env {name}"),
        }
    }
}

/// A value as it was written: typed by TOML, or the text of an environment variable.
#[derive(Debug, Clone)]
pub enum Raw {
    Toml(toml::Value),
    Text(String),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Toml(v) => write!(f, "{v}"),
            Raw::Text(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub raw: Raw,
    pub origin: Origin,
}

/// One problem with the configuration; `load` collects all of them before giving up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub origin: Option<Origin>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

/// What the process was started with: the config file (if any) and the environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The real process environment; `cli_file` is the `--config` flag.
    pub fn from_process(cli_file: Option<PathBuf>) -> Self {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let file = cli_file.or_else(|| {
            env.iter()
                .find(|(k, v)| k == CONFIG_FILE_ENV && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources { file, env }
    }

    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The merged layers. Keys are `section.key`; a later layer replaces an earlier one's value.
#[derive(Debug, Default)]
pub struct Layers {
    entries: BTreeMap<String, Entry>,
    consumed: BTreeSet<String>,
    pub problems: Vec<Problem>,
}

/// Environment variables with the prefix that are not settings.
fn is_control_variable(name: &str) -> bool {
    name == CONFIG_FILE_ENV || (cfg!(debug_assertions) && name == TEST_ROUTES_ENV)
}

impl Layers {
    pub fn build(sources: &Sources) -> Self {
        let mut layers = Layers::default();
        if let Some(path) = &sources.file {
            layers.read_file(path);
        }
        layers.read_env(&sources.env);
        layers
    }

    fn read_file(&mut self, path: &Path) {
        let origin = Origin::File(path.to_path_buf());
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                self.problems.push(Problem {
                    key: "config file".into(),
                    origin: Some(origin),
                    message: format!("cannot read it: {e}"),
                });
                return;
            }
        };
        match text.parse::<toml::Table>() {
            Ok(table) => self.insert_table("", table, &origin),
            Err(e) => self.problems.push(Problem {
                key: "config file".into(),
                origin: Some(origin),
                message: format!("not valid TOML: {}", e.message()),
            }),
        }
    }

    fn insert_table(&mut self, prefix: &str, table: toml::Table, origin: &Origin) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) => self.insert_table(&path, inner, origin),
                value => {
                    let entry = Entry {
                        raw: Raw::Toml(value),
                        origin: origin.clone(),
                    };
                    self.entries.insert(path, entry);
                }
            }
        }
    }

    fn read_env(&mut self, env: &[(String, String)]) {
        // PORT (set by container platforms) is honoured, but the explicit variable wins.
        let explicit_port = format!("{ENV_PREFIX}SERVER__PORT");
        if let Some((_, port)) = env.iter().find(|(k, _)| k == "PORT")
            && !env.iter().any(|(k, _)| *k == explicit_port)
        {
            let entry = Entry {
                raw: Raw::Text(port.clone()),
                origin: Origin::Env("PORT".into()),
            };
            self.entries.insert("server.port".into(), entry);
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if is_control_variable(name) {
                continue;
            }
            let key = rest.split("__").collect::<Vec<_>>().join(".").to_ascii_lowercase();
            let entry = Entry {
                raw: Raw::Text(value.clone()),
                origin: Origin::Env(name.clone()),
            };
            self.entries.insert(key, entry);
        }
    }

    /// Takes the value of `key`, marking it as known.
    pub fn take(&mut self, key: &str) -> Option<Entry> {
        self.consumed.insert(key.to_owned());
        self.entries.get(key).cloned()
    }

    pub fn origin_of(&self, key: &str) -> Origin {
        self.entries.get(key).map_or(Origin::Default, |e| e.origin.clone())
    }

    pub fn problem(&mut self, key: &str, origin: Option<Origin>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_owned(),
            origin,
            message: message.into(),
        });
    }

    /// Every key that was set but never asked for is a typo or a setting that does not exist.
    pub fn report_unknown_keys(&mut self) {
        let unknown: Vec<(String, Origin)> = self
            .entries
            .iter()
            .filter(|(key, _)| !self.consumed.contains(*key))
            .map(|(key, entry)| (key.clone(), entry.origin.clone()))
            .collect();
        for (key, origin) in unknown {
            let hint = self
                .suggestion(&key)
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_default();
            self.problem(&key, Some(origin), format!("unknown setting{hint}"));
        }
    }

    fn suggestion(&self, unknown: &str) -> Option<String> {
        self.consumed
            .iter()
            .map(|known| (strsim::levenshtein(known, unknown), known))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, k)| k.clone())
    }

    pub fn known_keys(&self) -> &BTreeSet<String> {
        &self.consumed
    }
}
