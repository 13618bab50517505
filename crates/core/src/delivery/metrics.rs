//! Delivery metrics in CloudWatch's Embedded Metric Format (EMF): one JSON log line per send,
//! which CloudWatch turns into metrics without any API call from the function.

use std::fmt;

use serde_json::{Value, json};

use super::report::DeliveryReport;

/// The namespace metrics go to unless `LWS_METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "lambda-ws";

/// Receives the report of every send the sender handler makes.
pub trait MetricsSink: Send + Sync + fmt::Debug {
    /// Records one send to a target of kind `target` (`channel`, `user`, …).
    fn record(&self, target: &str, report: &DeliveryReport);
}

/// The EMF document of one send: dimensions `Function` and `Target`, metrics `Recipients`,
/// `Delivered`, `Gone`, `Failed`, `Retries` (counts) and `Duration` (milliseconds).
pub fn emf_document(namespace: &str, function: &str, target: &str, report: &DeliveryReport, now_ms: i64) -> Value {
    let count = |name: &str| json!({ "Name": name, "Unit": "Count" });
    json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Function", "Target"]],
                "Metrics": [
                    count("Recipients"), count("Delivered"), count("Gone"), count("Failed"), count("Retries"),
                    { "Name": "Duration", "Unit": "Milliseconds" },
                ],
            }],
        },
        "Function": function,
        "Target": target,
        "Recipients": report.recipients,
        "Delivered": report.delivered,
        "Gone": report.gone.len(),
        "Failed": report.failed.len(),
        "Retries": report.retries,
        "Duration": report.duration_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::FailedDelivery;
    use crate::session::ConnectionId;

    #[test]
    fn every_declared_metric_has_a_value() {
        let id = ConnectionId::new("abc=").expect("id");
        let report = DeliveryReport {
            recipients: 5,
            delivered: 3,
            gone: vec![id.clone()],
            failed: vec![FailedDelivery { connection_id: id, reason: "500".into() }],
            retries: 2,
            duration_ms: 40,
            ..DeliveryReport::default()
        };
        let doc = emf_document("ns", "sender", "channel", &report, 1_700_000_000_000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ns");
        for dims in directive["Dimensions"].as_array().expect("dimension sets") {
            for d in dims.as_array().expect("dimensions") {
                assert!(doc[d.as_str().expect("name")].is_string(), "dimension {d} has a value");
            }
        }
        let values: Vec<(String, u64)> = directive["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().expect("name").to_owned();
                let value = doc[&name].as_u64().unwrap_or_else(|| panic!("{name} has a number"));
                (name, value)
            })
            .collect();
        assert_eq!(
            values,
            [("Recipients", 5), ("Delivered", 3), ("Gone", 1), ("Failed", 1), ("Retries", 2), ("Duration", 40)]
                .map(|(n, v)| (n.to_owned(), v))
        );
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
    }
}
