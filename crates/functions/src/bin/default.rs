//! The `$default` route, also mapped to `subscribe`, `unsubscribe` and `ping`: the built-in
//! actions, the chat example for messages that name it by `handler` instead of `action`, and a
//! typed `unknown_action` error for anything else.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use lambda_ws::{Router, handlers};
use lambda_ws_functions::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_ws_functions::init_tracing();
    let app = lambda_ws_functions::app().await?;
    let router = Router::builtin().with_chat();
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let (app, router) = (app.clone(), router.clone());
        async move { Ok::<_, Error>(handlers::message(&app, &router, &event.payload).await) }
    }))
    .await
}
