//! The `chat` and `chat_message` routes: the worked example of a custom route (see `ChatRoute` in
//! the core crate); `chat_message` is the name the reference package's clients send.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_ws::Router;
use lambda_ws::handlers;
use lambda_ws_functions::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_ws_functions::init_tracing();
    let app = lambda_ws_functions::app().await?;
    let router = Router::new().with_chat();
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let (app, router) = (app.clone(), router.clone());
        async move { Ok::<_, Error>(handlers::message(&app, &router, &event.payload).await) }
    }))
    .await
}
