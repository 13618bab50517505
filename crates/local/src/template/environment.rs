//! The environment a template gives each function, as CloudFormation would resolve it:
//! `Globals.Function.Environment.Variables` merged with the function's own, `Parameters` from
//! their `Default` or from `--parameter-overrides` (as `sam deploy` takes them), pseudo parameters,
//! `!Sub`, `!If` on the template's `Conditions`. A reference to a resource (the table, the API) is
//! left to the gateway, which has its own.

use std::collections::BTreeMap;

use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{TemplateError, shape};

/// One variable's value for a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A value, and where it came from (`parameter ChannelRules (default)`, `template`).
    Value {
        /// The value.
        value: String,
        /// Where it came from.
        origin: String,
    },
    /// A reference to a resource of the stack (`!Ref SessionsTable`): the gateway's own.
    Resource(String),
    /// Something the gateway cannot resolve (an unknown function, `!ImportValue`): left unset.
    Unresolved(String),
}

/// The variables one function of the template runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionEnvironment {
    /// Logical id.
    pub logical_id: String,
    /// The cargo-lambda binary.
    pub binary: String,
    /// Its variables, by name (the function's own over the template's `Globals`).
    pub variables: BTreeMap<String, Resolved>,
    /// The paths of its HTTP API (or REST API) events (`/ws-token` for the token issuer).
    pub http_paths: Vec<String>,
    /// Whether a schedule runs it (the clean-up).
    pub scheduled: bool,
}

impl FunctionEnvironment {
    /// The value the template gives `name`, if it resolves to one.
    pub fn value(&self, name: &str) -> Option<&str> {
        match self.variables.get(name) {
            Some(Resolved::Value { value, .. }) => Some(value),
            _ => None,
        }
    }
}

/// What a template's functions run with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Environment {
    /// Every parameter with its value and whether an override set it.
    pub parameters: Vec<(String, String, bool)>,
    /// One entry per function (cargo-lambda functions only).
    pub functions: Vec<FunctionEnvironment>,
}

impl Environment {
    /// The environment of the function built as `binary`.
    pub fn function(&self, binary: &str) -> Option<&FunctionEnvironment> {
        self.functions.iter().find(|f| f.binary == binary)
    }
}

/// Parses `--parameter-overrides` as `sam` takes them: `Key=Value` pairs separated by spaces
/// (a value may be quoted, `Key="a b"`), or `ParameterKey=Key,ParameterValue=Value`.
pub fn parse_overrides(texts: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut overrides = BTreeMap::new();
    for text in texts {
        for word in split_words(text)? {
            let (key, value) = if let Some(rest) = word.strip_prefix("ParameterKey=") {
                let (key, value) = rest
                    .split_once(",ParameterValue=")
                    .ok_or_else(|| format!("{word:?}: expected ParameterKey=<name>,ParameterValue=<value>"))?;
                (key.to_owned(), value.to_owned())
            } else {
                let (key, value) = word.split_once('=').ok_or_else(|| format!("{word:?}: expected Key=Value"))?;
                (key.to_owned(), value.to_owned())
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("{key:?} is not a parameter name"));
            }
            overrides.insert(key, value);
        }
    }
    Ok(overrides)
}

/// Splits on spaces outside double or single quotes, dropping the quotes.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("{text:?}: a quote is not closed"));
    }
    if started {
        words.push(word);
    }
    Ok(words)
}

