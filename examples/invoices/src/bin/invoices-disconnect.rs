//! `$disconnect`.

use lambda_ws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = lambda::app().await?;
    lambda::disconnect(invoices::setup(app)).await
}
