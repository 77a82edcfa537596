//! Backlog and replicas over time, one line per policy, as a PNG.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{Error, Run};

/// Fonts looked for when `FANOUT_PLOT_FONT` names none (Debian's
/// fonts-dejavu-core, and where other systems keep DejaVu).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
];

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 800;

/// Draws a chart's legend in a framed, translucent box (the simulator's
/// plots and the bench's share the look).
pub fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// A line series' legend mark: a short, thick line in its colour.
pub fn line_mark(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3))
}

/// Registers a TrueType font as `sans-serif` for plots' text, once per
/// process (the benchmark's plots use it too).
pub fn font() -> Result<(), Error> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let candidates: Vec<PathBuf> = std::env::var_os("FANOUT_PLOT_FONT")
                .map(PathBuf::from)
                .into_iter()
                .chain(FONT_PATHS.iter().map(PathBuf::from))
                .collect();
            let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                "no font for the plot's text: install fonts-dejavu-core, or set \
                 FANOUT_PLOT_FONT to a .ttf file"
                    .to_owned()
            })?;
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            // Registered fonts live as long as the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
        })
        .clone()
        .map_err(Error::Invalid)
}

/// Colours per policy, in order of `runs`.
const COLOURS: &[RGBColor] = &[RGBColor(31, 119, 180), RGBColor(214, 39, 40)];

/// Draws `runs` (the same trace through different policies) into `out`.
pub fn draw(title: &str, runs: &[&Run], out: &Path) -> Result<(), Error> {
    font()?;
    let failed = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: {e}", out.display()));
    let root = BitMapBackend::new(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let root = root
        .titled(title, ("sans-serif", 26))
        .map_err(|e| failed(&e))?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2 - 20);
    let seconds = runs
        .iter()
        .map(|r| r.timeline.len() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let peak_backlog = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|t| t.backlog))
        .max()
        .unwrap_or(0)
        .max(1);
    let peak_replicas = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|t| t.replicas))
        .max()
        .unwrap_or(0)
        .max(1);

    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..seconds, 0u64..peak_backlog + peak_backlog / 10)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("backlog (events)")
        .draw()
        .map_err(|e| failed(&e))?;
    for (run, colour) in runs.iter().zip(COLOURS.iter().cycle()) {
        chart
            .draw_series(LineSeries::new(
                run.timeline.iter().map(|t| (t.t, t.backlog)),
                colour.stroke_width(2),
            ))
            .map_err(|e| failed(&e))?
            .label(run.policy)
            .legend(line_mark(*colour));
    }
    draw_legend(&mut chart).map_err(|e| failed(&e))?;

    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..seconds, 0u32..peak_replicas + 1)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("worker pods (solid) / ready (thin)")
        .draw()
        .map_err(|e| failed(&e))?;
    for (run, colour) in runs.iter().zip(COLOURS.iter().cycle()) {
        chart
            .draw_series(LineSeries::new(
                run.timeline.iter().map(|t| (t.t, t.replicas)),
                colour.stroke_width(2),
            ))
            .map_err(|e| failed(&e))?
            .label(format!(
                "{}: {} pod-seconds",
                run.policy, run.summary.replica_seconds
            ))
            .legend(line_mark(*colour));
        chart
            .draw_series(LineSeries::new(
                run.timeline.iter().map(|t| (t.t, t.ready)),
                colour.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| failed(&e))?;
    }
    draw_legend(&mut chart).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}
