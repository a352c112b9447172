//! Offline checks of ARM templates and parameter files: what Azure Resource
//! Manager would reject before deploying anything. The schema URLs,
//! `contentVersion`, parameter types, defaults and allowed values,
//! references from expressions to parameters and variables, expression
//! syntax (brackets, parentheses, quotes), resource types and apiVersions,
//! and that the parameter file gives every parameter without a default a
//! value of the declared type and names no unknown ones.

use serde_json::{Map, Value};

const TEMPLATE_SCHEMA: &str = "deploymentTemplate.json#";
const PARAMETERS_SCHEMA: &str = "deploymentParameters.json#";

pub fn check_template(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check_header(template, TEMPLATE_SCHEMA, &mut problems);
    let empty = Map::new();
    let parameters = template["parameters"].as_object().unwrap_or(&empty);
    let variables = template["variables"].as_object().unwrap_or(&empty);
    for (name, parameter) in parameters {
        let Some(kind) = parameter["type"].as_str() else {
            problems.push(format!("parameter `{name}` has no type"));
            continue;
        };
        if !is_type(kind) {
            problems.push(format!("parameter `{name}`: unknown type `{kind}`"));
            continue;
        }
        if let Some(default) = parameter.get("defaultValue") {
            if !is_expression(default) {
                check_value(name, kind, parameter, default, "default", &mut problems);
            }
        }
    }
    match template["resources"].as_array() {
        Some(resources) if !resources.is_empty() => {
            for (i, resource) in resources.iter().enumerate() {
                check_resource(i, resource, &mut problems);
            }
        }
        _ => problems.push("`resources` must be a non-empty array".into()),
    }
    let mut strings = Vec::new();
    collect_strings(template, &mut strings);
    for s in strings
        .iter()
        .filter(|s| s.starts_with('[') && !s.starts_with("[["))
    {
        if let Err(e) = check_syntax(s) {
            problems.push(format!("expression `{s}`: {e}"));
        }
        for (function, names) in [("parameters", parameters), ("variables", variables)] {
            for name in references(s, function) {
                if !names.contains_key(&name) {
                    problems.push(format!("`{function}('{name}')` is not defined (in `{s}`)"));
                }
            }
        }
    }
    problems
}

pub fn check_parameters(template: &Value, file: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check_header(file, PARAMETERS_SCHEMA, &mut problems);
    let empty = Map::new();
    let declared = template["parameters"].as_object().unwrap_or(&empty);
    let given = file["parameters"].as_object().unwrap_or(&empty);
    for name in given.keys().filter(|n| !declared.contains_key(*n)) {
        problems.push(format!("`{name}` is not a parameter of the template"));
    }
    for (name, parameter) in declared {
        let kind = parameter["type"].as_str().unwrap_or_default();
        match given.get(name) {
            Some(entry) => match entry.get("value") {
                Some(value) => check_value(name, kind, parameter, value, "value", &mut problems),
                // A Key Vault reference is resolved at deployment time.
                None if entry.get("reference").is_some() => {}
                None => problems.push(format!("`{name}` has neither `value` nor `reference`")),
            },
            None if parameter.get("defaultValue").is_none() => {
                problems.push(format!("`{name}` has no value and no default"));
            }
            None => {}
        }
    }
    problems
}

fn check_header(document: &Value, schema_suffix: &str, problems: &mut Vec<String>) {
    match document["$schema"].as_str() {
        Some(s)
            if s.starts_with("https://schema.management.azure.com/schemas/")
                && s.ends_with(schema_suffix) => {}
        other => problems.push(format!(
            "`$schema` is {}, not an ARM {schema_suffix} URL",
            other.map_or("missing".into(), |s| format!("`{s}`"))
        )),
    }
    let version = document["contentVersion"].as_str().unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        problems.push(format!("`contentVersion` `{version}` is not N.N.N.N"));
    }
}

