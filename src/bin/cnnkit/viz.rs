//! `cnnkit viz`: filters, feature maps and training curves as PNG files.

use std::path::{Path, PathBuf};

use cnnkit::checkpoint::{self, Meta};
use cnnkit::data::{Dataset, normalize_into};
use cnnkit::fsio;
use cnnkit::{Error, Layer, Model, Result, Shape, Workspace};
use image::{GrayImage, Luma};
use plotters::prelude::*;

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Tiles `tiles` (each `h x w`, already scaled to 0..=255) into a grid, each pixel
/// enlarged `scale` times, with a 2-pixel gap.
fn grid(tiles: &[Vec<u8>], h: usize, w: usize, cols: usize, scale: usize) -> GrayImage {
    let rows = tiles.len().div_ceil(cols);
    let gap = 2;
    let (th, tw) = (h * scale + gap, w * scale + gap);
    let mut img = GrayImage::from_pixel(
        (cols * tw + gap) as u32,
        (rows * th + gap) as u32,
        Luma([64]),
    );
    for (t, tile) in tiles.iter().enumerate() {
        let (oy, ox) = (gap + (t / cols) * th, gap + (t % cols) * tw);
        for y in 0..h * scale {
            for x in 0..w * scale {
                let v = tile[(y / scale) * w + x / scale];
                img.put_pixel((ox + x) as u32, (oy + y) as u32, Luma([v]));
            }
        }
    }
    img
}

/// Scales to 0..=255 over the tile's own range (a flat tile becomes mid-gray).
fn to_gray(v: &[f32]) -> Vec<u8> {
    let (lo, hi) = v
        .iter()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if hi <= lo {
        return vec![128; v.len()];
    }
    v.iter()
        .map(|&x| (255.0 * (x - lo) / (hi - lo)).clamp(0.0, 255.0) as u8)
        .collect()
}

/// Whether `head` begins as a PNG file does.
fn is_png(head: &[u8]) -> bool {
    head.starts_with(b"\x89PNG\r\n\x1a\n")
}

/// Encodes `img` as PNG and writes it through cnnkit's one atomic-write path.
fn save_png(img: image::DynamicImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| io(path, e))?;
    fsio::write_atomic(path, &bytes)
}

fn save(img: &GrayImage, path: &Path) -> Result<()> {
    save_png(image::DynamicImage::ImageLuma8(img.clone()), path)
}

/// The first convolution's filters: one row per output channel, one tile per input
/// channel, each filter scaled over its own range.
fn filters(model: &Model, out: &Path) -> Result<Option<String>> {
    let Some(Layer::Conv2d(c)) = model
        .layers()
        .iter()
        .find(|l| matches!(l, Layer::Conv2d(_)))
    else {
        return Ok(None);
    };
    let k = c.kernel;
    let per = c.in_channels * k * k;
    let mut tiles = Vec::new();
    for f in c.weight.data().chunks_exact(per) {
        let g = to_gray(f);
        tiles.extend(g.chunks_exact(k * k).map(<[u8]>::to_vec));
    }
    let scale = (48 / k).max(2);
    let path = out.join("filters.png");
    save(
        &grid(
            &tiles,
            k,
            k,
            c.in_channels.max(8.min(c.out_channels)),
            scale,
        ),
        &path,
    )?;
    Ok(Some(path.display().to_string()))
}

