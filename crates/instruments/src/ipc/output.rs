//! The report of `plumb ipc`: one serde structure printed as JSON (`--json`) or as a table,
//! and drawn as an SVG chart (`--chart`) with plotters, in opaque colours with no opacity
//! attributes.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::bandwidth::Bandwidth;
use super::costs::CostFigure;
use super::latency::Latency;

/// Everything measured, with the settings that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: SettingsReport,
    pub latency: Vec<LatencyRow>,
    pub bandwidth: Vec<BandwidthRow>,
    pub costs: Vec<CostRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SettingsReport {
    /// Bytes per ping-pong message.
    pub size: usize,
    /// Bytes per write in the bandwidth test.
    pub chunk: usize,
    /// Parent and child CPUs, when pinned.
    pub pin: Option<[usize; 2]>,
    pub spin: bool,
    pub runs: usize,
    pub run_time_s: f64,
    pub cpus: usize,
    /// The default capacity of a new pipe on this machine.
    pub pipe_capacity: usize,
    /// Cost of the single-threadedness check made before each fork (included in the fork
    /// figures).
    pub fork_check_ns: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    pub channel: &'static str,
    pub what: &'static str,
    pub size: usize,
    pub iters: u64,
    pub runs: usize,
    pub mean_ns: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BandwidthRow {
    pub channel: &'static str,
    pub what: &'static str,
    pub chunk: usize,
    pub bytes: u64,
    pub runs: usize,
    /// 10^6 bytes per second.
    pub mb_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostRow {
    pub name: &'static str,
    pub what: &'static str,
    pub iters: u64,
    pub runs: usize,
    pub mean_ns: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
}

impl From<&Latency> for LatencyRow {
    fn from(l: &Latency) -> Self {
        LatencyRow {
            channel: l.channel.name(),
            what: l.channel.describe(),
            size: l.size,
            iters: l.iters,
            runs: l.runs,
            mean_ns: l.spread.mean_ns,
            p50_ns: l.spread.p50_ns,
            p99_ns: l.spread.p99_ns,
        }
    }
}

impl From<&Bandwidth> for BandwidthRow {
    fn from(b: &Bandwidth) -> Self {
        BandwidthRow {
            channel: b.channel.name(),
            what: b.channel.describe(),
            chunk: b.chunk,
            bytes: b.bytes,
            runs: b.runs,
            mb_per_s: b.mb_per_s,
        }
    }
}

impl From<&CostFigure> for CostRow {
    fn from(c: &CostFigure) -> Self {
        CostRow {
            name: c.cost.name(),
            what: c.cost.describe(),
            iters: c.iters,
            runs: c.runs,
            mean_ns: c.spread.mean_ns,
            p50_ns: c.spread.p50_ns,
            p99_ns: c.spread.p99_ns,
        }
    }
}

/// A duration in nanoseconds, in the unit that suits it: "850 ns", "5.21 µs", "1.30 ms".
pub fn human_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// "64 KiB", "1 B", "1.5 MiB".
pub fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

impl Report {
    /// The report as a terminal table.
    pub fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let pin = match s.pin {
            Some([p, c]) => format!("parent on CPU {p}, child on CPU {c}"),
            None => "not pinned".to_string(),
        };
        let _ = writeln!(
            out,
            "plumb ipc: {} CPUs, {pin}, median of {} runs of ~{:.2} s; pipe capacity {}",
            s.cpus,
            s.runs,
            s.run_time_s,
            human_bytes(s.pipe_capacity)
        );
        if !self.latency.is_empty() {
            let _ = writeln!(
                out,
                "\nround trip, {} message{}\n  {:<11}{:>11}{:>11}{:>11}",
                human_bytes(s.size),
                if s.spin { " (busy-poll)" } else { "" },
                "",
                "mean",
                "p50",
                "p99",
            );
            for r in &self.latency {
                let _ = writeln!(
                    out,
                    "  {:<11}{:>11}{:>11}{:>11}   {}",
                    r.channel,
                    human_ns(r.mean_ns),
                    human_ns(r.p50_ns),
                    human_ns(r.p99_ns),
                    r.what
                );
            }
        }
        if !self.bandwidth.is_empty() {
            let _ = writeln!(
                out,
                "\nbandwidth, {} writes (MB = 10^6 bytes)",
                human_bytes(s.chunk)
            );
            for r in &self.bandwidth {
                let _ = writeln!(
                    out,
                    "  {:<11}{:>11}   {}",
                    r.channel,
                    format!("{:.0} MB/s", r.mb_per_s),
                    r.what
                );
            }
        }
        if !self.costs.is_empty() {
            let _ = writeln!(
                out,
                "\nstart-up cost\n  {:<11}{:>11}{:>11}{:>11}",
                "", "mean", "p50", "p99"
            );
            for r in &self.costs {
                let _ = writeln!(
                    out,
                    "  {:<11}{:>11}{:>11}{:>11}   {}",
                    r.name,
                    human_ns(r.mean_ns),
                    human_ns(r.p50_ns),
                    human_ns(r.p99_ns),
                    r.what
                );
            }
        }
        out
    }

    /// Draws the figures as horizontal bars, one panel per kind of figure, into an SVG file.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn chart(&self, path: &Path) -> anyhow::Result<()> {
        let panels: Vec<Panel> = [
            Panel {
                title: format!(
                    "Round trip p50, {} message (µs; lower is better)",
                    human_bytes(self.settings.size)
                ),
                bars: self
                    .latency
                    .iter()
                    .map(|r| (r.channel.to_string(), r.p50_ns / 1e3))
                    .collect(),
            },
            Panel {
                title: format!(
                    "Bandwidth, {} writes (MB/s; higher is better)",
                    human_bytes(self.settings.chunk)
                ),
                bars: self
                    .bandwidth
                    .iter()
                    .map(|r| (r.channel.to_string(), r.mb_per_s))
                    .collect(),
            },
            Panel {
                title: "Start-up cost p50 (µs; lower is better)".to_string(),
                bars: self
                    .costs
                    .iter()
                    .map(|r| (r.what.to_string(), r.p50_ns / 1e3))
                    .collect(),
            },
        ]
        .into_iter()
        .filter(|p| !p.bars.is_empty())
        .collect();
        if panels.is_empty() {
            anyhow::bail!("nothing to chart");
        }
        let height = panels
            .iter()
            .map(|p| panel_height(p.bars.len()))
            .sum::<u32>();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
            root.fill(&WHITE)?;
            let heights: Vec<u32> = panels.iter().map(|p| panel_height(p.bars.len())).collect();
            let mut rest = root;
            for (panel, h) in panels.iter().zip(heights) {
                let (area, below) = rest.split_vertically(h);
                panel.draw(&area)?;
                rest = below;
            }
            rest.present()?;
        }
        // Every colour is opaque, so plotters' `opacity="1"` says nothing: dropped, so every
        // SVG viewer draws the same picture.
        std::fs::write(path, svg.replace(" opacity=\"1\"", ""))?;
        Ok(())
    }
}

