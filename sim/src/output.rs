//! What a run leaves behind: a table on stdout, `summary.json`, `requests.csv` and an SVG
//! plot per run; `sweep.json`, `sweep.csv` and `sweep.svg` for a sweep.

use crate::metrics::{RequestRecord, Summary};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// Why the output files could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// A directory or file could not be made.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The summary did not encode as JSON.
    #[error("cannot encode the summary")]
    Json(#[from] serde_json::Error),
    /// A plot failed (the plotting library's errors are generic over its backend, so
    /// its message is kept).
    #[error("plotting failed: {0}")]
    Plot(String),
}

type Result<T> = std::result::Result<T, OutputError>;

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| OutputError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// The table printed on stdout: one row per run.
pub fn table(rows: &[Summary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>8} {:>8} {:>14} {:>13} {:>5} {:>8} {:>9} {:>8} {:>6} {:>9} {:>8} {:>8} {:>11} {:>7}",
        "nodes",
        "requests",
        "topology",
        "htl-policy",
        "fail",
        "success",
        "mean-hops",
        "p95-hops",
        "cache",
        "guess-pre",
        "guess-rc",
        "load-max",
        "events/s",
        "wall-s"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:>8} {:>8} {:>14} {:>13} {:>5.2} {:>8.4} {:>9.2} {:>8} {:>6.3} {:>9.3} {:>8.3} {:>8} {:>11.0} {:>7.2}",
            r.nodes,
            r.requests,
            r.topology,
            r.htl_policy,
            r.fail_fraction,
            r.success_rate,
            r.mean_hops,
            r.p95_hops,
            r.cache_hit_rate,
            r.guess_precision,
            r.guess_recall,
            r.load_max,
            r.events_per_sec,
            r.wall_seconds
        );
    }
    s
}

/// Writes `value` as pretty JSON to DIR/NAME, creating DIR.
pub fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<()> {
    create_dir(dir)?;
    let json = serde_json::to_string_pretty(value)?;
    write(&dir.join(name), json.as_bytes())
}

/// Writes `summary.json`, `requests.csv` and `hops.svg` into `dir`.
pub fn write_run(dir: &Path, summary: &Summary, records: &[RequestRecord]) -> Result<()> {
    create_dir(dir)?;
    let json = serde_json::to_string_pretty(summary)?;
    write(&dir.join("summary.json"), json.as_bytes())?;
    let mut csv = String::from("index,origin,key,outcome,success,hops,messages,latency_ms\n");
    for r in records {
        let latency = r
            .end
            .map(|e| format!("{:.3}", (e - r.start) as f64 / 1e6))
            .unwrap_or_default();
        let outcome = serde_json::to_value(r.outcome)?;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            r.index,
            r.origin,
            r.key,
            outcome.as_str().unwrap_or("?"),
            u8::from(r.outcome.success()),
            r.hops,
            r.messages,
            latency
        );
    }
    write(&dir.join("requests.csv"), csv.as_bytes())?;
    hop_plot(&dir.join("hops.svg"), summary, records)
}

/// Writes `sweep.json`, `sweep.csv` and `sweep.svg` into `dir`.
pub fn write_sweep(dir: &Path, rows: &[Summary]) -> Result<()> {
    create_dir(dir)?;
    write(
        &dir.join("sweep.json"),
        serde_json::to_string_pretty(rows)?.as_bytes(),
    )?;
    let mut csv = String::from(
        "nodes,requests,success_rate,mean_hops,p95_hops,guess_precision,guess_recall,cache_hit_rate,load_max,events_per_sec,wall_seconds\n",
    );
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{}",
            r.nodes,
            r.requests,
            r.success_rate,
            r.mean_hops,
            r.p95_hops,
            r.guess_precision,
            r.guess_recall,
            r.cache_hit_rate,
            r.load_max,
            r.events_per_sec,
            r.wall_seconds
        );
    }
    write(&dir.join("sweep.csv"), csv.as_bytes())?;
    sweep_plot(&dir.join("sweep.svg"), rows)
}