/// Resolves every cargo-lambda function's environment in `text`, with `overrides` for its
/// parameters (an override of a parameter the template lacks is refused, as `sam` refuses it).
pub fn resolve(text: &str, overrides: &BTreeMap<String, String>) -> Result<Environment, TemplateError> {
    let doc = load_tagged(text)?;
    let mut parameters: BTreeMap<String, (String, bool)> = BTreeMap::new();
    if let Some(declared) = doc["Parameters"].as_hash() {
        for (name, p) in declared {
            let Some(name) = name.as_str() else { continue };
            let default = scalar(&p["Default"]).unwrap_or_default();
            parameters.insert(name.to_owned(), (default, false));
        }
    }
    for (key, value) in overrides {
        let entry = parameters.get_mut(key).ok_or_else(|| shape(&format!("no parameter {key} to override")))?;
        *entry = (value.clone(), true);
    }
    let resources: Vec<String> = doc["Resources"]
        .as_hash()
        .map(|r| r.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let context = Context { parameters: &parameters, resources: &resources, conditions: &doc["Conditions"] };
    let globals = &doc["Globals"]["Function"]["Environment"]["Variables"];
    let mut functions = Vec::new();
    for (id, resource) in doc["Resources"].as_hash().into_iter().flatten() {
        let Some(id) = id.as_str() else { continue };
        if resource["Type"].as_str() != Some("AWS::Serverless::Function")
            || resource["Metadata"]["BuildMethod"].as_str() != Some("rust-cargolambda")
        {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap_or(id).to_owned();
        let mut variables = BTreeMap::new();
        for source in [globals, &resource["Properties"]["Environment"]["Variables"]] {
            for (name, value) in source.as_hash().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    match context.resolve(value) {
                        Some(resolved) => variables.insert(name.to_owned(), resolved),
                        // `!Ref AWS::NoValue`: the variable is not set.
                        None => variables.remove(name),
                    };
                }
            }
        }
        let (mut http_paths, mut scheduled) = (Vec::new(), false);
        for (_, event) in resource["Properties"]["Events"].as_hash().into_iter().flatten() {
            match event["Type"].as_str() {
                Some("HttpApi" | "Api") => http_paths.extend(scalar(&event["Properties"]["Path"])),
                Some("Schedule" | "ScheduleV2") => scheduled = true,
                _ => {}
            }
        }
        functions.push(FunctionEnvironment { logical_id: id.to_owned(), binary, variables, http_paths, scheduled });
    }
    functions.sort_by(|a, b| a.binary.cmp(&b.binary));
    let parameters = parameters.into_iter().map(|(name, (value, overridden))| (name, value, overridden)).collect();
    Ok(Environment { parameters, functions })
}

struct Context<'a> {
    parameters: &'a BTreeMap<String, (String, bool)>,
    resources: &'a [String],
    conditions: &'a Yaml,
}

/// A scalar as CloudFormation reads it (a number or boolean as its text).
fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The one key and value of an intrinsic function (`{"Ref": x}`, `{"Fn::Sub": x}`).
fn intrinsic(value: &Yaml) -> Option<(&str, &Yaml)> {
    let hash = value.as_hash().filter(|h| h.len() == 1)?;
    let (key, arg) = hash.iter().next()?;
    let key = key.as_str()?;
    (key == "Ref" || key == "Condition" || key.starts_with("Fn::")).then_some((key, arg))
}

