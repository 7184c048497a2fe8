//! `uiot upload FILE [--name NAME] [-c FILE] [-d]`: file upload to the
//! platform's file store (protocol 7.6).
//!
//! Owns: the `upload` subcommand's flags and output line.
//! Must not touch: the upload itself (`uiot::platform::upload`).

use std::path::PathBuf;

use lexopt::prelude::*;

use crate::cli::{self, Failure};

/// Usage of `uiot upload`.
pub const USAGE: &str = "\
usage: uiot upload FILE [--name NAME] [-c FILE] [-d]

Uploads FILE to the UIoT Core file store ([connection] file_url): its MD5
first, then a signed URL request (device secret), then the file itself,
streamed from disk. Prints {\"URL\":..,\"Size\":..,\"MD5\":..} on one line.
An empty FILE is refused (exit 64).

options:
  -n, --name NAME    the file's name in the store (default: FILE's name)
  -c, --config FILE  the configuration file
                     (default: $UIOT_CONFIG if set, else /etc/uiot/uiot.ini)
  -d, --debug        log the requests
  -h, --help         print this help

exit codes: 0 ok, 64 usage (or an empty file), 66 FILE missing, 69 the file
store unreachable, 75 a temporary platform error, 77 refused (RetCode and
its meaning on stderr), 78 config";

/// Runs `uiot upload`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let (mut file, mut name, mut config, mut debug): (
        Option<PathBuf>,
        Option<String>,
        Option<PathBuf>,
        bool,
    ) = (None, None, None, false);
    while let Some(arg) = args.next()? {
        match arg {
            Short('n') | Long("name") => {
                name = Some(
                    args.value()?
                        .into_string()
                        .map_err(|_| Failure::Usage("--name is not UTF-8".into()))?,
                )
            }
            Short('c') | Long("config") => config = Some(PathBuf::from(args.value()?)),
            Short('d') | Long("debug") => debug = true,
            Short('h') | Long("help") => return Err(Failure::Help),
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            other => return Err(other.unexpected().into()),
        }
    }
    let file = file.ok_or_else(|| Failure::Usage("give the FILE to upload".into()))?;
    cli::init_logging(debug);
    #[cfg(feature = "http")]
    {
        let config = cli::load_config(config)?;
        let up = uiot::platform::upload::FileUpload::from_config(&config)?;
        let done = up.upload(&file, name.as_deref())?;
        let line = serde_json::json!({"URL": done.url, "Size": done.size, "MD5": done.md5});
        cli::print(&format!("{line}\n"))
    }
    #[cfg(not(feature = "http"))]
    {
        let _ = (file, name, config);
        Err(Failure::Usage(
            "this uiot was built without HTTP (cargo feature `http`): no file upload".into(),
        ))
    }
}
