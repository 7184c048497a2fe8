//! `[serial]` and `[serial.NAME]`: the serial bridges of `uiot run`, one
//! section per port (the name only tells them apart in logs).
//!
//! Owns: the keys of a port's section, their defaults, ranges and
//! spellings (parity, flow control, framing, the downlink suffix's escapes).
//! Must not touch: serial ports themselves (the daemon opens them).

use std::path::PathBuf;
use std::time::Duration;

use super::effective::Writer;
use super::reader::{Ctx, Key, Reader, Section};
use crate::packet::QoS;

/// How a port's byte stream is cut into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialFraming {
    /// A message per line (`\n`, a `\r` before it removed).
    Line,
    /// A 2-byte big-endian length, then that many bytes.
    Length,
    /// A message ends after `idle_ms` of silence.
    Idle,
    /// Transparent: what arrived within `idle_ms`, at most `max_frame`.
    Raw,
}

impl SerialFraming {
    fn name(self) -> &'static str {
        match self {
            SerialFraming::Line => "line",
            SerialFraming::Length => "length",
            SerialFraming::Idle => "idle",
            SerialFraming::Raw => "raw",
        }
    }
}

/// One serial port and the topics its frames go to and come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialPort {
    /// `NAME` of `[serial.NAME]` (`""` for `[serial]`).
    pub name: String,
    /// The device, e.g. `/dev/ttyUSB0`.
    pub device: PathBuf,
    /// Baud rate (default 115200).
    pub baud: u32,
    /// 5..8 (default 8).
    pub data_bits: u8,
    /// `none`, `odd` or `even` (default none).
    pub parity: String,
    /// 1 or 2 (default 1).
    pub stop_bits: u8,
    /// `none`, `software` or `hardware` (default none).
    pub flow_control: String,
    /// Default line.
    pub framing: SerialFraming,
    /// The silence that ends an idle or raw frame (default 50 ms).
    pub idle: Duration,
    /// Longest frame; longer ones are cut (and counted). Default 4096.
    pub max_frame: usize,
    /// Where frames from the port are published (relative to /PSN/DSN/
    /// unless it starts with '/').
    pub uplink_topic: String,
    /// Their QoS (default 1).
    pub uplink_qos: QoS,
    /// Messages on this topic (filter) are written to the port.
    pub downlink_topic: Option<String>,
    /// Written after each downlink message (not with length framing);
    /// default `\n` with line framing, nothing otherwise.
    pub downlink_suffix: Vec<u8>,
}

/// Every configured serial bridge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerialPorts(pub Vec<SerialPort>);

const KEYS: &[Key] = &[
    Key::path("device"),
    Key::plain("baud"),
    Key::plain("data_bits"),
    Key::plain("parity"),
    Key::plain("stop_bits"),
    Key::plain("flow_control"),
    Key::plain("framing"),
    Key::plain("idle_ms"),
    Key::plain("max_frame"),
    Key::plain("uplink_topic"),
    Key::plain("uplink_qos"),
    Key::plain("downlink_topic"),
    Key::plain("downlink_suffix"),
];

fn one_of(v: &str, allowed: &[&'static str]) -> Result<String, String> {
    allowed
        .iter()
        .find(|a| **a == v)
        .map(|a| (*a).to_string())
        .ok_or_else(|| format!("must be one of: {}", allowed.join(", ")))
}

fn parse_framing(v: &str) -> Result<SerialFraming, String> {
    [
        SerialFraming::Line,
        SerialFraming::Length,
        SerialFraming::Idle,
        SerialFraming::Raw,
    ]
    .into_iter()
    .find(|f| f.name() == v)
    .ok_or_else(|| "must be line, length, idle or raw".to_string())
}

/// `\n`, `\r`, `\t`, `\\` and `\xHH` escapes to bytes.
pub(crate) fn parse_escapes(v: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut bytes = v.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let text = std::str::from_utf8(&hex).unwrap_or("");
                match u8::from_str_radix(text, 16) {
                    Ok(n) if text.len() == 2 => out.push(n),
                    _ => return Err("\\x needs two hex digits, e.g. \\x03".into()),
                }
            }
            _ => return Err("escapes are \\n, \\r, \\t, \\\\ and \\xHH".into()),
        }
    }
    if out.len() > 16 {
        return Err("at most 16 bytes".into());
    }
    Ok(out)
}

