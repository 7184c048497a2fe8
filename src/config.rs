//! The INI configuration file.
//!
//! STUB: being written.

use std::fmt;

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line per problem, e.g.
    /// `uiot.ini: [connection] keep_alive = 10: must be 30..1200 seconds (UIoT Core refuses others)`.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}
