//! OTA firmware upgrade: the `ota/` system topics of the device, the
//! notices the cloud sends there, and fetching the firmware ([`download`]).
//!
//! Owns: the `ota/downstream` route and its dispatcher, the queue of
//! notices for the application, the set of upgrades in progress (a repeated
//! `update_firmware` for one of them is dropped) and their cancel flags,
//! the upstream reports.
//! Must not touch: other services' topics, installing an image (the
//! application's), when to upgrade (the application's).
//!
//! Every notice for a module and version is handed over once until the
//! application calls [`Ota::finish`] for it (or [`Ota::report_success`] /
//! [`Ota::report_fail`], which call it): the broker may resend the QoS 1
//! `update_firmware`, and a second download of the same image must not
//! start while the first runs. A `cancel_update` is always handed over,
//! and sets the upgrade's [`Ota::cancel_flag`].
//!
//! ```no_run
//! use std::path::Path;
//! use uiot::platform::ota::{self, ModuleVersion, Notice, Ota, OtaError};
//! # let id = uiot::Identity::new("70ly1tvowt696r15", "aruidyl0rt9tuvod");
//! # let client = uiot::Client::connect(uiot::Options::device("127.0.0.1", 1883, id, "hly3dk1u5y8fq0b9"))?;
//! let ota = Ota::new(&client, vec![ModuleVersion::new("default", "1.0.0")])?;
//! ota.report_version()?;
//! ota.request_firmware()?;
//! if let Some(n @ Notice::Update { .. }) = ota.recv() {
//!     let (module, version) = n.target();
//!     // Set by a cancel_update for this upgrade. (A real device downloads
//!     // on a worker thread and keeps taking notices meanwhile.)
//!     let cancel = ota.cancel_flag(module, version).unwrap_or_default();
//!     let got = ota::download(&n, Path::new("/var/lib/uiot"), &cancel, |pct| {
//!         let _ = ota.report_progress(module, "downloading", pct, version);
//!     });
//!     match got {
//!         Ok(_image) => { /* install it, restart, then report_success */ }
//!         Err(OtaError::Cancelled) => ota.finish(module, version),
//!         Err(e) => ota.report_fail(module, version, e.err_code())?,
//!     }
//! }
//! # Ok::<(), uiot::Error>(())
//! ```

#[cfg(feature = "http")]
mod download;
mod error;
mod messages;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(feature = "http")]
pub use download::{
    check_space, download, download_with, free_space, image_path, staging_path, DownloadOptions,
    CHUNK, SPACE_MARGIN,
};
pub use error::OtaError;
pub(crate) use messages::check_module;
pub use messages::{parse_downstream, ModuleVersion, Notice, MAX_NAME, MAX_SIZE};

use super::service;
use crate::client::{lock, Message, QoS};
use crate::error::Error;
use crate::Client;

/// Notices held for the application; beyond that one is dropped with a
/// warning (the cloud's `request_firmware` answer brings an update back).
const NOTICE_QUEUE: usize = 8;

/// Upgrades handed over and not finished, each with its cancel flag.
type Active = Arc<Mutex<HashMap<(String, String), Arc<AtomicBool>>>>;

/// The OTA service of the client's device. Cheap to clone.
#[derive(Clone)]
pub struct Ota {
    client: Client,
    upstream: String,
    modules: Arc<Mutex<Vec<ModuleVersion>>>,
    active: Active,
    notices: Arc<Mutex<Receiver<Notice>>>,
}

