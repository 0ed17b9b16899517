//! Pooling: max and min with indices (bit-equal, NaN wins as in PyTorch), average with
//! and without the padding counted, global average; every backward pass, including
//! indices that did not come from a forward pass.

use cnnkit_kernels::{self as k, Pool2dParams, reference as r};

use super::{Bytes, abs, assert_same, assert_sum_close, for_each_isa, sum_must_fit};

fn params(b: &Bytes) -> Pool2dParams {
    Pool2dParams::new(
        b.byte(0) % 3,
        b.byte(1) % 4,
        b.byte(2) % 20,
        b.byte(3) % 20,
        b.byte(4) % 5,
        b.byte(5) % 5,
    )
    .with_stride(b.byte(6) % 4, b.byte(7) % 4)
    .with_padding(b.byte(8) % 4, b.byte(9) % 4, b.byte(10) % 4, b.byte(11) % 4)
    .with_dilation(b.byte(12) % 3, b.byte(13) % 3)
}

pub fn pool2d(data: &[u8]) {
    let mut b = Bytes::new(data, 16);
    let p = params(&b);
    let d = match p.dims() {
        Ok(d) => d,
        Err(e) => {
            let mut y = [0.0; 4];
            assert_eq!(k::max_pool2d(&p, &[], &mut y, None), Err(e));
            assert_eq!(k::min_pool2d(&p, &[], &mut y, None), Err(e));
            assert_eq!(k::avg_pool2d(&p, true, &[], &mut y), Err(e));
            assert_eq!(k::max_pool2d_backward(&p, &[], &[], &mut y), Err(e));
            assert_eq!(k::avg_pool2d_backward(&p, false, &[], &mut y), Err(e));
            assert_eq!(r::max_pool2d(&p, &[], &mut y, None), Err(e));
            return;
        }
    };
    let x = b.floats(d.input_len);
    let gy = b.floats(d.output_len);
    let include_pad = b.byte(14) & 1 == 1;
    // indices for the backward pass: mostly in the plane, some past it (an error)
    let plane = (p.in_h * p.in_w) as u32;
    let raw: Vec<u32> = (0..d.output_len)
        .map(|i| {
            let v = b.float().to_bits();
            if b.byte(15) & 1 == 1 && i == 0 {
                v
            } else {
                v % plane.max(1)
            }
        })
        .collect();
    let out_plane = d.out_h * d.out_w;

    let mut want = [vec![0.0; d.output_len], vec![0.0; d.output_len]];
    let mut want_idx = [vec![0; d.output_len], vec![0; d.output_len]];
    r::max_pool2d(&p, &x, &mut want[0], Some(&mut want_idx[0])).unwrap();
    r::min_pool2d(&p, &x, &mut want[1], Some(&mut want_idx[1])).unwrap();
    let mut want_avg = vec![0.0; d.output_len];
    r::avg_pool2d(&p, include_pad, &x, &mut want_avg).unwrap();
    let mut mag_avg = vec![0.0; d.output_len];
    r::avg_pool2d(&p, include_pad, &abs(&x), &mut mag_avg).unwrap();
    sum_must_fit(&mut mag_avg, p.kernel_h * p.kernel_w);
    let mut want_gavg = vec![0.0; d.input_len];
    r::avg_pool2d_backward(&p, include_pad, &gy, &mut want_gavg).unwrap();
    let mut mag_gavg = vec![0.0; d.input_len];
    r::avg_pool2d_backward(&p, include_pad, &abs(&gy), &mut mag_gavg).unwrap();
    let window = p.kernel_h * p.kernel_w;

    for_each_isa(|isa| {
        let name = isa.name();
        for (which, f) in [(0, k::max_pool2d as PoolFn), (1, k::min_pool2d)] {
            let mut y = vec![f32::NAN; d.output_len];
            let mut idx = vec![7; d.output_len];
            f(&p, &x, &mut y, Some(&mut idx)).unwrap();
            assert_same(&format!("pool {which} ({name})"), &y, &want[which]);
            assert_eq!(idx, want_idx[which], "pool {which} indices ({name})");
            let mut y2 = vec![f32::NAN; d.output_len];
            f(&p, &x, &mut y2, None).unwrap();
            assert_same(
                &format!("pool {which} without indices ({name})"),
                &y2,
                &want[which],
            );
            // backward from the forward's indices and from arbitrary ones
            for ix in [&want_idx[which], &raw] {
                let mut gx_ref = vec![0.0; d.input_len];
                let res = r::max_pool2d_backward(&p, ix, &gy, &mut gx_ref);
                let mut gx = vec![f32::NAN; d.input_len];
                let bwd = if which == 0 {
                    k::max_pool2d_backward
                } else {
                    k::min_pool2d_backward
                };
                let got = bwd(&p, ix, &gy, &mut gx);
                assert_eq!(got, res, "pool backward result ({name})");
                if res.is_ok() {
                    let mut mag = vec![0.0; d.input_len];
                    r::max_pool2d_backward(&p, ix, &abs(&gy), &mut mag).unwrap();
                    // both sides add in f32; at most every window lands on one pixel
                    assert_sum_close(
                        &format!("pool {which} backward ({name})"),
                        &gx,
                        &gx_ref,
                        &mag,
                        2 * out_plane,
                    );
                }
            }
        }
        let mut y = vec![f32::NAN; d.output_len];
        k::avg_pool2d(&p, include_pad, &x, &mut y).unwrap();
        assert_sum_close(
            &format!("avg_pool2d ({name})"),
            &y,
            &want_avg,
            &mag_avg,
            window + 1,
        );
        let mut gx = vec![f32::NAN; d.input_len];
        k::avg_pool2d_backward(&p, include_pad, &gy, &mut gx).unwrap();
        // each window's share is rounded to f32, then added in f32 (by both)
        assert_sum_close(
            &format!("avg_pool2d backward ({name})"),
            &gx,
            &want_gavg,
            &mag_gavg,
            2 * window + 2,
        );
    });
    global(&x, &gy, &p);
}

