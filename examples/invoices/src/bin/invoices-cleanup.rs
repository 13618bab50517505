//! The scheduled clean-up of expired sessions.

use lambda_ws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = lambda::app().await?;
    lambda::cleanup(invoices::setup(app)).await
}