/// Writes an opennet warm-up sweep: `warmup.json`, `warmup.csv` and `warmup.svg`
/// (success rate, and mean hops beside the ideal small world's, against warm-up
/// requests per node).
pub fn write_warmup(dir: &Path, rows: &[Summary]) -> Result<()> {
    create_dir(dir)?;
    write(
        &dir.join("warmup.json"),
        serde_json::to_string_pretty(rows)?.as_bytes(),
    )?;
    let mut csv = String::from(
        "nodes,warmup_per_node,success_rate,mean_hops,ideal_mean_hops,ideal_success_rate,mean_degree,folds_taken\n",
    );
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            r.nodes,
            r.warmup_per_node,
            r.success_rate,
            r.mean_hops,
            r.ideal_mean_hops.unwrap_or(f64::NAN),
            r.ideal_success_rate.unwrap_or(f64::NAN),
            r.mean_degree,
            r.folds_taken
        );
    }
    write(&dir.join("warmup.csv"), csv.as_bytes())?;
    warmup_plot(&dir.join("warmup.svg"), rows)
}

fn warmup_plot(path: &Path, rows: &[Summary]) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (left, right) = root.split_horizontally(500);
    let xmax = rows
        .iter()
        .map(|r| r.warmup_per_node)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.05;
    let mut c = ChartBuilder::on(&left)
        .caption("success rate (opennet)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..xmax, 0f64..1.05)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("warm-up requests per node")
        .draw()
        .map_err(plot_err)?;
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.warmup_per_node as f64, r.success_rate))
        .collect();
    c.draw_series(LineSeries::new(pts.clone(), &BLUE))
        .map_err(plot_err)?;
    c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
        .map_err(plot_err)?;
    let ymax = rows
        .iter()
        .map(|r| r.mean_hops.max(r.ideal_mean_hops.unwrap_or(0.0)))
        .fold(1.0, f64::max)
        * 1.2;
    let mut c = ChartBuilder::on(&right)
        .caption("mean hops: grown vs ideal", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("warm-up requests per node")
        .draw()
        .map_err(plot_err)?;
    for (series, color, label) in [
        (
            rows.iter()
                .map(|r| (r.warmup_per_node as f64, r.mean_hops))
                .collect::<Vec<_>>(),
            BLUE,
            "opennet",
        ),
        (
            rows.iter()
                .map(|r| (r.warmup_per_node as f64, r.ideal_mean_hops.unwrap_or(0.0)))
                .collect(),
            RED,
            "ideal small world",
        ),
    ] {
        c.draw_series(LineSeries::new(series.clone(), &color))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        c.draw_series(series.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(plot_err)?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|source| OutputError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn plot_err<E: std::fmt::Display>(e: E) -> OutputError {
    OutputError::Plot(e.to_string())
}

/// Histogram of hop counts of successful requests.
fn hop_plot(path: &Path, s: &Summary, records: &[RequestRecord]) -> Result<()> {
    let mut counts: Vec<u64> = Vec::new();
    for r in records.iter().filter(|r| r.outcome.success()) {
        let h = r.hops as usize;
        if counts.len() <= h {
            counts.resize(h + 1, 0);
        }
        counts[h] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let title = format!(
        "hops, {} nodes, {:?}: success {:.3}, mean {:.2}, p95 {}",
        s.nodes, s.topology, s.success_rate, s.mean_hops, s.p95_hops
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..(counts.len().max(1) as u32), 0u64..max + max / 10 + 1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("hops")
        .y_desc("requests")
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(h, c)| {
            let h = h as u32;
            Rectangle::new([(h, 0), (h + 1, *c)], BLUE.mix(0.6).filled())
        }))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Success rate and hops against network size (log scale).
fn sweep_plot(path: &Path, rows: &[Summary]) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (left, right) = root.split_horizontally(500);
    let lo = rows.iter().map(|r| r.nodes).min().unwrap_or(1).max(1) as f64;
    let hi = (rows.iter().map(|r| r.nodes).max().unwrap_or(10) as f64).max(lo * 1.5);
    let xs = (lo / 1.3)..(hi * 1.3);

    let mut c = ChartBuilder::on(&left)
        .caption("success rate", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(xs.clone().log_scale(), 0f64..1.05)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("nodes")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(plot_err)?;
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.nodes as f64, r.success_rate))
        .collect();
    c.draw_series(LineSeries::new(pts.clone(), &BLUE))
        .map_err(plot_err)?;
    c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
        .map_err(plot_err)?;

    let ymax = rows.iter().map(|r| r.p95_hops as f64).fold(1.0, f64::max) * 1.15;
    let mut c = ChartBuilder::on(&right)
        .caption("hops (mean, p95)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(xs.log_scale(), 0f64..ymax)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("nodes")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(plot_err)?;
    for (series, color, label) in [
        (
            rows.iter()
                .map(|r| (r.nodes as f64, r.mean_hops))
                .collect::<Vec<_>>(),
            BLUE,
            "mean",
        ),
        (
            rows.iter()
                .map(|r| (r.nodes as f64, r.p95_hops as f64))
                .collect(),
            RED,
            "p95",
        ),
    ] {
        c.draw_series(LineSeries::new(series.clone(), &color))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        c.draw_series(series.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(plot_err)?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// `veil-sim churn`'s files: `churn.json` (everything), `churn.csv` (the recovery bins)
/// and `churn.svg` (success against time, one line per setting, the waves marked).
pub fn write_churn(
    dir: &Path,
    placement: &[crate::churn::PlacementRow],
    waves: &crate::churn::Waves,
    recovery: &[crate::churn::Recovery],
) -> Result<()> {
    create_dir(dir)?;
    #[derive(serde::Serialize)]
    struct All<'a> {
        placement: &'a [crate::churn::PlacementRow],
        waves: &'a crate::churn::Waves,
        recovery: &'a [crate::churn::Recovery],
    }
    write_json(
        dir,
        "churn.json",
        &All {
            placement,
            waves,
            recovery,
        },
    )?;
    let mut csv = String::from("replicas,healing,from_s,requests,success_rate\n");
    for r in recovery {
        for b in &r.bins {
            let _ = writeln!(
                csv,
                "{},{},{:.3},{},{:.6}",
                r.setting.replicas, r.setting.healing, b.from_s, b.requests, b.success_rate
            );
        }
    }
    write(&dir.join("churn.csv"), csv.as_bytes())?;
    churn_plot(&dir.join("churn.svg"), waves, recovery)
}

fn churn_plot(
    path: &Path,
    waves: &crate::churn::Waves,
    recovery: &[crate::churn::Recovery],
) -> Result<()> {
    let root = SVGBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let end = recovery
        .iter()
        .flat_map(|r| r.bins.last())
        .map(|b| b.from_s)
        .fold(1.0, f64::max)
        * 1.08;
    let low = recovery
        .iter()
        .flat_map(|r| r.bins.iter().filter(|b| b.requests > 0))
        .map(|b| b.success_rate)
        .fold(1.0, f64::min);
    let bottom = (low - 0.05).clamp(0.0, 0.95);
    let mut c = ChartBuilder::on(&root)
        .caption(
            format!(
                "success after waves of {:.0}% leaves and {:.0}% joins",
                waves.fraction * 100.0,
                waves.fraction * 100.0
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..end, bottom..1.01)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("virtual seconds from the first request")
        .y_desc("success rate")
        .draw()
        .map_err(plot_err)?;
    for x in [waves.leaves_at_s, waves.joins_at_s] {
        c.draw_series(LineSeries::new(
            vec![(x, bottom), (x, 1.01)],
            BLACK.mix(0.4),
        ))
        .map_err(plot_err)?;
    }
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN];
    for (i, r) in recovery.iter().enumerate() {
        let color = colors[i % colors.len()];
        let pts: Vec<(f64, f64)> = r
            .bins
            .iter()
            .filter(|b| b.requests > 0)
            .map(|b| (b.from_s, b.success_rate))
            .collect();
        let label = format!(
            "{} replica{}, healing {}",
            r.setting.replicas,
            if r.setting.replicas == 1 { "" } else { "s" },
            if r.setting.healing { "on" } else { "off" }
        );
        c.draw_series(LineSeries::new(pts.clone(), &color))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        c.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(plot_err)?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}
