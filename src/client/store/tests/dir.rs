//! The queue directory: its mode, and files in it that are not ours or not
//! usable (issue 9, defects 11 and 13): none of them blocks the queue.

use super::*;
use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn new_directories_are_private() {
    let d = tmp();
    let dir = d.path().join("a/queue");
    drop(open(&dir));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&d.path().join("a")), 0o700);
}

#[test]
fn an_existing_queue_dir_open_to_others_is_tightened() {
    let d = tmp();
    let dir = d.path().join("queue");
    drop(open(&dir));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    drop(open(&dir));
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn a_shared_directory_is_not_changed() {
    // Someone else's files live there too ([queue] dir = /var/lib, say):
    // chmod would break them, so uiot only warns.
    let d = tmp();
    fs::write(d.path().join("other.conf"), b"x").unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    drop(open(d.path()));
    assert_eq!(mode(d.path()), 0o755);
}

#[test]
fn foreign_and_odd_files_do_not_block_the_queue() {
    let d = tmp();
    let dir = d.path();
    let (mut s, _) = open(dir);
    s.append("t", b"one").unwrap();
    drop(s);
    fs::write(dir.join("README"), b"not ours").unwrap();
    fs::write(dir.join("000000000000000A.log"), b"uppercase: not ours").unwrap();
    fs::create_dir(dir.join("0000000000000005.log")).unwrap();
    fs::create_dir(dir.join("0000000000000006.log.tmp")).unwrap();
    let fifo = dir.join("0000000000000003.log");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (mut s, rec) = open(dir);
    assert_eq!(ids(&rec), vec![1]);
    assert_eq!(s.append("t", b"two").unwrap(), 2);
    // Enough to rotate: new segments are numbered above every name of ours.
    let (mut s, _) = {
        drop(s);
        Store::open_with(dir, Fsync::Always, 64).unwrap()
    };
    assert_eq!(s.append("t", b"three").unwrap(), 3);
    assert!(dir.join("0000000000000007.log").exists());
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!(ids(&rec), vec![1, 2, 3]);
    for kept in ["README", "000000000000000A.log", "0000000000000005.log"] {
        assert!(dir.join(kept).exists(), "{kept} was touched");
    }
}

#[test]
fn an_oversized_segment_of_ours_keeps_its_records_and_is_cut() {
    let d = tmp();
    let (file, _, _) = {
        let (mut s, _) = open(d.path());
        for i in 1..=3 {
            s.append("t", &payload(i, 10)).unwrap();
        }
        drop(s);
        (segment_files(d.path()).remove(0), 0, 0)
    };
    let valid = fs::metadata(&file).unwrap().len();
    let f = OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(files::MAX_SEGMENT_FILE * 2).unwrap(); // a zero-filled tail
    drop(f);
    let (mut s, rec) = open(d.path());
    assert_eq!(ids(&rec), vec![1, 2, 3]);
    assert_eq!(fs::metadata(&file).unwrap().len(), valid);
    assert_eq!(s.append("t", b"x").unwrap(), 4);
}

#[test]
fn full_means_enospc_or_edquot_whatever_their_numbers() {
    use rustix::io::Errno;
    for full in [Errno::NOSPC, Errno::DQUOT] {
        assert!(files::is_full(&io::Error::from_raw_os_error(
            full.raw_os_error()
        )));
    }
    let rofs = io::Error::from_raw_os_error(Errno::ROFS.raw_os_error());
    assert!(!files::is_full(&rofs));
    assert!(files::advice(&rofs).contains("read-only"));
}
