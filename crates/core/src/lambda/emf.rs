//! Send metrics as CloudWatch Embedded Metric Format lines on stdout.

use crate::DeliveryReport;
use crate::delivery::MetricsSink;
use crate::delivery::metrics::{DEFAULT_NAMESPACE, emf_document};

/// Writes each send's metrics to stdout as one CloudWatch Embedded Metric Format line
/// (namespace `LWS_METRICS_NAMESPACE`, default `lambda-ws`; dimension `Function` from
/// `AWS_LAMBDA_FUNCTION_NAME`).
#[derive(Debug, Clone)]
pub struct EmfStdout {
    namespace: String,
    function: String,
}

impl EmfStdout {
    /// Reads the namespace and function name from the environment.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Self {
            namespace: var("LWS_METRICS_NAMESPACE", DEFAULT_NAMESPACE),
            function: var("AWS_LAMBDA_FUNCTION_NAME", "sender"),
        }
    }
}

impl MetricsSink for EmfStdout {
    fn record(&self, target: &str, report: &DeliveryReport) {
        use std::io::Write as _;
        let now = crate::clock::unix_now_millis();
        let doc = emf_document(&self.namespace, &self.function, target, report, now);
        // One write per line, so the line is not interleaved with log lines.
        let line = format!("{doc}\n");
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}