impl Context<'_> {
    /// A variable's value; `None` for `!Ref AWS::NoValue` (the variable is left out).
    fn resolve(&self, value: &Yaml) -> Option<Resolved> {
        if let Some(text) = scalar(value) {
            return Some(Resolved::Value { value: text, origin: "template".to_owned() });
        }
        let Some((function, arg)) = intrinsic(value) else {
            return Some(Resolved::Unresolved("not a string".to_owned()));
        };
        match function {
            "Ref" => self.reference(arg.as_str().unwrap_or_default()),
            "Fn::Sub" => Some(self.substitute(arg)),
            "Fn::If" => {
                let branches = arg.as_vec().filter(|b| b.len() == 3)?;
                match self.condition(&branches[0]) {
                    Some(true) => self.resolve(&branches[1]),
                    Some(false) => self.resolve(&branches[2]),
                    None => Some(Resolved::Unresolved("!If on a condition it cannot evaluate".to_owned())),
                }
            }
            other => Some(Resolved::Unresolved(format!("{other} is not resolved locally"))),
        }
    }

    fn reference(&self, name: &str) -> Option<Resolved> {
        if name == "AWS::NoValue" {
            return None;
        }
        if let Some((value, overridden)) = self.parameters.get(name) {
            let how = if *overridden { "override" } else { "default" };
            return Some(Resolved::Value { value: value.clone(), origin: format!("parameter {name}, {how}") });
        }
        if let Some(value) = pseudo(name) {
            return Some(Resolved::Value { value, origin: format!("{name} (local)") });
        }
        if self.resources.iter().any(|r| r == name) {
            return Some(Resolved::Resource(name.to_owned()));
        }
        Some(Resolved::Unresolved(format!("no parameter or resource {name}")))
    }

    /// `!Sub "text ${Param} text"` (or `[text, {Var: value}]`): parameters and pseudo parameters
    /// substituted; a resource named makes it the gateway's own.
    fn substitute(&self, arg: &Yaml) -> Resolved {
        let (text, variables) = match arg {
            Yaml::Array(parts) if parts.len() == 2 => (parts[0].as_str().unwrap_or_default(), parts[1].as_hash()),
            other => (other.as_str().unwrap_or_default(), None),
        };
        let mut out = String::new();
        let mut rest = text;
        let mut origins = Vec::new();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else { break };
            let name = &after[..end];
            let local = variables.and_then(|v| v.get(&Yaml::String(name.to_owned()))).and_then(|v| self.resolve(v));
            match local.or_else(|| self.reference(name)) {
                Some(Resolved::Value { value, origin }) => {
                    out.push_str(&value);
                    origins.push(origin);
                }
                Some(Resolved::Resource(r)) => return Resolved::Resource(r),
                Some(Resolved::Unresolved(why)) => return Resolved::Unresolved(why),
                None => {}
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        let origin = if origins.is_empty() { "template".to_owned() } else { format!("!Sub of {}", origins.join(", ")) };
        Resolved::Value { value: out, origin }
    }

    /// A condition's value: `!Equals`, `!Not`, `!And`, `!Or`, `!Condition` and named conditions.
    fn condition(&self, value: &Yaml) -> Option<bool> {
        if let Some(name) = value.as_str() {
            return self.condition(&self.conditions[name]);
        }
        let (function, arg) = intrinsic(value)?;
        let list = || arg.as_vec().cloned().unwrap_or_default();
        match function {
            "Condition" => self.condition(&self.conditions[arg.as_str()?]),
            "Fn::Equals" => {
                let sides = list();
                let text = |v: &Yaml| match self.resolve(v) {
                    Some(Resolved::Value { value, .. }) => Some(value),
                    _ => None,
                };
                Some(text(sides.first()?)? == text(sides.get(1)?)?)
            }
            "Fn::Not" => Some(!self.condition(list().first()?)?),
            "Fn::And" => list().iter().try_fold(true, |all, c| Some(all && self.condition(c)?)),
            "Fn::Or" => list().iter().try_fold(false, |any, c| Some(any || self.condition(c)?)),
            _ => None,
        }
    }
}

/// A pseudo parameter's local value.
fn pseudo(name: &str) -> Option<String> {
    Some(match name {
        "AWS::Region" => std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
        "AWS::AccountId" => "000000000000".to_owned(),
        "AWS::Partition" => "aws".to_owned(),
        "AWS::StackName" => "local".to_owned(),
        "AWS::URLSuffix" => "amazonaws.com".to_owned(),
        _ => return None,
    })
}

/// Loads YAML keeping CloudFormation's short-form tags as their long form: `!Ref X` becomes
/// `{Ref: X}`, `!Sub s` becomes `{"Fn::Sub": s}` (plain YAML loaders drop the tag).
fn load_tagged(text: &str) -> Result<Yaml, TemplateError> {
    let mut loader = Tagged::default();
    Parser::new_from_str(text).load(&mut loader, false).map_err(|e| TemplateError::Yaml(e.to_string()))?;
    Ok(loader.doc.unwrap_or(Yaml::BadValue))
}

#[derive(Default)]
struct Tagged {
    doc: Option<Yaml>,
    /// Open sequences and mappings, each with its tag and (for a mapping) the key awaiting a value.
    stack: Vec<(Yaml, Option<Tag>, Option<Yaml>)>,
}

impl Tagged {
    fn insert(&mut self, node: Yaml) {
        match self.stack.last_mut() {
            None => {
                if self.doc.is_none() {
                    self.doc = Some(node);
                }
            }
            Some((Yaml::Array(items), _, _)) => items.push(node),
            Some((Yaml::Hash(map), _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    map.insert(k, node);
                }
            },
            Some(_) => {}
        }
    }
}

