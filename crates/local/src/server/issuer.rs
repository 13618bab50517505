//! `POST /ws-token`: the token issuer, with a development identity.

use super::*;

/// The header that picks the development identity of a request.
pub const DEV_USER_HEADER: &str = "x-lambda-ws-user";

/// The development identity a request names: the user in `x-lambda-ws-user` (`default_user`
/// without one), the groups in `x-lambda-ws-groups` (comma-separated).
pub fn dev_identity(headers: &HeaderMap, default_user: &str) -> Identity {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let user = header(DEV_USER_HEADER).unwrap_or(default_user);
    let groups =
        header("x-lambda-ws-groups").map(|g| g.split(',').map(str::trim).map(str::to_owned).collect::<Vec<_>>());
    Identity::user(user).with_groups(groups.unwrap_or_default())
}

pub(super) async fn issue_token(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let app = shared.app_of(shared.options.roles.issuer.as_deref());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let channel = parse_query(query.as_deref())
        .remove("channel")
        .and_then(|mut v| v.pop())
        .or_else(|| serde_json::from_slice::<Value>(&body).ok()?.get("channel")?.as_str().map(str::to_owned));
    let request = TokenRequest {
        identity: Some(dev_identity(&headers, &shared.options.dev_user)),
        origin: header("origin"),
        csrf_header: header(&app.config.csrf_header).is_some(),
        channel,
    };
    let answer = handlers::issue_token(app, request).await;
    json_response(answer.status, &answer.body)
}
