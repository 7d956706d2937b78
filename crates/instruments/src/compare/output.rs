//! What `plumb compare` produces: the per-model summary (medians over rounds), the table on
//! stdout, and the files in `--out` — raw results as JSON and CSV, and an SVG chart
//! (plotters) of throughput and tail latency per model. A latency nobody measured (a model
//! that answered nothing) is `-` in the table, empty in the CSV and `null` in the JSON; the
//! chart leads with starvation and never draws an unanswered model as the fastest one.

use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bench::Report;
use crate::bench::report::shown_us;

/// One bench of one model in one round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub round: usize,
    pub model: String,
    pub report: Report,
    /// Server process-tree CPU time over the measured window, in % of one core.
    pub server_cpu_pct: f64,
    /// Peak resident memory of the server process tree during the run.
    pub peak_rss_kib: u64,
    /// Idle connections held open during the run (the idle scenario).
    pub idle_connections: usize,
}

/// Medians over the rounds of one model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub requests_per_sec: f64,
    /// Throughput relative to the best model (1.0 for the best).
    pub ratio: f64,
    pub bytes_per_sec: f64,
    /// Median over the rounds that answered anything; `None` when none did.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Failed requests plus 4xx/5xx responses, summed over rounds.
    pub errors: u64,
    /// Connections that got no response in a run (median over rounds).
    pub starved: u64,
    /// Bench connections per run.
    pub connections: usize,
    pub server_cpu_pct: f64,
    /// Highest peak over the rounds.
    pub peak_rss_kib: u64,
    pub rounds: usize,
    /// The measured window of one run (median): a starved connection waited at least this.
    pub duration_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Summarises the runs per model, in the order of `models`.
pub fn summarize(models: &[String], runs: &[Run]) -> Vec<ModelSummary> {
    let mut out: Vec<ModelSummary> = models
        .iter()
        .map(|m| {
            let mine: Vec<&Run> = runs.iter().filter(|r| &r.model == m).collect();
            let med = |f: &dyn Fn(&Run) -> f64| median(mine.iter().map(|r| f(r)).collect());
            let measured = |f: &dyn Fn(&Run) -> Option<f64>| {
                let v: Vec<f64> = mine.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| median(v))
            };
            ModelSummary {
                model: m.clone(),
                requests_per_sec: med(&|r| r.report.requests_per_sec),
                ratio: 0.0,
                bytes_per_sec: med(&|r| r.report.bytes_per_sec),
                p50_us: measured(&|r| r.report.latency_us.p50),
                p99_us: measured(&|r| r.report.latency_us.p99),
                errors: mine.iter().map(|r| r.report.errors.total()).sum(),
                starved: med(&|r| r.report.starved as f64) as u64,
                connections: mine.first().map_or(0, |r| r.report.shape.connections),
                server_cpu_pct: med(&|r| r.server_cpu_pct),
                peak_rss_kib: mine.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
                rounds: mine.len(),
                duration_s: med(&|r| r.report.duration_s),
            }
        })
        .collect();
    let best = out
        .iter()
        .map(|s| s.requests_per_sec)
        .fold(0.0_f64, f64::max);
    for s in &mut out {
        s.ratio = if best > 0.0 {
            s.requests_per_sec / best
        } else {
            0.0
        };
    }
    out
}

