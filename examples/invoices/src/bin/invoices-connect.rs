//! `$connect`: the built-in checks, then the tenant hook.

use lambda_ws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = lambda::app().await?;
    lambda::connect(invoices::setup(app)).await
}
