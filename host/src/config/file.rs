//! One configuration file, as written: every key optional, unknown keys refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::ConfigError;
use crate::state::BackendKind;

/// The keys `hutch.toml` and `~/.config/hutch/config.toml` may hold.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// VM manager.
    pub backend: Option<BackendKind>,
    /// Base image: its name or path (`image = "NAME"`), or the `[image]`
    /// table, which also says what `cargo xtask image` puts into the default image.
    pub image: Option<ImageKey>,
    /// Size of each VM's disk (`"20G"`), for images with a disk.
    pub disk: Option<String>,
    /// Virtual CPUs.
    pub cpus: Option<u32>,
    /// Memory in MiB.
    pub memory: Option<u32>,
    /// Heavy dirs kept on VM-local disk (replaces the defaults).
    pub heavy: Option<Vec<String>>,
    /// Extra ignore patterns for `--ro` snapshots (gitignore syntax).
    pub ignore: Option<Vec<String>>,
    /// Environment passed to every command: `NAME` (the local value) or `NAME=VALUE`.
    pub env: Option<Vec<String>>,
    /// Hook scripts.
    pub hooks: Option<Hooks>,
    /// What the guest may reach through hutch's proxy.
    pub network: Option<super::network::NetworkTable>,
    /// Secrets the proxy adds to requests, by the variable the guest sees.
    pub secrets: Option<BTreeMap<String, super::network::SecretTable>>,
    /// Byte offsets where each line of the file starts, for messages.
    #[serde(skip)]
    pub line_starts: Vec<usize>,
    /// How `hutch exec` runs commands.
    pub exec: Option<ExecTable>,
    /// Share `.git` writable, without the host's guard (user file only).
    pub unguarded_git: Option<bool>,
    /// How the guest gets the workspace: `"shared"` (default) or `"sync"`.
    pub workspace: Option<super::WorkspaceMode>,
    /// Warm pools: VMs booted ahead for `hutch run --rm`.
    pub warm: Option<WarmTable>,
    /// How long hutch waits for an agent.
    pub timeouts: Option<TimeoutsTable>,
}

/// The `[warm]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WarmTable {
    /// Ready VMs to keep for the project, topped up after each `run --rm`.
    pub count: Option<u32>,
}

/// The `[timeouts]` table: how long hutch waits for an agent
/// (`crate::untrusted::deadline`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsTable {
    /// Reaching the agent (`"10s"`).
    pub connect: Option<String>,
    /// One call, a stream's start, a bulk stream's silence (`"30s"`).
    pub call: Option<String>,
}

/// The `[exec]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecTable {
    /// Keep commands on a terminal as sessions (`--keep`) unless `--no-keep`.
    pub keep: Option<bool>,
}

/// `image = "NAME"`, or an `[image]` table.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageKey {
    /// The base image's name or path.
    Name(String),
    /// The `[image]` table.
    Table(ImageTable),
}

impl ImageKey {
    /// The base image named, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            ImageKey::Name(name) => Some(name),
            ImageKey::Table(table) => table.name.as_deref(),
        }
    }
}

impl<'de> Deserialize<'de> for ImageKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ImageKey;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an image name or path, or an [image] table")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ImageKey, E> {
                Ok(ImageKey::Name(name.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ImageKey, A::Error> {
                ImageTable::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ImageKey::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The `[image]` table: which image VMs boot, and what `cargo xtask image`
/// installs into the default Debian image beyond its own package list.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageTable {
    /// The base image's name or path (as `image = "NAME"`).
    pub name: Option<String>,
    /// More Debian packages.
    pub packages: Option<Vec<String>>,
    /// npm packages installed globally (`npm install -g`), e.g. coding-agent CLIs.
    pub npm: Option<Vec<String>>,
    /// The Node.js release: a major version (`"22"`) or a full one (`"22.23.5"`).
    pub node: Option<String>,
}

/// The `[hooks]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Per-user setup script: runs once in a base image being prepared.
    pub setup: Option<String>,
    /// Per-project runtime script (default `.hutch/runtime.sh`): runs in each
    /// new VM before the first command.
    pub runtime: Option<String>,
}

impl ConfigFile {
    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<ConfigFile>, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
        };
        ConfigFile::parse(&text, path).map(Some)
    }

    /// Parses `text` (from `path`, for messages).
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            ConfigError::Invalid { path: path.to_path_buf(), line, message: e.message().to_owned() }
        })?;
        file.line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Ok(file)
    }
}

