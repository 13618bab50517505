//! The TypeScript writer: declarations of every schema of an AsyncAPI document.

use std::fmt::Write as _;

use serde_json::Value;

/// TypeScript declarations of every schema in `document` (a [`Contract::asyncapi`](super::Contract::asyncapi) document):
/// interfaces for objects, unions for the rest, with the Rust doc comments as JSDoc.
pub fn typescript(document: &Value) -> String {
    let mut out = String::from(
        "// The lambda-ws wire types, generated from the Rust types by `lambda-ws schema --typescript`.\n\
         // Do not edit: change the Rust types and generate again (the test command checks it).\n",
    );
    let schemas = document.pointer("/components/schemas").and_then(Value::as_object).cloned().unwrap_or_default();
    for (name, schema) in &schemas {
        out.push('\n');
        out.push_str(&doc_comment(schema, ""));
        match object_body(schema, "") {
            Some(body) if is_plain_object(schema) => {
                let _ = writeln!(out, "export interface {name} {body}");
            }
            _ => {
                let ty = ts_type(schema, "");
                let space = if ty.starts_with('\n') { "" } else { " " };
                let _ = writeln!(out, "export type {name} ={space}{ty};");
            }
        }
    }
    out
}

fn doc_comment(schema: &Value, indent: &str) -> String {
    match schema.get("description").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => {
            let text = rustdoc_to_plain(text).replace("*/", "*\\/");
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() == 1 {
                format!("{indent}/** {text} */\n")
            } else {
                let body: String = lines
                    .iter()
                    .map(|l| if l.is_empty() { format!("{indent} *\n") } else { format!("{indent} * {l}\n") })
                    .collect();
                format!("{indent}/**\n{body}{indent} */\n")
            }
        }
        _ => String::new(),
    }
}

/// ``[`Outbound::Error`]`` and ``[`x`](path)`` become `` `Outbound::Error` `` and `` `x` ``.
fn rustdoc_to_plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find("`]") {
            Some(end) => {
                out.push_str(&after[..=end]);
                rest = &after[end + 2..];
                if rest.starts_with('(') {
                    rest = rest.find(')').map_or(rest, |close| &rest[close + 1..]);
                }
            }
            None => {
                out.push_str("[`");
                rest = after.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// An object schema with nothing a plain interface cannot say.
fn is_plain_object(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
        && schema.get("properties").is_some()
        && ["anyOf", "oneOf", "allOf", "enum", "const"].iter().all(|k| schema.get(k).is_none())
}

/// `{ a: T; b?: U; [field: string]: unknown }`, or `None` without properties.
fn object_body(schema: &Value, indent: &str) -> Option<String> {
    let properties = schema.get("properties")?.as_object()?;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let documented = properties.values().any(|p| p.get("description").is_some());
    let closed = matches!(schema.get("additionalProperties"), None | Some(Value::Bool(false)));
    if !documented && properties.len() <= 2 && closed {
        let fields: Vec<String> = properties
            .iter()
            .map(|(key, p)| {
                let optional = if required.contains(&key.as_str()) { "" } else { "?" };
                format!("{}{optional}: {}", property_key(key), ts_type(p, indent))
            })
            .collect();
        return Some(format!("{{ {} }}", fields.join("; ")));
    }
    let inner = format!("{indent}  ");
    let mut body = String::from("{\n");
    for (key, property) in properties {
        body.push_str(&doc_comment(property, &inner));
        let optional = if required.contains(&key.as_str()) { "" } else { "?" };
        let _ = writeln!(body, "{inner}{}{optional}: {};", property_key(key), ts_type(property, &inner));
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(false)) | None => {}
        Some(Value::Bool(true)) => {
            let _ = writeln!(body, "{inner}[field: string]: unknown;");
        }
        Some(other) => {
            let _ = writeln!(body, "{inner}[field: string]: {} | undefined;", ts_type(other, &inner));
        }
    }
    body.push_str(indent);
    body.push('}');
    Some(body)
}

fn property_key(key: &str) -> String {
    let identifier = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if identifier { key.to_owned() } else { Value::String(key.to_owned()).to_string() }
}

/// The TypeScript type of a schema (the draft-07 subset the generator emits).
fn ts_type(schema: &Value, indent: &str) -> String {
    let Value::Object(o) = schema else {
        return if schema == &Value::Bool(false) { "never".into() } else { "unknown".into() };
    };
    if let Some(target) = o.get("$ref").and_then(Value::as_str) {
        return target.rsplit('/').next().unwrap_or("unknown").to_owned();
    }
    if let Some(value) = o.get("const") {
        return value.to_string();
    }
    if let Some(values) = o.get("enum").and_then(Value::as_array) {
        return values.iter().map(Value::to_string).collect::<Vec<_>>().join(" | ");
    }
    let types: Vec<&str> = match o.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut base: Vec<String> = types.iter().map(|t| primitive(t, schema, indent)).collect();
    if types.is_empty() && o.get("properties").is_some() {
        base.extend(object_body(schema, indent));
    }
    let mut parts: Vec<String> = Vec::new();
    if !base.is_empty() {
        parts.push(base.join(" | "));
    }
    if let Some(all) = o.get("allOf").and_then(Value::as_array) {
        parts.extend(all.iter().map(|s| ts_type(s, indent)));
    }
    if let Some(any) = o.get("anyOf").or_else(|| o.get("oneOf")).and_then(Value::as_array) {
        let members: Vec<String> = any.iter().map(|s| ts_type(s, &format!("{indent}  "))).collect();
        let simple = any.iter().all(|s| s.get("const").is_some() || s.get("$ref").is_some())
            || members.iter().map(String::len).sum::<usize>() < 60;
        parts.push(if simple {
            members.join(" | ")
        } else {
            members.iter().map(|m| format!("\n{indent}  | {m}")).collect()
        });
    }
    match parts.len() {
        0 => "unknown".to_owned(),
        1 => parts.remove(0),
        _ => parts
            .iter()
            .map(|p| if p.contains(" | ") { format!("({p})") } else { p.clone() })
            .collect::<Vec<_>>()
            .join(" & "),
    }
}

fn primitive(kind: &str, schema: &Value, indent: &str) -> String {
    match kind {
        "string" => "string".to_owned(),
        "integer" | "number" => "number".to_owned(),
        "boolean" => "boolean".to_owned(),
        "null" => "null".to_owned(),
        "array" => {
            let items = schema.get("items").map_or_else(|| "unknown".to_owned(), |i| ts_type(i, indent));
            if items.contains(' ') { format!("({items})[]") } else { format!("{items}[]") }
        }
        "object" => object_body(schema, indent).unwrap_or_else(|| match schema.get("additionalProperties") {
            Some(Value::Bool(false)) => "Record<string, never>".to_owned(),
            Some(value @ Value::Object(_)) => format!("Record<string, {}>", ts_type(value, indent)),
            _ => "Record<string, unknown>".to_owned(),
        }),
        _ => "unknown".to_owned(),
    }
}
