//! The serial bridge of the `uiot run` daemon: serial ports to and from
//! MQTT frames.
//!
//! Owns: nothing itself; `framing` (bytes to frames and back) and `serial`
//! (the port threads).
//! Must not touch: the MQTT client and the config file (the daemon wires
//! them to a [`serial::Bridge`]).

#![allow(dead_code)]

pub mod framing;
pub mod serial;
