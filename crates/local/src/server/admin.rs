//! The operator endpoints: what `lambda-ws sessions|cleanup|tokens --gateway` calls.

use super::*;

fn flag(query: &HashMap<String, Vec<String>>, name: &str) -> bool {
    query.get(name).and_then(|v| v.last()).is_some_and(|v| matches!(v.as_str(), "" | "1" | "true" | "yes"))
}

fn admin_error(e: &lambda_ws::store::StoreError) -> Response {
    error_response(500, ErrorCode::Internal, &e.to_string())
}

/// `GET /_admin/sessions[?channel=|user=][&limit=]`: live sessions with their channels.
pub(super) async fn admin_sessions(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let query = parse_query(query.as_deref());
    let first = |name: &str| query.get(name).and_then(|v| v.last()).filter(|v| !v.is_empty()).cloned();
    let selection = match (first("channel"), first("user")) {
        (Some(_), Some(_)) => {
            return error_response(400, ErrorCode::BadRequest, "give channel or user, not both");
        }
        (Some(channel), None) => match lambda_ws::ChannelName::new(channel) {
            Ok(channel) => lambda_ws::admin::Selection::Channel(channel),
            Err(e) => {
                return error_response(400, ErrorCode::BadChannel, &e.to_string());
            }
        },
        (None, Some(user)) => lambda_ws::admin::Selection::User(user),
        (None, None) => lambda_ws::admin::Selection::All,
    };
    let limit = first("limit").and_then(|l| l.parse().ok());
    let now = shared.app.clock.now_secs();
    match lambda_ws::admin::list_sessions(&*shared.app.sessions, &selection, limit, now, &|_| {}).await {
        Ok(sessions) => json_response(200, &json!(sessions)),
        Err(e) => admin_error(&e),
    }
}

/// `POST /_admin/cleanup[?dry_run][&check_connections]`.
pub(super) async fn admin_cleanup(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let query = parse_query(query.as_deref());
    let options = lambda_ws::admin::CleanupOptions {
        dry_run: flag(&query, "dry_run"),
        check_connections: flag(&query, "check_connections"),
    };
    match lambda_ws::admin::cleanup(shared.app_of(shared.options.roles.cleanup.as_deref()), options, &|_| {}).await {
        Ok(summary) => json_response(200, &json!(summary)),
        Err(e) => admin_error(&e),
    }
}

/// `POST /_admin/tokens/purge[?dry_run]`.
pub(super) async fn admin_purge_tokens(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let dry_run = flag(&parse_query(query.as_deref()), "dry_run");
    match lambda_ws::admin::purge_tokens(&shared.app, dry_run).await {
        Ok(purged) => json_response(200, &json!({ "purged": purged, "dry_run": dry_run })),
        Err(e) => admin_error(&e),
    }
}
