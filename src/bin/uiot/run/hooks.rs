//! The hook runner of `uiot run` (in progress): runs the configured
//! executables for events.
//!
//! Owns: the runner's parts, one module each.
//! Must not touch: MQTT, the configuration file.

mod tail;
