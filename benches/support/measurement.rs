//! Time as the benches book it: the on-CPU time of the measuring thread,
//! not wall time.
//!
//! Why: this machine has 2 cores shared with compilers, tests and other
//! engineers' benches. Wall time then measures how often the scheduler ran
//! us; the thread's own CPU time measures what the code costs, which is what
//! the targets are about. It also makes the multi-threaded rows honest with
//! more threads than cores: 8 threads on 2 cores each get a quarter of the
//! wall clock, but a thread's CPU time per operation grows only through
//! contention (cache lines bouncing, CAS retries, lock waits that spin).
//!
//! The source is `/proc/thread-self/schedstat` (nanoseconds on CPU). The
//! kernel brings a running thread's figure up to date only when the thread
//! passes through the scheduler, so every reading yields first; that costs a
//! system call per reading, i.e. per sample, never per iteration. Where the
//! file is missing (a kernel without scheduler statistics) wall time is used.

use std::fs::File;
use std::io::Read;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

/// On-CPU time of the calling thread; `None` where it cannot be read.
pub fn thread_cpu_time() -> Option<Duration> {
    std::thread::yield_now();
    // A stack buffer: reading the clock must not allocate (the allocation
    // test counts allocations on every thread).
    let mut buf = [0u8; 128];
    let mut file = File::open("/proc/thread-self/schedstat").ok()?;
    let n = file.read(&mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// A criterion measurement of the measuring thread's CPU time.
pub struct ThreadCpu;

/// Reading taken at the start of a sample.
pub struct Start {
    cpu: Option<Duration>,
    wall: Instant,
}

impl Measurement for ThreadCpu {
    type Intermediate = Start;
    type Value = Duration;

    fn start(&self) -> Start {
        Start {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }

    fn end(&self, start: Start) -> Duration {
        match (start.cpu, thread_cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => start.wall.elapsed(),
        }
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats nanoseconds of CPU time, and operations per CPU-second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical_ns {
            ns if ns < 1e3 => (1.0, "ns"),
            ns if ns < 1e6 => (1e-3, "µs"),
            ns if ns < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        for value in values {
            *value *= factor;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // Every bench here counts operations; bytes would read the same way.
        let per_iter = match *throughput {
            Throughput::Bytes(n)
            | Throughput::BytesDecimal(n)
            | Throughput::Elements(n)
            | Throughput::Bits(n) => n as f64,
        };
        let typical = per_iter * 1e9 / typical_ns;
        let (divisor, unit) = match typical {
            r if r < 1e3 => (1.0, "op/cpu-s"),
            r if r < 1e6 => (1e3, "Kop/cpu-s"),
            _ => (1e6, "Mop/cpu-s"),
        };
        for value in values {
            *value = per_iter * 1e9 / *value / divisor;
        }
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// How a multi-threaded bench reports its time.
#[derive(Clone, Copy, Debug)]
pub enum ThreadTime {
    /// The mean on-CPU time of the worker threads: with no contention it
    /// equals the single-thread time whatever the thread count, even with
    /// more threads than cores, so its throughput is the per-thread
    /// throughput.
    CpuPerThread,
    /// Wall time divided by the thread count: its throughput is what all
    /// threads together achieve on this machine's cores, so it depends on
    /// whatever else the machine is running.
    WallAllThreads,
}

/// Runs `work(thread, iters)` on `threads` threads released together and
/// returns the time criterion should book for `iters` iterations; see
/// [`ThreadTime`]. Falls back to wall time over the thread count when the
/// per-thread CPU time cannot be read.
pub fn run_threads(
    threads: usize,
    iters: u64,
    mode: ThreadTime,
    work: &(dyn Fn(usize, u64) + Sync),
) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let (cpu_total, wall) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = thread_cpu_time();
                    work(t, iters);
                    start
                        .zip(thread_cpu_time())
                        .map(|(a, b)| b.saturating_sub(a))
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let cpu: Option<Duration> = handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .sum();
        (cpu, started.elapsed())
    });
    let per_thread = |d: Duration| d / u32::try_from(threads).expect("a few threads");
    match (mode, cpu_total) {
        (ThreadTime::CpuPerThread, Some(cpu)) => per_thread(cpu),
        _ => per_thread(wall),
    }
}
