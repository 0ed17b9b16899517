//! cnnkit against a hostile user, a crash and a full disk: one test per class of defect,
//! each asserting the exit status, the message, the memory bound where it matters (the
//! command runs under `ulimit -v`), and that every file that was there before is
//! byte-identical afterwards.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cnnkit::checkpoint;
use cnnkit::fsio::{self, fault};
use cnnkit::{Model, Normalize, Shape, Split, TrainConfig, Trainer};
use common::{tempdir, write_dataset};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cnnkit");

/// Runs cnnkit with `args`, killing it (and failing) after 120 s: a hang is a failure.
fn run(args: &[&str]) -> Output {
    run_cmd(Command::new(BIN).args(args))
}

/// Runs cnnkit under `ulimit -v` of `mib` MiB: an allocation past it aborts the process,
/// which the caller's status check catches.
fn run_limited(mib: u64, args: &[&str]) -> Output {
    run_cmd(
        Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {}; exec \"$0\" \"$@\"", mib * 1024))
            .arg(BIN)
            .args(args),
    )
}

fn run_cmd(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cnnkit");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("cnnkit hung: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit status `code`, no panic, and every one of `needles` in the message.
fn fails(out: &Output, code: i32, needles: &[&str]) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {err}\nstdout: {}",
        text(&out.stdout)
    );
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    err
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under a directory (links as their targets), to check nothing changed.
#[derive(Debug, PartialEq)]
struct Snapshot(BTreeMap<PathBuf, Vec<u8>>);

impl Snapshot {
    fn of(dir: &Path) -> Self {
        let mut m = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let t = e.file_type().unwrap();
                if t.is_symlink() {
                    let target = std::fs::read_link(&p).unwrap();
                    m.insert(p, target.into_os_string().into_encoded_bytes());
                } else if t.is_dir() {
                    stack.push(p);
                } else {
                    m.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        Snapshot(m)
    }

    /// Every file of the snapshot is still there with the same bytes, and no temporary
    /// file of ours was left behind.
    fn unchanged(&self, dir: &Path) {
        let now = Snapshot::of(dir);
        for (p, b) in &self.0 {
            let after = now
                .0
                .get(p)
                .unwrap_or_else(|| panic!("{} is gone", p.display()));
            assert!(after == b, "{} changed", p.display());
        }
        for p in now.0.keys() {
            assert!(
                !p.to_string_lossy().ends_with(".cnnkit-tmp"),
                "temporary file left: {}",
                p.display()
            );
        }
    }
}

/// A directory with a small dataset (`data/`) and a LeNet-5 checkpoint of one epoch
/// (`m.safetensors` and its `.optim`).
fn fixture(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = tempdir(name);
    let data = d.join("data");
    write_dataset(&data, 600, 200, false);
    let ck = d.join("m.safetensors");
    ok(&run(&[
        "train",
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--save",
        s(&ck),
        "--json",
    ]));
    (d, data, ck)
}

type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

/// Rewrites the checkpoint `src` into `dst` after `edit` changed its metadata (as JSON)
/// and tensors.
fn rewrite(src: &Path, dst: &Path, edit: impl FnOnce(&mut Value, &mut Tensors)) {
    let bytes = std::fs::read(src).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta: Value = serde_json::from_str(&md.metadata().as_ref().unwrap()["cnnkit"]).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut meta, &mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, dt, sh, b)| (n.clone(), TensorView::new(*dt, sh.clone(), b).unwrap()))
        .collect();
    let md = std::collections::HashMap::from([("cnnkit".to_string(), meta.to_string())]);
    std::fs::write(dst, safetensors::serialize(views, &Some(md)).unwrap()).unwrap();
}

