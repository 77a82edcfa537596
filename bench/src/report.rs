//! The run's results: `bench/results/latest.json` (the keys the issue
//! names, each scenario in full, and the parameters), the table in
//! docs/benchmarks.md, and two plots.

use std::path::Path;

use anyhow::Context as _;
use autoscale_lab::simulate::plot::{self, draw_legend, line_mark};
use plotters::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use crate::baseline::Baselines;
use crate::live::Live;
use crate::scenarios::{Drain, Fanout, Read, Write};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub params: Value,
    pub baselines: Baselines,
    pub write: Write,
    pub fanout: Fanout,
    /// The fan-out scenario again at a rate the machine sustains.
    pub sustainable: Fanout,
    pub read: Read,
    pub drain: Drain,
    pub live: Live,
    /// Peak resident memory, MiB.
    pub api_rss_mib: f64,
    pub worker_rss_mib: f64,
    /// How often Redis rewrote its append-only file during the run: each
    /// rewrite is a forked child busy on a core for seconds.
    pub aof_rewrites: u64,
}

impl Results {
    /// The JSON written to `bench/results/latest.json`.
    pub fn json(&self) -> Value {
        json!({
            "params": self.params,
            "write": {
                "posts_per_s": self.write.stats.per_s,
                "p50_ms": self.write.stats.p50_ms,
                "p95_ms": self.write.stats.p95_ms,
                "p99_ms": self.write.stats.p99_ms,
                "errors": self.write.stats.errors,
                "clients": self.write.clients,
                "pgbench_tps": self.baselines.pgbench_tps,
                "pgbench_postgres_us": self.baselines.pgbench_postgres_us,
                "cpu": self.write.cpu,
                "ratio": self.write.stats.per_s / self.baselines.pgbench_tps.max(1e-9),
            },
            "fanout": {
                "posts_per_s": self.fanout.posts.per_s,
                "rate": self.fanout.rate,
                "workers": self.fanout.workers,
                "deliveries": self.fanout.deliveries,
                "offered_deliveries_per_s": self.fanout.deliveries_per_s,
                "offered_followers_reached_per_s": self.fanout.followers_reached_per_s,
                "deliveries_per_s": self.drain.deliveries_per_s,
                "followers_reached_per_s": self.drain.followers_reached_per_s,
                "zadd_per_s": self.baselines.zadd_per_s,
                "zadd_us": self.baselines.zadd_us,
                "xadd_per_s": self.baselines.xadd_per_s,
                "ratio": self.drain.deliveries_per_s / self.baselines.zadd_per_s.max(1e-9),
                "errors": self.fanout.posts.errors,
            },
            "propagation": {
                "p50_ms": self.fanout.propagation_p50_ms,
                "p99_ms": self.fanout.propagation_p99_ms,
                "http_samples": self.fanout.http_samples,
                "http_p50_ms": self.fanout.http_p50_ms,
                "http_p99_ms": self.fanout.http_p99_ms,
                "sustainable": {
                    "posts_per_s": self.sustainable.posts.per_s,
                    "deliveries_per_s": self.sustainable.deliveries_per_s,
                    "followers_reached_per_s": self.sustainable.followers_reached_per_s,
                    "p50_ms": self.sustainable.propagation_p50_ms,
                    "p99_ms": self.sustainable.propagation_p99_ms,
                    "http_p50_ms": self.sustainable.http_p50_ms,
                    "http_p99_ms": self.sustainable.http_p99_ms,
                },
            },
            "read": {
                "rps": self.read.warm.per_s,
                "p50_ms": self.read.warm.p50_ms,
                "p95_ms": self.read.warm.p95_ms,
                "p99_ms": self.read.warm.p99_ms,
                "errors": self.read.warm.errors + self.read.cold.errors,
                "clients": self.read.clients,
                "readers": self.read.readers,
                "healthz_rps": self.read.healthz.per_s,
                "healthz_ratio": self.read.warm.per_s / self.read.healthz.per_s.max(1e-9),
                "pg_statements_per_read": self.read.pg_statements_per_read,
                "cpu_us": self.read.warm_cpu,
                "healthz_cpu_us": self.read.healthz_cpu,
                "cold_rps": self.read.cold.per_s,
                "cold_p50_ms": self.read.cold.p50_ms,
                "cold_p99_ms": self.read.cold.p99_ms,
            },
            "drain": {
                "events": self.drain.events,
                "one_worker_s": self.drain.one_worker_s,
                "two_workers_s": self.drain.two_workers_s,
                "speedup": self.drain.speedup,
                "redis_cpu_share": self.drain.redis_cpu_share,
                "redis_us_per_delivery": self.drain.redis_us_per_delivery,
                "redis_zadd_us": self.drain.redis_zadd_us,
                "worker_us_per_delivery": self.drain.worker_us_per_delivery,
                "postgres_us_per_delivery": self.drain.postgres_us_per_delivery,
                "machine_busy_share": self.drain.machine_busy_share,
            },
            "live": {
                "p50_ms": self.live.at_rest.p50_ms,
                "p99_ms": self.live.at_rest.p99_ms,
                "samples": self.live.at_rest.samples,
                "fanout_p50_ms": self.live.during_fanout.p50_ms,
                "fanout_p99_ms": self.live.during_fanout.p99_ms,
                "fanout_rate": self.live.fanout_rate,
                "idle_streams": self.live.idle_streams,
                "api_rss_before_mib": self.live.api_rss_before_mib,
                "api_rss_after_mib": self.live.api_rss_after_mib,
                "mib_per_10k_streams": self.live.mib_per_10k_streams,
            },
            "memory": {
                "api_rss_mib": self.api_rss_mib,
                "worker_rss_mib": self.worker_rss_mib,
            },
            "redis": {
                "aof_rewrites": self.aof_rewrites,
            },
        })
    }

