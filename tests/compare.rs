//! End-to-end test of `plumb compare`: two models of the echo service, short runs, and the
//! table, JSON, CSV and SVG it must produce.

mod common;

use common::run_plumb;

#[test]
fn compares_two_models_and_writes_table_json_csv_and_svg() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("results");
    let dir_s = dir.display().to_string();
    let (code, stdout, stderr) = run_plumb(
        &[
            "compare",
            "--service",
            "echo",
            "--models",
            "iterative,pool",
            "-d",
            "1",
            "--warmup",
            "0.2",
            "--rounds",
            "1",
            "-c",
            "8",
            "--out",
            &dir_s,
        ],
        b"",
    );
    assert_eq!(code, 0, "compare failed: {stderr}");
    let table = String::from_utf8(stdout).unwrap();
    let header = table.lines().nth(1).expect("table header");
    for col in [
        "model",
        "req/s",
        "ratio",
        "p50",
        "p99",
        "server CPU",
        "peak RSS",
    ] {
        assert!(header.contains(col), "missing column {col}: {table}");
    }
    for model in ["iterative", "pool"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(model))
            .unwrap_or_else(|| panic!("no row for {model}: {table}"));
        let rps: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(rps > 0.0, "{row}");
    }

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["service"], "echo");
    let summary = json["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    let best = summary
        .iter()
        .map(|s| s["ratio"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(best, 1.0);
    for s in summary {
        assert!(s["requests_per_sec"].as_f64().unwrap() > 0.0);
        assert!(s["peak_rss_kib"].as_u64().unwrap() > 0, "{s}");
    }
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert!(r["report"]["latency_us"]["p99"].as_f64().is_some());
        assert!(r["report"]["errors"].is_object());
    }

    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("round,model,"));

    let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
    let svg = svg.trim();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    // Balanced text elements, the model names as labels, and some drawn bars.
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert!(svg.contains("iterative") && svg.contains("pool"));
    assert!(svg.matches("<rect").count() >= 5);
}

#[test]
fn bad_compare_options_exit_2() {
    for args in [
        &["compare", "--models", "nosuch"][..],
        &["compare", "--rounds", "0", "--service", "echo"],
        &["compare", "--service", "echo", "-d", "never"],
        &[
            "compare",
            "--service",
            "echo",
            "--server-cpus",
            "x",
            "--client-cpus",
            "1",
        ],
    ] {
        let (code, _, err) = run_plumb(args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}
