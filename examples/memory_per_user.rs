//! Memory per tracked user, measured: inserts synthetic users into the real
//! `UserTable<headroom::state::UserState>` and reports the growth of the
//! process's resident set divided by the number of users, beside the table's
//! own estimate (`UserTable::bytes_per_user`).
//!
//! ```sh
//! cargo run --release --example memory_per_user -- --users 1000000
//! ```
//!
//! The table is sized and shaped by the `profiler` section of
//! `benches/headroom-bench.yaml` (60 buckets of 1 s), with `max_users` raised
//! to `--users` so that nothing is evicted. Keys come from the compiled
//! identity's own pseudonymizer, so they are distributed exactly like real
//! user keys. Every user records one arrival, as a real first request would.
//!
//! It uses mimalloc, the allocator of the `headroom` binary, so the figure is
//! what the proxy pays. The resident set is read from `/proc/self/statm`
//! (pages); the page size is derived from `/proc/self/status` (`VmRSS`, kB)
//! at the same moment. The growth includes the table's spare capacity, which
//! is why it exceeds the estimate by up to the map's growth slack.

use std::path::Path;
use std::time::Instant;

use clap::Parser;
use headroom::compile::{compile_runtime, table_config, IdentitySecret};
use headroom::metrics::Metrics;
use headroom::state::UserState;
use headroom_policies::SourceKind;
use headroom_profiler::{Clock, SystemClock, TableConfig, UserTable};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The benchmark configuration, shared with the benches and compare.sh.
const BENCH_CONFIG: &str = include_str!("../benches/headroom-bench.yaml");

/// Command line of the tool.
#[derive(Parser, Debug)]
#[command(about = "Resident memory per tracked user in the real user table")]
struct Args {
    /// Users to insert.
    #[arg(long, default_value_t = 1_000_000)]
    users: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Resident set size in bytes, from `/proc/self/statm` and the page size.
fn rss_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("statm has no resident field")?
        .parse()?;
    Ok(pages * page_size(pages)?)
}

/// The page size, from `VmRSS` (kB) over statm's resident pages; 4 KiB when
/// the two readings cannot be related (they are taken a moment apart).
fn page_size(resident_pages: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let vm_rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("status has no VmRSS")?;
    let derived = (vm_rss_kb * 1024).checked_div(resident_pages).unwrap_or(0);
    if derived < 1024 {
        return Ok(4096);
    }
    // The power of two nearest to the ratio: the readings may differ by a page.
    let above = derived.next_power_of_two();
    let below = above / 2;
    Ok(if above - derived < derived - below {
        above
    } else {
        below
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let users = args.users.max(1);

    // The real compile path: YAML -> Config -> Runtime.
    let config = headroom_config::load_str(BENCH_CONFIG, "benches/headroom-bench.yaml")
        .map_err(|e| e.to_string())?;
    let runtime = compile_runtime(
        &config,
        Path::new("benches/headroom-bench.yaml"),
        &Metrics::new(),
        &IdentitySecret::random().map_err(|e| format!("no randomness: {e}"))?,
    )?;
    // Nothing may be evicted: the table holds every inserted user.
    let table_config = TableConfig {
        max_users: users,
        ..table_config(&config)
    };

    let rss_start = rss_bytes()?;
    let table: UserTable<UserState> = UserTable::new(table_config)?;
    let rss_empty = rss_bytes()?;

    // Insert every user with one recorded arrival.
    let clock = SystemClock;
    let pseudonymizer = &runtime.identity.pseudonymizer;
    let mut id = itoa::Buffer::new();
    let started = Instant::now();
    for i in 0..users {
        let key = pseudonymizer.key(SourceKind::ApiKey, id.format(i).as_bytes());
        let now_ms = clock.now_ms();
        let entry = table.get_or_insert(key, now_ms)?;
        entry.windows.record_arrival(now_ms, 0, 0);
    }
    let insert_ns = started.elapsed().as_nanos() as f64 / users as f64;
    let rss_full = rss_bytes()?;

    let measured = rss_full.saturating_sub(rss_empty) as f64 / table.len() as f64;
    let estimate = table.bytes_per_user();
    if args.json {
        println!(
            "{{\"users\": {}, \"rss_start_bytes\": {rss_start}, \"rss_empty_table_bytes\": {rss_empty}, \
             \"rss_full_bytes\": {rss_full}, \"rss_bytes_per_user\": {measured:.1}, \
             \"estimated_bytes_per_user\": {estimate}, \"insert_ns_per_user\": {insert_ns:.0}}}",
            table.len()
        );
    } else {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!("users tracked:            {}", table.len());
        println!("rss at start:             {:.1} MiB", mib(rss_start));
        println!("rss with empty table:     {:.1} MiB", mib(rss_empty));
        println!("rss with all users:       {:.1} MiB", mib(rss_full));
        println!("rss growth per user:      {measured:.1} bytes (mimalloc)");
        println!("UserTable::bytes_per_user {estimate} bytes (estimate)");
        println!("insert + first arrival:   {insert_ns:.0} ns per user");
    }
    Ok(())
}
