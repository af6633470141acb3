//! Why a configuration file or setting was refused: below the files that
//! read the settings ([`super::file`], [`super::network`]), which both
//! return it.

use std::path::PathBuf;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid hutch configuration; `message` has the line.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong (unknown key, wrong type, bad TOML).
        message: String,
    },
    /// An environment variable that stands for a setting holds no valid value.
    #[error("${var}: {why}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl ConfigError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        Some("fix the file (`hutch config` shows what is in force and where it comes from)".into())
    }
}
