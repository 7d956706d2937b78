//! End-to-end tests of `plumb ipc`: the real binary in its short mode with `--json`, the
//! shape of the report (every channel, every cost) and every figure positive and finite; the
//! chart; and command-line mistakes (one `plumb:` line, exit status 2). No timing assertions:
//! figures are only checked to be real numbers.

use std::process::{Command, Output};

use serde_json::Value;

const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");
const CHANNELS: [&str; 6] = ["pipe", "fifo", "unix", "unix-dgram", "tcp", "file"];
const COSTS: [&str; 3] = ["fork", "exec", "thread"];

fn plumb_ipc(args: &[&str]) -> Output {
    Command::new(PLUMB)
        .arg("ipc")
        .args(args)
        .output()
        .expect("run plumb ipc")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "plumb ipc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn positive_finite(row: &Value, field: &str) -> f64 {
    let v = row[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing or not a number in {row}"));
    assert!(v.is_finite() && v > 0.0, "{field} = {v} in {row}");
    v
}

fn names(rows: &Value, key: &str) -> Vec<String> {
    rows.as_array()
        .expect("an array")
        .iter()
        .map(|r| r[key].as_str().expect("a name").to_string())
        .collect()
}

#[test]
fn quick_json_run_has_every_channel_and_cost_with_real_figures() {
    let report = json_of(&plumb_ipc(&["--quick", "--json"]));

    assert_eq!(names(&report["latency"], "channel"), CHANNELS);
    assert_eq!(names(&report["bandwidth"], "channel"), CHANNELS);
    assert_eq!(names(&report["costs"], "name"), COSTS);

    for row in report["latency"].as_array().unwrap() {
        for field in ["mean_ns", "p50_ns", "p99_ns", "iters", "runs"] {
            positive_finite(row, field);
        }
        assert_eq!(row["size"], 1, "the default message is one byte");
        assert!(positive_finite(row, "p99_ns") >= positive_finite(row, "p50_ns"));
    }
    for row in report["bandwidth"].as_array().unwrap() {
        for field in ["mb_per_s", "bytes", "runs"] {
            positive_finite(row, field);
        }
        assert_eq!(row["chunk"], 65536, "the default chunk is 64 KiB");
    }
    for row in report["costs"].as_array().unwrap() {
        for field in ["mean_ns", "p50_ns", "p99_ns", "iters", "runs"] {
            positive_finite(row, field);
        }
    }
    let settings = &report["settings"];
    assert_eq!(settings["runs"], 3, "--quick does three runs");
    assert!(settings["pipe_capacity"].as_u64().unwrap() >= 4096);
    positive_finite(settings, "fork_check_ns");
}

#[test]
fn pinned_sized_selection_with_chart() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("ipc.svg");
    let out = plumb_ipc(&[
        "--quick",
        "--json",
        "--pin",
        "0,0",
        "--size",
        "4k",
        "--chunk",
        "16KiB",
        "--only",
        "pipe,unix-dgram,thread",
        "--chart",
        chart.to_str().unwrap(),
    ]);
    let report = json_of(&out);
    assert_eq!(report["settings"]["pin"], serde_json::json!([0, 0]));
    assert_eq!(names(&report["latency"], "channel"), ["pipe", "unix-dgram"]);
    assert_eq!(
        names(&report["bandwidth"], "channel"),
        ["pipe", "unix-dgram"]
    );
    assert_eq!(names(&report["costs"], "name"), ["thread"]);
    for row in report["latency"].as_array().unwrap() {
        assert_eq!(row["size"], 4096);
        positive_finite(row, "p50_ns");
    }
    for row in report["bandwidth"].as_array().unwrap() {
        assert_eq!(row["chunk"], 16384);
        positive_finite(row, "mb_per_s");
    }
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(
        svg.starts_with("<svg") && svg.contains("unix-dgram"),
        "{svg:.200}"
    );
    // Explicit colours: no viewer-dependent opacity anywhere.
    assert!(!svg.contains("opacity"), "opacity in the ipc chart");
    // It says where the chart went (on stderr: stdout is the JSON).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("plumb: wrote the chart to {}", chart.display())),
        "{stderr}"
    );
}

#[test]
fn busy_poll_and_fixed_sizes() {
    let report = json_of(&plumb_ipc(&[
        "--json",
        "--spin",
        "--only",
        "latency,file,tcp",
        "--iters",
        "300",
        "--runs",
        "1",
    ]));
    assert_eq!(report["settings"]["spin"], true);
    for row in report["latency"].as_array().unwrap() {
        assert_eq!(row["iters"], 300);
        assert_eq!(row["runs"], 1);
        positive_finite(row, "mean_ns");
    }
    let report = json_of(&plumb_ipc(&[
        "--json",
        "--only",
        "bandwidth,pipe",
        "--total-mib",
        "2",
        "--runs",
        "1",
    ]));
    assert_eq!(report["bandwidth"][0]["bytes"], 2 << 20);
    assert!(report["latency"].as_array().unwrap().is_empty());
}

#[test]
fn the_table_names_every_channel() {
    let out = plumb_ipc(&["--quick", "--only", "latency,bandwidth"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    for ch in CHANNELS {
        assert!(
            table
                .lines()
                .filter(|l| l.trim_start().starts_with(ch))
                .count()
                >= 2,
            "{ch} should have a latency and a bandwidth line:\n{table}"
        );
    }
    assert!(table.contains("MB/s") && table.contains("p99"), "{table}");
}

#[test]
fn command_line_mistakes_are_one_line_and_exit_2() {
    let cases: [&[&str]; 14] = [
        &["--pin", "0"],
        &["--pin", "a,b"],
        &["--pin", "0,-1"],
        &["--pin", "0,4096"],
        &["--size", "0"],
        &["--size", "lots"],
        &["--size", "2MiB"],
        &["--chunk", "0"],
        &["--chunk", "1.5K"],
        &["--size", "4 KB s"],
        &["--only", "pipe,smoke-signals"],
        &["--runs", "0"],
        &["--run-time=-1"],
        &["--chart", "/nonexistent-dir/x.svg"],
    ];
    for args in cases {
        let out = plumb_ipc(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("plumb: "), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
