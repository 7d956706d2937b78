//! What `plumb bench` prints: the measured totals turned into rates and percentiles, as a
//! short human summary or one JSON document. Every error kind is always present in the JSON,
//! and any non-zero one is printed in the summary: a bench never hides an error. A figure
//! that was not measured (a latency when nothing was answered) is `-` in the summary and
//! `null` in the JSON, never a 0 that would read as the best possible result.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::engine::{Errors, Totals};
use super::response::{RPC_ERROR, RPC_RESULT};

/// Latency percentiles in microseconds; every one is `None` when no response completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

/// One run's results (the `--json` document).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// What was run; its fields stand at the top level of the JSON.
    #[serde(flatten)]
    pub shape: RunShape,
    /// Responses completed in the measured window.
    pub requests: u64,
    pub duration_s: f64,
    pub requests_per_sec: f64,
    /// Bytes received (heads and bodies) in the measured window.
    pub bytes: u64,
    pub bytes_per_sec: f64,
    pub latency_us: Latency,
    /// Responses per status code (echo replies count under "echo", JSON-RPC answers under
    /// "result" and "error").
    pub status: BTreeMap<String, u64>,
    pub errors: Errors,
    /// Connections that got no response at all in the measured window.
    pub starved: u64,
}

/// Describes the run for the report header.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunShape {
    pub target: String,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub close: bool,
    /// The `--rate` asked for, if any.
    pub rate: Option<f64>,
}

impl Report {
    pub fn new(shape: RunShape, t: &Totals) -> Report {
        let secs = t.duration.as_secs_f64();
        let per_sec = |x: u64| if secs > 0.0 { x as f64 / secs } else { 0.0 };
        let h = &t.latency;
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        let latency = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: Some(us(h.value_at_quantile(0.50))),
                p90: Some(us(h.value_at_quantile(0.90))),
                p99: Some(us(h.value_at_quantile(0.99))),
                p999: Some(us(h.value_at_quantile(0.999))),
                max: Some(us(h.max())),
                mean: Some((h.mean() / 100.0).round() / 10.0),
            }
        };
        let status = t
            .status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| {
                let key = match code as u16 {
                    0 => "echo".to_string(),
                    RPC_RESULT => "result".to_string(),
                    RPC_ERROR => "error".to_string(),
                    c => c.to_string(),
                };
                (key, *n)
            })
            .collect();
        Report {
            shape,
            requests: t.requests,
            duration_s: secs,
            requests_per_sec: per_sec(t.requests),
            bytes: t.bytes,
            bytes_per_sec: per_sec(t.bytes),
            latency_us: latency,
            status,
            errors: t.errors,
            starved: t.starved,
        }
    }

    /// The human summary, several lines.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let shape = &self.shape;
        let mode = match (shape.close, shape.pipeline, shape.rate) {
            (true, _, _) => ", a new connection per request".to_string(),
            (false, p, _) if p > 1 => format!(", pipeline {p}"),
            _ => String::new(),
        };
        let rate = shape
            .rate
            .map_or(String::new(), |r| format!(", rate {r} req/s"));
        let _ = writeln!(
            s,
            "{}: {} connection{}, {} thread{}{mode}{rate}",
            shape.target,
            shape.connections,
            plural(shape.connections),
            shape.threads,
            plural(shape.threads),
        );
        let _ = writeln!(
            s,
            "  requests   {} in {:.2} s: {:.0} req/s, {}/s",
            self.requests,
            self.duration_s,
            self.requests_per_sec,
            human_bytes(self.bytes_per_sec),
        );
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "  latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}{}",
            shown_us(l.p50),
            shown_us(l.p90),
            shown_us(l.p99),
            shown_us(l.p999),
            shown_us(l.max),
            if l.p50.is_none() {
                "  (no response, so no latency)"
            } else if shape.rate.is_some() {
                "  (from the scheduled send time)"
            } else {
                ""
            },
        );
        if !self.status.is_empty() {
            let codes: Vec<String> = self
                .status
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(s, "  responses  {}", codes.join(", "));
        }
        let errs: Vec<String> = self
            .errors
            .by_kind()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| match *k {
                "status" => format!("{n} with status >= 400"),
                "rpc_error" => format!("{n} error responses"),
                "bad_response" => format!("{n} bad response"),
                "closed" => format!("{n} closed early"),
                _ => format!("{n} {k}"),
            })
            .collect();
        if self.starved > 0 {
            let _ = writeln!(
                s,
                "  starved    {} of the connections got no response at all",
                self.starved
            );
        }
        if errs.is_empty() {
            let _ = writeln!(s, "  errors     none");
        } else {
            let _ = writeln!(s, "  errors     {}", errs.join(", "));
        }
        s
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Microseconds in the unit that reads best: "87.3 us", "1.25 ms", "2.50 s".
pub fn human_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.1} us")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// A latency that may not have been measured: `-` when it was not.
pub fn shown_us(us: Option<f64>) -> String {
    us.map_or_else(|| "-".to_string(), human_us)
}

/// Bytes in binary units: "118.2 MiB".
pub fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_well() {
        let cases = [
            (87.34, "87.3 us"),
            (1250.0, "1.25 ms"),
            (2_500_000.0, "2.50 s"),
        ];
        for (v, want) in cases {
            assert_eq!(human_us(v), want);
        }
        assert_eq!(human_bytes(512.0), "512.0 B");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
    }

    #[test]
    fn shape_fields_lead_the_json_at_top_level() {
        let shape = RunShape {
            target: "t".into(),
            connections: 2,
            threads: 1,
            pipeline: 1,
            close: false,
            rate: None,
        };
        let totals = Totals {
            requests: 0,
            bytes: 0,
            latency: hdrhistogram::Histogram::new(3).unwrap(),
            status: Vec::new(),
            errors: Errors::default(),
            starved: 0,
            duration: std::time::Duration::ZERO,
        };
        let report = Report::new(shape, &totals);
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            json.starts_with(
                r#"{"target":"t","connections":2,"threads":1,"pipeline":1,"close":false,"rate":null,"requests":0,"#
            ),
            "{json}"
        );
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        // Nothing answered: no latency, said as null and '-', never as 0.
        assert!(
            json.contains(r#""latency_us":{"p50":null,"p90":null,"p99":null,"p999":null,"max":null,"mean":null}"#),
            "{json}"
        );
        let text = report.to_text();
        assert!(
            text.contains("p50 -  p90 -  p99 -  p99.9 -  max -"),
            "{text}"
        );
        assert!(!text.contains("0.0 us"), "{text}");
    }
}