    /// The results table of docs/benchmarks.md.
    pub fn table(&self) -> String {
        let j = self.json();
        let n = |path: &str| -> f64 {
            path.split('.')
                .fold(&j, |v, k| &v[k])
                .as_f64()
                .unwrap_or(f64::NAN)
        };
        let rows = [
            (
                "write: posts/s",
                format!("{:.0}", n("write.posts_per_s")),
                format!(
                    "pgbench {:.0} tps; ratio {:.2} (target ≥ 0.8)",
                    n("write.pgbench_tps"),
                    n("write.ratio")
                ),
            ),
            (
                "write: p50 / p99",
                format!("{:.1} / {:.1} ms", n("write.p50_ms"), n("write.p99_ms")),
                "target p99 < 50 ms".to_owned(),
            ),
            (
                "write: CPU per post (API / Redis / PostgreSQL / bench client)",
                format!(
                    "{:.0} / {:.0} / {:.0} / {:.0} µs",
                    n("write.cpu.api_us"),
                    n("write.cpu.redis_us"),
                    n("write.cpu.postgres_us"),
                    n("write.cpu.client_us")
                ),
                format!(
                    "pgbench: PostgreSQL {:.0} µs per transaction",
                    n("write.pgbench_postgres_us")
                ),
            ),
            (
                "fan-out: feeds written/s (capacity)",
                format!("{:.0}", n("fanout.deliveries_per_s")),
                format!(
                    "two workers draining a backlog; pipelined ZADD {:.0}/s; ratio {:.2} (target ≥ 0.5)",
                    n("fanout.zadd_per_s"),
                    n("fanout.ratio")
                ),
            ),
            (
                "fan-out: followers reached/s (capacity)",
                format!("{:.0}", n("fanout.followers_reached_per_s")),
                format!(
                    "the same drain: feeds written, and followers passed over as they do not read ({} of {} users read)",
                    j["read"]["readers"], j["params"]["graph"]["users"]
                ),
            ),
            (
                "propagation: p50 / p99 (workers)",
                format!(
                    "{:.1} / {:.1} ms",
                    n("propagation.p50_ms"),
                    n("propagation.p99_ms")
                ),
                format!(
                    "at {:.0} posts/s; target p50 < 20, p99 < 100 ms",
                    n("fanout.posts_per_s")
                ),
            ),
            (
                "propagation: p50 / p99 (HTTP)",
                format!(
                    "{:.1} / {:.1} ms",
                    n("propagation.http_p50_ms"),
                    n("propagation.http_p99_ms")
                ),
                format!(
                    "{} sampled posts, answered to seen in a follower's feed",
                    j["propagation"]["http_samples"]
                ),
            ),
            (
                "propagation at a sustained rate: p50 / p99 (workers / HTTP)",
                format!(
                    "{:.1} / {:.1} ms; {:.1} / {:.1} ms",
                    n("propagation.sustainable.p50_ms"),
                    n("propagation.sustainable.p99_ms"),
                    n("propagation.sustainable.http_p50_ms"),
                    n("propagation.sustainable.http_p99_ms")
                ),
                format!(
                    "at {:.0} posts/s ({:.0} deliveries/s)",
                    n("propagation.sustainable.posts_per_s"),
                    n("propagation.sustainable.deliveries_per_s")
                ),
            ),
            (
                "read: requests/s",
                format!("{:.0}", n("read.rps")),
                format!(
                    "{} clients, 20-item feeds of {} readers, in Redis",
                    j["read"]["clients"], j["read"]["readers"]
                ),
            ),
            (
                "read: p50 / p99",
                format!("{:.1} / {:.1} ms", n("read.p50_ms"), n("read.p99_ms")),
                "target p99 < 5 ms".to_owned(),
            ),
            (
                "read: against `GET /healthz`",
                format!("{:.2}", n("read.healthz_ratio")),
                format!(
                    "{:.0} healthz requests/s by as many clients; target ≥ 0.25",
                    n("read.healthz_rps")
                ),
            ),
            (
                "read: CPU per request (API / Redis / PostgreSQL / bench client)",
                format!(
                    "{:.0} / {:.0} / {:.0} / {:.0} µs",
                    n("read.cpu_us.api_us"),
                    n("read.cpu_us.redis_us"),
                    n("read.cpu_us.postgres_us"),
                    n("read.cpu_us.client_us")
                ),
                format!(
                    "`GET /healthz`: {:.0} / {:.0} / {:.0} / {:.0} µs",
                    n("read.healthz_cpu_us.api_us"),
                    n("read.healthz_cpu_us.redis_us"),
                    n("read.healthz_cpu_us.postgres_us"),
                    n("read.healthz_cpu_us.client_us")
                ),
            ),
            (
                "read: PostgreSQL statements per read",
                j["read"]["pg_statements_per_read"]
                    .as_f64()
                    .map_or_else(|| "not counted".to_owned(), |v| format!("{v:.3}")),
                "warm feeds (pg_stat_statements, the relay's outbox polling left out); target 0"
                    .to_owned(),
            ),
            (
                "read, first (rebuilt): p50 / p99",
                format!(
                    "{:.1} / {:.1} ms",
                    n("read.cold_p50_ms"),
                    n("read.cold_p99_ms")
                ),
                format!(
                    "{:.0} requests/s; each reader's feed rebuilt from PostgreSQL",
                    n("read.cold_rps")
                ),
            ),
            (
                "live: post → event p50 / p99 (at rest)",
                format!("{:.1} / {:.1} ms", n("live.p50_ms"), n("live.p99_ms")),
                format!(
                    "{} posts of a median author, from sending `POST /posts` to the event on a follower's open `GET /feed/stream`",
                    j["live"]["samples"]
                ),
            ),
            (
                "live: post → event p50 / p99 (during fan-out)",
                format!(
                    "{:.1} / {:.1} ms",
                    n("live.fanout_p50_ms"),
                    n("live.fanout_p99_ms")
                ),
                format!(
                    "the same, while the fan-out scenario offers {:.0} posts/s (the sustained rate)",
                    n("live.fanout_rate")
                ),
            ),
            (
                "live: API memory per 10,000 idle streams",
                format!("{:.0} MiB", n("live.mib_per_10k_streams")),
                format!(
                    "{} streams held open (one per user{}): RSS {:.0} → {:.0} MiB",
                    j["live"]["idle_streams"],
                    if j["live"]["idle_streams"].as_u64() < Some(10_000) {
                        ", scaled to 10,000"
                    } else {
                        ""
                    },
                    n("live.api_rss_before_mib"),
                    n("live.api_rss_after_mib")
                ),
            ),
            (
                "drain: 1 / 2 workers",
                format!(
                    "{:.1} / {:.1} s",
                    n("drain.one_worker_s"),
                    n("drain.two_workers_s")
                ),
                format!(
                    "{} events; speedup {:.2}",
                    j["drain"]["events"],
                    n("drain.speedup")
                ),
            ),
            (
                "Redis in the two-worker drain",
                format!(
                    "CPU {:.0} % of the time; {:.1} µs per delivery, of which ZADD {:.1} µs",
                    n("drain.redis_cpu_share") * 100.0,
                    n("drain.redis_us_per_delivery"),
                    n("drain.redis_zadd_us")
                ),
                format!(
                    "a baseline ZADD: {:.1} µs in Redis, {:.1} µs by 1 s ÷ its rate",
                    n("fanout.zadd_us"),
                    1e6 / n("fanout.zadd_per_s").max(1e-9)
                ),
            ),
            (
                "CPU per delivery in the two-worker drain",
                format!(
                    "Redis {:.1}, workers {:.1}, PostgreSQL {:.1} µs",
                    n("drain.redis_us_per_delivery"),
                    n("drain.worker_us_per_delivery"),
                    n("drain.postgres_us_per_delivery")
                ),
                format!(
                    "the machine's cores {:.0} % busy",
                    n("drain.machine_busy_share") * 100.0
                ),
            ),
            (
                "memory: API / worker",
                format!(
                    "{:.0} / {:.0} MiB",
                    n("memory.api_rss_mib"),
                    n("memory.worker_rss_mib")
                ),
                "peak RSS; target < 64 MiB each".to_owned(),
            ),
            (
                "Redis AOF rewrites during the run",
                format!("{}", j["redis"]["aof_rewrites"]),
                "each a forked child busy on a core for seconds, on this 2-core machine".to_owned(),
            ),
        ];
        let mut out = String::from("| measure | result | against |\n|---|---|---|\n");
        for (what, value, against) in rows {
            out.push_str(&format!("| {what} | {value} | {against} |\n"));
        }
        out
    }
}

