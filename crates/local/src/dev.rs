//! Your own dev binary: the local gateway with your functions, hooks and template (the
//! repository's `lambda-ws dev` is one, built the same way).
//!
//! ```no_run
//! use lambda_ws::Router;
//! use lambda_ws_local::{Dev, Functions};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let functions = Functions::new()
//!         .connect("connect")
//!         .disconnect("disconnect")
//!         .messages("messages", Router::builtin());
//!     Dev::new("billing dev", functions).run().await
//! }
//! ```
//!
//! The routes come from your `template.yaml` (`--template`, default `template.yaml` in the
//! working directory): each route runs the handler of the function binary that serves it
//! (`Metadata.BuildProperties.Binary`), in-process when [`Functions`] lists that binary,
//! through `--invoke-endpoint` otherwise. `<binary> schema` writes your contract.

// The banner is this command's user interface: `Dev::run` is what a dev binary's `main` calls.
#![allow(clippy::print_stdout)]

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use lambda_ws::App;
use lambda_ws::schema::Contract;

use crate::routes::{Functions, Handler, RouteTable, SelectionExpression};
use crate::server::{AppSetup, Endpoints, Gateway, GatewayOptions, StoreChoice};
use crate::template::{Template, environment};

mod configured;
use configured::Configured;

/// The history rules `lambda-ws dev` uses when `LWS_HISTORY` is not set.
pub const DEV_HISTORY: &str = "lobby=100/10m; room-*=100/10m; task-*=100/5m";

/// The presence rules `lambda-ws dev` uses when `LWS_PRESENCE` is not set.
pub const DEV_PRESENCE: &str = "lobby; room-*";

/// Why a dev gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevError {
    /// The command line does not parse.
    #[error("{0}")]
    Arguments(String),
    /// `--host` beyond loopback without `--expose`.
    #[error(
        "--host {0} would let anyone on your network mint tokens for any user, post to every connection and read \
         the sessions; pass --expose as well if that is what you want"
    )]
    NotExposed(IpAddr),
    /// No template where `--template` points, and no routes to serve without one.
    #[error("{0} not found; give your SAM template with --template")]
    NoTemplate(String),
    /// `--parameter-overrides` without a template.
    #[error("--parameter-overrides needs a template; {0} not found")]
    OverridesWithoutTemplate(String),
    /// `--parameter-overrides` does not parse.
    #[error("--parameter-overrides: {0}")]
    Overrides(String),
    /// The template cannot be read or used.
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    /// A configuration variable (from the shell or the template) is invalid.
    #[error("{origin}: {source}")]
    Config {
        /// Where it came from: the shell, or the template and function.
        origin: String,
        /// What is wrong with it.
        source: lambda_ws::ConfigError,
    },
    /// The gateway did not start.
    #[error(transparent)]
    Start(#[from] crate::server::StartError),
}

/// The options of `lambda-ws dev` (and of your own dev binary).
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct DevArgs {
    /// Address to listen on. Anything but loopback needs --expose.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Apply the per-IP $connect limit (LWS_RATE_CONNECT_PER_IP) to loopback clients too. Off by
    /// default: every tab, test and script on this machine is 127.0.0.1 and would share it.
    #[arg(long)]
    pub enforce_ip_limits: bool,
    /// Allow --host beyond loopback: the token issuer (any user, no password), the Management and
    /// Invoke APIs and the admin endpoints become reachable from your network.
    #[arg(long)]
    pub expose: bool,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3001)]
    pub port: u16,
    /// Stage name: the first path segment of the WebSocket and Management API URLs.
    #[arg(long, default_value = "local")]
    pub stage: String,
    /// User id the token issuer gives when a request does not send `x-lambda-ws-user`.
    #[arg(long, default_value = "dev-user")]
    pub user: String,
    /// Close connections idle this long (API Gateway: 10m). E.g. 30s, 10m.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Close connections after this long (API Gateway: 2h).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub max_lifetime: Duration,
    /// Keep sessions in DynamoDB at this endpoint instead of in memory (e.g. http://127.0.0.1:8000).
    #[arg(long)]
    pub dynamodb_endpoint: Option<String>,
    /// Table for --dynamodb-endpoint (created if missing).
    #[arg(long, default_value = "lambda-ws-local")]
    pub table: String,
    /// SAM template to read the WebSocket routes from (used when the file exists; otherwise the
    /// built-in routes).
    #[arg(long, default_value = "template.yaml")]
    pub template: std::path::PathBuf,
    /// Invoke the route functions through this Lambda Invoke API (e.g. http://127.0.0.1:9000, where
    /// `cargo lambda watch` serves) instead of running the handlers in-process.
    #[arg(long)]
    pub invoke_endpoint: Option<String>,
    /// Serve your own pages from this folder at /pages/FILE, on the gateway's origin (so their
    /// `fetch("/ws-token")` is same-origin).
    #[arg(long)]
    pub pages: Option<std::path::PathBuf>,
    /// Template parameters, as `sam deploy` takes them: `Key=Value` pairs (space-separated, a
    /// value may be quoted) or `ParameterKey=Key,ParameterValue=Value`. Each function runs with
    /// the environment the template gives it, parameters at their defaults otherwise.
    #[arg(long, num_args = 1..)]
    pub parameter_overrides: Vec<String>,
}

