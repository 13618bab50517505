//! The app's routes, hook and check through the real handlers, on the in-memory store
//! (`lambda_ws::testing::TestHarness`): no AWS, no network.

// A failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use invoices::{routes, setup};
use lambda_ws::testing::TestHarness;
use lambda_ws::{Config, Identity};
use serde_json::json;

fn harness() -> TestHarness {
    let h = TestHarness::new(Config::default()).with_router(routes());
    let app = setup(h.app().clone());
    h.with_app(app)
}

fn member(user: &str, tenant: &str) -> Option<Identity> {
    Some(Identity::user(user).with_groups([format!("tenant-{tenant}"), "staff".to_owned()]))
}

#[tokio::test]
async fn a_comment_reaches_the_tenant_and_nobody_else() {
    let h = harness();
    let ann = h.connect_with(member("ann", "acme"), Some("invoices-acme")).await.unwrap();
    let bob = h.connect_with(member("bob", "acme"), Some("invoices-acme")).await.unwrap();
    let eve = h.connect_with(member("eve", "globex"), Some("invoices-globex")).await.unwrap();
    let answers = h
        .send(&ann, json!({"action": "comment", "invoice": "inv-42", "text": " Sent the reminder ", "ref": "c1"}))
        .await;
    let comment = json!({"type": "invoice_comment", "invoice": "inv-42", "author": "ann", "text": "Sent the reminder"});
    assert_eq!(
        answers,
        vec![comment.clone(), json!({"type": "reply", "action": "comment", "ref": "c1", "data": {"delivered": 2}})]
    );
    assert_eq!(h.take_received(&bob), vec![comment]);
    assert!(h.take_received(&eve).is_empty(), "another tenant hears nothing");
}

#[tokio::test]
async fn the_connect_hook_attaches_the_tenant_and_refuses_callers_without_one() {
    let h = harness();
    let ann = h.connect_with(member("ann", "acme"), Some("invoices-acme")).await.unwrap();
    let answers = h.send(&ann, json!({"action": "whoami", "ref": "w"})).await;
    assert_eq!(answers[0]["data"], json!({"user": "ann", "tenant": "acme", "client": "web"}));
    // The sender's filter matches what the hook attached.
    let report = h
        .deliver(json!({"target": {"filter": {"metadata": {"tenant": "acme"}}}, "message": {"type": "toast", "level": "info", "message": "Month closed"}}))
        .await;
    assert_eq!(report["delivered"], 1, "{report}");
    let refused = h.connect_with(Some(Identity::user("zed")), None).await.err().unwrap();
    assert_eq!((refused.status, refused.body.as_str()), (403, r#"{"message":"no tenant"}"#));
}

#[tokio::test]
async fn a_tenants_channel_is_closed_to_other_tenants() {
    let h = harness();
    let refused = h.connect_with(member("eve", "globex"), Some("invoices-acme")).await.err().unwrap();
    assert_eq!(refused.status, 403);
    let eve = h.connect_with(member("eve", "globex"), None).await.unwrap();
    let answers = h.send(&eve, json!({"action": "subscribe", "channel": "invoices-acme", "ref": "s"})).await;
    assert_eq!((answers[0]["code"].as_str(), answers[0]["ref"].as_str()), (Some("forbidden"), Some("s")));
}

#[tokio::test]
async fn a_bad_request_names_its_field() {
    let h = harness();
    let ann = h.connect_with(member("ann", "acme"), Some("invoices-acme")).await.unwrap();
    for (body, field) in [
        (json!({"action": "comment", "invoice": "42", "text": "x", "ref": "r"}), "invoice"),
        (json!({"action": "comment", "invoice": "inv-42", "text": 5, "ref": "r"}), "text"),
        (json!({"action": "comment", "invoice": "inv-42", "text": "   ", "ref": "r"}), "text"),
    ] {
        let answers = h.send(&ann, body).await;
        assert_eq!(answers[0]["code"], "bad_request", "{answers:?}");
        assert_eq!(answers[0]["field"], field, "{answers:?}");
        assert_eq!(answers[0]["ref"], "r");
    }
    let answers = h.send(&ann, json!({"action": "comment", "ref": "r"})).await;
    assert_eq!(answers[0]["message"], "missing field `invoice`");
}

/// With the template's presence settings (`invoices-*`, members see each other's `client`), a
/// tenant's channel lists who has it open, with the part of the hook's metadata that is public:
/// the client, not the tenant.
#[tokio::test]
async fn presence_shows_the_public_part_of_what_the_hook_attaches() {
    let config = Config {
        presence: lambda_ws::presence::PresenceRules::parse("invoices-*").unwrap(),
        presence_metadata: vec!["client".to_owned()],
        ..Config::default()
    };
    let h = TestHarness::new(config).with_router(routes());
    let app = setup(h.app().clone());
    let h = h.with_app(app);
    let ann = h.connect_with(member("ann", "acme"), Some("invoices-acme")).await.unwrap();
    let _bob = h.connect_with(member("bob", "acme"), Some("invoices-acme")).await.unwrap();
    let joined = h.take_received(&ann);
    assert_eq!(
        joined,
        vec![json!({"type": "member_joined", "channel": "invoices-acme",
            "member": {"user_id": "bob", "connections": 1, "info": {"client": "web"}}})]
    );
    let answers = h.send(&ann, json!({"action": "presence", "channel": "invoices-acme"})).await;
    assert_eq!(
        answers[0]["data"]["members"][0],
        json!({"user_id": "ann", "connections": 1, "info": {"client": "web"}})
    );
    let refused = h.connect_with(member("eve", "globex"), None).await.unwrap();
    let answers = h.send(&refused, json!({"action": "presence", "channel": "invoices-acme"})).await;
    assert_eq!(answers[0]["code"], "forbidden", "another tenant may not look: {answers:?}");
}
