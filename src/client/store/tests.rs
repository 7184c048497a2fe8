//! Tests of the on-disk queue through its crate API, against real files.
//! A full disk: `tests/full_disk.rs`; the directory and foreign files:
//! `tests/dir.rs`.

#![allow(clippy::cast_possible_truncation)] // test data and offsets within small test files

mod dir;
mod full_disk;

use super::*;
use std::fs::{self, File};

pub(super) const SMALL: u64 = 4 * 1024;

pub(super) fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub(super) fn interval() -> Fsync {
    Fsync::Interval(Duration::from_secs(3600))
}

pub(super) fn open(dir: &Path) -> (Store, Vec<Stored>) {
    Store::open(dir, Fsync::Always).unwrap()
}

pub(super) fn open_small(dir: &Path) -> (Store, Vec<Stored>) {
    Store::open_with(dir, Fsync::Always, SMALL).unwrap()
}

pub(super) fn ids(v: &[Stored]) -> Vec<u64> {
    v.iter().map(|s| s.id).collect()
}

pub(super) fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

/// Total bytes of the segment files in `dir`.
pub(super) fn disk_usage(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

pub(super) fn assert_io_error_names(err: &Error, dir: &Path, advice: &str) {
    let Error::Io { context, .. } = err else {
        panic!("expected Error::Io, got {err:?}")
    };
    assert!(
        context.contains(&dir.display().to_string()),
        "context must name the directory: {context}"
    );
    assert!(
        context.contains(advice),
        "context must say {advice:?}: {context}"
    );
}

#[test]
fn store_is_send() {
    fn send<T: Send>() {}
    send::<Store>();
}

#[test]
fn append_ack_and_recover_in_order() {
    let d = tmp();
    let (mut s, rec) = open(d.path());
    assert!(rec.is_empty());
    for i in 1..=5u64 {
        let id = s
            .append(&format!("/p/d/upload/{i}"), &payload(i, 10))
            .unwrap();
        assert_eq!(id, i);
    }
    s.ack(2).unwrap();
    s.ack(4).unwrap();
    s.ack(4).unwrap(); // a duplicate PUBACK is harmless
    s.ack(99).unwrap(); // so is an unknown id
    assert_eq!(s.pending(), (3, 30));
    s.sync().unwrap();
    drop(s);

    let (s, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![1, 3, 5]);
    for m in &rec {
        assert_eq!(m.topic, format!("/p/d/upload/{}", m.id));
        assert_eq!(m.payload, payload(m.id, 10));
    }
    assert_eq!(s.pending(), (3, 30));
}

#[test]
fn appends_survive_a_crash_without_sync_in_interval_mode() {
    // kill -9: no sync, no Drop. The OS has the record because append wrote it.
    let d = tmp();
    let (mut s, _) = Store::open(d.path(), interval()).unwrap();
    s.append("t", b"a").unwrap();
    s.append("t", b"b").unwrap();
    s.crash();
    let (_, rec) = Store::open(d.path(), interval()).unwrap();
    assert_eq!(ids(&rec), vec![1, 2]);
}

#[test]
fn buffered_acks_reach_the_disk_with_the_next_append() {
    let d = tmp();
    let (mut s, _) = open(d.path());
    s.append("t", b"1").unwrap();
    s.append("t", b"2").unwrap();
    s.ack(1).unwrap();
    s.crash(); // ack only buffered: message 1 comes back (a duplicate, not a loss)
    let (mut s, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![1, 2]);
    s.ack(1).unwrap();
    s.append("t", b"3").unwrap();
    s.crash();
    let (_, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![2, 3]);
}

#[test]
fn ids_keep_increasing_across_reopens_even_when_everything_was_compacted() {
    let d = tmp();
    let (mut s, _) = open_small(d.path());
    let mut last = 0;
    for i in 0..40u64 {
        let id = s.append("t", &payload(i, 300)).unwrap();
        assert!(id > last);
        last = id;
        s.ack(id).unwrap();
    }
    s.compact().unwrap();
    s.sync().unwrap();
    assert_eq!(s.pending(), (0, 0));
    drop(s);
    assert_eq!(
        segment_files(d.path()).len(),
        1,
        "only the active segment is left"
    );

    let (mut s, rec) = open_small(d.path());
    assert!(rec.is_empty());
    assert_eq!(s.append("t", b"x").unwrap(), last + 1);
    drop(s);
    let (mut s, rec) = open_small(d.path());
    assert_eq!(ids(&rec), vec![last + 1]);
    assert_eq!(s.append("t", b"y").unwrap(), last + 2);
}

/// Three messages in one segment; returns the file and the offsets where the
/// second and third records start.
fn three_messages(dir: &Path) -> (PathBuf, u64, u64) {
    let (mut s, _) = open(dir);
    s.append("/a", b"first").unwrap();
    let second = s.segment_len();
    s.append("/b", b"second").unwrap();
    let third = s.segment_len();
    s.append("/c", b"third!").unwrap();
    drop(s);
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    (files[0].clone(), second, third)
}

#[test]
fn torn_tail_at_every_offset_keeps_the_complete_records() {
    let d = tmp();
    let (file, _, third) = three_messages(d.path());
    let whole = fs::read(&file).unwrap();
    for cut in third..whole.len() as u64 {
        fs::write(&file, &whole[..cut as usize]).unwrap();
        let (mut s, rec) = open(d.path());
        assert_eq!(ids(&rec), vec![1, 2], "cut at {cut}");
        assert_eq!(rec[1].payload, b"second");
        // The torn tail was cut, so appending continues cleanly.
        assert_eq!(fs::metadata(&file).unwrap().len(), third, "cut at {cut}");
        let id = s.append("/d", b"after").unwrap();
        assert_eq!(id, 3, "the torn message's id is free again (cut at {cut})");
        drop(s);
        let (_, rec) = open(d.path());
        assert_eq!(ids(&rec), vec![1, 2, 3], "cut at {cut}");
        assert_eq!(rec[2].payload, b"after");
    }
    fs::write(&file, &whole).unwrap();
    let (_, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![1, 2, 3]);
}

#[test]
fn a_flipped_byte_costs_only_its_record() {
    // Documented behaviour: the damaged record is skipped (logged) and the
    // scan resynchronises, so records before and after it are recovered.
    let d = tmp();
    let (file, second, third) = three_messages(d.path());
    let whole = fs::read(&file).unwrap();
    for pos in second..third {
        let mut bad = whole.clone();
        bad[pos as usize] ^= 0x40;
        fs::write(&file, &bad).unwrap();
        let (s, rec) = open(d.path());
        assert_eq!(ids(&rec), vec![1, 3], "flip at {pos}");
        assert_eq!(rec[1].payload, b"third!");
        drop(s);
    }
}

#[test]
fn a_damaged_segment_header_still_yields_its_records() {
    let d = tmp();
    let (file, _, _) = three_messages(d.path());
    let mut bad = fs::read(&file).unwrap();
    bad[3] ^= 0xff;
    fs::write(&file, &bad).unwrap();
    let (mut s, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![1, 2, 3]);
    // Not appended to (its header is not trusted): a new segment is used.
    assert_eq!(s.append("t", b"x").unwrap(), 4);
    assert_eq!(segment_files(d.path()).len(), 2);
    drop(s);
    let (_, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![1, 2, 3, 4]);
}

#[test]
fn an_empty_segment_from_a_crash_during_rotation_is_harmless() {
    let d = tmp();
    let (file, _, _) = three_messages(d.path());
    let next = file.with_file_name(format!("{:016x}.log", 2));
    fs::write(&next, b"").unwrap();
    let (mut s, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![1, 2, 3]);
    assert_eq!(s.append("t", b"x").unwrap(), 4);
    s.compact().unwrap();
    assert!(!next.exists(), "the empty segment is cleaned up");
}

#[test]
fn leftover_rewrites_are_removed_and_unrelated_files_ignored() {
    let d = tmp();
    fs::write(d.path().join("0000000000000001.log.tmp"), b"junk").unwrap();
    fs::write(d.path().join("README"), b"not ours").unwrap();
    let (_, rec) = open(d.path());
    assert!(rec.is_empty());
    assert!(!d.path().join("0000000000000001.log.tmp").exists());
    assert!(d.path().join("README").exists());
}

#[test]
fn a_huge_foreign_file_is_set_aside_not_a_blocker() {
    let d = tmp();
    let name = d.path().join("0000000000000001.log");
    let f = File::create(&name).unwrap();
    f.set_len(files::MAX_SEGMENT_FILE + 1).unwrap(); // sparse, costs nothing
    drop(f);
    let (mut s, rec) = open(d.path());
    assert!(rec.is_empty());
    assert!(!name.exists());
    assert!(d.path().join("0000000000000001.log.bad").exists());
    assert_eq!(s.append("t", b"x").unwrap(), 1);
    drop(s);
    let (_, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![1]);
}

#[test]
fn compaction_keeps_exactly_the_pending_set_and_frees_space() {
    let d = tmp();
    let (mut s, _) = open_small(d.path());
    let keep = [3u64, 50, 51, 97];
    for i in 1..=120u64 {
        assert_eq!(s.append("/p/d/upload", &payload(i, 200)).unwrap(), i);
        // Acks lag behind the appends (as PUBACKs do), so ack records often
        // land in a later segment than their message.
        if i > 5 && !keep.contains(&(i - 5)) {
            s.ack(i - 5).unwrap();
        }
    }
    for i in 116..=120 {
        s.ack(i).unwrap();
    }
    s.sync().unwrap();
    let before = disk_usage(d.path());
    let files_before = segment_files(d.path()).len();
    for _ in 0..10 {
        s.compact().unwrap();
    }
    s.sync().unwrap();
    let after = disk_usage(d.path());
    assert!(
        after * 4 < before,
        "compaction must free most of the space: {before} -> {after} bytes"
    );
    assert!(segment_files(d.path()).len() < files_before);
    assert_eq!(s.pending(), (4, 800));
    drop(s);

    let (mut s, rec) = open_small(d.path());
    assert_eq!(ids(&rec), keep.to_vec());
    for m in &rec {
        assert_eq!(m.payload, payload(m.id, 200));
    }
    // Acking the rest after compaction, then reopening: nothing comes back.
    for id in keep {
        s.ack(id).unwrap();
    }
    s.compact().unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open_small(d.path());
    assert!(rec.is_empty());
}

#[test]
fn an_ack_record_is_kept_while_the_message_it_acks_is_on_disk() {
    // Message 1 stays pending in segment A; message 2 (also in A) is acked
    // by a record in B, which has no pending message of its own. Deleting
    // B would bring 2 back, so B must stay until A is rewritten.
    let d = tmp();
    let (mut s, _) = open_small(d.path());
    s.append("t", &[1; 1500]).unwrap(); // 1, stays pending
    s.append("t", &[2; 1500]).unwrap(); // 2
    s.append("t", &[3; 1500]).unwrap(); // 3: A is full after this one
    s.ack(3).unwrap();
    s.append("t", &[4; 100]).unwrap(); // rotation: B starts with ack(3)
    s.ack(2).unwrap(); // buffered for B
    s.ack(4).unwrap();
    s.compact().unwrap(); // writes the acks into B
    s.append("t", &[5; 4000]).unwrap(); // B full
    s.ack(5).unwrap();
    s.append("t", &[6; 10]).unwrap(); // C
    s.ack(6).unwrap();
    for _ in 0..5 {
        s.compact().unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open_small(d.path());
    assert_eq!(ids(&rec), vec![1]);
}

#[test]
fn bytes_written_per_message_are_close_to_the_payload() {
    let d = tmp();
    let (mut s, _) = Store::open_with(d.path(), interval(), 64 * 1024).unwrap();
    let n = 500u64;
    for i in 1..=n {
        s.append("/p/d/upload", &payload(i, 1024)).unwrap();
        if i % 10 == 0 {
            for id in i - 9..=i {
                s.ack(id).unwrap();
            }
            s.compact().unwrap();
        }
    }
    s.sync().unwrap();
    assert_eq!(s.appended(), n);
    let per_message = s.bytes_written() as f64 / n as f64;
    assert!(
        (1024.0..2048.0).contains(&per_message),
        "{per_message} bytes written per 1 KiB message"
    );
    // And it is the truth about what reached the files.
    assert!(s.bytes_written() >= disk_usage(d.path()));
}

#[test]
fn bytes_written_counts_rewrites_too() {
    let d = tmp();
    let (mut s, _) = open_small(d.path());
    for i in 1..=30u64 {
        s.append("t", &payload(i, 500)).unwrap();
    }
    for i in 2..=30u64 {
        s.ack(i).unwrap();
    }
    let before = s.bytes_written();
    s.compact().unwrap(); // rewrites the first segment around message 1
    assert!(s.bytes_written() > before + 500);
}

#[test]
fn a_message_too_large_for_a_record_is_refused_and_nothing_is_written() {
    let d = tmp();
    let (mut s, _) = open(d.path());
    let before = s.bytes_written();
    let err = s.append("t", &vec![0; MAX_BODY]).unwrap_err();
    assert!(matches!(err, Error::Limit(_)), "{err:?}");
    assert_eq!(s.bytes_written(), before);
    assert_eq!(s.append("t", &vec![0; 256 * 1024]).unwrap(), 1);
}

#[test]
fn a_path_under_a_regular_file_is_a_clear_error() {
    let d = tmp();
    let file = d.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let dir = file.join("queue");
    let err = Store::open(&dir, Fsync::Always).err().unwrap();
    assert_io_error_names(&err, &dir, "set [queue] dir");
    assert!(err.to_string().contains("QoS 1 queue"), "{err}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_segment_content_opens_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let d = tmp();
            fs::write(d.path().join("0000000000000001.log"), &bytes).unwrap();
            let (mut s, _) = open(d.path());
            s.append("t", b"x").unwrap();
        }

        #[test]
        fn damaged_queues_recover_a_subset_in_order(
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..), 0..4),
            cut in any::<proptest::sample::Index>(),
        ) {
            let d = tmp();
            let (mut s, _) = open(d.path());
            for i in 1..=8u64 {
                s.append("t", &payload(i, 40)).unwrap();
            }
            s.ack(2).unwrap();
            s.sync().unwrap();
            drop(s);
            let file = segment_files(d.path()).remove(0);
            let mut bytes = fs::read(&file).unwrap();
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            fs::write(&file, &bytes).unwrap();
            let (_, rec) = open(d.path());
            let got = ids(&rec);
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "{:?}", got);
            for m in &rec {
                prop_assert!(m.id >= 1 && m.id <= 8);
                prop_assert_eq!(&m.payload, &payload(m.id, 40));
            }
        }
    }
}

#[test]
fn a_forged_huge_base_id_is_an_error_not_repeated_ids() {
    let d = tmp();
    let mut seg = format::encode_header(u64::MAX).to_vec();
    format::encode_acks(&mut seg, &[1]);
    fs::write(d.path().join("0000000000000001.log"), &seg).unwrap();
    let (mut s, rec) = open(d.path());
    assert!(rec.is_empty());
    assert!(matches!(s.append("t", b"x"), Err(Error::Limit(_))));
}

#[test]
fn a_second_process_cannot_share_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_first, _) = Store::open(dir.path(), Fsync::Always).unwrap();
    match Store::open(dir.path(), Fsync::Always) {
        Err(Error::Io { context, .. }) => {
            assert!(context.contains("another uiot process"), "{context}")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened twice"),
    }
}
