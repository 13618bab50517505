//! The sender: other Lambdas invoke it with `{"target":…,"message":…,"exclude":…}` (or a batch
//! of those, or through an SQS queue) and get the delivery report back; each send's metrics go to
//! the log in CloudWatch's Embedded Metric Format.

use lambda_runtime::{LambdaEvent, service_fn};
use lambda_ws::handlers;
use lambda_ws_functions::{EmfStdout, Error};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_ws_functions::init_tracing();
    let app = lambda_ws_functions::app().await?.with_metrics(std::sync::Arc::new(EmfStdout::from_env()));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { Ok::<_, Error>(handlers::send(&app, event.payload).await) }
    }))
    .await
}
