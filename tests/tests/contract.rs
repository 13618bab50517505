//! The committed contract files equal what the Rust types generate today, so the AsyncAPI
//! document and the browser's TypeScript types cannot drift from the code. (The test command also
//! validates the AsyncAPI file against the official schema and compiles the declarations.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use lambda_ws_cli::contract::{ASYNCAPI_PATH, TYPESCRIPT_PATH, asyncapi, typescript};

fn committed(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn the_asyncapi_document_is_fresh() {
    assert!(
        committed(ASYNCAPI_PATH) == asyncapi(),
        "{ASYNCAPI_PATH} is stale: run `cargo run -p lambda-ws-cli -- schema -o {ASYNCAPI_PATH}`"
    );
}

#[test]
fn the_typescript_declarations_are_fresh() {
    assert!(
        committed(TYPESCRIPT_PATH) == typescript(),
        "{TYPESCRIPT_PATH} is stale: run `cargo run -p lambda-ws-cli -- schema --typescript -o {TYPESCRIPT_PATH}`"
    );
}

#[test]
fn every_builtin_message_is_described() {
    let doc: serde_json::Value = serde_json::from_str(&asyncapi()).unwrap();
    for kind in lambda_ws::protocol::BUILTIN_TYPES {
        let payload = &doc["components"]["messages"][kind]["payload"];
        assert_eq!(payload["properties"]["type"]["const"], kind, "{kind}: {payload}");
    }
}

/// The gateway serves the browser client from its own crate (a packaged crate holds only its own
/// files): that copy must be the client `clients/js` publishes, byte for byte.
#[test]
fn the_gateway_serves_the_published_browser_client() {
    let published = committed("clients/js/websocket-manager.js");
    let served = committed("crates/local/assets/websocket-manager.js");
    assert!(
        published == served,
        "crates/local/assets/websocket-manager.js differs from clients/js/websocket-manager.js: copy the client there"
    );
}