type PoolFn =
    fn(&Pool2dParams, &[f32], &mut [f32], Option<&mut [u32]>) -> Result<(), k::KernelError>;

/// Global average pooling over the same data seen as (batch, channels, h, w).
fn global(x: &[f32], gy: &[f32], p: &Pool2dParams) {
    let (n, c, h, w) = (p.batch, p.channels, p.in_h, p.in_w);
    let mut want = vec![0.0; n * c];
    let res = r::global_avg_pool2d(n, c, h, w, x, &mut want);
    let mut got = vec![f32::NAN; n * c];
    assert_eq!(k::global_avg_pool2d(n, c, h, w, x, &mut got), res);
    if res.is_err() {
        return;
    }
    let mut mag = vec![0.0; n * c];
    r::global_avg_pool2d(n, c, h, w, &abs(x), &mut mag).unwrap();
    sum_must_fit(&mut mag, h * w);
    for_each_isa(|isa| {
        let mut got = vec![f32::NAN; n * c];
        k::global_avg_pool2d(n, c, h, w, x, &mut got).unwrap();
        assert_sum_close(
            &format!("global_avg_pool2d ({})", isa.name()),
            &got,
            &want,
            &mag,
            h * w + 1,
        );
    });
    let g = &gy[..gy.len().min(n * c)];
    let mut want = vec![0.0; x.len()];
    let res = r::global_avg_pool2d_backward(n, c, h, w, g, &mut want);
    let mut got = vec![f32::NAN; x.len()];
    assert_eq!(k::global_avg_pool2d_backward(n, c, h, w, g, &mut got), res);
    if res.is_ok() {
        let mut mag = vec![0.0; x.len()];
        r::global_avg_pool2d_backward(n, c, h, w, &abs(g), &mut mag).unwrap();
        assert_sum_close("global_avg_pool2d backward", &got, &want, &mag, 2);
    }
}