/// Sets element `i` of tensor `name` (f32).
fn set_f32(tensors: &mut Tensors, name: &str, i: usize, v: f32) {
    let t = tensors.iter_mut().find(|t| t.0 == name).unwrap();
    t.3[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------------------
// Security: the temporary file of an atomic write

#[test]
fn temp_files_are_exclusive_unpredictable_and_cleaned_up() {
    let (d, data, ck) = fixture("hostile_tmp");
    // another user plants links at every name the old scheme (`.NAME.tmpPID`) could use
    // for the next few thousand processes
    let victim = d.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let me = std::process::id();
    for pid in me..me + 3000 {
        for f in [
            "m.safetensors",
            "m.safetensors.optim",
            "m.safetensors.optim.next",
        ] {
            std::os::unix::fs::symlink(&victim, d.join(format!(".{f}.tmp{pid}"))).unwrap();
        }
    }
    // a stale temporary file of ours (its process is gone), a link with such a name (not
    // ours to remove, nor to follow) and one of a live process (PID 1)
    let stale = d.join(".m.safetensors.4294967295.AbCdEfGh.cnnkit-tmp");
    std::fs::write(&stale, b"left by a crash").unwrap();
    let stale_link = d.join(".m.safetensors.4294967294.AbCdEfGh.cnnkit-tmp");
    std::os::unix::fs::symlink(&victim, &stale_link).unwrap();
    let live = d.join(".m.safetensors.1.AbCdEfGh.cnnkit-tmp");
    std::fs::write(&live, b"another process is writing").unwrap();
    ok(&run(&[
        "train",
        "--data",
        s(&data),
        "--resume",
        s(&ck),
        "--epochs",
        "2",
        "--json",
    ]));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!stale.exists(), "a stale temporary file was not removed");
    assert!(
        std::fs::symlink_metadata(&stale_link).is_ok(),
        "a link was removed"
    );
    assert!(live.exists(), "a live process's file was removed");
    let (_, meta) = checkpoint::load_model(&ck).unwrap();
    assert_eq!(meta.epoch, 2);
    // the files keep the mode a plain `File::create` gives, not the temp file's 0600
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let probe = d.join("probe");
    std::fs::File::create(&probe).unwrap();
    assert_eq!(mode(&ck), mode(&probe));
    assert_eq!(mode(&checkpoint::optim_path(&ck)), mode(&probe));

    // in process: the temporary file's name is random, created exclusively in the
    // destination's directory
    let out = d.join("x.bin");
    fault::arm(2, fault::Mode::Crash); // crash at the fsync: the temp file stays
    assert!(fsio::write_atomic(&out, b"new").is_err());
    fault::disarm();
    let left: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".x.bin.") && n.ends_with(".cnnkit-tmp"))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    let random = left[0].split('.').nth(4).unwrap();
    assert_eq!(random.len(), 8, "{left:?}");
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------
// The model and its optimizer state as one unit

fn small_split(n: usize, seed: u32) -> Split {
    let (images, labels) = common::images(n, 28, seed);
    Split {
        images,
        labels,
        channels: 1,
        rows: 28,
        cols: 28,
    }
}

fn trainer(threads: usize) -> (Trainer, Split) {
    let split = small_split(256, 1);
    let model = Model::from_spec("lenet5", Shape::Image { c: 1, h: 28, w: 28 }, 1).unwrap();
    let config = TrainConfig {
        threads,
        epochs: 3,
        ..TrainConfig::default()
    };
    let norm = Normalize::of(&split);
    (Trainer::new(model, config, norm).unwrap(), split)
}

fn epoch(t: &mut Trainer, split: &Split) {
    let stats = t.train_epoch(split, |_, _, _| {}).unwrap();
    t.finish_epoch(stats, 0.5);
}

