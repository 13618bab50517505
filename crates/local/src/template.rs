//! Reads the WebSocket API out of a SAM `template.yaml`: its route selection expression, and for
//! every route the function (cargo-lambda binary) it invokes, so the local gateway serves exactly
//! the routes that get deployed.
//!
//! Resolution follows the template's own references: `Route.Target` (`integrations/${Integ}`) →
//! `Integration.IntegrationUri` (`…${Function.Arn}/invocations`) → the function's
//! `Metadata.BuildProperties.Binary`. CloudFormation tags (`!Ref`, `!Sub`) are read as their values.

use std::collections::BTreeMap;
use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

use crate::routes::{Functions, RouteTable, SelectionExpression};

pub mod environment;

/// Why a template could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// Not YAML.
    #[error("template is not valid YAML: {0}")]
    Yaml(String),
    /// Something the gateway needs is missing or unresolvable.
    #[error("template: {0}")]
    Shape(String),
}

/// One WebSocket route as deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRoute {
    /// `$connect`, `chat`, …
    pub route_key: String,
    /// The function's logical id.
    pub function: String,
    /// The cargo-lambda binary that function runs.
    pub binary: String,
    /// Whether the route declares a route response (`AWS::ApiGatewayV2::RouteResponse`): only
    /// then does API Gateway send the function's response body back to the client.
    pub route_response: bool,
}

/// A function of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFunction {
    /// Logical id.
    pub logical_id: String,
    /// The cargo-lambda binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
}

/// What the gateway takes from a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The route selection expression (`RouteSelectionExpression`, default `$request.body.action`).
    pub selection: SelectionExpression,
    /// The WebSocket routes.
    pub routes: Vec<TemplateRoute>,
    /// Every `AWS::Serverless::Function` built by cargo-lambda.
    pub functions: Vec<TemplateFunction>,
}

impl Template {
    /// Reads and resolves a template file.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read(path.display().to_string(), e))?;
        Self::parse(&text)
    }

    /// Resolves a template's text.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| TemplateError::Yaml(e.to_string()))?;
        let resources =
            docs.first().map(|d| &d["Resources"]).and_then(Yaml::as_hash).ok_or_else(|| shape("no Resources"))?;
        let by_type = |kind: &'static str| {
            resources
                .iter()
                .filter(move |(_, r)| r["Type"].as_str() == Some(kind))
                .filter_map(|(id, r)| Some((id.as_str()?.to_owned(), r)))
        };
        let (api_id, api) = by_type("AWS::ApiGatewayV2::Api")
            .find(|(_, r)| r["Properties"]["ProtocolType"].as_str() == Some("WEBSOCKET"))
            .ok_or_else(|| shape("no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET"))?;
        let expression = api["Properties"]["RouteSelectionExpression"].as_str().unwrap_or("$request.body.action");
        let selection = SelectionExpression::parse(expression).map_err(|e| shape(&e.to_string()))?;
        let functions: Vec<TemplateFunction> = by_type("AWS::Serverless::Function")
            .filter(|(_, f)| f["Metadata"]["BuildMethod"].as_str() == Some("rust-cargolambda"))
            .map(|(id, f)| {
                let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap_or(&id).to_owned();
                TemplateFunction { logical_id: id, binary }
            })
            .collect();
        let integrations: BTreeMap<String, String> = by_type("AWS::ApiGatewayV2::Integration")
            .filter(|(_, i)| i["Properties"]["ApiId"].as_str() == Some(api_id.as_str()))
            .filter_map(|(id, i)| Some((id, first_reference(i["Properties"]["IntegrationUri"].as_str()?)?)))
            .collect();
        let answered: Vec<String> = by_type("AWS::ApiGatewayV2::RouteResponse")
            .filter(|(_, r)| r["Properties"]["ApiId"].as_str().is_none_or(|a| a == api_id))
            .filter_map(|(_, r)| r["Properties"]["RouteId"].as_str().map(str::to_owned))
            .collect();
        let mut routes = Vec::new();
        for (id, route) in by_type("AWS::ApiGatewayV2::Route") {
            let props = &route["Properties"];
            if props["ApiId"].as_str() != Some(api_id.as_str()) {
                continue;
            }
            let route_key = props["RouteKey"].as_str().ok_or_else(|| shape(&format!("{id} has no RouteKey")))?;
            let target = match &props["Target"] {
                Yaml::String(s) => first_reference(s).or_else(|| s.strip_prefix("integrations/").map(str::to_owned)),
                Yaml::Array(parts) => parts.last().and_then(|p| match p {
                    Yaml::Array(inner) => inner.last().and_then(Yaml::as_str).map(str::to_owned),
                    other => other.as_str().map(str::to_owned),
                }),
                _ => None,
            };
            let integration = target.ok_or_else(|| shape(&format!("{id}: cannot read its Target")))?;
            let function = integrations
                .get(&integration)
                .map(|f| f.trim_end_matches(".Arn").to_owned())
                .ok_or_else(|| shape(&format!("{id}: integration {integration} has no function")))?;
            let binary = functions
                .iter()
                .find(|f| f.logical_id == function)
                .map(|f| f.binary.clone())
                .ok_or_else(|| shape(&format!("{id}: {function} is not a cargo-lambda function")))?;
            let route_response = answered.contains(&id);
            routes.push(TemplateRoute { route_key: route_key.to_owned(), function, binary, route_response });
        }
        if !routes.iter().any(|r| r.route_key == "$connect") {
            return Err(shape("no $connect route"));
        }
        routes.sort_by(|a, b| a.route_key.cmp(&b.route_key));
        Ok(Self { selection, routes, functions })
    }

    /// The route table, with `functions` in-process (see [`RouteTable::from_functions`]).
    pub fn route_table(&self, functions: &Functions, in_process: bool) -> RouteTable {
        let routes = self.routes.iter().map(|r| (r.route_key.as_str(), r.binary.as_str()));
        let mut table = RouteTable::from_functions(self.selection.clone(), routes, functions, in_process);
        for route in self.routes.iter().filter(|r| r.route_response) {
            table.answer_with_response(&route.route_key);
        }
        table
    }

    /// Route keys whose function is not in `functions` (they need `--invoke-endpoint`).
    pub fn invoked_routes(&self, functions: &Functions) -> Vec<&TemplateRoute> {
        self.routes.iter().filter(|r| !functions.runs_in_process(&r.binary)).collect()
    }
}

