//! Helpers shared by the configuration's unit tests.
//!
//! Owns: the sample secrets and files, and shorthands for parsing them.
//! Must not touch: anything outside tests.

use super::Config;

pub(crate) const DEV_SECRET: &str = "hly3dk1u5y8fq0b9";
pub(crate) const PROD_SECRET: &str = "pr0dS3cretZZ9q7x";

pub(crate) fn minimal() -> String {
    format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = {DEV_SECRET}\n"
    )
}

pub(crate) fn with_conn(lines: &str) -> String {
    format!("{}[connection]\n{lines}\n", minimal())
}

pub(crate) fn ok(text: &str) -> Config {
    match Config::parse(text, "uiot.ini") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

pub(crate) fn problems(text: &str) -> Vec<String> {
    match Config::parse(text, "uiot.ini") {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(e) => e.problems,
    }
}

/// Asserts there is exactly one problem and returns it.
pub(crate) fn one_problem(text: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap()
}

pub(crate) fn assert_no_secret(s: &str) {
    assert!(!s.contains(DEV_SECRET), "device secret leaked: {s}");
    assert!(!s.contains(PROD_SECRET), "product secret leaked: {s}");
}
