//! `notify`: the payment system invokes it with a `PaymentEvent`
//! (`{"tenant":"acme","invoice":"inv-42","amount_cents":1200}`); it announces the payment to the
//! tenant's browsers through the sender function (`SENDER_FUNCTION`) and answers the report.

use lambda_runtime::{LambdaEvent, service_fn};
use lambda_ws::client::SenderClient;
use lambda_ws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_tracing();
    let function = std::env::var("SENDER_FUNCTION").map_err(|_| "SENDER_FUNCTION is not set")?;
    let aws = aws_config::load_from_env().await;
    let sender = SenderClient::new(aws_sdk_lambda::Client::new(&aws), function);
    lambda_runtime::run(service_fn(|event: LambdaEvent<invoices::PaymentEvent>| {
        let sender = sender.clone();
        async move { invoices::announce_payment(&sender, event.payload).await.map_err(lambda::Error::from) }
    }))
    .await
}