fn shape(text: &str) -> TemplateError {
    TemplateError::Shape(text.to_owned())
}

/// The first `${Name}` (or `${Name.Attr}`) in a `!Sub` string, skipping pseudo parameters.
fn first_reference(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let name = &after[..end];
        if !name.starts_with("AWS::") {
            return Some(name.to_owned());
        }
        rest = &after[end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Handler;

    const MINI: &str = r#"
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: { ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.op }
  Other:
    Type: AWS::ApiGatewayV2::Api
    Properties: { ProtocolType: HTTP }
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Api, RouteKey: $connect, Target: !Sub "integrations/${ConnInteg}" }
  ReportRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: report
      Target: !Join ['/', [integrations, !Ref ReportInteg]]
  ReportResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: { ApiId: !Ref Api, RouteId: !Ref ReportRoute, RouteResponseKey: $default }
  ConnInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationUri: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${ConnFn.Arn}/invocations
  ReportInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationUri: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${ReportFn.Arn}/invocations
  ConnFn:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: connect } }
  ReportFn:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: report } }
"#;

    #[test]
    fn resolves_routes_to_binaries() {
        let t = Template::parse(MINI).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.selection.as_str(), "$request.body.op");
        let routes: Vec<(&str, &str)> = t.routes.iter().map(|r| (r.route_key.as_str(), r.binary.as_str())).collect();
        assert_eq!(routes, [("$connect", "connect"), ("report", "report")]);
        let functions = Functions::new().connect("connect");
        assert_eq!(t.invoked_routes(&functions).len(), 1, "report is not a binary the gateway runs");
        let answered: Vec<bool> = t.routes.iter().map(|r| r.route_response).collect();
        assert_eq!(answered, [false, true], "only report declares a route response");
        let table = t.route_table(&functions, true);
        assert!(table.answers_with_response("report") && !table.answers_with_response("$connect"));
        assert_eq!(table.selection.as_str(), "$request.body.op");
        assert!(matches!(table.get("$connect"), Some(Handler::Connect)));
        assert!(matches!(table.get("report"), Some(Handler::Invoke(b)) if b == "report"));
        assert!(table.get("$default").is_none());
        let invoking = t.route_table(&functions, false);
        assert!(matches!(invoking.get("$connect"), Some(Handler::Invoke(b)) if b == "connect"));
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        for (bad, why) in [
            ("a: [", "yaml"),
            ("Resources: {}", "no websocket api"),
            (
                "Resources:\n  Api:\n    Type: AWS::ApiGatewayV2::Api\n    Properties: { ProtocolType: WEBSOCKET }\n",
                "no $connect",
            ),
            (
                "Resources:\n  Api:\n    Type: AWS::ApiGatewayV2::Api\n    Properties: { ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.header.x }\n",
                "header selection",
            ),
        ] {
            assert!(Template::parse(bad).is_err(), "{why}");
        }
    }

    #[test]
    fn references() {
        assert_eq!(first_reference("arn:${AWS::Partition}:x/${Fn.Arn}/y").as_deref(), Some("Fn.Arn"));
        assert_eq!(first_reference("integrations/${Integ}").as_deref(), Some("Integ"));
        assert_eq!(first_reference("${AWS::Region}"), None);
        assert_eq!(first_reference("plain"), None);
    }
}