fn escaped(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'\n' => "\\n".to_string(),
            b'\r' => "\\r".to_string(),
            b'\t' => "\\t".to_string(),
            b'\\' => "\\\\".to_string(),
            0x20..=0x7e => char::from(*b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

fn topic(v: &str) -> Result<String, String> {
    crate::packet::validate_topic_name(v)
        .map(|()| v.to_string())
        .map_err(|e| format!("is not a topic name ({e})"))
}

fn filter(v: &str) -> Result<String, String> {
    crate::packet::validate_topic_filter(v)
        .map(|()| v.to_string())
        .map_err(|e| format!("is not a topic filter ({e})"))
}

impl SerialPort {
    fn read_port(r: &mut Reader<'_, '_>, name: &str) -> Option<SerialPort> {
        let device = r.required("device", "give the serial device, e.g. /dev/ttyUSB0", |v| {
            if v.is_empty() {
                Err("is empty; give the serial device, e.g. /dev/ttyUSB0".to_string())
            } else {
                Ok(PathBuf::from(v))
            }
        });
        let baud = r.number("baud", 115_200u32, 50, 4_000_000, "baud");
        let data_bits = r.number("data_bits", 8u8, 5, 8, "data bits");
        let parity = r
            .value("parity", |v| one_of(v, &["none", "odd", "even"]))
            .or("none".into());
        let stop_bits = r.value("stop_bits", |v| match v {
            "1" => Ok(1u8),
            "2" => Ok(2u8),
            _ => Err("must be 1 or 2".to_string()),
        });
        let flow = r
            .value("flow_control", |v| {
                one_of(v, &["none", "software", "hardware"])
            })
            .or("none".into());
        let framing = r.value("framing", parse_framing).or(SerialFraming::Line);
        let idle = r.number("idle_ms", 50u64, 1, 60_000, "milliseconds");
        let max_frame = r.number("max_frame", 4096usize, 1, 1 << 20, "bytes");
        let uplink = r.required(
            "uplink_topic",
            "give the topic frames from the port are published to, e.g. serial/up",
            topic,
        );
        let qos = r.number("uplink_qos", 1u8, 0, 1, "(UIoT Core has QoS 0 and 1)");
        let downlink = r.value("downlink_topic", filter).optional();
        let suffix = r.value("downlink_suffix", parse_escapes).optional();
        let framing = framing?;
        let default_suffix = if framing == SerialFraming::Line {
            b"\n".to_vec()
        } else {
            Vec::new()
        };
        Some(SerialPort {
            name: name.to_string(),
            device: device?,
            baud: baud?,
            data_bits: data_bits?,
            parity: parity?,
            stop_bits: stop_bits.or(1)?,
            flow_control: flow?,
            framing,
            idle: Duration::from_millis(idle?),
            max_frame: max_frame?,
            uplink_topic: uplink?,
            uplink_qos: if qos? == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            downlink_topic: downlink?,
            downlink_suffix: suffix?.unwrap_or(default_suffix),
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("device", self.device.display());
        w.key("baud", self.baud);
        w.key("data_bits", self.data_bits);
        w.key("parity", &self.parity);
        w.key("stop_bits", self.stop_bits);
        w.key("flow_control", &self.flow_control);
        w.key("framing", self.framing.name());
        w.key("idle_ms", self.idle.as_millis());
        w.key("max_frame", self.max_frame);
        w.key("uplink_topic", &self.uplink_topic);
        w.key("uplink_qos", self.uplink_qos.to_u8());
        match &self.downlink_topic {
            Some(t) => w.key("downlink_topic", t),
            None => w.unset("downlink_topic", "nothing is written to the port"),
        }
        w.key("downlink_suffix", escaped(&self.downlink_suffix));
    }
}

impl Section for SerialPorts {
    const NAME: &'static str = "serial";
    const KEYS: &'static [Key] = KEYS;

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        SerialPort::read_port(r, "").map(|p| SerialPorts(vec![p]))
    }

    fn read_all(ctx: &mut Ctx<'_>) -> Option<Self> {
        let names: Vec<&str> = ctx
            .section_names()
            .into_iter()
            .filter(|n| *n == "serial" || n.strip_prefix("serial.").is_some_and(|r| !r.is_empty()))
            .collect();
        let mut ports = Vec::new();
        let mut ok = true;
        for n in names {
            let short = n.strip_prefix("serial.").unwrap_or("");
            match ctx.read_named(n, KEYS, |r| SerialPort::read_port(r, short)) {
                Some(p) => ports.push(p),
                None => ok = false,
            }
        }
        ok.then_some(SerialPorts(ports))
    }

    fn write(&self, w: &mut Writer) {
        if let Some(p) = self.0.first() {
            p.write(w);
        }
    }

    fn write_all(&self, w: &mut Writer) {
        for p in &self.0 {
            if p.name.is_empty() {
                w.header("serial");
            } else {
                w.header(&format!("serial.{}", p.name));
            }
            p.write(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::*;

    #[test]
    fn serial_sections_one_or_several() {
        assert!(ok(&minimal()).serial.0.is_empty());
        let c = ok(&format!(
            "{}[serial]\ndevice = /dev/ttyUSB0\nuplink_topic = serial/up\n\
             [serial.plc]\ndevice = /dev/ttyS1\nbaud = 9600\nparity = even\nstop_bits = 2\n\
             framing = length\nuplink_topic = plc/up\nuplink_qos = 0\ndownlink_topic = plc/down\n\
             downlink_suffix = \\r\\n\\x03\n",
            minimal()
        ));
        let p = &c.serial.0;
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].baud, p[0].framing),
            ("", 115_200, SerialFraming::Line)
        );
        assert_eq!(p[0].downlink_suffix, b"\n");
        assert_eq!(
            (p[1].name.as_str(), p[1].parity.as_str(), p[1].stop_bits),
            ("plc", "even", 2)
        );
        assert_eq!(p[1].downlink_suffix, b"\r\n\x03");
        assert_eq!(p[1].uplink_qos, QoS::AtMostOnce);
        let eff = c.effective();
        assert!(eff.contains("[serial.plc]\ndevice = /dev/ttyS1\n"), "{eff}");
        assert!(eff.contains("downlink_suffix = \\r\\n\\x03\n"), "{eff}");
        let p = one_problem(&format!(
            "{}[serial.gps]\ndevice = /dev/ttyACM0\n",
            minimal()
        ));
        assert!(p.contains("[serial.gps] uplink_topic: missing"), "{p}");
        let p = one_problem(&format!(
            "{}[serial]\ndevice = /dev/x\nuplink_topic = u\nparity = mark\n",
            minimal()
        ));
        assert!(
            p.contains("parity = mark: must be one of: none, odd, even"),
            "{p}"
        );
        let p = one_problem(&format!(
            "{}[serial.x]\ndevice = /dev/x\nuplink_topic = u\nbuad = 9600\n",
            minimal()
        ));
        assert!(
            p.contains("[serial.x] buad: unknown key; did you mean baud?"),
            "{p}"
        );
    }
}
