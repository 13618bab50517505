//! The sender: other Lambdas invoke it with `{"target":…,"message":…,"exclude":…}` and get the
//! delivery report back.

use lambda_runtime::{LambdaEvent, service_fn};
use lambda_ws::handlers;
use lambda_ws_functions::Error;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_ws_functions::init_tracing();
    let app = lambda_ws_functions::app().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { Ok::<_, Error>(handlers::send(&app, event.payload).await) }
    }))
    .await
}