/// `500ms`, `30s`, `10m`, `2h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 10m or 2h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    }
}

/// The options of the `schema` command.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct SchemaArgs {
    /// Write TypeScript declarations instead of the AsyncAPI document.
    #[arg(long)]
    pub typescript: bool,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<std::path::PathBuf>,
}

/// What a dev binary's command line takes: the gateway's options, or `schema`.
#[derive(Debug, Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct DevCli {
    #[command(subcommand)]
    command: Option<DevCommand>,
    #[command(flatten)]
    dev: DevArgs,
}

#[derive(Debug, clap::Subcommand)]
enum DevCommand {
    /// Write your contract: the AsyncAPI 3.0 document (default) or, with --typescript, the
    /// TypeScript declarations.
    Schema(SchemaArgs),
}

/// What [`Dev::serve`] starts and shows.
struct Prepared {
    addr: SocketAddr,
    options: GatewayOptions,
    routes_text: String,
    store_text: String,
    config_limits: (u32, u32, usize, u32),
    /// What configuration each function runs with, for the banner.
    config_text: Vec<String>,
    args: DevArgs,
}

impl DevArgs {
    /// The options as a command line gives them (`["--port", "0", "--template", "app.yaml"]`),
    /// defaults for the rest.
    pub fn parse_from<I, T>(args: I) -> Result<Self, DevError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("dev")).chain(args.into_iter().map(Into::into));
        DevCli::try_parse_from(argv).map(|cli| cli.dev).map_err(|e| DevError::Arguments(e.to_string()))
    }
}

type ContractFn = Arc<dyn for<'r> Fn(Contract<'r>) -> Contract<'r> + Send + Sync>;

/// A local gateway with your functions: see the [module](self) docs.
#[derive(Clone)]
pub struct Dev {
    name: String,
    functions: Functions,
    setup: AppSetup,
    contract: ContractFn,
    extra_routes: Vec<(String, Handler)>,
    /// `(route key, binary)` pairs served when there is no template.
    without_template: Option<Vec<(String, String)>>,
    endpoints: Option<Endpoints>,
    /// Lines the banner adds for the endpoints: (label, path).
    endpoint_banner: Vec<(String, String)>,
}

impl fmt::Debug for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dev").field("name", &self.name).field("functions", &self.functions).finish_non_exhaustive()
    }
}

impl Dev {
    /// A gateway named `name` (in its banner) running `functions` in-process.
    pub fn new(name: impl Into<String>, functions: Functions) -> Self {
        Self {
            name: name.into(),
            functions,
            setup: AppSetup::default(),
            contract: Arc::new(|contract| contract),
            extra_routes: Vec::new(),
            without_template: None,
            endpoints: None,
            endpoint_banner: Vec::new(),
        }
    }

    /// Adds a route the template does not declare (a development route such as
    /// [`pages::echo`](crate::server::pages::echo)), or replaces one it does.
    pub fn route(mut self, route_key: impl Into<String>, handler: Handler) -> Self {
        self.extra_routes.push((route_key.into(), handler));
        self
    }

