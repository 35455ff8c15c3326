//! Readable tables for reports on a terminal: a report (any serializable
//! value) flattened to `metric  value` rows with aligned columns, nested
//! fields named by their dotted path (`raw.tasks_per_sec`, `rounds.0.seconds`).

use serde_json::Value;

/// The report as an aligned two-column table, one row per leaf field.
pub fn report_table(title: &str, report: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", report, &mut rows);
    let width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max("metric".len());
    let mut out = format!("{title}\n");
    out.push_str(&format!("{:<width$}  value\n", "metric"));
    out.push_str(&format!("{}  {}\n", "-".repeat(width), "-".repeat(12)));
    for (name, value) in rows {
        out.push_str(&format!("{name:<width$}  {value}\n"));
    }
    out
}

/// Appends a `(path, shown value)` row for each leaf of `value` under
/// `prefix`.
fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                flatten(&join(key), field, rows);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten(&join(&index.to_string()), item, rows);
            }
        }
        leaf => rows.push((prefix.to_string(), shown(leaf))),
    }
}

/// A leaf value as a person reads it: floats rounded, `-` for null.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.abs() >= 100.0 {
                format!("{f:.0}")
            } else {
                format!("{f:.3}")
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_are_dotted_and_aligned() {
        let table = report_table(
            "bench",
            &serde_json::json!({"tasks": 10, "tasks_per_sec": 1234.567, "raw": {"p50_us": 3}, "rate": null}),
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "bench");
        assert!(lines
            .iter()
            .any(|l| l.starts_with("raw.p50_us") && l.ends_with("  3")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("tasks_per_sec") && l.ends_with("1235")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("rate") && l.ends_with("-")));
        let value_column = lines[1].find("value").expect("a value column");
        assert!(lines[3..].iter().all(|l| l.len() > value_column));
    }
}