/// Replaces the text between `<!-- bench-results:start -->` and
/// `<!-- bench-results:end -->` in `doc` with `table`.
pub fn update_doc(doc: &Path, table: &str) -> anyhow::Result<()> {
    const START: &str = "<!-- bench-results:start -->\n";
    const END: &str = "<!-- bench-results:end -->";
    let text =
        std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        anyhow::bail!("{} has no bench-results markers", doc.display());
    };
    let updated = format!("{}{table}{}", &text[..start + START.len()], &text[end..]);
    std::fs::write(doc, updated)?;
    Ok(())
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);

fn percentiles(stats: &crate::load::Stats) -> [f64; 3] {
    [stats.p50_ms, stats.p95_ms, stats.p99_ms]
}

/// `latency.png` (p50/p95/p99 per scenario) and `throughput.png` (completed
/// requests per second through each load) in `dir`.
pub fn plots(results: &Results, dir: &Path) -> anyhow::Result<()> {
    plot::font()?;
    std::fs::create_dir_all(dir)?;
    let failed = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing: {e}");

    let groups = [
        ("write", percentiles(&results.write.stats)),
        ("read", percentiles(&results.read.warm)),
        ("fan-out POST", percentiles(&results.fanout.posts)),
        ("read, first (rebuilt)", percentiles(&results.read.cold)),
        (
            "propagation, sustained (HTTP)",
            [
                results.sustainable.http_p50_ms,
                results.sustainable.http_p95_ms,
                results.sustainable.http_p99_ms,
            ],
        ),
    ];
    let top = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0, f64::max)
        * 1.15;
    let path = dir.join("latency.png");
    let root = BitMapBackend::new(&path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency percentiles (ms, log scale)", ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        // Log scale: milliseconds and seconds side by side.
        .build_cartesian_2d(0.0..(groups.len() as f64), (0.1..top).log_scale())
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < groups.len() {
                groups[i].0.to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("ms")
        .draw()
        .map_err(|e| failed(&e))?;
    for (k, (label, colour)) in [("p50", BLUE), ("p95", ORANGE), ("p99", GREEN)]
        .into_iter()
        .enumerate()
    {
        chart
            .draw_series(groups.iter().enumerate().map(|(i, (_, v))| {
                let x0 = i as f64 + 0.15 + k as f64 * 0.23;
                Rectangle::new([(x0, 0.1), (x0 + 0.2, v[k].max(0.1))], colour.filled())
            }))
            .map_err(|e| failed(&e))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    draw_legend(&mut chart).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;

    let series = [
        ("write (posts/s)", &results.write.stats.per_second, BLUE),
        (
            "fan-out (posts/s)",
            &results.fanout.posts.per_second,
            ORANGE,
        ),
        ("read (requests/s)", &results.read.warm.per_second, GREEN),
    ];
    let seconds = series
        .iter()
        .map(|(_, s, _)| s.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let peak = series
        .iter()
        .flat_map(|(_, s, _)| s.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let path = dir.join("throughput.png");
    let root = BitMapBackend::new(&path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput over each load", ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0..seconds, 0..peak + peak / 10)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds into the load")
        .y_desc("completed per second")
        .draw()
        .map_err(|e| failed(&e))?;
    for (label, values, colour) in series {
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(t, v)| (t, *v)),
                colour.stroke_width(2),
            ))
            .map_err(|e| failed(&e))?
            .label(label)
            .legend(line_mark(colour));
    }
    draw_legend(&mut chart).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}
