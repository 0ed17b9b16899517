//! Where a training step's time goes: median forward and backward time of every layer
//! of a model for one batch, on one thread.
//!
//! Run: `cargo run --release --example layer_times -- [SPEC] [BATCH]`
//! (default: `lenet5`, 64).

use std::time::Instant;

use cnnkit::layers::Mode;
use cnnkit::{Model, Rng, Shape, Workspace};

fn main() -> Result<(), cnnkit::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = args.first().map_or("lenet5", String::as_str);
    let batch: usize = args.get(1).and_then(|b| b.parse().ok()).unwrap_or(64);
    let model = Model::from_spec(spec, Shape::Image { c: 1, h: 28, w: 28 }, 1)?;
    let mut ws = Workspace::new(&model, batch)?;
    let mut rng = Rng::new(1);
    ws.input_mut(batch)
        .iter_mut()
        .for_each(|v| *v = rng.normal());
    model.forward_ws(&mut ws, batch, Some(1))?;
    let (_, g) = ws.output_and_grad_mut(&model, batch);
    g.iter_mut().for_each(|v| *v = rng.normal() * 0.01);
    model.backward_ws(&mut ws, batch)?;
    let reps = 200;
    let mut fwd = vec![Vec::new(); model.layers().len()];
    let mut bwd = vec![Vec::new(); model.layers().len()];
    let mut total = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        for (i, ms) in fwd.iter_mut().enumerate() {
            let t = Instant::now();
            model.forward_layer(&mut ws, i, batch, Mode::Train { seed: 1 })?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for (i, ms) in bwd.iter_mut().enumerate().rev() {
            let t = Instant::now();
            model.backward_layer(&mut ws, i, batch)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        total.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("{spec}, batch {batch}: median of {reps} steps (forward + backward, no optimizer)");
    println!("{:<4} {:<28} {:>9} {:>9}", "#", "layer", "fwd ms", "bwd ms");
    for (i, l) in model.layers().iter().enumerate() {
        println!(
            "{i:<4} {:<28} {:>9.3} {:>9.3}",
            l.spec(),
            median(&mut fwd[i]),
            median(&mut bwd[i])
        );
    }
    let t = median(&mut total);
    println!("step {t:.3} ms = {:.0} images/s", batch as f64 / t * 1e3);
    Ok(())
}
