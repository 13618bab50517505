//! Every message route (`$default`, `subscribe`, `unsubscribe`, `ping`, `comment`, `whoami`).

use lambda_ws::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = lambda::app().await?;
    lambda::messages(invoices::setup(app), invoices::routes()).await
}