    /// The `(route key, function binary)` pairs to serve when there is no template (`--template`
    /// naming no file); without them a missing template stops the gateway.
    pub fn routes_without_template<'a>(mut self, routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.without_template = Some(routes.into_iter().map(|(k, b)| (k.to_owned(), b.to_owned())).collect());
        self
    }

    /// Serves your own HTTP endpoints beside the gateway's (see [`GatewayOptions::endpoints`]);
    /// `banner` lists those the start-up banner shows, as `(label, path)`.
    pub fn endpoints(mut self, endpoints: Endpoints, banner: impl IntoIterator<Item = (String, String)>) -> Self {
        self.endpoints = Some(endpoints);
        self.endpoint_banner = banner.into_iter().collect();
        self
    }

    /// Adds your hooks and checks to the app the handlers run with, as your functions' `main`s
    /// do (`|app| app.with_connect_hook(Arc::new(MyHook))`).
    pub fn app(mut self, setup: impl Fn(App) -> App + Send + Sync + 'static) -> Self {
        self.setup = AppSetup::new(setup);
        self
    }

    /// Shapes the contract `<binary> schema` writes: its title, version and your own outbound
    /// message types (`|c| c.info("billing", "1.0.0").outbound::<InvoicePaid>()`).
    pub fn contract(mut self, shape: impl for<'r> Fn(Contract<'r>) -> Contract<'r> + Send + Sync + 'static) -> Self {
        self.contract = Arc::new(shape);
        self
    }

    /// The AsyncAPI document of every route of the functions, shaped by [`Dev::contract`].
    pub fn asyncapi(&self) -> serde_json::Value {
        let routes = self.functions.routes();
        (self.contract)(Contract::new(&routes)).asyncapi()
    }

    /// [`Dev::asyncapi`] as the file `<binary> schema` writes: pretty-printed, with a final newline.
    pub fn asyncapi_file(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.asyncapi()).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The TypeScript declarations of the same contract.
    pub fn typescript(&self) -> String {
        lambda_ws::schema::typescript(&self.asyncapi())
    }

    /// Parses the command line (`[options]` or `schema [--typescript] [-o FILE]`) and runs.
    pub async fn run(self) -> ExitCode {
        init_logs();
        let cli = DevCli::parse();
        match cli.command {
            Some(DevCommand::Schema(args)) => self.write_schema(&args),
            None => self.serve(cli.dev).await,
        }
    }

    /// Writes the contract as `args` ask.
    pub fn write_schema(&self, args: &SchemaArgs) -> ExitCode {
        let text = if args.typescript { self.typescript() } else { self.asyncapi_file() };
        match &args.out {
            None => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Some(path) => match std::fs::write(path, text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            },
        }
    }

    /// The gateway's options for `args`, with the texts of its banner.
    fn options(&self, args: DevArgs) -> Result<Prepared, DevError> {
        if !args.host.is_loopback() {
            if !args.expose {
                return Err(DevError::NotExposed(args.host));
            }
            eprintln!(
                "warning: listening on {} (--expose): the token issuer (any user, no password), the Management API, \
                 the Lambda Invoke API and /_admin/* are reachable from your network",
                args.host
            );
        }
        let shell = |name: &str| std::env::var(name).ok();
        // Read once: the routes and the functions' environment come from the same text.
        let text = args
            .template
            .exists()
            .then(|| std::fs::read_to_string(&args.template))
            .transpose()
            .map_err(|e| crate::template::TemplateError::Read(args.template.display().to_string(), e))?;
        let template = text.as_deref().map(Template::parse).transpose()?;
        let configured = match (&template, &text) {
            (Some(template), Some(text)) => {
                let overrides = environment::parse_overrides(&args.parameter_overrides).map_err(DevError::Overrides)?;
                let env = environment::resolve(text, &overrides)?;
                let connect = template.routes.iter().find(|r| r.route_key == "$connect").map(|r| r.binary.as_str());
                configured::from_template(&env, &args.template.display().to_string(), connect, &shell)?
            }
            _ if !args.parameter_overrides.is_empty() => {
                return Err(DevError::OverridesWithoutTemplate(args.template.display().to_string()));
            }
            _ => configured::without_template(&shell)?,
        };
        let Configured { base: mut config, functions: mut function_configs, roles, lines: config_text } = configured;
        config.ip_limits_on_loopback = args.enforce_ip_limits;
        for c in function_configs.values_mut() {
            c.ip_limits_on_loopback = args.enforce_ip_limits;
        }
        let store = match args.dynamodb_endpoint.clone() {
            Some(endpoint) => StoreChoice::DynamoDb { endpoint, table: args.table.clone() },
            None => StoreChoice::Memory,
        };
        let store_text = match &store {
            StoreChoice::Memory => "in memory".to_owned(),
            StoreChoice::DynamoDb { endpoint, table } => format!("DynamoDB table {table} at {endpoint}"),
        };
        let in_process = args.invoke_endpoint.is_none();
        let (mut routes, routes_text) = if let Some(template) = &template {
            for route in template.invoked_routes(&self.functions).iter().filter(|_| in_process) {
                eprintln!(
                    "warning: route {} runs {}, which is not built in; start with --invoke-endpoint to reach it",
                    route.route_key, route.binary
                );
            }
            (template.route_table(&self.functions, in_process), format!("routes from {}", args.template.display()))
        } else if let Some(routes) = &self.without_template {
            let selection = SelectionExpression::body_field("action");
            let routes = routes.iter().map(|(k, b)| (k.as_str(), b.as_str()));
            (RouteTable::from_functions(selection, routes, &self.functions, in_process), "built-in routes".to_owned())
        } else {
            return Err(DevError::NoTemplate(args.template.display().to_string()));
        };
        for (route_key, handler) in &self.extra_routes {
            routes.insert(route_key.clone(), handler.clone());
        }
        let limits = config.rate_limits;
        let config_limits = (
            limits.connect_per_ip,
            limits.connect_per_user,
            config.max_connections_per_user,
            limits.messages_per_connection,
        );
        let options = GatewayOptions {
            routes,
            invoke_endpoint: args.invoke_endpoint.clone(),
            stage: args.stage.clone(),
            idle_timeout: args.idle_timeout,
            max_lifetime: args.max_lifetime,
            dev_user: args.user.clone(),
            config,
            store,
            pages: args.pages.clone(),
            endpoints: self.endpoints.clone(),
            setup: self.setup.clone(),
            function_configs,
            roles,
            gateway_secret: std::env::var("LWS_GATEWAY_SECRET")
                .ok()
                .and_then(|list| list.split(',').map(str::trim).find(|s| !s.is_empty()).map(str::to_owned)),
            ..GatewayOptions::default()
        };
        let addr = SocketAddr::new(args.host, args.port);
        Ok(Prepared { addr, options, routes_text, store_text, config_limits, config_text, args })
    }

    /// Starts the gateway as `args` say and returns it running (what [`Dev::serve`] does before
    /// its banner; for tests of your routes on a real gateway).
    pub async fn start(&self, args: DevArgs) -> Result<Gateway, DevError> {
        let prepared = self.options(args)?;
        Ok(Gateway::start(prepared.addr, prepared.options).await?)
    }

    /// Runs the gateway with `args` until Ctrl-C.
    pub async fn serve(self, args: DevArgs) -> ExitCode {
        let Prepared { addr, options, routes_text, store_text, config_limits, config_text, args } =
            match self.options(args) {
                Ok(prepared) => prepared,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
        let gateway = match Gateway::start(addr, options).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let http = gateway.http_url();
        println!();
        match &args.invoke_endpoint {
            Some(endpoint) => println!("  {} is running ({routes_text}, invoking functions at {endpoint})", self.name),
            None => println!("  {} is running ({routes_text}, handlers in-process, sessions {store_text})", self.name),
        }
        println!();
        for (label, path) in &self.endpoint_banner {
            println!("  {label:<18} {http}{path}");
        }
        println!("  WebSocket          {}?ws_token=<token>&channel=<name>", gateway.websocket_url());
        println!(
            "  Token issuer       POST {http}/ws-token   (header x-lambda-ws: 1; x-lambda-ws-user picks the user)"
        );
        println!(
            "  Management API     {}   (endpoint_url for apigatewaymanagementapi SDKs)",
            gateway.management_endpoint()
        );
        println!("  Lambda Invoke API  {http}   (endpoint_url for lambda SDKs; functions: sender, cleanup)");
        println!();
        let per_ip = match (config_limits.0, args.enforce_ip_limits) {
            (0, _) => "off".to_owned(),
            (n, true) => format!("{n}/min, loopback included (--enforce-ip-limits)"),
            (n, false) => format!("{n}/min, not for loopback clients (--enforce-ip-limits to apply it)"),
        };
        println!(
            "  Limits             $connect per IP {per_ip}; per user {}/min; {} connections per user; messages {}/min",
            config_limits.1, config_limits.2, config_limits.3
        );
        for (i, line) in config_text.iter().enumerate() {
            println!("  {:<18} {line}", if i == 0 { "Configuration" } else { "" });
        }
        println!();
        println!("  Ctrl-C stops it.");
        println!();
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("error: cannot wait for Ctrl-C: {e}");
        }
        println!("shutting down: closing {} connection(s)", gateway.connection_count());
        gateway.shutdown().await;
        ExitCode::SUCCESS
    }
}

/// Human-readable logs on standard error, level from `RUST_LOG` (default `info`); does nothing if
/// a subscriber is already set.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lambda_ws=info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