impl std::fmt::Debug for Ota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ota")
            .field("modules", &*lock(&self.modules))
            .field("active", &lock(&self.active).keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Ota {
    /// Take the `ota/` topics of the client's device (a route of their own)
    /// and subscribe to `ota/downstream`. `modules` are the device's
    /// modules and the versions they run, for [`Ota::report_version`] and
    /// [`Ota::request_firmware`]; each name and version is checked.
    pub fn new(client: &Client, modules: Vec<ModuleVersion>) -> Result<Ota, Error> {
        let Some(id) = client.options().identity.clone() else {
            return Err(Error::InvalidArgument(
                "OTA needs a device identity (Options::device)".into(),
            ));
        };
        for m in &modules {
            check(m)?;
        }
        let active: Active = Arc::default();
        let (tx, rx) = mpsc::sync_channel(NOTICE_QUEUE);
        let downstream = id.system_topic("ota/downstream");
        let route = client.route(&id.system_topic("ota/"), 16)?;
        let d = Dispatcher {
            downstream: downstream.clone(),
            active: active.clone(),
            notices: tx,
        };
        service::spawn_dispatcher("uiot-ota", route, move |m| d.handle(&m))?;
        client.subscribe(&[(downstream, QoS::AtLeastOnce)])?;
        Ok(Ota {
            client: client.clone(),
            upstream: id.system_topic("ota/upstream"),
            modules: Arc::new(Mutex::new(modules)),
            active,
            notices: Arc::new(Mutex::new(rx)),
        })
    }

    /// The modules and versions this service reports.
    pub fn modules(&self) -> Vec<ModuleVersion> {
        lock(&self.modules).clone()
    }

    /// Record that `module` now runs `version` (after an upgrade), adding
    /// the module if it is new. Reported by the next [`Ota::report_version`].
    pub fn set_version(&self, module: &str, version: &str) -> Result<(), Error> {
        let mv = ModuleVersion::new(module, version);
        check(&mv)?;
        let mut modules = lock(&self.modules);
        match modules.iter_mut().find(|m| m.module == module) {
            Some(m) => m.version = mv.version,
            None => modules.push(mv),
        }
        Ok(())
    }

    /// `report_version` of every module (QoS 1): send on every start; the
    /// cloud upgrades only a module whose version it knows.
    pub fn report_version(&self) -> Result<(), Error> {
        self.each("report_version")
    }

    /// `request_firmware` of every module (QoS 1): after (re)connecting, to
    /// get an upgrade pushed while offline. The cloud answers with an
    /// `update_firmware` when one is pending, otherwise with nothing.
    pub fn request_firmware(&self) -> Result<(), Error> {
        self.each("request_firmware")
    }

    /// `report_progress` (QoS 0): `state` is `"downloading"` or `"burning"`,
    /// `percent` 0..=100 (larger is sent as 100).
    pub fn report_progress(
        &self,
        module: &str,
        state: &str,
        percent: u8,
        version: &str,
    ) -> Result<(), Error> {
        if state != "downloading" && state != "burning" {
            return Err(Error::InvalidArgument(format!(
                "OTA progress state {:?}: use downloading or burning",
                crate::cut(state)
            )));
        }
        let body = messages::progress(module, version, state, percent);
        self.send(&body, QoS::AtMostOnce)
    }

    /// `report_success` (QoS 1) with the **target** version: send once the
    /// new firmware runs. Ends the upgrade ([`Ota::finish`]).
    pub fn report_success(&self, module: &str, version: &str) -> Result<(), Error> {
        self.finish(module, version);
        self.send(
            &messages::upstream("report_success", module, version),
            QoS::AtLeastOnce,
        )
    }

    /// `report_fail` (QoS 1) with the target version and the ErrCode
    /// ([`OtaError::err_code`]). Ends the upgrade ([`Ota::finish`]).
    pub fn report_fail(&self, module: &str, version: &str, code: i64) -> Result<(), Error> {
        self.finish(module, version);
        self.send(&messages::fail(module, version, code), QoS::AtLeastOnce)
    }

    /// The next notice, waiting at most `timeout`.
    pub fn next_notice(&self, timeout: Duration) -> Option<Notice> {
        lock(&self.notices).recv_timeout(timeout).ok()
    }

    /// The next notice, waiting until one comes (`None` once the client is
    /// closed).
    pub fn recv(&self) -> Option<Notice> {
        lock(&self.notices).recv().ok()
    }

    /// Whether an update of `module` to `version` was handed over and not
    /// finished.
    pub fn is_active(&self, module: &str, version: &str) -> bool {
        lock(&self.active).contains_key(&(module.to_string(), version.to_string()))
    }

    /// The cancel flag of the active upgrade of `module` to `version`
    /// (`None` when it is not active): a `cancel_update` for it sets the
    /// flag, so a [`download`] given it stops between chunks.
    pub fn cancel_flag(&self, module: &str, version: &str) -> Option<Arc<AtomicBool>> {
        lock(&self.active)
            .get(&(module.to_string(), version.to_string()))
            .cloned()
    }

    /// End the upgrade of `module` to `version`: a later `update_firmware`
    /// for it is handed over again. Needed after a cancel or a failure the
    /// application does not report; [`Ota::report_success`] and
    /// [`Ota::report_fail`] call it.
    pub fn finish(&self, module: &str, version: &str) {
        lock(&self.active).remove(&(module.to_string(), version.to_string()));
    }

    fn each(&self, method: &str) -> Result<(), Error> {
        for m in self.modules() {
            let body = messages::upstream(method, &m.module, &m.version);
            self.send(&body, QoS::AtLeastOnce)?;
        }
        Ok(())
    }

    fn send(&self, body: &serde_json::Value, qos: QoS) -> Result<(), Error> {
        self.client
            .publish(&self.upstream, body.to_string().as_bytes(), qos)
    }
}

fn check(m: &ModuleVersion) -> Result<(), Error> {
    messages::check_module(&m.module)
        .and_then(|()| messages::check_version(&m.version))
        .map_err(Error::InvalidArgument)
}

/// Takes `ota/downstream` off the route and queues its notices.
struct Dispatcher {
    downstream: String,
    active: Active,
    notices: SyncSender<Notice>,
}

impl Dispatcher {
    fn handle(&self, msg: &Message) {
        if msg.topic != self.downstream {
            service::ignored(&msg.topic, "not an OTA topic this device subscribes to");
            return;
        }
        let Some(notice) = parse_downstream(msg) else {
            return;
        };
        let key = {
            let (m, v) = notice.target();
            (m.to_string(), v.to_string())
        };
        let is_update = matches!(notice, Notice::Update { .. });
        {
            let mut active = lock(&self.active);
            if is_update {
                if active.contains_key(&key) {
                    log::info!(
                        "update_firmware for {} {} again while it is in progress: ignored",
                        key.0,
                        key.1
                    );
                    return;
                }
                active.insert(key.clone(), Arc::new(AtomicBool::new(false)));
            } else if let Some(flag) = active.get(&key) {
                flag.store(true, Ordering::Relaxed);
            }
        }
        if let Err(TrySendError::Full(_)) = self.notices.try_send(notice) {
            log::warn!(
                "OTA notice for {} {} not taken (Ota::recv): dropped; request_firmware brings \
                 a pending update back",
                key.0,
                key.1
            );
            if is_update {
                lock(&self.active).remove(&key);
            }
        }
    }
}