fn font() -> bool {
    const CANDIDATES: [&str; 3] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    for p in CANDIDATES {
        if let Ok(bytes) = std::fs::read(p) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// A named series of points in a colour.
type Line = (&'static str, Vec<(f64, f64)>, RGBColor);

/// Loss and accuracy per epoch, side by side.
fn curves(meta: &Meta, path: &Path) -> Result<()> {
    let h = &meta.history;
    let labels = font();
    let (width, height) = (1000u32, 420u32);
    let mut buf = vec![0u8; (width * height * 3) as usize];
    let err = |e: &dyn std::fmt::Display| io(path, e);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (left, right) = root.split_horizontally(500);
        let n = h.len().max(2) as f64;
        let max_loss = h.iter().map(|r| r.train_loss).fold(0.0, f64::max).max(1e-3) * 1.1;
        let lo_acc = h
            .iter()
            .flat_map(|r| [r.train_acc, r.test_acc])
            .fold(1.0, f64::min)
            .min(0.9)
            - 0.02;
        let series: [Line; 1] = [(
            "train loss",
            h.iter().map(|r| (r.epoch as f64, r.train_loss)).collect(),
            BLUE,
        )];
        let acc: [Line; 2] = [
            (
                "train accuracy",
                h.iter().map(|r| (r.epoch as f64, r.train_acc)).collect(),
                BLUE,
            ),
            (
                "test accuracy",
                h.iter().map(|r| (r.epoch as f64, r.test_acc)).collect(),
                RED,
            ),
        ];
        let panels: [(&DrawingArea<_, _>, &str, f64, f64, &[Line]); 2] = [
            (&left, "loss", 0.0, max_loss, &series),
            (&right, "accuracy", lo_acc.max(0.0), 1.0, &acc),
        ];
        for (area, title, y0, y1, lines) in panels {
            let mut b = ChartBuilder::on(area);
            b.margin(12);
            if labels {
                b.caption(title, ("sans-serif", 20))
                    .x_label_area_size(32)
                    .y_label_area_size(48);
            }
            let mut chart = b.build_cartesian_2d(1.0..n, y0..y1).map_err(|e| err(&e))?;
            let mut mesh = chart.configure_mesh();
            if labels {
                mesh.x_desc("epoch");
            } else {
                mesh.disable_x_axis().disable_y_axis();
            }
            mesh.draw().map_err(|e| err(&e))?;
            for (name, pts, color) in lines {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(&e))?;
                let s = chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| err(&e))?;
                if labels {
                    s.label(*name).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                }
            }
            if labels {
                chart
                    .configure_series_labels()
                    .border_style(BLACK)
                    .background_style(WHITE.mix(0.8))
                    .draw()
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    let img = image::RgbImage::from_raw(width, height, buf).expect("buffer of the image's size");
    save_png(image::DynamicImage::ImageRgb8(img), path)
}

fn feature_name(i: usize, layer: &Layer) -> String {
    format!("features_{i:02}_{}.png", layer.kind().to_lowercase())
}

/// Arguments of `cnnkit viz`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint.
    #[arg(long)]
    model_file: PathBuf,
    /// Directory with the IDX files (only the test split is read, for the test image).
    #[arg(long, default_value = cnnkit::data::DEFAULT_DIR)]
    data: PathBuf,
    /// Index of the test image.
    #[arg(long, default_value_t = 0)]
    image: usize,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Replace files in the output directory that are not PNG images.
    #[arg(long)]
    overwrite: bool,
}

/// `cnnkit viz`.
pub fn run(a: &Args) -> Result<()> {
    let (model_file, data, index, out, overwrite) =
        (&a.model_file, &a.data, a.image, &a.out, a.overwrite);
    let (model, meta) = checkpoint::load_model(model_file)?;
    let test = Dataset::load_test(data)?;
    if index >= test.len() {
        return Err(Error::Invalid(format!(
            "--image {index}: the test split has {} images",
            test.len()
        )));
    }
    if test.rows * test.cols != model.input_shape().len() {
        return Err(Error::Invalid(format!(
            "test images are {}x{}, the model takes {}",
            test.rows,
            test.cols,
            model.input_shape()
        )));
    }
    crate::out_dir(out)?;
    // every file it will write: PNG images of ours, or nothing, unless --overwrite
    let mut names = vec![
        "input.png".to_string(),
        "filters.png".into(),
        "curves.png".into(),
    ];
    for (i, layer) in model.layers().iter().enumerate() {
        names.push(feature_name(i, layer));
    }
    for n in &names {
        fsio::check_destination(&out.join(n), "--out", "a PNG image", overwrite, is_png)?;
    }
    let ds_test = &test;
    let mut written = Vec::new();
    let (rows, cols) = (ds_test.rows, ds_test.cols);
    let input = out.join("input.png");
    save(
        &grid(&[ds_test.image(index).to_vec()], rows, cols, 1, 8),
        &input,
    )?;
    written.push(input.display().to_string());
    written.extend(filters(&model, out)?);

    let mut ws = Workspace::inference(&model, 1)?;
    ws.keep_every_activation();
    normalize_into(&meta.norm().table(), ds_test.image(index), ws.input_mut(1));
    model.forward_ws(&mut ws, 1, None)?;
    for (i, layer) in model.layers().iter().enumerate() {
        let Shape::Image { c, h, w } = model.shapes()[i + 1] else {
            continue;
        };
        let act = ws.activation(&model, i, 1);
        let tiles: Vec<Vec<u8>> = act.chunks_exact(h * w).map(to_gray).collect();
        let cols = (c as f64).sqrt().ceil() as usize;
        let path = out.join(feature_name(i, layer));
        save(&grid(&tiles, h, w, cols, (96 / h.max(w)).max(2)), &path)?;
        written.push(path.display().to_string());
    }
    if meta.history.is_empty() {
        eprintln!("note: the checkpoint records no epochs; no training curves drawn");
    } else {
        let path = out.join("curves.png");
        curves(&meta, &path)?;
        written.push(path.display().to_string());
    }
    let label = usize::from(ds_test.labels[index]);
    let pred = cnnkit::loss::argmax(ws.output(&model, 1));
    let name = |i: usize| {
        meta.classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    };
    outln!(
        "test image {index}: label {label} {}, predicted {pred} {}",
        name(label),
        name(pred)
    );
    for w in written {
        outln!("wrote {w}");
    }
    Ok(())
}