fn panel_height(bars: usize) -> u32 {
    70 + 34 * bars.max(2) as u32
}

struct Panel {
    title: String,
    bars: Vec<(String, f64)>,
}

impl Panel {
    fn draw(
        &self,
        area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    ) -> anyhow::Result<()> {
        // The first bar is drawn at the top: slot n-1 holds bar 0.
        let n = self.bars.len();
        let max = self
            .bars
            .iter()
            .map(|b| b.1)
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let labels: Vec<String> = self.bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(230)
            .build_cartesian_2d(0.0..max, (0..(n - 1).max(1)).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .bold_line_style(RGBColor(222, 222, 222))
            .light_line_style(RGBColor(244, 244, 244))
            .axis_style(BLACK)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(slot) if *slot < n => {
                    labels.get(n - 1 - *slot).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .y_labels(n)
            .draw()?;
        chart.draw_series(
            Histogram::horizontal(&chart)
                // Explicit colours, not opacity: viewers blend opacity differently.
                .style(RGBColor(102, 102, 255).filled())
                .margin(6)
                .data(
                    self.bars
                        .iter()
                        .enumerate()
                        .map(|(i, (_, v))| (n - 1 - i, *v)),
                ),
        )?;
        chart.draw_series(self.bars.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                format!("{v:.1}"),
                (*v, SegmentValue::CenterOf(n - 1 - i)),
                ("sans-serif", 13),
            )
        }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        let cases = [
            (850.0, "850 ns"),
            (5210.0, "5.21 µs"),
            (1_300_000.0, "1.30 ms"),
        ];
        for (ns, want) in cases {
            assert_eq!(human_ns(ns), want);
        }
        let cases = [
            (1, "1 B"),
            (65536, "64 KiB"),
            (1 << 20, "1 MiB"),
            (1500, "1500 B"),
        ];
        for (n, want) in cases {
            assert_eq!(human_bytes(n), want);
        }
    }
}
