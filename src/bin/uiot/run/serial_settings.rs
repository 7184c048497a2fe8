//! What one bridged serial port is set to ([`SerialSettings`]) and the
//! names its config values are parsed from (`FromStr` for [`Parity`] and
//! [`FlowControl`], [`BadValue`] naming what was wrong).
//!
//! Owns: the settings types and their defaults.
//! Must not touch: opening the port, the threads (`serial.rs`), the config
//! file (its loader fills these).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::run::framing::Framing;

/// Parity bit of each character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// Flow control of the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowControl {
    /// None.
    None,
    /// XON/XOFF in the data stream (so bytes 0x11 and 0x13 cannot be data).
    Software,
    /// RTS/CTS lines.
    Hardware,
}

/// A word that is not one of the allowed values of a serial setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue {
    /// The setting: `parity` or `flow_control`.
    pub setting: &'static str,
    /// What was given.
    pub got: String,
    /// The allowed words, comma-separated.
    pub allowed: &'static str,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}` is not one of: {}",
            self.setting, self.got, self.allowed
        )
    }
}

impl std::error::Error for BadValue {}

impl FromStr for Parity {
    type Err = BadValue;

    /// `none`, `odd` or `even`, in any case.
    fn from_str(s: &str) -> Result<Parity, BadValue> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Parity::None),
            "odd" => Ok(Parity::Odd),
            "even" => Ok(Parity::Even),
            _ => Err(BadValue {
                setting: "parity",
                got: s.to_string(),
                allowed: "none, odd, even",
            }),
        }
    }
}

impl FromStr for FlowControl {
    type Err = BadValue;

    /// `none`, `software` or `hardware`, in any case.
    fn from_str(s: &str) -> Result<FlowControl, BadValue> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(FlowControl::None),
            "software" => Ok(FlowControl::Software),
            "hardware" => Ok(FlowControl::Hardware),
            _ => Err(BadValue {
                setting: "flow_control",
                got: s.to_string(),
                allowed: "none, software, hardware",
            }),
        }
    }
}

/// Everything about one bridged port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialSettings {
    /// The port's name in logs and thread names.
    pub name: String,
    /// The device, e.g. `/dev/ttyUSB0` (a non-UTF-8 path is used lossily).
    pub device: PathBuf,
    /// Bits per second.
    pub baud: u32,
    /// 5, 6, 7 or 8 (anything else fails to open, with a warn line).
    pub data_bits: u8,
    /// Parity bit.
    pub parity: Parity,
    /// 1 or 2 (anything else fails to open, with a warn line).
    pub stop_bits: u8,
    /// Flow control.
    pub flow_control: FlowControl,
    /// How the uplink byte stream is cut into frames.
    pub framing: Framing,
    /// Longest uplink frame in bytes; longer ones are cut (see `framing`;
    /// at most 1 MiB is used).
    pub max_frame: usize,
    /// Bytes written after each downlink frame (not with `Length` framing).
    pub downlink_suffix: Vec<u8>,
    /// Wait between attempts to open an absent or vanished port.
    pub reopen_every: Duration,
}

impl SerialSettings {
    /// 115200 8N1 without flow control, line framing, 4096-byte frames,
    /// `\n` after each downlink frame, reopen every 2 s.
    pub fn new(name: &str, device: impl Into<PathBuf>) -> SerialSettings {
        SerialSettings {
            name: name.to_string(),
            device: device.into(),
            baud: 115_200,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
            framing: Framing::Line,
            max_frame: 4096,
            downlink_suffix: b"\n".to_vec(),
            reopen_every: Duration::from_secs(2),
        }
    }
}
