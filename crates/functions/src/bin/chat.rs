//! The `chat` and `chat_message` routes: the worked example of an application route
//! (`lambda_ws_functions::chat`); `chat_message` is the name the reference package's clients send.

use lambda_ws::lambda;

// mimalloc instead of glibc's malloc: with glibc's, a 10,000-recipient fan-out used 1.9 s of CPU
// (a sixth of it in malloc/free); with mimalloc 1.0 s (README, "Fan-out performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    let app = lambda::app().await?;
    lambda::messages(app, lambda_ws_functions::chat_router()).await
}
