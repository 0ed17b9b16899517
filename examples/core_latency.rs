//! How long a cache line takes to travel between two threads and back: the figure that
//! decides how well `cnnkit train --threads 2` scales on a virtual machine.
//!
//! Every training step, each thread reads the gradients the other thread just wrote
//! (about 250 KB for LeNet-5), and the other core's copies of its own gradient lines must
//! be invalidated before it writes them again. When the host places the two vCPUs on
//! cores that share a cache, that is cheap; when it places them far apart, every one of
//! those lines costs several times more. On this project's machine the round trip
//! measured 54-75 ns in some minutes and 320-365 ns in others, and two-thread LeNet-5
//! training ran 57,000-60,000 images/s in the first case and 47,000-51,000 in the
//! second, while two independent one-thread trainings (which share no lines) kept their
//! full speed in both.
//!
//! Run: `cargo run --release --example core_latency -- [ROUND_TRIPS]` (default
//! 200,000). It prints the median of five runs' mean round trip, in nanoseconds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// The line the two threads bounce, alone in its 64 bytes.
#[repr(align(64))]
struct Line(AtomicU32);

fn round_trip_ns(trips: u32) -> f64 {
    let line = Line(AtomicU32::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..trips {
                // wait for the ping numbered 2i+1, answer with 2i+2
                while line.0.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.0.store(2 * i + 2, Ordering::Release);
            }
        });
        let t0 = Instant::now();
        for i in 0..trips {
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
        t0.elapsed().as_secs_f64() * 1e9 / f64::from(trips)
    })
}

fn main() {
    let trips: u32 = match std::env::args().nth(1) {
        None => 200_000,
        Some(a) => match a.parse() {
            Ok(n) if n > 0 && n < 1 << 30 => n,
            _ => {
                eprintln!("error: ROUND_TRIPS must be a whole number from 1 to 2^30 - 1");
                std::process::exit(2);
            }
        },
    };
    let mut runs: Vec<f64> = (0..5).map(|_| round_trip_ns(trips)).collect();
    runs.sort_by(f64::total_cmp);
    let shown: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "cache-line round trip between two threads: median {:.0} ns (runs: {} ns)",
        runs[2],
        shown.join(", ")
    );
}
