//! The `uiot` command: STUB, being written.

fn main() {
    std::process::exit(64);
}
