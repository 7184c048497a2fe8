//! The queue on a small tmpfs that fills up (skipped where mount needs root).

use super::*;
use std::process::Command;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
pub(super) struct SmallFs {
    pub(super) dir: tempfile::TempDir,
}

impl SmallFs {
    pub(super) fn mount(size: &str) -> Option<SmallFs> {
        let dir = tmp();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn disk_full_is_a_clear_error_and_loses_nothing_already_queued() {
    let Some(fs) = SmallFs::mount("64k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = fs.dir.path().join("queue");
    let (mut s, _) = Store::open_with(&dir, Fsync::Always, 16 * 1024).unwrap();
    let mut ok = Vec::new();
    let err = loop {
        match s.append("/p/d/upload", &payload(ok.len() as u64, 1000)) {
            Ok(id) => ok.push(id),
            Err(e) => break e,
        }
        assert!(ok.len() < 1000, "a 64 KiB file system never filled up");
    };
    assert!(ok.len() > 10, "only {} messages fitted", ok.len());
    assert_io_error_names(&err, &dir, "free space there, or set [queue] dir elsewhere");
    // Still usable: the failure is reported again, not a panic or corruption.
    assert!(s.append("/p/d/upload", &[0; 1000]).is_err());
    assert_eq!(s.pending().0, ok.len());
    drop(s);
    let (mut s, rec) = Store::open_with(&dir, Fsync::Always, 16 * 1024).unwrap();
    assert_eq!(ids(&rec), ok);
    // Freeing space (acks and compaction) makes appends work again.
    for id in &ok {
        s.ack(*id).unwrap();
    }
    s.compact().unwrap();
    s.append("/p/d/upload", &[0; 1000]).unwrap();
    drop(s);
}

#[test]
fn acks_and_compaction_free_a_completely_full_disk() {
    let Some(fs) = SmallFs::mount("64k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = fs.dir.path().join("queue");
    // One message per segment, each segment exactly one 4 KiB page, so that
    // once the disk is full not even an ack record fits in the active one.
    let page = 4096;
    let body = page - HEADER_LEN - format::RECORD_HEAD - MESSAGE_FIXED - 1;
    let (mut s, _) = Store::open_with(&dir, Fsync::Always, page as u64).unwrap();
    for i in 1..=5u64 {
        assert_eq!(s.append("t", &payload(i, body)).unwrap(), i);
    }
    let mut filler = File::create(fs.dir.path().join("filler")).unwrap();
    while io::Write::write(&mut filler, &[0; 512]).is_ok_and(|n| n > 0) {}
    drop(filler);
    let err = s.append("t", b"x").unwrap_err();
    assert_io_error_names(&err, &dir, "free space there");
    for id in 1..=5 {
        s.ack(id).unwrap();
    }
    // The ack record does not fit, but deleting the acknowledged segments
    // does not need it, and makes room for it and for new messages.
    s.compact().unwrap();
    assert_eq!(segment_files(&dir).len(), 1);
    assert_eq!(s.append("t", b"x").unwrap(), 6);
    drop(s);
    let (_, rec) = Store::open_with(&dir, Fsync::Always, page as u64).unwrap();
    assert_eq!(ids(&rec), vec![6]);
}

/// Fill what is left of the file system holding `dir`.
fn fill(fs: &SmallFs) -> PathBuf {
    let path = fs.dir.path().join("filler");
    let mut filler = File::create(&path).unwrap();
    while io::Write::write(&mut filler, &[0; 512]).is_ok_and(|n| n > 0) {}
    path
}

#[test]
fn four_starts_on_a_full_disk_do_not_resend_acknowledged_messages() {
    // Issue 9, defect 7: with the disk full the acks could not be written,
    // the active segment was never freed, and every start sent everything
    // again (4 starts: 4,001 deliveries of 1,001 messages).
    let Some(fs) = SmallFs::mount("256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = fs.dir.path().join("queue");
    let (mut s, _) = Store::open(&dir, Fsync::Always).unwrap();
    let mut queued = Vec::new();
    // Small messages: their ack record (8 bytes each) is larger than a page.
    while let Ok(id) = s.append("/p/d/upload", &payload(queued.len() as u64, 150)) {
        queued.push(id);
        assert!(queued.len() < 5000, "a 256 KiB file system never filled up");
    }
    assert!(queued.len() > 1000, "only {} messages fitted", queued.len());
    let _filler = fill(&fs);
    let mut deliveries = 0;
    let mut first = Some((s, queued.clone()));
    for start in 1..=4 {
        let (mut s, todo) = match first.take() {
            Some(v) => v,
            None => {
                let (s, rec) = Store::open(&dir, Fsync::Always).unwrap();
                (s, ids(&rec))
            }
        };
        deliveries += todo.len();
        for id in todo {
            s.ack(id).unwrap(); // every PUBACK arrives
        }
        s.sync().unwrap();
        s.check().unwrap_or_else(|e| panic!("start {start}: {e}"));
        drop(s);
        let files = segment_files(&dir);
        assert_eq!(files.len(), 1, "start {start}");
        assert_eq!(
            fs::metadata(&files[0]).unwrap().len(),
            HEADER_LEN as u64,
            "start {start}: the drained segment is cut back, not appended to"
        );
    }
    assert_eq!(
        deliveries,
        queued.len(),
        "acknowledged messages were sent again"
    );
    // And the queue goes on working on the same full disk.
    let (mut s, rec) = Store::open(&dir, Fsync::Always).unwrap();
    assert!(rec.is_empty());
    assert_eq!(
        s.append("/p/d/upload", b"x").unwrap(),
        queued.len() as u64 + 1
    );
}

#[test]
fn acks_that_truly_cannot_be_recorded_are_reported_to_the_caller() {
    let Some(fs) = SmallFs::mount("64k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = fs.dir.path().join("queue");
    let page = 4096;
    let (mut s, _) = Store::open_with(&dir, Fsync::Always, page as u64).unwrap();
    for i in 1..=3 {
        s.append("t", &payload(i, 1500)).unwrap(); // segment A: 1, 2, 3
    }
    // Segment B: message 4 fills exactly one page, so no ack record fits.
    let body = page - HEADER_LEN - format::RECORD_HEAD - MESSAGE_FIXED - 1;
    assert_eq!(s.append("t", &payload(4, body)).unwrap(), 4);
    assert_eq!(segment_files(&dir).len(), 2);
    let filler = fill(&fs);
    s.ack(2).unwrap(); // in A, which must stay for 1 and 3
    s.ack(4).unwrap();
    s.sync().unwrap();
    let err = s.check().unwrap_err();
    assert_io_error_names(&err, &dir, "sent again after a restart");
    assert!(err.to_string().contains("free space there"), "{err}");
    let Error::Io { source, .. } = &err else {
        unreachable!()
    };
    assert!(files::is_full(source), "{source:?}");
    // Still the same answer later, without a new failure in between.
    s.sync().unwrap();
    assert!(s.check().is_err());
    // Space comes back: the acks are written and the caller hears so.
    fs::remove_file(filler).unwrap();
    s.sync().unwrap();
    s.check().unwrap();
    drop(s);
    let (_, rec) = Store::open_with(&dir, Fsync::Always, page as u64).unwrap();
    assert_eq!(ids(&rec), vec![1, 3]);
}
