//! The `uiot run` daemon (in progress): its parts, one module each.
//!
//! Owns: the module list of the daemon.
//! Must not touch: the subcommand table (`commands`), start-up (`main`).

// Nothing calls the daemon's parts yet; `uiot run` will.
#![allow(dead_code)]

pub mod hooks;