/// `env` entries as (name, value), taking local values for bare names.
pub fn env_pairs(entries: &[String]) -> BTreeMap<String, String> {
    entries
        .iter()
        .filter_map(|entry| match entry.split_once('=') {
            Some((k, v)) => Some((k.to_owned(), v.to_owned())),
            None => std::env::var(entry).ok().map(|v| (entry.clone(), v)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let text = "backend = \"qemu\"\ncpus = 4\nmemory = 2048\nheavy = [\"node_modules\", \"dist\"]\nenv = [\"A=1\"]\n[hooks]\nruntime = \"scripts/boot.sh\"\n[exec]\nkeep = true\n[warm]\ncount = 2\n";
        let file = ConfigFile::parse(text, Path::new("hutch.toml")).unwrap();
        assert_eq!(file.backend, Some(BackendKind::Qemu));
        assert_eq!(file.cpus, Some(4));
        assert_eq!(file.heavy.as_deref(), Some(&["node_modules".to_owned(), "dist".to_owned()][..]));
        assert_eq!(file.hooks.unwrap().runtime.as_deref(), Some("scripts/boot.sh"));
        assert_eq!(file.exec.and_then(|e| e.keep), Some(true));
        assert_eq!(file.warm.and_then(|w| w.count), Some(2));
    }

    #[test]
    fn image_is_a_name_or_a_table() {
        let file = ConfigFile::parse("image = \"debian-hutch\"\ndisk = \"40G\"\n", Path::new("h.toml")).unwrap();
        assert_eq!(file.image.as_ref().and_then(ImageKey::name), Some("debian-hutch"));
        assert_eq!(file.disk.as_deref(), Some("40G"));
        let text = "[image]\nname = \"x\"\npackages = [\"ripgrep\"]\nnpm = [\"@openai/codex\"]\n";
        let Some(ImageKey::Table(table)) = ConfigFile::parse(text, Path::new("h.toml")).unwrap().image else { panic!("not a table") };
        assert_eq!((table.name.as_deref(), table.npm.as_deref()), (Some("x"), Some(&["@openai/codex".to_owned()][..])));
        let err = ConfigFile::parse("[image]\nnpn = [\"a\"]\n", Path::new("h.toml")).unwrap_err().to_string();
        assert!(err.contains("npn") && err.contains("npm"), "{err}");
        let err = ConfigFile::parse("image = 3\n", Path::new("h.toml")).unwrap_err().to_string();
        assert!(err.contains("an image name or path, or an [image] table"), "{err}");
    }

    #[test]
    fn unknown_keys_name_the_file_and_line() {
        let err = ConfigFile::parse("cpus = 2\n\nmemroy = 512\n", Path::new("/p/hutch.toml")).unwrap_err().to_string();
        assert!(err.starts_with("/p/hutch.toml:3: "), "{err}");
        assert!(err.contains("memroy"), "{err}");
        let err = ConfigFile::parse("[hooks]\nruntime = \"a\"\nbefore = \"b\"\n", Path::new("h.toml")).unwrap_err().to_string();
        assert!(err.starts_with("h.toml:3: "), "{err}");
        let err = ConfigFile::parse("cpus = \"two\"\n", Path::new("h.toml")).unwrap_err().to_string();
        assert!(err.starts_with("h.toml:1: "), "{err}");
    }
}
