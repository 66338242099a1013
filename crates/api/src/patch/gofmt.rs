//! Values printed the way Go's `fmt` prints decoded JSON (`%v` and `%T`), because
//! Kubernetes' patch errors embed them and clients show those texts as they are.

use serde_json::Value;

/// `%v` of a decoded JSON value: `map[a:1 b:[x y]]`, `<nil>`.
pub fn value(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

/// `%v` of a list of values: `[a map[name:b]]`.
pub fn list(items: &[Value]) -> String {
    let mut out = String::from("[");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(v, &mut out);
    }
    out.push(']');
    out
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => out.push_str(&list(a)),
        Value::Object(m) => {
            // Go prints map keys sorted.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(&m[k], out);
            }
            out.push(']');
        }
    }
}

fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    // Go's %v of a float64 is the shortest representation, switching to an exponent from 1e21.
    if f.abs() >= 1e21 || (f != 0.0 && f.abs() < 1e-4) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    } else {
        f.to_string()
    }
}

/// `%T` of a decoded JSON value, as the API server sees it (whole numbers decode as int64).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_like_go() {
        assert_eq!(
            value(&json!({"name": "a", "ports": [80, 1.5], "x": null, "b": true})),
            "map[b:true name:a ports:[80 1.5] x:<nil>]"
        );
        assert_eq!(value(&json!(1e21)), "1e+21");
        assert_eq!(type_name(&json!(80)), "int64");
        assert_eq!(type_name(&json!(0.5)), "float64");
        assert_eq!(type_name(&json!({})), "map[string]interface {}");
    }
}
