//! The `$disconnect` route.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_ws::handlers;
use lambda_ws_functions::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_ws_functions::init_tracing();
    let app = lambda_ws_functions::app().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let app = app.clone();
        async move { Ok::<_, Error>(handlers::disconnect(&app, &event.payload).await) }
    }))
    .await
}
