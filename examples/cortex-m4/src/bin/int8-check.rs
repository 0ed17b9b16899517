//! The int8 kernels on this target against the `reference` oracle, bit for bit, on random
//! shapes: convolutions (stride, padding, dilation, groups, depthwise), fully connected
//! layers. On the Cortex-M4 (`thumbv7em`) this runs the DSP (SMLAD) kernels under QEMU;
//! on the host, whatever the CPU selects. Static buffers, no heap. Prints one line and
//! exits with status 0, or 1 at the first difference.
//!
//! `cargo run -p lenet5-firmware --bin int8-check --profile firmware --target thumbv7em-none-eabihf`
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::fmt::Write;

use cnnkit_kernels::{
    Conv2dParams, LinearParams, QuantOutput, Requant, conv2d_s8, conv2d_s8_scratch_len,
    fully_connected_s8, fully_connected_s8_scratch_len, reference,
};

/// Cases of each kind.
const CASES: usize = 300;
const MAX_IN: usize = 1024;
const MAX_W: usize = 2048;
const MAX_OUT: usize = 1024;
const MAX_SCRATCH: usize = 4096;

/// The buffers (in `.bss` on the target).
struct Bufs {
    x: [i8; MAX_IN],
    w: [i8; MAX_W],
    b: [i32; 64],
    r: [Requant; 64],
    y: [i8; MAX_OUT],
    want: [i8; MAX_OUT],
    scratch: [i16; MAX_SCRATCH],
}

/// xorshift32.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    /// In `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.next() as usize % (hi - lo + 1)
    }
    fn i8(&mut self) -> i8 {
        self.next() as i8
    }
}

/// Fills the data of a layer with `out` outputs and random quantisation; the output
/// zero point, clamp and input zero point.
fn fill(
    rng: &mut Rng,
    b: &mut Bufs,
    inputs: usize,
    weights: usize,
    out: usize,
) -> (i32, i32, i8, i8) {
    for v in &mut b.x[..inputs] {
        *v = rng.i8();
    }
    for v in &mut b.w[..weights] {
        *v = rng.i8();
    }
    for o in 0..out {
        b.b[o] = (rng.next() % 200_001) as i32 - 100_000;
        // real multipliers from 2^-14 to about 1
        let m = (1u32 << 30) | (rng.next() >> 2);
        b.r[o] = Requant {
            multiplier: m as i32,
            shift: -(rng.range(0, 14) as i32),
        };
    }
    let (zi, zo) = (i32::from(rng.i8()), i32::from(rng.i8()));
    let lo = rng.i8();
    let hi = lo.saturating_add((rng.next() % 128) as i8).max(lo);
    (zi, zo, lo, hi)
}