/// The model file's and the optimizer file's bytes, as `load_optimizer` would pair them.
fn pair_of(ck: &Path) -> (Vec<u8>, Vec<u8>) {
    let (model, meta) = checkpoint::load_model(ck).expect("the model file loads");
    checkpoint::load_optimizer(ck, &model, &meta).expect("its optimizer state loads");
    let d = meta.optim_digest.clone().unwrap();
    let opt = [checkpoint::optim_path(ck), checkpoint::optim_next_path(ck)]
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .find(|b| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for &x in b {
                h = (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("fnv1a64:{h:016x}") == d
        })
        .unwrap();
    (std::fs::read(ck).unwrap(), opt)
}

#[test]
fn the_model_and_optimizer_pair_survives_a_crash_or_full_disk_at_every_operation() {
    let d = tempdir("hostile_pair");
    let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let (mut t, split) = trainer(1);
    let ck = d.join("m.safetensors");
    epoch(&mut t, &split);
    checkpoint::save(&ck, &t, &classes).unwrap();
    let old = pair_of(&ck);
    let old_files = Snapshot::of(&d);
    epoch(&mut t, &split);
    // how many operations a save takes
    fault::count();
    checkpoint::save(&ck, &t, &classes).unwrap();
    let ops = fault::disarm();
    let new = pair_of(&ck);
    assert_ne!(old, new);
    assert!(ops >= 12, "a save of the pair took {ops} operations");
    let mut seen = [0usize; 2];
    for mode in [fault::Mode::Crash, fault::Mode::Fail] {
        for at in 0..ops {
            // back to the old pair
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            for (p, b) in &old_files.0 {
                std::fs::write(p, b).unwrap();
            }
            fault::arm(at, mode);
            let r = checkpoint::save(&ck, &t, &classes);
            fault::disarm();
            assert!(r.is_err(), "{mode:?} at operation {at} went unnoticed");
            let now = pair_of(&ck);
            assert!(
                now == old || now == new,
                "{mode:?} at operation {at} left a pair that is neither the old nor the new"
            );
            seen[usize::from(now == new)] += 1;
            if mode == fault::Mode::Fail {
                // an error cleans up after itself
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    assert!(!n.ends_with(".cnnkit-tmp"), "{mode:?} at {at} left {n}");
                }
            }
            // and the next save goes through, from whichever pair is there
            checkpoint::save(&ck, &t, &classes).unwrap();
            assert_eq!(pair_of(&ck), new, "after {mode:?} at {at}");
            assert!(!checkpoint::optim_next_path(&ck).exists());
        }
    }
    // some crash points leave the old pair, some (after the commit) the new one
    assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
}

// ---------------------------------------------------------------------------------------
// A diverged run

#[test]
fn a_diverged_run_stops_with_an_error_and_keeps_the_last_good_checkpoint() {
    let (d, data, ck) = fixture("hostile_diverge");
    for threads in ["1", "2"] {
        let before = Snapshot::of(&d);
        let out = run(&[
            "train",
            "--data",
            s(&data),
            "--resume",
            s(&ck),
            "--epochs",
            "5",
            "--lr",
            "10",
            "--threads",
            threads,
        ]);
        fails(&out, 3, &["diverged", "still holds epoch 1"]);
        before.unchanged(&d);
        // and what is there is a checkpoint cnnkit reads
        ok(&run(&["eval", "--model-file", s(&ck), "--data", s(&data)]));
    }
    // a new run that diverges saves nothing at all
    let fresh = d.join("fresh.safetensors");
    let out = run(&[
        "train",
        "--data",
        s(&data),
        "--epochs",
        "2",
        "--lr",
        "10",
        "--save",
        s(&fresh),
    ]);
    fails(&out, 3, &["diverged", "nothing was saved"]);
    assert!(!fresh.exists());
}

// ---------------------------------------------------------------------------------------
// --save replaces only checkpoints, checked before the first epoch

