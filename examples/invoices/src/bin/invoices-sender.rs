//! The sender: the `notify` function (and any other code) invokes it to reach connections.

use lambda_ws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = lambda::app().await?;
    lambda::sender(invoices::setup(app)).await
}