fn check_resource(i: usize, resource: &Value, problems: &mut Vec<String>) {
    let kind = resource["type"].as_str().unwrap_or_default();
    // Namespace.Provider/type[/child...]
    let well_formed = kind.split_once('/').is_some_and(|(namespace, types)| {
        namespace.split('.').count() >= 2
            && namespace
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
            && types
                .split('/')
                .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()))
    });
    if !well_formed {
        problems.push(format!(
            "resource {i}: type `{kind}` is not Namespace.Provider/type"
        ));
    }
    let api = resource["apiVersion"].as_str().unwrap_or_default();
    let (date, suffix) = api.split_at(api.len().min(10));
    let date_ok = date.len() == 10
        && date.bytes().enumerate().all(|(j, b)| {
            if j == 4 || j == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !date_ok || !matches!(suffix, "" | "-preview") {
        problems.push(format!(
            "resource {i} ({kind}): apiVersion `{api}` is not YYYY-MM-DD[-preview]"
        ));
    }
    if !resource["name"].is_string() {
        problems.push(format!("resource {i} ({kind}): no name"));
    }
    // A child's name has one segment per type segment after the provider.
    if let Some(name) = resource["name"].as_str().filter(|n| !n.starts_with('[')) {
        let depth = kind.matches('/').count();
        if name.split('/').count() != depth {
            problems.push(format!(
                "resource {i} ({kind}): name `{name}` needs {depth} segment(s)"
            ));
        }
    }
}

fn check_value(
    name: &str,
    kind: &str,
    parameter: &Value,
    value: &Value,
    what: &str,
    problems: &mut Vec<String>,
) {
    let matches = match kind.to_ascii_lowercase().as_str() {
        "string" | "securestring" => value.is_string(),
        "int" => value.is_i64(),
        "bool" => value.is_boolean(),
        "object" | "secureobject" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    };
    if !matches {
        problems.push(format!("`{name}`: {what} {value} is not of type {kind}"));
        return;
    }
    if let Some(allowed) = parameter["allowedValues"].as_array() {
        if !allowed.contains(value) {
            problems.push(format!(
                "`{name}`: {what} {value} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if parameter["minLength"].as_u64().is_some_and(|min| len < min)
            || parameter["maxLength"].as_u64().is_some_and(|max| len > max)
        {
            problems.push(format!(
                "`{name}`: {what} `{s}` has {len} characters, outside minLength/maxLength"
            ));
        }
    }
    if let Some(n) = value.as_i64() {
        if parameter["minValue"].as_i64().is_some_and(|min| n < min)
            || parameter["maxValue"].as_i64().is_some_and(|max| n > max)
        {
            problems.push(format!("`{name}`: {what} {n} is outside minValue/maxValue"));
        }
    }
}

fn is_type(kind: &str) -> bool {
    [
        "string",
        "securestring",
        "int",
        "bool",
        "object",
        "secureobject",
        "array",
    ]
    .contains(&kind.to_ascii_lowercase().as_str())
}

fn is_expression(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.starts_with('[') && !s.starts_with("[["))
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// `[...]` with balanced parentheses and closed '...' literals ('' escapes a quote).
fn check_syntax(expression: &str) -> Result<(), String> {
    let inner = expression
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .ok_or("does not end with `]`")?;
    let (mut depth, mut quoted) = (0i32, false);
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('\'', true) if chars.peek() == Some(&'\'') => {
                chars.next();
            }
            ('\'', _) => quoted = !quoted,
            ('(', false) => depth += 1,
            (')', false) => {
                depth -= 1;
                if depth < 0 {
                    return Err("`)` without `(`".into());
                }
            }
            _ => {}
        }
    }
    match (quoted, depth) {
        (true, _) => Err("unclosed string literal".into()),
        (_, 0) => Ok(()),
        _ => Err("unbalanced parentheses".into()),
    }
}

/// The NAMEs of `function('NAME')` in an expression.
fn references(expression: &str, function: &str) -> Vec<String> {
    let call = format!("{function}('");
    expression
        .match_indices(&call)
        // `parameters(` inside e.g. `subscriptionparameters(` is another function.
        .filter(|(at, _)| !expression[..*at].ends_with(|c: char| c.is_ascii_alphanumeric()))
        .filter_map(|(at, _)| {
            let rest = &expression[at + call.len()..];
            rest.find('\'').map(|end| rest[..end].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "parameters": {
                "name": {"type": "string", "minLength": 3},
                "sku": {"type": "string", "defaultValue": "Standard", "allowedValues": ["Basic", "Standard"]},
                "count": {"type": "int", "defaultValue": 3, "maxValue": 5}
            },
            "variables": {"id": "[resourceId('Microsoft.Foo/bars', parameters('name'))]"},
            "resources": [{
                "type": "Microsoft.Foo/bars", "apiVersion": "2024-01-01-preview",
                "name": "[parameters('name')]", "properties": {"ref": "[variables('id')]", "n": "[parameters('count')]"}
            }]
        })
    }

    fn parameters(values: Value) -> Value {
        json!({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
            "contentVersion": "1.0.0.0",
            "parameters": values
        })
    }

    #[test]
    fn a_sound_template_and_parameters_pass() {
        assert_eq!(check_template(&template()), Vec::<String>::new());
        let file = parameters(json!({"name": {"value": "abc"}, "count": {"value": 5}}));
        assert_eq!(check_parameters(&template(), &file), Vec::<String>::new());
    }

    #[test]
    fn template_problems_are_each_named() {
        let mut t = template();
        t["contentVersion"] = json!("1.0");
        t["parameters"]["sku"]["defaultValue"] = json!("Gold");
        t["resources"][0]["apiVersion"] = json!("2024-1-01");
        t["resources"][0]["type"] = json!("Foo/bars");
        t["resources"][0]["properties"]["x"] = json!("[concat(parameters('nmae'), 'a']");
        t["resources"][0]["properties"]["y"] = json!("[variables('nope')]");
        assert_eq!(
            check_template(&t),
            vec![
                "`contentVersion` `1.0` is not N.N.N.N".to_string(),
                "`sku`: default \"Gold\" is not one of [\"Basic\",\"Standard\"]".into(),
                "resource 0: type `Foo/bars` is not Namespace.Provider/type".into(),
                "resource 0 (Foo/bars): apiVersion `2024-1-01` is not YYYY-MM-DD[-preview]".into(),
                "expression `[concat(parameters('nmae'), 'a']`: unbalanced parentheses".into(),
                "`parameters('nmae')` is not defined (in `[concat(parameters('nmae'), 'a']`)"
                    .into(),
                "`variables('nope')` is not defined (in `[variables('nope')]`)".into(),
            ]
        );
    }

    #[test]
    fn parameter_file_problems_are_each_named() {
        let file = parameters(json!({"count": {"value": "3"}, "extra": {"value": 1}}));
        assert_eq!(
            check_parameters(&template(), &file),
            vec![
                "`extra` is not a parameter of the template".to_string(),
                "`count`: value \"3\" is not of type int".into(),
                "`name` has no value and no default".into(),
            ]
        );
        let file = parameters(json!({"name": {"value": "ab"}, "count": {"value": 6}}));
        assert_eq!(
            check_parameters(&template(), &file),
            vec![
                "`count`: value 6 is outside minValue/maxValue".to_string(),
                "`name`: value `ab` has 2 characters, outside minLength/maxLength".into(),
            ]
        );
    }

    #[test]
    fn syntax_handles_escaped_quotes() {
        assert_eq!(check_syntax("[concat('it''s (', parameters('a'))]"), Ok(()));
        assert!(check_syntax("[concat('open)]").is_err());
        assert!(check_syntax("[a())]").is_err());
    }
}
