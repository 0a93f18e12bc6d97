//! `dropline-load run <scenario.toml> --report <report.json>`: one bounded load run on loopback;
//! exits non-zero when a promise was broken.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dropline_load::run::{run, MatcherMode};
use dropline_load::scenario::Scenario;
use dropline_load::{broker, crowd, faults, irc_crowd, limits};

#[derive(Debug, Parser)]
#[command(name = "dropline-load", version, about = "Open-loop load against Dropline, with invariant checks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write its report (JSON) and chart (SVG beside it).
    Run {
        /// A scenario file, e.g. load-tests/scenarios/quick.toml.
        scenario: PathBuf,
        /// Where the JSON report goes (the SVG chart goes beside it, `.svg`).
        #[arg(long, value_name = "FILE")]
        report: PathBuf,
        /// Decide with a matcher already running on the configured topics instead of starting one.
        #[arg(long)]
        external_matcher: bool,
    },
    /// The limits side by side: redis-benchmark of the reservation function, a naive WATCH/MULTI
    /// flash sale, the batched step, a bare broker passthrough, the matcher end to end.
    Limits {
        /// Seconds each Redis measure runs.
        #[arg(long, default_value_t = 5)]
        redis_seconds: u64,
        /// Messages each broker measure moves.
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
    },
    /// One drop's batched step split over shards, on the Redis of `DROPLINE_REDIS` (a Redis
    /// Cluster spreads the shards over its primaries): orders/s for each shard count.
    SplitStep {
        #[arg(long, value_delimiter = ',', default_value = "1,3")]
        shards: Vec<u32>,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// The bare broker's round trip (produce → consume, open loop) at a rate, for comparison.
    Rtt {
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The fault suite: a drop under load while a matcher is killed, matchers rebalance, Redis and
    /// the broker restart (its own Redis and broker on free loopback ports); prints a table and
    /// exits non-zero on any broken promise.
    Faults {
        /// The load each fault happens under.
        #[arg(long, default_value = "load-tests/scenarios/faults.toml")]
        scenario: PathBuf,
        /// Only these faults (kill-matcher, rebalance, restart-redis, restart-broker).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Seconds into the load when each fault strikes.
        #[arg(long, default_value_t = 6.0)]
        at: f64,
    },
    /// The bad-input suite: hostile HTTP and Kafka input against a matcher and console of its own
    /// (127.0.0.1), and the broker (one of its own) down while chat flows; prints case / expected /
    /// got and exits non-zero on any miss.
    BadInput {
        /// How long the broker stays down.
        #[arg(long, default_value_t = 60)]
        outage_seconds: u64,
    },
    /// A chat crowd for one open drop (the demo's), then a summary.
    Crowd {
        /// The drop (open, on the configured topics).
        #[arg(long)]
        drop: String,
        /// Chat templates, weight<TAB>text per line.
        #[arg(long, value_name = "FILE")]
        lines: PathBuf,
        #[arg(long, default_value_t = 3000)]
        viewers: u32,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Chat lines per second.
        #[arg(long, default_value_t = 60.0)]
        rate: f64,
        /// Share of reservations paid for (the others expire).
        #[arg(long, default_value_t = 0.6)]
        confirm: f64,
        /// Seconds to keep watching after the chat (holds expiring).
        #[arg(long, default_value_t = 15)]
        linger: u64,
        /// A channel the viewers chat on (repeat for a co-op drop: viewers are spread over them).
        #[arg(long = "channel", default_value = "twitch:#creator")]
        channels: Vec<String>,
    },
    /// Viewers as real IRC clients typing one line each (viewer v000 the first --line, …), and
    /// what the bot answered them, counted in the channel; reply delays from `chat-replies`.
    IrcCrowd {
        /// host:port of the IRC server.
        #[arg(long)]
        server: String,
        #[arg(long, default_value = "#creator")]
        channel: String,
        #[arg(long, default_value = "dropbot")]
        bot: String,
        #[arg(long)]
        drop: String,
        /// One viewer per --line.
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
        /// Seconds the typing is spread over.
        #[arg(long, default_value_t = 5.0)]
        spread: f64,
        /// Seconds to wait for every answer.
        #[arg(long, default_value_t = 60)]
        wait: u64,
        /// The bot's budget window, seconds.
        #[arg(long, default_value_t = 30)]
        window: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // SIGINT/SIGTERM: the command's future is dropped, and with it every process it started
    // (matchers, the fault suite's Redis and broker stop when their handles drop).
    let stop = dropline_core::shutdown::on_signals();
    let result = tokio::select! {
        result = main_inner() => result,
        () = stop.cancelled() => {
            eprintln!("dropline-load: interrupted; what this run started is stopped");
            return ExitCode::from(130);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dropline-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn main_inner() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run { scenario, report, external_matcher } => load(scenario, report, external_matcher).await,
        Command::Limits { redis_seconds, messages } => {
            let settings = dropline_core::Settings::from_env()?;
            dropline_core::kafka::wait_for_broker(&settings, std::time::Duration::from_secs(30)).await?;
            let sizes = limits::Sizes { redis_for: std::time::Duration::from_secs(redis_seconds), messages };
            let run = format!("limits-{}", dropline_core::kafka::now_ms());
            let binary = std::env::current_exe()?.with_file_name("dropline-matcher");
            anyhow::ensure!(binary.exists(), "{} is missing: build it too", binary.display());
            let mut l = limits::Limits::default();
            eprintln!("(a) redis-benchmark: FCALL dropline_apply, one order per call, 50 clients, pipelines of 16 …");
            (l.evalsha, l.evalsha_redis_us) = limits::evalsha(&settings, &run, sizes).await?;
            eprintln!("    {:.0} orders/s, {:.2} µs of Redis CPU per order", l.evalsha, l.evalsha_redis_us);
            eprintln!("(b) naive: WATCH/GET/MULTI/DECR/HSET/EXEC per order, one client …");
            l.naive = limits::naive(&settings, &run, sizes).await?;
            eprintln!("    {:.0} orders/s", l.naive);
            eprintln!(
                "(c) the batched step alone: 256 orders per dropline_apply, {} calls in flight …",
                limits::STEP_IN_FLIGHT
            );
            (l.step, l.step_redis_us) = limits::batched_step(&settings, &run, sizes).await?;
            eprintln!("    {:.0} orders/s, {:.2} µs of Redis CPU per order", l.step, l.step_redis_us);
            eprintln!("(d) bare consume → produce passthrough over the broker, {messages} messages …");
            l.passthrough = limits::passthrough(&settings, &run, sizes).await?;
            eprintln!("    {:.0} messages/s", l.passthrough);
            eprintln!("(e) the matcher end to end, a backlog of {messages} orders over 8 drops …");
            l.matcher = limits::matcher(&settings, &run, sizes, &binary).await?;
            eprintln!("    {:.0} orders/s", l.matcher);
            eprintln!(
                "(f) the longest single calls: 2,000 in line, restocked at once, swept, expired, closed …"
            );
            let calls = limits::bounded_calls(&settings, &run, 2_000).await?;
            let longest = calls.iter().map(|(_, ms)| *ms).fold(0.0, f64::max);
            let each: Vec<String> = calls.iter().map(|(what, ms)| format!("{what}={ms:.2}")).collect();
            eprintln!("    ms of Redis CPU per call: {} (longest {longest:.2})", each.join(" "));
            println!("{}", l.line());
            Ok(ExitCode::SUCCESS)
        }
        Command::BadInput { outage_seconds } => {
            anyhow::ensure!((1..=600).contains(&outage_seconds), "--outage-seconds must be 1–600");
            let outage = std::time::Duration::from_secs(outage_seconds);
            let cases = dropline_load::bad_input::run(outage).await?;
            print!("{}", dropline_load::bad_input::table(&cases));
            Ok(if cases.iter().all(|c| c.passed) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::SplitStep { shards, seconds } => {
            anyhow::ensure!((1..=120).contains(&seconds), "--seconds must be 1–120");
            anyhow::ensure!(shards.iter().all(|s| (1..=64).contains(s)), "--shards must be 1–64 each");
            let settings = dropline_core::Settings::from_env()?;
            let run = format!("split-{}", dropline_core::kafka::now_ms());
            let mut line = String::from("split:");
            for s in shards {
                let rate =
                    limits::split_step(&settings, &run, s, std::time::Duration::from_secs(seconds)).await?;
                eprintln!("    {s} shard(s): {rate:.0} orders/s");
                line.push_str(&format!(" shards={s} {rate:.0}/s"));
            }
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rtt { rate, seconds } => {
            anyhow::ensure!(rate > 0.0 && rate <= 100_000.0, "--rate must be 0–100000 messages/s");
            anyhow::ensure!((1..=600).contains(&seconds), "--seconds must be 1–600");
            let settings = dropline_core::Settings::from_env()?;
            dropline_core::kafka::wait_for_broker(&settings, std::time::Duration::from_secs(30)).await?;
            let r = dropline_load::rtt::run(&settings, rate, seconds).await?;
            println!(
                "broker round trip at {rate:.0}/s: {} messages, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                r.messages, r.p50_ms, r.p99_ms, r.max_ms
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Faults { scenario, only, at } => {
            let scenario = Scenario::load(&scenario)?;
            anyhow::ensure!(
                at > 0.0 && at < scenario.duration_s as f64,
                "--at must fall inside the load ({} s)",
                scenario.duration_s
            );
            let faults = if only.is_empty() {
                faults::Fault::ALL.to_vec()
            } else {
                only.iter().map(|name| faults::Fault::parse(name)).collect::<anyhow::Result<_>>()?
            };
            let matcher = std::env::current_exe()?.with_file_name("dropline-matcher");
            anyhow::ensure!(matcher.exists(), "{} is missing: build it too", matcher.display());
            let state = tempfile::tempdir()?;
            let options = faults::Options {
                matcher,
                tansu: broker::find_tansu()?,
                scenario,
                fault_at_s: at,
                faults,
                state: state.path().to_owned(),
            };
            let rows = faults::run(&options).await?;
            print!("{}", faults::table(&rows));
            let broken: usize = rows.iter().map(|r| r.violations.len()).sum();
            for row in &rows {
                for violation in &row.violations {
                    eprintln!("violation ({}): {violation}", row.fault.name());
                }
            }
            Ok(if broken == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Crowd { drop, lines, viewers, seconds, rate, confirm, linger, channels } => {
            anyhow::ensure!(rate > 0.0 && rate <= 10_000.0, "--rate must be 0–10000 lines/s");
            anyhow::ensure!((0.0..=1.0).contains(&confirm), "--confirm must be a share from 0 to 1");
            let settings = dropline_core::Settings::from_env()?;
            let templates = crowd::load_lines(&lines)?;
            let options = crowd::Crowd {
                drop_id: drop,
                viewers,
                seconds,
                rate,
                confirm,
                linger: std::time::Duration::from_secs(linger),
                seed: 7,
                channels,
            };
            let s = crowd::run(&settings, &options, &templates).await?;
            println!(
                "{} chat lines from {viewers} viewers, {} orders, {} decided, {} paid",
                s.lines, s.orders, s.decided, s.paid
            );
            for (channel, c) in &s.per_channel {
                println!(
                    "  {channel}: {} lines, {} orders, {} decided, {} paid",
                    c.lines, c.orders, c.decided, c.paid
                );
            }
            let sold: Vec<String> =
                s.sold_out_after_s.iter().map(|(sku, t)| format!("{sku} in {t:.1} s")).collect();
            println!("sold out: {}", if sold.is_empty() { "nothing".to_owned() } else { sold.join(", ") });
            let outcomes: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("outcomes: {}", outcomes.join(", "));
            println!(
                "order → outcome: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                s.p50_ms, s.p99_ms, s.max_ms
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::IrcCrowd { server, channel, bot, drop, lines, spread, wait, window } => {
            let settings = dropline_core::Settings::from_env()?;
            let options = irc_crowd::IrcCrowd {
                server,
                channel,
                bot,
                drop_id: drop,
                lines,
                spread: std::time::Duration::from_secs_f64(spread.max(0.0)),
                wait: std::time::Duration::from_secs(wait),
                window: std::time::Duration::from_secs(window),
            };
            let s = irc_crowd::run(&settings, &options).await?;
            println!(
                "{} IRC viewers; the bot sent {} messages mentioning {} of them (up to {} buyers in one message)",
                s.viewers, s.bot_messages, s.mentioned, s.most_in_one_message
            );
            println!(
                "at most {} messages in any {window} s window; longest message {} bytes",
                s.most_in_window, s.longest_bytes
            );
            println!(
                "answers on chat-replies: {}; reply delay (decided → sent) p50 {} ms, p99 {} ms",
                s.answers, s.delay_p50_ms, s.delay_p99_ms
            );
            Ok(if s.mentioned == s.viewers { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

async fn load(scenario: PathBuf, report: PathBuf, external_matcher: bool) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&scenario)?;
    let matcher = if external_matcher {
        MatcherMode::External
    } else {
        // The matcher built with this binary (same profile, same directory).
        let exe = std::env::current_exe()?;
        let binary = exe.with_file_name("dropline-matcher");
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: build it too (cargo build --release -p dropline-matcher -p dropline-load)",
            binary.display()
        );
        MatcherMode::Spawn(binary)
    };
    let result = run(scenario, matcher).await?;
    result.write_json(&report)?;
    let svg = report.with_extension("svg");
    result.write_svg(&svg)?;
    let l = &result.latency_ms;
    println!(
        "{}: {} orders, {} decided in {:.1} s ({:.0}/s); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; matcher {}; violations: {}",
        result.scenario.name,
        result.orders_sent,
        result.decisions,
        result.total_s,
        result.decisions_per_s,
        l.p50,
        l.p99,
        l.max,
        result.matcher_rss_max_mib.map_or_else(|| "-".to_owned(), |m| format!("{m:.0} MiB")),
        result.violations.len()
    );
    if let Some(cpu) = result.matcher_cpu_s.filter(|c| *c > 0.0) {
        println!(
            "matcher CPU: {cpu:.1} s for {} decisions ({:.0} decisions per CPU-second)",
            result.decisions,
            result.decisions as f64 / cpu
        );
    }
    if let Some(inside) = &result.matcher_inside_ms {
        println!(
            "inside the matcher over the run: arrival → handed to the producer p50 {:.2} ms, p99 {:.2} ms; \
             → acknowledged by the broker p50 {:.2} ms, p99 {:.2} ms",
            inside.handed_p50_ms, inside.handed_p99_ms, inside.acked_p50_ms, inside.acked_p99_ms
        );
    }
    println!("report: {} · chart: {}", report.display(), svg.display());
    for violation in &result.violations {
        eprintln!("violation: {violation}");
    }
    Ok(if result.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