/// `node` in its tag's long form.
fn with_tag(node: Yaml, tag: Option<Tag>) -> Yaml {
    let Some(tag) = tag.filter(|t| t.handle == "!") else { return node };
    let key = match tag.suffix.as_str() {
        "Ref" | "Condition" => tag.suffix.clone(),
        "GetAtt" => {
            // `!GetAtt A.B` is `{"Fn::GetAtt": [A, B]}`.
            let parts = match &node {
                Yaml::String(s) => s.splitn(2, '.').map(|p| Yaml::String(p.to_owned())).collect(),
                _ => Vec::new(),
            };
            return Yaml::Hash([(Yaml::String("Fn::GetAtt".into()), Yaml::Array(parts))].into_iter().collect());
        }
        other => format!("Fn::{other}"),
    };
    Yaml::Hash([(Yaml::String(key), node)].into_iter().collect())
}

impl MarkedEventReceiver for Tagged {
    fn on_event(&mut self, event: Event, _mark: Marker) {
        match event {
            Event::SequenceStart(_, tag) => self.stack.push((Yaml::Array(Vec::new()), tag, None)),
            Event::MappingStart(_, tag) => self.stack.push((Yaml::Hash(Default::default()), tag, None)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, tag, _)) = self.stack.pop() {
                    self.insert(with_tag(node, tag));
                }
            }
            Event::Scalar(value, style, _, tag) => {
                let node = if style == TScalarStyle::Plain { Yaml::from_str(&value) } else { Yaml::String(value) };
                self.insert(with_tag(node, tag));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Rules: { Type: String, Default: "lobby=all; *=none" }
  Origins: { Type: String, Default: "" }
  Ttl: { Type: Number, Default: 60 }
Conditions:
  HasOrigins: !Not [!Equals [!Ref Origins, ""]]
Globals:
  Function:
    Environment:
      Variables:
        LWS_CHANNEL_RULES: !Ref Rules
        LWS_TOKEN_TTL_SECS: !Ref Ttl
        LWS_TABLE_NAME: !Ref Table
        LWS_ALLOWED_ORIGINS: !If [HasOrigins, !Ref Origins, !Ref AWS::NoValue]
        PLAIN: 5
Resources:
  Table: { Type: AWS::DynamoDB::Table }
  Connect:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: connect } }
    Properties:
      Environment:
        Variables:
          NOTE: !Sub "rules ${Rules} in ${AWS::StackName}"
          PLAIN: six
          ARN: !GetAtt Table.Arn
"#;

    #[test]
    fn variables_resolve_as_cloudformation_would() {
        let env = resolve(TEMPLATE, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
        let f = env.function("connect").unwrap();
        assert_eq!(f.value("LWS_CHANNEL_RULES"), Some("lobby=all; *=none"));
        assert_eq!(f.value("LWS_TOKEN_TTL_SECS"), Some("60"));
        assert_eq!(f.variables["LWS_TABLE_NAME"], Resolved::Resource("Table".into()));
        assert!(!f.variables.contains_key("LWS_ALLOWED_ORIGINS"), "AWS::NoValue leaves it out");
        assert_eq!(f.value("NOTE"), Some("rules lobby=all; *=none in local"));
        assert_eq!(f.value("PLAIN"), Some("six"), "the function's own over Globals");
        assert!(matches!(f.variables["ARN"], Resolved::Unresolved(_)));
        let overridden = parse_overrides(&["Rules='room-*=all' Origins=http://a.example".to_owned()]).unwrap();
        let env = resolve(TEMPLATE, &overridden).unwrap();
        let f = env.function("connect").unwrap();
        assert_eq!(f.value("LWS_CHANNEL_RULES"), Some("room-*=all"));
        assert_eq!(f.value("LWS_ALLOWED_ORIGINS"), Some("http://a.example"), "the condition now holds");
        assert!(
            matches!(&f.variables["LWS_CHANNEL_RULES"], Resolved::Value { origin, .. } if origin.contains("override"))
        );
        assert!(resolve(TEMPLATE, &parse_overrides(&["Nope=1".to_owned()]).unwrap()).is_err(), "unknown parameter");
    }

    #[test]
    fn overrides_as_sam_takes_them() {
        let parsed =
            parse_overrides(&["A=1 B=\"two words\"".to_owned(), "ParameterKey=C,ParameterValue=x=y".to_owned()])
                .unwrap();
        let expected: BTreeMap<String, String> =
            [("A", "1"), ("B", "two words"), ("C", "x=y")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(parsed, expected);
        assert!(parse_overrides(&["novalue".to_owned()]).is_err());
        assert!(parse_overrides(&["A=\"open".to_owned()]).is_err());
    }
}
