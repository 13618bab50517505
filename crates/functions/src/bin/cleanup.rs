//! The scheduled clean-up: removes expired sessions and memberships. A store failure fails the
//! invocation, so the schedule's retries and alarms see it.

use lambda_runtime::{LambdaEvent, service_fn};
use lambda_ws::handlers::{self, CleanupReport};
use lambda_ws_functions::Error;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_ws_functions::init_tracing();
    let app = lambda_ws_functions::app().await?;
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { handlers::cleanup(&app).await.map_err(Error::from) as Result<CleanupReport, Error> }
    }))
    .await
}
