//! What a section of the configuration uses to document its keys, read them and check their
//! values: keys are named within the section (`port`), and reported in full (`server.port`)
//! with their origin.
use secrecy::SecretString;

use super::layers::{Layers, Origin};
use super::value::FromRaw;

/// Reads the keys of one section.
pub struct Reader<'a> {
    layers: &'a mut Layers,
    section: &'static str,
    credentials_dir: Option<&'a str>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(layers: &'a mut Layers, section: &'static str, credentials_dir: Option<&'a str>) -> Self {
        Reader {
            layers,
            section,
            credentials_dir,
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.section)
    }

    /// The value of the key, or `default`; a bad value is a problem (and the default is used so
    /// that reading goes on and reports the others).
    pub fn get<T: FromRaw>(&mut self, name: &str, default: T) -> T {
        let key = self.key(name);
        self.layers.get(&key, default)
    }

    pub fn get_opt<T: FromRaw>(&mut self, name: &str) -> Option<T> {
        let key = self.key(name);
        self.layers.get_opt(&key)
    }

    /// A secret, set directly or through `<name>_file` (see [`Layers::secret`]).
    pub fn secret(&mut self, name: &str) -> Option<SecretString> {
        let key = self.key(name);
        self.layers.secret(&key, self.credentials_dir)
    }
}

/// Collects the problems of values that parse but make no sense.
pub struct Checks<'a> {
    layers: &'a mut Layers,
    section: &'static str,
}

impl<'a> Checks<'a> {
    pub(super) fn new(layers: &'a mut Layers, section: &'static str) -> Self {
        Checks { layers, section }
    }

    /// Records `message` against `name` (a key of this section) unless `ok`.
    pub fn require(&mut self, ok: bool, name: &str, message: impl Into<String>) {
        if ok {
            return;
        }
        let key = format!("{}.{name}", self.section);
        let origin: Origin = self.layers.secret_origin(&key);
        self.layers.problem(&key, Some(origin), message);
    }

    pub fn positive(&mut self, name: &str, ok: bool) {
        self.require(ok, name, "must be greater than zero");
    }
}

/// One setting in the configuration reference (see `reference`).
pub struct KeyDoc {
    pub key: &'static str,
    /// Secret settings can also be read from a file (`<KEY>_FILE`) and are never printed.
    pub secret: bool,
    /// Shown instead of the built-in default when that needs words.
    pub default_text: Option<&'static str>,
    pub description: &'static str,
}

pub const fn key(key: &'static str, description: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        secret: false,
        default_text: None,
        description,
    }
}
