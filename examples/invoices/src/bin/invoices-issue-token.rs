//! `POST /ws-token`: a connect token for the signed-in caller.

use lambda_ws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = lambda::app().await?;
    lambda::issuer(invoices::setup(app)).await
}