#[test]
fn save_refuses_what_is_not_a_checkpoint_before_the_first_epoch() {
    let (d, data, _ck) = fixture("hostile_save");
    let notes = d.join("notes.txt");
    std::fs::write(&notes, b"my notes").unwrap();
    std::fs::write(d.join("o.safetensors.optim"), b"not optimizer state").unwrap();
    let images = data.join("train-images-idx3-ubyte");
    let before = Snapshot::of(&d);
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            s(&notes).into(),
            vec!["notes.txt", "not a cnnkit checkpoint", "--overwrite"],
        ),
        (
            s(&images).into(),
            vec!["train-images-idx3-ubyte", "not a cnnkit checkpoint"],
        ),
        (
            s(&d.join("o.safetensors")).into(),
            vec!["o.safetensors.optim", "not a cnnkit checkpoint"],
        ),
        (format!("{}/", s(&notes)), vec!["notes.txt/", "directory"]),
        (format!("{}/", s(&d)), vec!["directory"]),
        (
            s(&d.join("no/such/dir/m.st")).into(),
            vec!["no/such/dir/m.st", "does not exist"],
        ),
        (
            "/proc/m.safetensors".into(),
            vec!["/proc/m.safetensors", "cannot create"],
        ),
        ("/dev/null".into(), vec!["/dev/null", "a device"]),
        (s(&data).into(), vec!["directory"]),
    ];
    for (save, needles) in cases {
        let out = run(&["train", "--data", s(&data), "--save", &save]);
        fails(&out, 2, &[&["--save"], needles.as_slice()].concat());
        assert!(!text(&out.stdout).contains("epoch"), "an epoch ran: {save}");
    }
    before.unchanged(&d);
    // with --overwrite the user may replace a file of their own
    ok(&run(&[
        "train",
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--save",
        s(&notes),
        "--overwrite",
    ]));
    checkpoint::load_model(&notes).unwrap();
}

// ---------------------------------------------------------------------------------------
// Memory bounded by what the input holds, or by the stated budget

