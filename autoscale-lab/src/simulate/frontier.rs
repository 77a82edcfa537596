//! A trace's cost/miss frontier as a PNG: the KEDA + HPA model at each
//! `lagCount` of a sweep (pod-seconds against seconds over the drain
//! target), the points no other point beats on both joined as its
//! frontier, Fanout's policy marked, and the cost floor as a dashed line.
//! Issue 17's goal reads off it: Fanout's mark should sit left of and below
//! KEDA's frontier, and near the floor.

use std::path::Path;

use plotters::prelude::*;

use super::plot::{draw_legend, font, line_mark};
use super::sweep::Point;
use super::{Error, Summary};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 700;
/// KEDA's colour and Fanout's: the time-series plots' red and blue.
const KEDA: RGBColor = RGBColor(214, 39, 40);
const FANOUT: RGBColor = RGBColor(31, 119, 180);
const FLOOR: RGBColor = RGBColor(90, 90, 90);

/// Indexes of the points on the frontier, cheapest first: those for which
/// no other point costs no more and misses fewer seconds, or costs less and
/// misses no more. `points` are (pod-seconds, missed seconds); of equal
/// points the first is kept.
pub fn frontier(points: &[(u64, u64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    // Cheapest first; of equal cost, fewest misses first.
    order.sort_by_key(|&i| (points[i].0, points[i].1, i));
    let mut kept = Vec::new();
    let mut best_missed = u64::MAX;
    for i in order {
        if points[i].1 < best_missed {
            best_missed = points[i].1;
            kept.push(i);
        }
    }
    kept
}

/// Draws `sweep` (KEDA + HPA at each `lagCount`) and `fanout` into `out`,
/// with the floor at `floor` pod-seconds.
pub fn draw(
    title: &str,
    fanout: &Summary,
    sweep: &[Point],
    floor: f64,
    out: &Path,
) -> Result<(), Error> {
    font()?;
    let failed = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: {e}", out.display()));
    let points: Vec<(u64, u64)> = sweep
        .iter()
        .map(|p| {
            (
                p.summary.replica_seconds,
                p.summary.drain_target_missed_seconds,
            )
        })
        .collect();
    let max_cost = points
        .iter()
        .map(|p| p.0)
        .chain([fanout.replica_seconds, floor.ceil() as u64])
        .max()
        .unwrap_or(0)
        .max(1);
    let max_missed = points
        .iter()
        .map(|p| p.1)
        .chain([fanout.drain_target_missed_seconds])
        .max()
        .unwrap_or(0)
        .max(1);
    // A tenth of margin on each axis keeps the labels inside the chart.
    let x_end = max_cost as f64 * 1.1;
    let y_end = max_missed as f64 * 1.1;

    let root = BitMapBackend::new(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: cost against missed drain target"),
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_end, 0f64..y_end)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("pod-seconds")
        .y_desc("seconds over the drain target")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| failed(&e))?;

    chart
        .draw_series(DashedLineSeries::new(
            [(floor, 0.0), (floor, y_end)],
            8,
            6,
            FLOOR.stroke_width(2),
        ))
        .map_err(|e| failed(&e))?
        .label(if floor >= 10.0 {
            format!("floor: {floor:.0} pod-seconds")
        } else {
            // A trickle's floor is a fraction of a pod-second: show it.
            format!("floor: {floor:.3} pod-seconds")
        })
        .legend(line_mark(FLOOR));

    let on_frontier = frontier(&points);
    chart
        .draw_series(LineSeries::new(
            on_frontier
                .iter()
                .map(|&i| (points[i].0 as f64, points[i].1 as f64)),
            KEDA.stroke_width(2),
        ))
        .map_err(|e| failed(&e))?
        .label("KEDA + HPA: frontier over lagCount")
        .legend(line_mark(KEDA));
    chart
        .draw_series(points.iter().enumerate().map(|(i, xy)| {
            let filled = on_frontier.contains(&i);
            let style = if filled {
                KEDA.filled()
            } else {
                KEDA.stroke_width(2)
            };
            // Points that coincide share one label, on the first of them.
            let label = if points[..i].contains(xy) {
                String::new()
            } else {
                sweep
                    .iter()
                    .zip(&points)
                    .filter(|(_, other)| *other == xy)
                    .map(|(q, _)| q.lag_count.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            EmptyElement::at((xy.0 as f64, xy.1 as f64))
                + Circle::new((0, 0), 5, style)
                + Text::new(label, (7, -16), ("sans-serif", 14))
        }))
        .map_err(|e| failed(&e))?;

    let at = (
        fanout.replica_seconds as f64,
        fanout.drain_target_missed_seconds as f64,
    );
    chart
        .draw_series([EmptyElement::at(at)
            + TriangleMarker::new((0, 0), 9, FANOUT.filled())
            + Text::new("Fanout", (10, -20), ("sans-serif", 16))])
        .map_err(|e| failed(&e))?
        .label(format!(
            "Fanout: {} pod-seconds, {} s missed",
            fanout.replica_seconds, fanout.drain_target_missed_seconds
        ))
        .legend(line_mark(FANOUT));
    draw_legend(&mut chart).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}
