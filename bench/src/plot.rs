//! The plot of BENCHMARKS.md: throughput and p99 against offered load, from `sweep` lines.
//!
//! Lines from several runs are combined by taking, at each offered rate, the median of the
//! runs, the same rule as the tables.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use plotters::prelude::*;
use serde_json::Value;

/// One offered rate's medians: bus and echo throughput, bus and echo p99.
struct Point {
    offered: f64,
    bus: f64,
    echo: f64,
    bus_p99: f64,
    echo_p99: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn points(inputs: &[impl AsRef<Path>]) -> anyhow::Result<(Vec<Point>, Option<f64>)> {
    let mut by_rate: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for path in inputs {
        let text = std::fs::read_to_string(path.as_ref())
            .with_context(|| format!("read {}", path.as_ref().display()))?;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let v: Value = serde_json::from_str(line)?;
            if v["scenario"]
                .as_str()
                .is_some_and(|s| s.starts_with("sweep@"))
            {
                let r = v["offered_per_s"].as_f64().context("offered_per_s")?;
                by_rate.entry(r as u64).or_default().push(v);
            }
        }
    }
    if by_rate.is_empty() {
        bail!("no sweep@… lines in the input");
    }
    let col = |runs: &[Value], k: &str| median(runs.iter().filter_map(|v| v[k].as_f64()).collect());
    let ceiling = by_rate
        .values()
        .flatten()
        .filter_map(|v| v["echo_msgs_per_s"].as_f64())
        .collect::<Vec<_>>();
    let ceiling = (!ceiling.is_empty()).then(|| median(ceiling));
    let pts = by_rate
        .iter()
        .map(|(r, runs)| Point {
            offered: *r as f64,
            bus: col(runs, "msgs_per_s"),
            echo: col(runs, "accepted_per_s"),
            bus_p99: col(runs, "p99_ms"),
            echo_p99: col(runs, "echo_p99_ms"),
        })
        .collect();
    Ok((pts, ceiling))
}

/// Draws `output` (PNG) from the `sweep` lines in `inputs`, using the TTF font at `font`.
pub fn draw(inputs: &[impl AsRef<Path>], output: &Path, font: &Path) -> anyhow::Result<()> {
    let bytes: &'static [u8] = Box::leak(
        std::fs::read(font)
            .with_context(|| format!("read font {}", font.display()))?
            .into_boxed_slice(),
    );
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable TTF font", font.display()))?;
    let (pts, ceiling) = points(inputs)?;
    let max_x = pts.iter().map(|p| p.offered).fold(0.0, f64::max) * 1.05;
    let max_y = pts
        .iter()
        .flat_map(|p| [p.bus, p.echo, p.offered])
        .chain(ceiling)
        .fold(0.0, f64::max)
        * 1.1;
    let max_p99 = pts
        .iter()
        .flat_map(|p| [p.bus_p99, p.echo_p99])
        .filter(|x| x.is_finite())
        .fold(0.1, f64::max)
        * 2.0;

    let root = BitMapBackend::new(output, (1100, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "simpul: durable accept (1 KiB, mTLS) vs no-op mTLS echo, fixed offered load",
        ("sans-serif", 24),
    )?;
    let (top, bottom) = root.split_vertically(480);

    let mut c = ChartBuilder::on(&top)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .caption(
            "Throughput (msgs/s) against offered load",
            ("sans-serif", 20),
        )
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    c.configure_mesh()
        .x_desc("offered load (requests/s)")
        .y_desc("answered per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    series(
        &mut c,
        pts.iter().map(|p| (p.offered, p.bus)).collect(),
        BLUE,
        "simpul (202 = fsynced)",
    )?;
    series(
        &mut c,
        pts.iter().map(|p| (p.offered, p.echo)).collect(),
        RED,
        "echo ceiling, same offered load",
    )?;
    c.draw_series(LineSeries::new(
        vec![(0.0, 0.0), (max_x, max_x)],
        BLACK.mix(0.3).stroke_width(1),
    ))?
    .label("offered = answered")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    if let Some(ceil) = ceiling {
        c.draw_series(LineSeries::new(
            vec![(0.0, ceil), (max_x, ceil)],
            RED.mix(0.5).stroke_width(1),
        ))?
        .label(format!("echo maximum {ceil:.0}/s"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.mix(0.5)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;

    let mut c = ChartBuilder::on(&bottom)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .caption(
            "p99 latency (ms, from intended send time) against offered load",
            ("sans-serif", 20),
        )
        .build_cartesian_2d(0.0..max_x, (0.05..max_p99).log_scale())?;
    c.configure_mesh()
        .x_desc("offered load (requests/s)")
        .y_desc("p99 (ms, log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    let p99 = |f: fn(&Point) -> f64| {
        pts.iter()
            .map(|p| (p.offered, f(p).max(0.05)))
            .collect::<Vec<_>>()
    };
    series(&mut c, p99(|p| p.bus_p99), BLUE, "simpul p99")?;
    series(&mut c, p99(|p| p.echo_p99), RED, "echo p99")?;
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One labelled line with dots at the measured points.
fn series<'a, DB, X, Y>(
    c: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    data: Vec<(f64, f64)>,
    color: RGBColor,
    label: &str,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    c.draw_series(LineSeries::new(data.clone(), color.stroke_width(3)))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
    c.draw_series(data.into_iter().map(|p| Circle::new(p, 4, color.filled())))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
