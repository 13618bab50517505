//! The baseline function of `lambda-bench`: `lambda_runtime` answering each event with itself.
//! Whatever our functions cost beyond this (size, init time) is ours.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<_, Error>(event.payload) })).await
}