/// Checks `CASES` convolutions and `CASES` fully connected layers; the first difference
/// or error as text.
fn check(b: &mut Bufs, out: &mut impl Write) -> Result<(), ()> {
    let mut rng = Rng(0x1234_5678);
    let mut convs = 0;
    while convs < CASES {
        let groups = if rng.range(0, 3) == 0 {
            rng.range(2, 4)
        } else {
            1
        };
        let depthwise = rng.range(0, 3) == 0;
        let (cin, cout, groups) = if depthwise {
            let c = rng.range(1, 12);
            (c, c, c)
        } else {
            (groups * rng.range(1, 6), groups * rng.range(1, 6), groups)
        };
        let (kh, kw) = (rng.range(1, 5), rng.range(1, 5));
        let (h, w) = (rng.range(kh, 12), rng.range(kw, 12));
        let p = Conv2dParams::new(1, cin, h, w, cout, kh, kw)
            .with_groups(groups)
            .with_stride(rng.range(1, 2), rng.range(1, 2))
            .with_padding(
                rng.range(0, 2),
                rng.range(0, 2),
                rng.range(0, 2),
                rng.range(0, 2),
            )
            .with_dilation(rng.range(1, 2), 1);
        let Ok(d) = p.dims() else { continue };
        let Ok(s) = conv2d_s8_scratch_len(&p) else {
            continue;
        };
        if d.image_len > MAX_IN
            || d.weight_len > MAX_W
            || d.out_image_len > MAX_OUT
            || s > MAX_SCRATCH
        {
            continue;
        }
        let (zi, zo, lo, hi) = fill(&mut rng, b, d.image_len, d.weight_len, cout);
        let q = QuantOutput::new(zi, zo, &b.r[..cout]).with_clamp(lo, hi);
        let bias = if rng.range(0, 1) == 0 {
            Some(&b.b[..cout])
        } else {
            None
        };
        let (x, wt, y) = (
            &b.x[..d.image_len],
            &b.w[..d.weight_len],
            &mut b.y[..d.out_image_len],
        );
        let r1 = conv2d_s8(&p, &q, x, wt, bias, y, &mut b.scratch[..s]);
        let r2 = reference::conv2d_s8(&p, &q, x, wt, bias, &mut b.want[..d.out_image_len]);
        if r1.is_err() || r2.is_err() || b.y[..d.out_image_len] != b.want[..d.out_image_len] {
            let _ = writeln!(
                out,
                "conv2d_s8 differs from the reference: {p:?} ({r1:?}, {r2:?})"
            );
            return Err(());
        }
        convs += 1;
    }
    for _ in 0..CASES {
        let (batch, k, n) = (rng.range(1, 3), rng.range(1, 300), rng.range(1, 20));
        if batch * k > MAX_IN || k * n > MAX_W || batch * n > MAX_OUT || n > 64 {
            continue;
        }
        let p = LinearParams::new(batch, k, n);
        let (zi, zo, lo, hi) = fill(&mut rng, b, batch * k, k * n, n);
        let q = QuantOutput::new(zi, zo, &b.r[..n]).with_clamp(lo, hi);
        let s = fully_connected_s8_scratch_len(&p);
        let (x, wt) = (&b.x[..batch * k], &b.w[..k * n]);
        let r1 = fully_connected_s8(
            &p,
            &q,
            x,
            wt,
            Some(&b.b[..n]),
            &mut b.y[..batch * n],
            &mut b.scratch[..s],
        );
        let r2 =
            reference::fully_connected_s8(&p, &q, x, wt, Some(&b.b[..n]), &mut b.want[..batch * n]);
        if r1.is_err() || r2.is_err() || b.y[..batch * n] != b.want[..batch * n] {
            let _ = writeln!(
                out,
                "fully_connected_s8 differs from the reference: {p:?} ({r1:?}, {r2:?})"
            );
            return Err(());
        }
    }
    let _ = writeln!(
        out,
        "int8 kernels equal to the reference: {convs} convolutions, {CASES} fully connected layers"
    );
    Ok(())
}

const fn bufs() -> Bufs {
    Bufs {
        x: [0; MAX_IN],
        w: [0; MAX_W],
        b: [0; 64],
        r: [Requant {
            multiplier: 0,
            shift: 0,
        }; 64],
        y: [0; MAX_OUT],
        want: [0; MAX_OUT],
        scratch: [0; MAX_SCRATCH],
    }
}

#[cfg(target_os = "none")]
mod target {
    use cortex_m_rt::entry;
    use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
    use cortex_m_semihosting::hio;
    use panic_semihosting as _;

    #[entry]
    fn main() -> ! {
        static mut BUFS: super::Bufs = super::bufs();
        let ok = match hio::hstdout() {
            Ok(mut out) => super::check(BUFS, &mut out).is_ok(),
            Err(()) => false,
        };
        debug::exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
        loop {
            cortex_m::asm::wfi();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    let mut b = Box::new(bufs());
    let mut out = String::new();
    let ok = check(&mut b, &mut out).is_ok();
    print!("{out}");
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
