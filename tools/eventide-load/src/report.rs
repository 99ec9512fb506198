//! Results: a plain two-column table for people and one `RESULT {json}` line for
//! scripts.

use serde_json::{Map, Value};

use super::stats::Histogram;

/// An ordered list of named values.
pub struct Report {
    rows: Vec<(String, Value)>,
}

impl Report {
    /// A report of a sub-command run.
    pub fn new(command: &str) -> Self {
        Report {
            rows: vec![("command".into(), Value::from(command))],
        }
    }

    /// Adds a row.
    pub fn add(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.rows.push((name.to_owned(), value.into()));
        self
    }

    /// Adds a number rounded to `digits` decimals.
    pub fn add_f(&mut self, name: &str, value: f64, digits: i32) -> &mut Self {
        let scale = 10f64.powi(digits);
        let rounded = (value * scale).round() / scale;
        self.add(name, if rounded.is_finite() { rounded } else { 0.0 })
    }

    /// Adds `{prefix}_count`, `_mean_us`, `_p50_us`, `_p90_us`, `_p99_us`, `_p999_us` and `_max_us`.
    pub fn add_latency(&mut self, prefix: &str, h: &Histogram) -> &mut Self {
        self.add(&format!("{prefix}_count"), h.count());
        self.add_f(&format!("{prefix}_mean_us"), h.mean(), 1);
        for (p, name) in [(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p999")] {
            self.add(&format!("{prefix}_{name}_us"), h.percentile(p));
        }
        self.add(&format!("{prefix}_max_us"), h.max())
    }

    /// The value of a row.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.rows.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The table and the `RESULT` line.
    pub fn render(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.rows {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        let json: Map<String, Value> = self.rows.iter().cloned().collect();
        out.push_str("RESULT ");
        out.push_str(&Value::Object(json).to_string());
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_result_line() {
        let mut r = Report::new("fanout");
        r.add("delivered", 10u64).add_f("ratio", 0.123456, 3);
        let text = r.render();
        assert!(text.contains("delivered  10\n"));
        let result = text.lines().last().unwrap();
        let json: Value = serde_json::from_str(result.strip_prefix("RESULT ").unwrap()).unwrap();
        assert_eq!(json["command"], "fanout");
        assert_eq!(json["ratio"], 0.123);
    }
}