/// The table printed on stdout.
pub fn table(title: &str, summary: &[ModelSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{title}");
    let _ = writeln!(
        s,
        "{:<11} {:>11} {:>6} {:>10} {:>10} {:>10} {:>8} {:>8} {:>10} {:>10}",
        "model",
        "req/s",
        "ratio",
        "MB/s",
        "p50",
        "p99",
        "errors",
        "starved",
        "server CPU",
        "peak RSS"
    );
    for m in summary {
        let _ = writeln!(
            s,
            "{:<11} {:>11.0} {:>6.2} {:>10.1} {:>10} {:>10} {:>8} {:>8} {:>9.0}% {:>6.1} MiB",
            m.model,
            m.requests_per_sec,
            m.ratio,
            m.bytes_per_sec / 1e6,
            shown_us(m.p50_us),
            shown_us(m.p99_us),
            m.errors,
            m.starved,
            m.server_cpu_pct,
            m.peak_rss_kib as f64 / 1024.0,
        );
    }
    s
}

/// A CSV field that may not have been measured: empty when it was not.
fn cell(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// One CSV row per run.
pub fn csv(runs: &[Run]) -> String {
    let mut s = String::from(
        "round,model,requests,duration_s,requests_per_sec,bytes_per_sec,p50_us,p90_us,p99_us,p999_us,max_us,\
         err_connect,err_read,err_write,err_timeout,err_bad_response,err_closed,err_status,\
         starved,server_cpu_pct,peak_rss_kib,idle_connections,err_rpc\n",
    );
    for r in runs {
        let p = &r.report;
        let l = &p.latency_us;
        let e = &p.errors;
        let _ = writeln!(
            s,
            "{},{},{},{:.4},{:.1},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{},{},{}",
            r.round,
            r.model,
            p.requests,
            p.duration_s,
            p.requests_per_sec,
            p.bytes_per_sec,
            cell(l.p50),
            cell(l.p90),
            cell(l.p99),
            cell(l.p999),
            cell(l.max),
            e.connect,
            e.read,
            e.write,
            e.timeout,
            e.bad_response,
            e.closed,
            e.status,
            p.starved,
            r.server_cpu_pct,
            r.peak_rss_kib,
            r.idle_connections,
            e.rpc_error,
        );
    }
    s
}

/// The chart's size in pixels.
const WIDTH: u32 = 1100;
const HEIGHT: u32 = 560;

// Every colour is opaque and spelled out: viewers disagree about opacity (some ignore it,
// some blend it differently), so a chart drawn without it looks the same everywhere.
const THROUGHPUT: RGBColor = RGBColor(52, 101, 164);
const P99: RGBColor = RGBColor(204, 0, 0);
const P50: RGBColor = RGBColor(245, 121, 0);
const STARVED: RGBColor = RGBColor(170, 0, 0);
const STARVED_BACK: RGBColor = RGBColor(252, 226, 226);
const GRID: RGBColor = RGBColor(222, 222, 222);
const ALL_ANSWERED: RGBColor = RGBColor(0, 110, 40);

/// Draws the chart: a headline that names every starved model first, then throughput (left)
/// and p50/p99 latency on a log scale (right) per model. A model with starved connections
/// gets hatched bars, and its latency panel shows the starved connections' wait as a hatched
/// bar up to the measured window (they had no answer in it: a timeout); a model with no
/// latency at all gets a "no answers" mark, never a bar that would read as the fastest.
///
/// # Errors
/// The file cannot be written.
pub fn chart(path: &Path, title: &str, summary: &[ModelSummary]) -> anyhow::Result<()> {
    let svg = render(title, summary)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    std::fs::write(path, svg).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The chart as SVG text. plotters writes `opacity="1"` on every element; since every colour
/// here is opaque, the attribute says nothing and is dropped, so the file has no opacity.
///
/// # Errors
/// A drawing error from plotters.
pub fn render(title: &str, summary: &[ModelSummary]) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, title, summary)?;
        root.present()?;
    }
    Ok(svg.replace(" opacity=\"1\"", ""))
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn draw(
    root: &Area<'_>,
    title: &str,
    summary: &[ModelSummary],
) -> Result<(), Box<dyn std::error::Error>> {
    let n = summary.len().max(1);
    let names: Vec<String> = summary.iter().map(|s| s.model.clone()).collect();
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            names.get(*i).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(34);
    top.draw(&Text::new(
        title.to_string(),
        (WIDTH as i32 / 2, 8),
        font(19, false, BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    let (banner, rest) = rest.split_vertically(46);
    headline(&banner, summary)?;
    let (left, right) = rest.split_horizontally(WIDTH / 2);

    // Throughput.
    let (cap, left) = left.split_vertically(44);
    let any_starved = summary.iter().any(|s| s.starved > 0);
    let legend: &[(Swatch, &str)] = if any_starved {
        &[
            (Swatch::Solid(THROUGHPUT), "every connection answered"),
            (Swatch::Hatched, "some connections starved"),
        ]
    } else {
        &[]
    };
    caption(&cap, "throughput (requests/s, median over rounds)", legend)?;
    let max_rps = summary
        .iter()
        .map(|s| s.requests_per_sec)
        .fold(1.0_f64, f64::max);
    // Room above the tallest bar for its value and a starved note.
    let mut c = ChartBuilder::on(&left)
        .margin(12)
        .margin_top(36)
        .x_label_area_size(30)
        .y_label_area_size(56)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..max_rps * 1.12)?;
    c.configure_mesh()
        .disable_x_mesh()
        // White on white: no fine lines (max_light_lines(0) hangs plotters 0.3.7 on a
        // segmented axis).
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(BLACK)
        .label_style(font(12, false, BLACK))
        .x_labels(n)
        .x_label_formatter(&label)
        .y_label_formatter(&|v| per_sec(*v))
        .draw()?;
    for (i, s) in summary.iter().enumerate() {
        let (x0, x1) = slot(&c.plotting_area().get_pixel_range().0, n, i, 12);
        let top = c
            .backend_coord(&(SegmentValue::CenterOf(i), s.requests_per_sec))
            .1;
        let bottom = c.backend_coord(&(SegmentValue::CenterOf(i), 0.0)).1;
        if s.starved > 0 {
            hatched(root, (x0, top), (x1, bottom))?;
        } else {
            root.draw(&Rectangle::new(
                [(x0, top), (x1, bottom)],
                THROUGHPUT.filled(),
            ))?;
        }
        let cx = (x0 + x1) / 2;
        root.draw(&Text::new(
            format!("{:.0}", s.requests_per_sec),
            (cx, top - 4),
            font(12, false, BLACK).pos(Pos::new(HPos::Center, VPos::Bottom)),
        ))?;
        if s.starved > 0 {
            for (text, dy) in [
                (format!("{}/{}", s.starved, s.connections), 19),
                ("starved".to_string(), 33),
            ] {
                root.draw(&Text::new(
                    text,
                    (cx, top - dy),
                    font(12, true, STARVED).pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))?;
            }
        }
    }

    // Latency.
    let window_us = summary
        .iter()
        .filter(|s| s.starved > 0)
        .map(|s| s.duration_s * 1e6)
        .fold(0.0_f64, f64::max);
    let measured: Vec<f64> = summary
        .iter()
        .flat_map(|s| [s.p50_us, s.p99_us])
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    let lo = measured.iter().copied().fold(f64::INFINITY, f64::min);
    let lo = if lo.is_finite() {
        lo / 2.0
    } else {
        window_us / 100.0
    }
    .max(0.1);
    let top_value = measured
        .iter()
        .copied()
        .fold(window_us, f64::max)
        .max(lo * 10.0);
    // Room above the tallest bar for its label.
    let hi = top_value * 3.0;
    let (cap, right) = right.split_vertically(44);
    let starved_note = format!("starved: no answer in {}", seconds(window_us));
    let mut legend = vec![(Swatch::Solid(P99), "p99"), (Swatch::Solid(P50), "p50")];
    if any_starved {
        legend.push((Swatch::Hatched, &starved_note));
    }
    caption(&cap, "latency (log scale)", &legend)?;
    let mut c = ChartBuilder::on(&right)
        .margin(12)
        .margin_top(22)
        .x_label_area_size(30)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (0..n - 1).into_segmented(),
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
        )?;
    c.configure_mesh()
        .disable_x_mesh()
        .bold_line_style(GRID)
        .axis_style(BLACK)
        .label_style(font(12, false, BLACK))
        .x_labels(n)
        .x_label_formatter(&label)
        .y_label_formatter(&|v| tick_us(*v))
        .draw()?;
    let (xs, ys) = c.plotting_area().get_pixel_range();
    let y = |v: f64| {
        c.backend_coord(&(SegmentValue::CenterOf(0), v.clamp(lo, hi)))
            .1
    };
    for (i, s) in summary.iter().enumerate() {
        let (x0, x1) = slot(&xs, n, i, 8);
        let cx = (x0 + x1) / 2;
        if s.starved > 0 {
            // The starved connections waited the whole window: drawn as that long a wait.
            let level = y(s.duration_s * 1e6);
            hatched(root, (x0, level), (x1, y(lo)))?;
            root.draw(&Text::new(
                format!("> {}", seconds(s.duration_s * 1e6)),
                (cx, level - 4),
                font(12, true, STARVED).pos(Pos::new(HPos::Center, VPos::Bottom)),
            ))?;
        }
        let bars = [(s.p99_us, P99, 15), (s.p50_us, P50, 24)];
        for (value, color, margin) in bars {
            if let Some(v) = value {
                let (b0, b1) = slot(&xs, n, i, margin);
                root.draw(&Rectangle::new([(b0, y(v)), (b1, y(lo))], color.filled()))?;
            }
        }
        if s.p99_us.is_none() {
            // Nothing answered: a mark where a bar would be, so no bar can look fastest.
            let mid = (ys.start + ys.end) / 2;
            let (m0, m1) = slot(&xs, n, i, 2);
            root.draw(&Rectangle::new(
                [(m0, mid - 22), (m1, mid + 22)],
                WHITE.filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(m0, mid - 22), (m1, mid + 22)],
                STARVED.stroke_width(2),
            ))?;
            for (text, dy) in [("no", -10), ("answers", 8)] {
                root.draw(&Text::new(
                    text,
                    (cx, mid + dy),
                    font(13, true, STARVED).pos(Pos::new(HPos::Center, VPos::Center)),
                ))?;
            }
        }
    }
    Ok(())
}

/// The first line under the title: which models starved connections, in large type on red,
/// or that every connection was answered.
fn headline(area: &Area<'_>, summary: &[ModelSummary]) -> Result<(), Box<dyn std::error::Error>> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let starved: Vec<String> = summary
        .iter()
        .filter(|s| s.starved > 0)
        .map(|s| format!("{} {}/{}", s.model, s.starved, s.connections))
        .collect();
    if starved.is_empty() {
        area.draw(&Text::new(
            "every connection of every model was answered",
            (w / 2, h / 2),
            font(16, true, ALL_ANSWERED).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        return Ok(());
    }
    let window = summary
        .iter()
        .filter(|s| s.starved > 0)
        .map(|s| s.duration_s * 1e6)
        .fold(0.0_f64, f64::max);
    let text = format!(
        "STARVED, no answer in {}: {}",
        seconds(window),
        starved.join(", ")
    );
    // As large as fits the width (about 0.55 em per character of a sans-serif font).
    let size = ((w - 40) as f64 / (0.56 * text.chars().count() as f64)).clamp(11.0, 19.0);
    area.draw(&Rectangle::new(
        [(10, 4), (w - 10, h - 4)],
        STARVED.filled(),
    ))?;
    area.draw(&Text::new(
        text,
        (w / 2, h / 2),
        ("sans-serif", size, FontStyle::Bold)
            .into_font()
            .color(&WHITE)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    Ok(())
}

enum Swatch {
    Solid(RGBColor),
    Hatched,
}

/// A panel's caption with its legend in a row below it.
fn caption(
    area: &Area<'_>,
    text: &str,
    legend: &[(Swatch, &str)],
) -> Result<(), Box<dyn std::error::Error>> {
    let (w, _) = area.dim_in_pixel();
    area.draw(&Text::new(
        text.to_string(),
        (w as i32 / 2, 4),
        font(15, false, BLACK).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    let mut x = 70;
    for (swatch, name) in legend {
        let (x0, y0, x1, y1) = (x, 26, x + 14, 40);
        match swatch {
            Swatch::Solid(c) => area.draw(&Rectangle::new([(x0, y0), (x1, y1)], c.filled()))?,
            Swatch::Hatched => hatched(area, (x0, y0), (x1, y1))?,
        }
        area.draw(&Text::new(
            name.to_string(),
            (x1 + 5, (y0 + y1) / 2),
            font(12, false, BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x = x1 + 5 + (name.chars().count() as i32 * 13 / 2) + 18;
    }
    Ok(())
}

fn font(size: u32, bold: bool, color: RGBColor) -> TextStyle<'static> {
    let style = if bold {
        FontStyle::Bold
    } else {
        FontStyle::Normal
    };
    ("sans-serif", size, style).into_font().color(&color)
}

/// The pixel columns of model `i`'s bar: its share of the plotting width less `margin` a
/// side, and no wider than about 90 pixels (less the margin), so a chart of two models does
/// not draw slabs.
fn slot(x: &std::ops::Range<i32>, models: usize, i: usize, margin: i32) -> (i32, i32) {
    let w = f64::from(x.end - x.start) / models as f64;
    let center = x.start + (w * (i as f64 + 0.5)).round() as i32;
    let half = ((w / 2.0).floor() as i32 - margin).min(53 - margin).max(1);
    (center - half, center + half)
}

/// A bar filled with diagonal lines on a pale ground, in pixel coordinates of `area`.
fn hatched(
    area: &Area<'_>,
    (x0, y0): (i32, i32),
    (x1, y1): (i32, i32),
) -> Result<(), Box<dyn std::error::Error>> {
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], STARVED_BACK.filled()))?;
    let (w, h) = (x1 - x0, y1 - y0);
    // Lines x = x0 + d + t, y = y1 - t for t in 0..=h, clipped to the bar's columns.
    let mut d = -h;
    while d < w {
        let t0 = (-d).max(0);
        let t1 = h.min(w - d);
        if t0 < t1 {
            area.draw(&PathElement::new(
                vec![(x0 + d + t0, y1 - t0), (x0 + d + t1, y1 - t1)],
                STARVED.stroke_width(2),
            ))?;
        }
        d += 9;
    }
    area.draw(&Rectangle::new(
        [(x0, y0), (x1, y1)],
        STARVED.stroke_width(1),
    ))?;
    Ok(())
}

/// Tick values for a log axis from `lo` to `hi`: 1, 2 and 5 per decade when there are few
/// decades, powers of ten otherwise, so labels neither vanish nor crowd.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let steps: &[f64] = if (hi / lo).log10() <= 3.2 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in steps {
            let v = decade * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

/// A tick label for a latency in microseconds: "500 us", "2 ms", "1 s".
fn tick_us(us: f64) -> String {
    let (v, unit) = if us < 999.5 {
        (us, "us")
    } else if us < 999_500.0 {
        (us / 1e3, "ms")
    } else {
        (us / 1e6, "s")
    };
    let s = format!("{v:.1}");
    format!("{} {unit}", s.strip_suffix(".0").unwrap_or(&s))
}

/// A window in microseconds as seconds: "2 s", "0.5 s".
fn seconds(us: f64) -> String {
    let s = format!("{:.1}", us / 1e6);
    format!("{} s", s.strip_suffix(".0").unwrap_or(&s))
}

/// A throughput tick label: "0", "500", "20k", "1.5M".
fn per_sec(v: f64) -> String {
    if v >= 1e6 {
        let s = format!("{:.1}", v / 1e6);
        format!("{}M", s.strip_suffix(".0").unwrap_or(&s))
    } else if v >= 1e3 {
        let s = format!("{:.1}", v / 1e3);
        format!("{}k", s.strip_suffix(".0").unwrap_or(&s))
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    /// (model, req/s, p50 us, p99 us, starved) of one comparison.
    type Row = (&'static str, f64, Option<f64>, Option<f64>, u64);

    fn summary(rows: &[Row]) -> Vec<ModelSummary> {
        let best = rows.iter().map(|r| r.1).fold(0.0, f64::max);
        rows.iter()
            .map(|&(model, rps, p50, p99, starved)| ModelSummary {
                model: model.to_string(),
                requests_per_sec: rps,
                ratio: rps / best,
                bytes_per_sec: 0.0,
                p50_us: p50,
                p99_us: p99,
                errors: 0,
                starved,
                connections: 64,
                server_cpu_pct: 0.0,
                peak_rss_kib: 0,
                rounds: 3,
                duration_s: 2.0,
            })
            .collect()
    }

    /// The comparisons the README shows, measured 2026-11-25 05:08-05:20 UTC (the README's
    /// tables; the echo latencies are read back from the chart of that run, within 2%), with
    /// the file each is drawn into.
    fn docs_figures() -> [(&'static str, &'static str, Vec<Row>); 4] {
        let s = Some;
        [
            (
                "compare-http.svg",
                "plumb compare: http, keep-alive scenario, 64 connections, 3 x 2.0 s per model",
                vec![
                    ("iterative", 15831.0, s(63.1), s(104.3), 63),
                    ("fork-wait", 17868.0, s(61.6), s(106.6), 63),
                    ("fork", 115355.0, s(538.1), s(1130.0), 0),
                    ("thread", 126795.0, s(485.9), s(951.8), 0),
                    ("pool", 115460.0, s(541.7), s(1120.0), 0),
                    ("prefork", 41212.0, s(45.8), s(103.6), 62),
                    ("event", 184910.0, s(284.4), s(1400.0), 0),
                ],
            ),
            (
                "compare-http-close.svg",
                "plumb compare: http, close scenario, 64 connections, 3 x 2.0 s per model",
                vec![
                    ("iterative", 68508.0, s(894.5), s(1680.0), 0),
                    ("fork-wait", 2856.0, s(22230.0), s(24720.0), 0),
                    ("fork", 5243.0, s(12180.0), s(17810.0), 0),
                    ("thread", 15132.0, s(2310.0), s(20430.0), 0),
                    ("pool", 50680.0, s(1190.0), s(2450.0), 0),
                    ("prefork", 56962.0, s(898.0), s(2550.0), 0),
                    ("event", 70520.0, s(934.9), s(1480.0), 0),
                ],
            ),
            (
                "compare-http-idle.svg",
                "plumb compare: http, idle scenario, 64 connections + 1000 idle, 3 x 2.0 s per model",
                vec![
                    ("iterative", 0.0, None, None, 64),
                    ("fork-wait", 0.0, None, None, 64),
                    ("fork", 101915.0, s(567.8), s(1130.0), 0),
                    ("thread", 126226.0, s(181.6), s(334.1), 40),
                    ("pool", 114248.0, s(195.3), s(413.7), 40),
                    ("prefork", 0.0, None, None, 64),
                    ("event", 181710.0, s(344.6), s(902.1), 0),
                ],
            ),
            (
                "compare-echo.svg",
                "plumb compare: echo, keep-alive scenario, 64 connections, 3 x 2.0 s per model",
                vec![
                    ("iterative", 19018.0, s(58.9), s(119.3), 63),
                    ("fork-wait", 19310.0, s(56.9), s(96.5), 63),
                    ("fork", 144288.0, s(440.2), s(660.6), 0),
                    ("thread", 157846.0, s(403.1), s(573.6), 0),
                    ("pool", 123095.0, s(516.0), s(1101.9), 0),
                    ("prefork", 45519.0, s(46.8), s(100.0), 62),
                    ("event", 219136.0, s(314.8), s(2007.6), 0),
                ],
            ),
        ]
    }

    #[test]
    fn charts_lead_with_starvation_mark_no_answers_and_use_no_opacity() {
        for (file, title, rows) in docs_figures() {
            let summary = summary(&rows);
            let svg = render(title, &summary).unwrap();
            assert!(!svg.contains("opacity"), "{file}: opacity in the SVG");
            assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
            let starved = rows.iter().any(|r| r.4 > 0);
            // The headline is the first text after the title.
            let texts: Vec<&str> = svg
                .split("<text")
                .skip(1)
                .map(|t| t.split_once('>').map_or("", |x| x.1).trim())
                .collect();
            if starved {
                assert!(texts[1].starts_with("STARVED"), "{file}: {:?}", &texts[..2]);
            } else {
                assert!(texts[1].starts_with("every connection"), "{file}");
            }
            let unanswered = rows.iter().filter(|r| r.3.is_none()).count();
            assert_eq!(
                svg.matches(">\nanswers\n</text>").count(),
                unanswered,
                "{file}: one 'no answers' mark per model without latency"
            );
        }
    }

    #[test]
    fn log_ticks_are_readable_at_every_range() {
        assert_eq!(
            log_ticks(30.0, 6000.0),
            [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
        );
        assert_eq!(
            log_ticks(20.0, 6e6),
            [100.0, 1000.0, 10000.0, 100000.0, 1e6]
        );
        let labels: Vec<String> = [0.5, 50.0, 1000.0, 2000.0, 1e6, 2.5e6]
            .map(tick_us)
            .to_vec();
        assert_eq!(labels, ["0.5 us", "50 us", "1 ms", "2 ms", "1 s", "2.5 s"]);
        assert_eq!(per_sec(0.0), "0");
        assert_eq!(per_sec(25000.0), "25k");
        assert_eq!(per_sec(1_500_000.0), "1.5M");
    }

    /// Redraws docs/*.svg from the figures above: `cargo test --release --lib
    /// compare::output -- --ignored`, after a change to the chart.
    #[test]
    #[ignore = "writes docs/*.svg"]
    fn regenerate_docs_charts() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        for (file, title, rows) in docs_figures() {
            chart(&docs.join(file), title, &summary(&rows)).unwrap();
        }
    }
}
