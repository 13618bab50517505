//! The contract files `lambda-ws schema` writes, as text, and where the repository keeps them.

/// The AsyncAPI document, relative to the workspace root.
pub const ASYNCAPI_PATH: &str = "docs/asyncapi.json";

/// The TypeScript declarations the browser client ships, relative to the workspace root.
pub const TYPESCRIPT_PATH: &str = "clients/js/protocol.d.ts";

/// The AsyncAPI 3.0 document of this repository's routes, pretty-printed JSON.
pub fn asyncapi() -> String {
    crate::repository::dev().asyncapi_file()
}

/// The TypeScript declarations of every message and sender type of this repository's routes.
pub fn typescript() -> String {
    crate::repository::dev().typescript()
}
