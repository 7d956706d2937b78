//! What `plumb compare` produces: the per-model summary (medians over rounds), the table on
//! stdout, and the files in `--out` — raw results as JSON and CSV, and an SVG chart
//! (plotters) of throughput and tail latency per model.

use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, SegmentedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bench::Report;

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
    pub p50_us: f64,
    pub p99_us: f64,
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
            ModelSummary {
                model: m.clone(),
                requests_per_sec: med(&|r| r.report.requests_per_sec),
                ratio: 0.0,
                bytes_per_sec: med(&|r| r.report.bytes_per_sec),
                p50_us: med(&|r| r.report.latency_us.p50),
                p99_us: med(&|r| r.report.latency_us.p99),
                errors: mine
                    .iter()
                    .map(|r| r.report.errors.failures() + r.report.errors.status)
                    .sum(),
                starved: med(&|r| r.report.starved as f64) as u64,
                connections: mine.first().map_or(0, |r| r.report.shape.connections),
                server_cpu_pct: med(&|r| r.server_cpu_pct),
                peak_rss_kib: mine.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
                rounds: mine.len(),
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
            crate::bench::report::human_us(m.p50_us),
            crate::bench::report::human_us(m.p99_us),
            m.errors,
            m.starved,
            m.server_cpu_pct,
            m.peak_rss_kib as f64 / 1024.0,
        );
    }
    s
}

/// One CSV row per run.
pub fn csv(runs: &[Run]) -> String {
    let mut s = String::from(
        "round,model,requests,duration_s,requests_per_sec,bytes_per_sec,p50_us,p90_us,p99_us,p999_us,max_us,\
         err_connect,err_read,err_write,err_timeout,err_bad_response,err_closed,err_status,\
         starved,server_cpu_pct,peak_rss_kib,idle_connections\n",
    );
    for r in runs {
        let p = &r.report;
        let l = &p.latency_us;
        let e = &p.errors;
        let _ = writeln!(
            s,
            "{},{},{},{:.4},{:.1},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{},{}",
            r.round,
            r.model,
            p.requests,
            p.duration_s,
            p.requests_per_sec,
            p.bytes_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
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
        );
    }
    s
}

/// Draws throughput (left) and p50/p99 latency on a log scale (right) per model.
///
/// # Errors
/// The file cannot be written.
pub fn chart(path: &Path, title: &str, summary: &[ModelSummary]) -> anyhow::Result<()> {
    draw(path, title, summary).map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))
}

fn draw(
    path: &Path,
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
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (left, right) = root.split_horizontally(550);

    let max_rps = summary
        .iter()
        .map(|s| s.requests_per_sec)
        .fold(1.0_f64, f64::max);
    let mut c = half_chart(
        &left,
        "throughput (requests/s, median; starved = connections never answered)",
        n,
        0.0..max_rps * 1.18,
        &label,
    )?;
    c.draw_series(
        Histogram::vertical(&c)
            .style(RGBColor(52, 101, 164).filled())
            .margin(12)
            .data(
                summary
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i, s.requests_per_sec)),
            ),
    )?;
    // Starved connections under the bar's value: throughput alone hides them.
    c.draw_series(
        summary
            .iter()
            .enumerate()
            .filter(|(_, s)| s.starved > 0)
            .map(|(i, s)| {
                Text::new(
                    format!("{}/{} starved", s.starved, s.connections),
                    (
                        SegmentValue::CenterOf(i),
                        s.requests_per_sec + max_rps * 0.07,
                    ),
                    ("sans-serif", 10)
                        .into_font()
                        .color(&RGBColor(204, 0, 0))
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }),
    )?;
    c.draw_series(summary.iter().enumerate().map(|(i, s)| {
        Text::new(
            format!("{:.0}", s.requests_per_sec),
            (
                SegmentValue::CenterOf(i),
                s.requests_per_sec + max_rps * 0.02,
            ),
            ("sans-serif", 12)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    }))?;

    let lat: Vec<f64> = summary
        .iter()
        .flat_map(|s| [s.p50_us, s.p99_us])
        .filter(|v| *v > 0.0)
        .collect();
    let lo = lat.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = lat.iter().copied().fold(1.0_f64, f64::max);
    let lo = if lo.is_finite() {
        (lo / 2.0).max(0.1)
    } else {
        1.0
    };
    // Headroom above the tallest bar for the legend.
    let hi = (hi * 8.0).max(lo * 10.0);
    let mut c = half_chart(
        &right,
        "latency (us, log scale): p99 bar, p50 inside",
        n,
        (lo..hi).log_scale(),
        &label,
    )?;
    // The p99 bar, then the p50 bar drawn narrower inside it.
    type Pick = fn(&ModelSummary) -> f64;
    let bars: [(&str, RGBColor, u32, Pick); 2] = [
        ("p99", RGBColor(204, 0, 0), 12, |s| s.p99_us),
        ("p50", RGBColor(245, 121, 0), 28, |s| s.p50_us),
    ];
    for (name, color, margin, value) in bars {
        c.draw_series(
            Histogram::vertical(&c)
                .style(color.filled())
                .margin(margin)
                .baseline(lo)
                .data(
                    summary
                        .iter()
                        .enumerate()
                        .map(|(i, s)| (i, value(s).max(lo))),
                ),
        )?
        .label(name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One half of the chart: a bar per model on x, values of axis `Y` up the side.
type HalfChart<'a, 'b, Y> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<SegmentedCoord<RangedCoordusize>, Y>>;

/// The frame both halves share: the caption, one segment per model on x (named by
/// `label`), the values on y with whole-number ticks, and the mesh drawn.
fn half_chart<'a, 'b, Y>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    models: usize,
    y: Y,
    label: &dyn Fn(&SegmentValue<usize>) -> String,
) -> Result<HalfChart<'a, 'b, Y::CoordDescType>, Box<dyn std::error::Error>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d((0..models - 1).into_segmented(), y)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(models)
        .x_label_formatter(label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    Ok(c)
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
}