#[test]
fn memory_is_bounded_by_what_the_input_holds() {
    let (d, data, ck) = fixture("hostile_memory");
    let before = Snapshot::of(&d);
    // a 10,000,000 x 1 PNG (about 10 KB): predicted within 512 MiB of address space
    let wide = d.join("wide.png");
    image::GrayImage::from_pixel(10_000_000, 1, image::Luma([200]))
        .save(&wide)
        .unwrap();
    assert!(std::fs::metadata(&wide).unwrap().len() < 100_000);
    let out = run_limited(512, &["predict", "--model-file", s(&ck), s(&wide)]);
    assert!(ok(&out).contains("wide.png"));
    // and a 1 x 10,000,000 one: narrowed by an area average before the filter, whose
    // per-row weights would otherwise span the whole column
    let tall = d.join("tall.png");
    image::GrayImage::from_pixel(1, 10_000_000, image::Luma([200]))
        .save(&tall)
        .unwrap();
    let out = run_limited(512, &["predict", "--model-file", s(&ck), s(&tall)]);
    assert!(ok(&out).contains("tall.png"));
    // a tiny checkpoint whose spec names huge layers: refused before any is allocated
    let huge = d.join("huge.safetensors");
    rewrite(&ck, &huge, |m, t| {
        m["spec"] =
            "conv(1024,5,pad=2) conv(1024,5,pad=2) conv(1024,5,pad=2) flatten linear(256)".into();
        t.clear();
    });
    assert!(std::fs::metadata(&huge).unwrap().len() < 4096);
    let out = run_limited(256, &["eval", "--model-file", s(&huge), "--data", s(&data)]);
    fails(
        &out,
        2,
        &["huge.safetensors", "tensor `0.weight` is missing"],
    );
    // every layer within its cap, but the batch and the threads multiply past the budget
    let out = run_limited(
        2048,
        &[
            "train",
            "--data",
            s(&data),
            "--model",
            "conv(256,3,pad=1) batchnorm conv(256,3,pad=1) flatten linear(10)",
            "--batch",
            "65536",
            "--threads",
            "8",
        ],
    );
    fails(&out, 2, &["memory budget", "--max-memory"]);
    // a model of 100,000 classes: its confusion matrix alone would take 80 GB; a run
    // says so before its first epoch, and eval before it allocates
    let spec = "maxpool(4) flatten linear(100000)";
    let out = run(&["train", "--data", s(&data), "--model", spec]);
    fails(&out, 2, &["100000 classes", "memory budget"]);
    assert!(!text(&out.stdout).contains("epoch"));
    let wide = d.join("wide.safetensors");
    let (_, mut meta) = checkpoint::load_model(&ck).unwrap();
    let model = Model::from_spec(spec, Shape::Image { c: 1, h: 28, w: 28 }, 1).unwrap();
    meta.spec = model.spec();
    std::fs::write(&wide, checkpoint::model_bytes(&model, &meta).unwrap()).unwrap();
    fails(
        &run_limited(
            2048,
            &["eval", "--model-file", s(&wide), "--data", s(&data)],
        ),
        2,
        &["100000 classes", "memory budget"],
    );
    std::fs::remove_file(&wide).unwrap();
    // the budget can be changed, by flag or environment
    let small = ["train", "--data", s(&data), "--epochs", "1"];
    fails(
        &run(&[&small[..], &["--max-memory", "64K"]].concat()),
        2,
        &["memory budget of 64.0 KiB"],
    );
    let out = run_cmd(
        Command::new(BIN)
            .args(small)
            .env("CNNKIT_MAX_MEMORY", "100K"),
    );
    fails(&out, 2, &["memory budget of 100.0 KiB"]);
    fails(
        &run(&[&small[..], &["--max-memory", "lots"]].concat()),
        2,
        &["lots"],
    );
    // a device reads through a cap, and is refused at its first bytes
    let t0 = Instant::now();
    let out = run_limited(
        256,
        &["eval", "--model-file", "/dev/zero", "--data", s(&data)],
    );
    fails(&out, 2, &["/dev/zero"]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    // IDX headers that claim more than the file holds
    let bad = d.join("bad");
    write_dataset(&bad, 30, 10, false);
    std::fs::write(
        bad.join("t10k-images-idx3-ubyte"),
        common::idx_bytes(&[1000, 1000, 1000], &[0; 100]),
    )
    .unwrap();
    fails(
        &run_limited(256, &["eval", "--model-file", s(&ck), "--data", s(&bad)]),
        2,
        &["truncated"],
    );
    std::fs::remove_file(bad.join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::write(
        bad.join("t10k-images-idx3-ubyte.gz"),
        common::gzip(&common::idx_bytes(&[1000, 1000, 1000], &[0; 100])),
    )
    .unwrap();
    fails(
        &run_limited(256, &["eval", "--model-file", s(&ck), "--data", s(&bad)]),
        2,
        &["truncated"],
    );
    before.unchanged(&d);
}

// ---------------------------------------------------------------------------------------
// Metadata: validated as flags are, never a panic or a hang

#[test]
fn every_metadata_field_is_validated_and_nothing_panics_or_hangs() {
    let (d, data, ck) = fixture("hostile_meta");
    let bad = d.join("bad.safetensors");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "classes",
            Box::new(|m| m["classes"][0] = "x".repeat(65_534).into()),
        ),
        ("classes", Box::new(|m| m["classes"] = Value::Array(vec![]))),
        (
            "classes",
            Box::new(|m| m["classes"][1] = "\u{1b}[2J".into()),
        ),
        (
            "classes",
            Box::new(|m| m["classes"] = (0..11).map(|i| Value::from(i.to_string())).collect()),
        ),
        (
            "schedule",
            Box::new(|m| {
                m["config"]["schedule"] =
                    serde_json::json!({"type": "step", "every": 0, "gamma": 0.5})
            }),
        ),
        (
            "schedule",
            Box::new(|m| {
                m["config"]["schedule"] =
                    serde_json::json!({"type": "step", "every": 2, "gamma": 7.0})
            }),
        ),
        (
            "schedule",
            Box::new(|m| {
                m["config"]["schedule"] = serde_json::json!({"type": "cosine", "epochs": 0})
            }),
        ),
        (
            "learning rate",
            Box::new(|m| m["config"]["lr"] = 1e9.into()),
        ),
        ("threads", Box::new(|m| m["config"]["threads"] = 0.into())),
        (
            "threads",
            Box::new(|m| m["config"]["threads"] = 100_000.into()),
        ),
        ("batch", Box::new(|m| m["config"]["batch"] = 0.into())),
        ("epochs", Box::new(|m| m["config"]["epochs"] = 0.into())),
        (
            "weight decay",
            Box::new(|m| m["config"]["weight_decay"] = 5.into()),
        ),
        (
            "optimizer",
            Box::new(|m| m["config"]["optimizer"]["momentum"] = 1.5.into()),
        ),
        ("pixel_std", Box::new(|m| m["pixel_std"] = 0.into())),
        ("pixel_std", Box::new(|m| m["pixel_std"] = (-1).into())),
        ("pixel_mean", Box::new(|m| m["pixel_mean"] = 7.into())),
        (
            "bad `cnnkit` metadata",
            Box::new(|m| m["pixel_mean"] = Value::Null),
        ),
        (
            "input",
            Box::new(|m| m["input"] = serde_json::json!([1, 0, 28])),
        ),
        ("history", Box::new(|m| m["epoch"] = 3.into())),
        (
            "history",
            Box::new(|m| m["history"][0]["train_loss"] = (-1).into()),
        ),
        ("steps", Box::new(|m| m["steps"] = 0.into())),
        ("format", Box::new(|m| m["format"] = 2.into())),
        (
            "optim_digest",
            Box::new(|m| m["optim_digest"] = "junk".into()),
        ),
    ];
    let before = Snapshot::of(&d);
    for (needle, edit) in &cases {
        rewrite(&ck, &bad, |m, _| edit(m));
        let b = Snapshot::of(&d);
        for args in [
            vec!["eval", "--model-file", s(&bad), "--data", s(&data)],
            vec!["predict", "--model-file", s(&bad), "x.png"],
        ] {
            fails(&run(&args), 2, &["bad.safetensors", needle]);
        }
        // resumed on two threads: an error, not a hang (the run would otherwise divide
        // by zero on one thread while the other waits for it)
        std::fs::copy(checkpoint::optim_path(&ck), checkpoint::optim_path(&bad)).unwrap();
        fails(
            &run(&[
                "train",
                "--data",
                s(&data),
                "--resume",
                s(&bad),
                "--epochs",
                "4",
                "--threads",
                "2",
            ]),
            2,
            &["bad.safetensors"],
        );
        b.unchanged(&d);
    }
    std::fs::remove_file(&bad).unwrap();
    std::fs::remove_file(checkpoint::optim_path(&bad)).unwrap();
    before.unchanged(&d);
}

