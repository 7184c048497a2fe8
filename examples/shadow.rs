//! The device shadow, step by step in the order of the C SDK's
//! `samples/shadow/shadow_sample.c`: get the document; report six values;
//! get; change two; delete two; get; delete every reported value; get;
//! report four values while resetting the version; get. Each step prints
//! the version it produced (and the document after each get).
//!
//! ```text
//! cargo run --example shadow -- [CONFIG]
//! ```
//! - `CONFIG`: default `etc/broker/uiot-demo.ini`, the demo device of
//!   `scripts/dev-broker.sh`; run `uiot-sim` beside the broker (README,
//!   "The local cloud"): it keeps the shadow and answers.
//!
//! Unlike the SDK (which sends each request and then polls until *some*
//! answer comes), each call here returns only on the answer to that very
//! request, or fails after the timeout (10 s). A version conflict (another
//! writer changed the shadow) is resolved once by adopting the cloud's
//! version. Exit 0 once every step succeeded, non-zero with the error.

use std::error::Error;
use std::path::PathBuf;

use serde_json::json;
use uiot::config::Config;
use uiot::platform::shadow::{Document, Shadow};
use uiot::{Client, Options};

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let path = match std::env::args().nth(1) {
        Some(flag) if flag.starts_with('-') => {
            return Err(format!("unknown option {flag}; usage: shadow [CONFIG]").into())
        }
        Some(p) => PathBuf::from(p),
        None => PathBuf::from("etc/broker/uiot-demo.ini"),
    };
    let config = Config::load(&path)?;
    let client = Client::connect(Options::from_config(&config)?)?;
    println!("connected as {}", client.options().client_id);
    // Subscribes to shadow/get_reply and shadow/downstream.
    let shadow = Shadow::new(&client)?;

    print_document("get", &shadow.get()?);

    // The SDK's six properties: int32, float, double, string, bool, object.
    let all = json!({
        "data1": 18, "data2": 20.2, "data3": 22.9,
        "data4": "data", "data5": true, "data6": {"a": 1},
    });
    println!("update data1..data6: version {}", shadow.report(&all)?);
    print_document("get", &shadow.get()?);

    println!(
        "update data1 data4: version {}",
        shadow.report(&json!({"data1": 123, "data4": "num9"}))?
    );
    println!(
        "delete data1 data2: version {}",
        shadow.delete(&["data1", "data2"])?
    );
    print_document("get", &shadow.get()?);

    println!("delete all: version {}", shadow.delete_all()?);
    print_document("get", &shadow.get()?);

    let four = json!({"data1": 18, "data4": "data", "data5": false, "data6": {"b": 2}});
    println!(
        "update and reset version: version {}",
        shadow.reset(Some(&four))?
    );
    print_document("get", &shadow.get()?);

    client.disconnect()?;
    println!("done");
    Ok(())
}

fn print_document(step: &str, doc: &Document) {
    println!(
        "{step}: version {}, reported {}, desired {}",
        doc.version,
        serde_json::Value::Object(doc.reported.clone()),
        serde_json::Value::Object(doc.desired.clone())
    );
}
