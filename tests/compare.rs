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
        &["compare", "--service", "echo", "--size", "1x"],
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

#[test]
fn a_model_that_answered_nothing_shows_no_latency_and_a_no_answers_mark() {
    // An iterative echo server held by the first of two idle clients answers none of the
    // measured connections; the event model answers all of them.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("results");
    let dir_s = dir.display().to_string();
    let (code, stdout, stderr) = run_plumb(
        &[
            "compare",
            "--service",
            "echo",
            "--scenario",
            "idle",
            "--idle",
            "2",
            "--models",
            "iterative,event",
            "-c",
            "2",
            "-d",
            "0.5",
            "--warmup",
            "0",
            "--timeout",
            "0.3",
            "--rounds",
            "1",
            "--size",
            "1KiB",
            "--out",
            &dir_s,
        ],
        b"",
    );
    assert_eq!(code, 0, "compare failed: {stderr}");
    let table = String::from_utf8(stdout).unwrap();
    let row = |model: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(model))
            .unwrap_or_else(|| panic!("no row for {model}: {table}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    // model req/s ratio MB/s p50 p99 ...: '-' where nothing was measured, never 0.0 us.
    let iterative = row("iterative");
    assert_eq!(iterative[4], "-", "{table}");
    assert_eq!(iterative[5], "-", "{table}");
    assert!(!table.contains("0.0 us"), "{table}");
    assert_ne!(row("event")[4], "-", "{table}");

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["message_size"], 1024);
    let summary = &json["summary"];
    assert_eq!(summary[0]["model"], "iterative");
    assert!(summary[0]["p50_us"].is_null(), "{}", summary[0]);
    assert!(summary[0]["p99_us"].is_null(), "{}", summary[0]);
    assert_eq!(summary[0]["starved"], 2);
    assert!(summary[1]["p99_us"].as_f64().unwrap() > 0.0);
    let runs = json["runs"].as_array().unwrap();
    let it = runs.iter().find(|r| r["model"] == "iterative").unwrap();
    assert!(it["report"]["latency_us"]["p99"].is_null(), "{it}");

    let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
    assert!(!svg.contains("opacity"), "opacity in the chart");
    // Starvation is the headline (the first text after the title), and the model without
    // latency has its mark.
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .map(|t| {
            let body = t.split_once('>').map_or("", |x| x.1);
            body.split("</text>").next().unwrap_or_default().trim()
        })
        .collect();
    assert!(texts[1].starts_with("STARVED"), "{:?}", &texts[..3]);
    assert!(texts[1].contains("iterative 2/2"), "{}", texts[1]);
    assert!(
        texts.windows(2).any(|w| w == ["no", "answers"]),
        "{texts:?}"
    );
}

#[test]
fn models_help_names_no_option_compare_lacks() {
    let (code, out, err) = run_plumb(&["compare", "--help"], b"");
    assert_eq!(code, 0, "{err}");
    let help = String::from_utf8(out).unwrap();
    let models = help
        .split("--models")
        .nth(1)
        .and_then(|s| s.split("\n  -").next())
        .unwrap_or_else(|| panic!("no --models in {help}"));
    for option in ["--workers", "--queue", "--max-connections", "--threads"] {
        assert!(
            !models.contains(option),
            "--models help mentions {option}:{models}"
        );
    }
    for model in [
        "iterative",
        "fork-wait",
        "fork",
        "thread",
        "pool",
        "prefork",
        "event",
    ] {
        assert!(models.contains(model), "{model} missing:{models}");
    }
}

#[test]
fn compares_the_rpc_service_under_every_model() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("rpc");
    let dir_s = dir.display().to_string();
    let (code, stdout, stderr) = run_plumb(
        &[
            "compare",
            "--service",
            "rpc",
            "-d",
            "0.4",
            "--warmup",
            "0.1",
            "--rounds",
            "1",
            "-c",
            "4",
            "--out",
            &dir_s,
        ],
        b"",
    );
    assert_eq!(code, 0, "compare failed: {stderr}");
    let table = String::from_utf8(stdout).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["service"], "rpc");
    // The JSON-RPC anchor's params object, byte for byte (90 bytes; it calls it 100).
    assert_eq!(json["message_size"], 90);
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 7, "every model: {table}");
    for r in runs {
        let report = &r["report"];
        assert!(report["requests"].as_u64().unwrap() > 0, "{r}");
        // Every answer a result: rpc.echo worked under this model.
        assert_eq!(report["status"]["result"], report["requests"], "{r}");
        let errors = report["errors"].as_object().unwrap();
        assert!(errors.values().all(|n| n == 0), "{r}");
    }
}