#[test]
fn a_panic_in_a_training_thread_is_an_error_not_a_hang() {
    for (threads, victim) in [(2, 1), (2, 0), (3, 2)] {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut t, split) = trainer(threads);
            cnnkit::train::inject_panic(Some(victim));
            let r = t.train_epoch(&split, |_, _, _| {});
            cnnkit::train::inject_panic(None);
            // the trainer is still usable after the error
            let again = t.train_epoch(&split, |_, _, _| {}).map(|_| ());
            tx.send((r.map(|_| ()).map_err(|e| e.to_string()), again.is_ok()))
                .unwrap();
        });
        let (r, again) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("training hung after thread {victim} of {threads} panicked")
            });
        let e = r.unwrap_err();
        assert!(
            e.contains("panicked") && e.contains("internal error"),
            "{e}"
        );
        assert!(again);
    }
    // a panic on the main thread (here, in the progress callback) breaks the barrier too
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut t, split) = trainer(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.train_epoch(&split, |_, _, _| panic!("progress callback"))
                .map(|_| ())
        }));
        tx.send(matches!(r, Ok(Err(_)))).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(60))
            .expect("training hung after a panic on the main thread")
    );
}

// ---------------------------------------------------------------------------------------
// Silent wrong results

#[test]
fn values_that_would_give_silent_wrong_results_are_refused() {
    let (d, data, ck) = fixture("hostile_values");
    let bad = d.join("bad.safetensors");
    let img = d.join("a.pgm");
    let (px, _) = common::images(1, 28, 5);
    std::fs::write(&img, [b"P5\n28 28\n255\n".as_slice(), &px].concat()).unwrap();
    let before = Snapshot::of(&d);
    for (v, needle) in [
        (f32::NAN, "not finite"),
        (f32::INFINITY, "not finite"),
        (1e30, "larger in magnitude"),
    ] {
        rewrite(&ck, &bad, |_, t| set_f32(t, "3.weight", 7, v));
        for args in [
            vec!["eval", "--model-file", s(&bad), "--data", s(&data)],
            vec!["predict", "--model-file", s(&bad), s(&img)],
        ] {
            fails(
                &run(&args),
                2,
                &["bad.safetensors", "`3.weight` element 7", needle],
            );
        }
    }
    // weights each within bounds whose products overflow: no confident class for NaN
    rewrite(&ck, &bad, |_, t| {
        for (n, dt, _, b) in t.iter_mut() {
            if *dt == Dtype::F32 && n.ends_with("weight") {
                for c in b.chunks_exact_mut(4) {
                    c.copy_from_slice(&1e6f32.to_le_bytes());
                }
            }
        }
    });
    fails(
        &run(&["predict", "--model-file", s(&bad), s(&img)]),
        2,
        &["a.pgm", "no prediction"],
    );
    // batch norm: a negative variance, a negative count
    let bn = d.join("bn.safetensors");
    ok(&run(&[
        "train",
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--model",
        "conv(4,3,pad=1) batchnorm relu maxpool(2) flatten linear(10)",
        "--save",
        s(&bn),
    ]));
    rewrite(&bn, &bad, |_, t| set_f32(t, "1.running_var", 2, -0.5));
    fails(
        &run(&["eval", "--model-file", s(&bad), "--data", s(&data)]),
        2,
        &["`1.running_var` element 2", "negative variance"],
    );
    rewrite(&bn, &bad, |_, t| {
        let n = t
            .iter_mut()
            .find(|t| t.0 == "1.num_batches_tracked")
            .unwrap();
        n.3.copy_from_slice(&(-5i64).to_le_bytes());
    });
    fails(
        &run(&["eval", "--model-file", s(&bad), "--data", s(&data)]),
        2,
        &["`1.num_batches_tracked`", "negative"],
    );
    // an image with no pixels
    let empty = d.join("empty.pgm");
    std::fs::write(&empty, b"P5\n0 0\n255\n").unwrap();
    fails(
        &run(&["predict", "--model-file", s(&ck), s(&empty)]),
        2,
        &["empty.pgm", "no pixels"],
    );
    // an argument given twice in a spec
    fails(
        &run(&[
            "train",
            "--data",
            s(&data),
            "--model",
            "conv(6,5,k=3) flatten linear(10)",
        ]),
        2,
        &["`k` is given twice"],
    );
    // plain and gzipped files of one name that disagree
    let two = d.join("two");
    write_dataset(&two, 30, 10, false);
    write_dataset(&two.join("gz"), 30, 11, true);
    std::fs::rename(
        two.join("gz/t10k-labels-idx1-ubyte.gz"),
        two.join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    fails(
        &run(&["eval", "--model-file", s(&ck), "--data", s(&two)]),
        2,
        &["t10k-labels-idx1-ubyte", "holds other data than"],
    );
    // (the same data twice is fine)
    std::fs::write(
        two.join("t10k-labels-idx1-ubyte.gz"),
        common::gzip(&std::fs::read(two.join("t10k-labels-idx1-ubyte")).unwrap()),
    )
    .unwrap();
    ok(&run(&["eval", "--model-file", s(&ck), "--data", s(&two)]));
    std::fs::remove_file(&bad).unwrap();
    std::fs::remove_file(&bn).unwrap();
    std::fs::remove_file(checkpoint::optim_path(&bn)).unwrap();
    before.unchanged(&d);
}

// ---------------------------------------------------------------------------------------
// Smaller: what eval and viz read, what a path is, what --out says

#[test]
fn eval_reads_only_the_test_split_and_paths_say_what_they_are() {
    let (d, data, ck) = fixture("hostile_paths");
    // eval and viz never touch the training split
    let test_only = d.join("test_only");
    write_dataset(&test_only, 30, 10, false);
    std::fs::write(test_only.join("train-images-idx3-ubyte"), b"garbage").unwrap();
    std::fs::remove_file(test_only.join("train-labels-idx1-ubyte")).unwrap();
    ok(&run(&[
        "eval",
        "--model-file",
        s(&ck),
        "--data",
        s(&test_only),
    ]));
    let vout = d.join("viz");
    ok(&run(&[
        "viz",
        "--model-file",
        s(&ck),
        "--data",
        s(&test_only),
        "--out",
        s(&vout),
    ]));
    let before = Snapshot::of(&d);
    // an entry that is a directory or a device is reported as what it is
    let odd = d.join("odd");
    write_dataset(&odd, 30, 10, false);
    std::fs::remove_file(odd.join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::create_dir(odd.join("t10k-images-idx3-ubyte")).unwrap();
    fails(
        &run(&["eval", "--model-file", s(&ck), "--data", s(&odd)]),
        2,
        &["t10k-images-idx3-ubyte", "is a directory"],
    );
    std::fs::remove_dir(odd.join("t10k-images-idx3-ubyte")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", odd.join("t10k-images-idx3-ubyte")).unwrap();
    fails(
        &run(&["eval", "--model-file", s(&ck), "--data", s(&odd)]),
        2,
        &["t10k-images-idx3-ubyte", "is a device"],
    );
    fails(
        &run(&["eval", "--model-file", s(&data), "--data", s(&data)]),
        2,
        &["is a directory"],
    );
    fails(
        &run(&["eval", "--model-file", s(&ck), "--data", s(&ck)]),
        2,
        &["m.safetensors", "is not a directory"],
    );
    std::fs::remove_file(odd.join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::remove_dir_all(&odd).unwrap();
    before.unchanged(&d);
    // a pipe planted where cnnkit reads or replaces the optimizer state: never opened
    // (it would block for ever), and said to be what it is
    let piped = d.join("piped");
    std::fs::create_dir(&piped).unwrap();
    let pck = piped.join("m.safetensors");
    std::fs::copy(&ck, &pck).unwrap();
    std::fs::copy(
        checkpoint::optim_path(&ck),
        checkpoint::optim_next_path(&pck),
    )
    .unwrap();
    let fifo = checkpoint::optim_path(&pck);
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let resume = [
        "train",
        "--data",
        s(&data),
        "--resume",
        s(&pck),
        "--epochs",
        "2",
    ];
    fails(&run(&resume), 2, &["m.safetensors.optim", "a pipe"]);
    std::fs::rename(checkpoint::optim_next_path(&pck), piped.join("keep")).unwrap();
    std::fs::remove_file(&fifo).unwrap();
    std::fs::rename(piped.join("keep"), &fifo).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(checkpoint::optim_next_path(&pck))
            .status()
            .unwrap()
            .success()
    );
    fails(&run(&resume), 2, &["m.safetensors.optim.next", "a pipe"]);
    std::fs::remove_dir_all(&piped).unwrap();
    // --out onto a file says what is wrong
    let file = d.join("file.txt");
    std::fs::write(&file, b"x").unwrap();
    let snap = Snapshot::of(&d);
    for cmd in ["export", "viz"] {
        let mut args = vec![cmd, "--model-file", s(&ck), "--out", s(&file)];
        if cmd == "viz" {
            args.extend(["--data", s(&data)]);
        }
        fails(
            &run(&args),
            2,
            &["--out", "file.txt", "exists and is not a directory"],
        );
    }
    snap.unchanged(&d);
    // and into a directory, replaces only what cnnkit wrote there
    let eout = d.join("exp");
    std::fs::create_dir(&eout).unwrap();
    std::fs::write(eout.join("weights.bin"), b"someone else's").unwrap();
    std::fs::write(vout.join("curves.png"), b"not a png").unwrap();
    let snap2 = Snapshot::of(&d);
    fails(
        &run(&["export", "--model-file", s(&ck), "--out", s(&eout)]),
        2,
        &["weights.bin", "--overwrite"],
    );
    fails(
        &run(&[
            "viz",
            "--model-file",
            s(&ck),
            "--data",
            s(&data),
            "--out",
            s(&vout),
        ]),
        2,
        &["curves.png", "--overwrite"],
    );
    snap2.unchanged(&d);
    ok(&run(&[
        "export",
        "--model-file",
        s(&ck),
        "--out",
        s(&eout),
        "--overwrite",
    ]));
    ok(&run(&["export", "--model-file", s(&ck), "--out", s(&eout)]));
}
