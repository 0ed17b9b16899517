//! The steady-state training step allocates nothing: a counting global allocator sees
//! the same count after the second step as after the last, on one thread and on two.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use cnnkit::{Model, Normalize, Shape, Split, TrainConfig, Trainer};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn training_steps_allocate_nothing() {
    let (images, labels) = common::images(700, 28, 5);
    let split = Split {
        images,
        labels,
        channels: 1,
        rows: 28,
        cols: 28,
    };
    for (threads, spec) in [
        (1, "lenet5"),
        (2, "lenet5"),
        (
            2,
            "conv(8,3,pad=1) batchnorm relu avgpool(2) flatten dropout(0.3) linear(10)",
        ),
    ] {
        let model = Model::from_spec(spec, Shape::Image { c: 1, h: 28, w: 28 }, 3).unwrap();
        let config = TrainConfig {
            threads,
            batch: 64,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(model, config, Normalize::of(&split)).unwrap();
        let (mut at_step2, mut steps) = (0, 0);
        // the last batch (700 = 10 * 64 + 60) is smaller: it must not allocate either
        let stats = t
            .train_epoch(&split, |_, _, _| {
                steps += 1;
                if steps == 2 {
                    at_step2 = ALLOCS.load(Ordering::SeqCst);
                }
            })
            .unwrap();
        let at_end = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(steps, 11);
        assert_eq!(
            at_end - at_step2,
            0,
            "{spec} on {threads} thread(s): {} allocations in 9 steps",
            at_end - at_step2
        );
        assert!(stats.train_loss.is_finite());
    }
}
