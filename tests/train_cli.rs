//! `cnnkit train / eval / predict / viz` end to end on small datasets the tests write:
//! JSON per epoch, byte-identical checkpoints for a fixed seed and thread count, exact
//! resume, PyTorch state-dict names, and exit status 2 with a clear message (and nothing
//! overwritten) for every kind of bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{tempdir, write_dataset};

fn cnnkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cnnkit"))
        .args(args)
        .output()
        .expect("run cnnkit")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Exit status 2, no panic, and a message containing every one of `needles`.
fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

/// One JSON object per line.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn data(name: &str) -> std::path::PathBuf {
    let d = tempdir(name);
    write_dataset(&d.join("data"), 600, 200, true);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn trains_with_json_epochs_then_eval_predict_viz() {
    let d = data("cli_train");
    let ck = d.join("m.safetensors");
    let out = ok(&cnnkit(&[
        "train",
        "--data",
        s(&d.join("data")),
        "--epochs",
        "3",
        "--batch",
        "32",
        "--lr",
        "0.01",
        "--json",
        "--save",
        s(&ck),
    ]));
    let rows: Vec<serde_json::Value> = json_lines(&out);
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        for k in [
            "epoch",
            "train_loss",
            "train_acc",
            "test_acc",
            "images_per_sec",
            "seconds",
        ] {
            assert!(r[k].is_number(), "{k} missing in {r}");
        }
        assert_eq!(r["epoch"], i + 1);
    }
    let last = &rows[2];
    assert!(
        rows[0]["train_loss"].as_f64() > last["train_loss"].as_f64(),
        "{out}"
    );
    // the task is easy: a working trainer gets it nearly right
    assert!(last["test_acc"].as_f64().unwrap() > 0.9, "{out}");
    assert!(ck.is_file() && d.join("m.safetensors.optim").is_file());

    let data_dir = d.join("data");
    let eval_args = ["eval", "--model-file", s(&ck), "--data", s(&data_dir)];
    let ev = ok(&cnnkit(&eval_args));
    assert!(
        ev.contains("test accuracy") && ev.contains("confusion matrix"),
        "{ev}"
    );
    let acc_line: f64 = ev
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (acc_line / 100.0 - last["test_acc"].as_f64().unwrap()).abs() < 1e-4,
        "{ev}"
    );
    let evj = ok(&cnnkit(&[&eval_args[..], &["--json"]].concat()));
    let v: serde_json::Value = serde_json::from_str(evj.trim()).unwrap();
    let conf = v["confusion"].as_array().unwrap();
    assert_eq!(conf.len(), 10);
    let total: u64 = conf
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(total, 200);

    // predict: a PGM written by hand and a PNG of another size (resized)
    let (img, lab) = common::images(2, 28, 99);
    let pgm = d.join("a.pgm");
    std::fs::write(&pgm, [b"P5\n28 28\n255\n".as_slice(), &img[..784]].concat()).unwrap();
    let png = d.join("b.png");
    let big = image::imageops::resize(
        &image::GrayImage::from_raw(28, 28, img[784..].to_vec()).unwrap(),
        56,
        56,
        image::imageops::FilterType::Nearest,
    );
    big.save(&png).unwrap();
    let pr = ok(&cnnkit(&[
        "predict",
        "--model-file",
        s(&ck),
        "--json",
        s(&pgm),
        s(&png),
    ]));
    let preds: Vec<serde_json::Value> = json_lines(&pr);
    assert_eq!(preds.len(), 2);
    for (p, &l) in preds.iter().zip(&lab) {
        let probs: Vec<f64> = p["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        assert_eq!(p["class"], u64::from(l), "{pr}");
    }
    let text = ok(&cnnkit(&["predict", "--model-file", s(&ck), s(&pgm)]));
    assert!(text.contains("a.pgm: "), "{text}");

    // export: the blob and the layer list; the exported network gives predict's logits
    let ex = d.join("export");
    let said = ok(&cnnkit(&[
        "export",
        "--model-file",
        s(&ck),
        "--out",
        s(&ex),
    ]));
    assert!(
        said.contains("parameters") && said.contains("arena"),
        "{said}"
    );
    let bytes = std::fs::read(ex.join("weights.bin")).unwrap();
    let src = std::fs::read_to_string(ex.join("model.rs")).unwrap();
    assert!(src.contains("pub const LAYERS"), "{src}");
    let (model, meta) = cnnkit::checkpoint::load_model(&ck).unwrap();
    let e = cnnkit::export::Export::new(&model, meta.norm(), 1).unwrap();
    assert_eq!(
        bytes,
        e.blob().unwrap(),
        "the CLI writes what the library exports"
    );
    let net = e.network().unwrap();
    let x: Vec<f32> = img[..784]
        .iter()
        .map(|&p| (f32::from(p) / 255.0 - meta.pixel_mean) / meta.pixel_std)
        .collect();
    let mut arena = vec![0.0; net.arena_len()];
    let got = net.run(&e.params, &x, &mut arena).unwrap();
    let want: Vec<f64> = preds[0]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }

    let vout = d.join("viz");
    let v = ok(&cnnkit(&[
        "viz",
        "--model-file",
        s(&ck),
        "--data",
        s(&d.join("data")),
        "--image",
        "3",
        "--out",
        s(&vout),
    ]));
    for f in [
        "input.png",
        "filters.png",
        "features_00_conv2d.png",
        "features_05_maxpool2d.png",
        "curves.png",
    ] {
        let p = vout.join(f);
        let img = image::open(&p).unwrap_or_else(|e| panic!("{f}: {e}\n{v}"));
        assert!(img.width() > 10 && img.height() > 10);
    }

    // quantize: an int8 model file that eval and predict take, as accurate here
    let q = d.join("m.int8.safetensors");
    let qargs = [
        "quantize",
        "--model-file",
        s(&ck),
        "--out",
        s(&q),
        "--data",
        s(&data_dir),
        "--calib",
        "100",
    ];
    let qj = ok(&cnnkit(&[&qargs[..], &["--eval", "--json"]].concat()));
    let qv: serde_json::Value = serde_json::from_str(qj.trim()).unwrap();
    assert_eq!(qv["calibration_images"], 100, "{qv}");
    assert!(
        qv["weight_bytes_int8"].as_u64().unwrap() * 3 < qv["weight_bytes_f32"].as_u64().unwrap()
    );
    let (fa, ia) = (
        qv["accuracy_f32"].as_f64().unwrap(),
        qv["accuracy_int8"].as_f64().unwrap(),
    );
    assert!(
        (fa - last["test_acc"].as_f64().unwrap()).abs() < 1e-9,
        "{qv}"
    );
    assert!(ia >= fa - 0.02, "{qv}");
    let first = std::fs::read(&q).unwrap();
    // the same inputs make the same file (an existing int8 file is replaced)
    ok(&cnnkit(&qargs));
    assert_eq!(std::fs::read(&q).unwrap(), first);
    let qe = ok(&cnnkit(&[
        "eval",
        "--model-file",
        s(&q),
        "--data",
        s(&data_dir),
        "--json",
    ]));
    let qe: serde_json::Value = serde_json::from_str(qe.trim()).unwrap();
    assert_eq!(qe["kind"], "int8");
    assert!((qe["accuracy"].as_f64().unwrap() - ia).abs() < 1e-9, "{qe}");
    let qp = json_lines(&ok(&cnnkit(&[
        "predict",
        "--model-file",
        s(&q),
        "--json",
        s(&pgm),
        s(&png),
    ])));
    for (p, &l) in qp.iter().zip(&lab) {
        assert_eq!(p["class"], u64::from(l), "{p}");
    }
    // what is refused, and nothing is touched
    let ck_bytes = std::fs::read(&ck).unwrap();
    fails_with(
        &cnnkit(&[
            "quantize",
            "--model-file",
            s(&ck),
            "--out",
            s(&ck),
            "--data",
            s(&data_dir),
        ]),
        &["model file itself"],
    );
    fails_with(
        &cnnkit(&[
            "quantize",
            "--model-file",
            s(&ck),
            "--out",
            s(&pgm),
            "--data",
            s(&data_dir),
        ]),
        &["is not an int8 model", "--overwrite"],
    );
    fails_with(
        &cnnkit(&[
            "quantize",
            "--model-file",
            s(&ck),
            "--out",
            s(&d.join("n.q")),
            "--data",
            s(&data_dir),
            "--calib",
            "601",
        ]),
        &["601 calibration images", "holds 600"],
    );
    fails_with(
        &cnnkit(&[
            "quantize",
            "--model-file",
            s(&ck),
            "--out",
            s(&d.join("n.q")),
            "--calib",
            "0",
        ]),
        &["--calib"],
    );
    fails_with(
        &cnnkit(&[
            "quantize",
            "--model-file",
            s(&q),
            "--out",
            s(&d.join("n.q")),
            "--data",
            s(&data_dir),
        ]),
        &["int8 model"],
    );
    // export of an int8 model: model.rs alone, with every weight, bias and multiplier
    let said = ok(&cnnkit(&[
        "export",
        "--model-file",
        s(&q),
        "--out",
        s(&d.join("qx")),
    ]));
    assert!(said.contains("int8"), "{said}");
    let src = std::fs::read_to_string(d.join("qx/model.rs")).unwrap();
    assert!(
        src.starts_with(cnnkit::quant::INT8_SOURCE_HEAD)
            && src.contains("pub const LAYERS: [QLayer<'static>;")
            && src.contains("pub const INPUT_TABLE: [i8; 256]"),
        "{}",
        &src[..200]
    );
    assert!(!d.join("qx/weights.bin").exists());
    assert_eq!(std::fs::read(&ck).unwrap(), ck_bytes);
    assert!(!d.join("n.q").exists());
}

/// A graph (a residual block with a projection shortcut, a concatenation, depthwise
/// convolution, ReLU6) trains, saves, resumes, evaluates, and
/// exports to ONNX; the firmware export refuses it with a message, and `--onnx` never
/// replaces a file it did not write, nor takes an int8 model.
#[test]
fn graph_models_train_resume_evaluate_and_export_to_onnx() {
    let d = data("cli_graph");
    let (ck, dir) = (d.join("g.safetensors"), d.join("data"));
    let spec = "conv(8,3,pad=1) bn relu res[conv(8,3,stride=2,pad=1,groups=8) bn relu6 \
                conv(16,1) bn | conv(16,1,stride=2)] relu cat[conv(8,1) |] avgpool(2) flatten linear(10)";
    let train = |epochs: &str, extra: &[&str]| {
        let mut a = vec![
            "train",
            "--data",
            s(&dir),
            "--batch",
            "32",
            "--epochs",
            epochs,
        ];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["--save", s(&ck), "--json", "--threads", "2"]);
        json_lines(&ok(&cnnkit(&a)))
    };
    let first = train("2", &["--model", spec]);
    assert_eq!(first.len(), 2);
    let rows = train("4", &["--resume", s(&ck)]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let loss = |r: &serde_json::Value| r["train_loss"].as_f64().unwrap();
    assert!(loss(&rows[1]) < 0.5 * loss(&first[0]), "{first:?} {rows:?}");
    assert!(rows[1]["test_acc"].as_f64().unwrap() > 0.8, "{rows:?}");
    let ev = ok(&cnnkit(&[
        "eval",
        "--model-file",
        s(&ck),
        "--data",
        s(&dir),
    ]));
    assert!(ev.contains("accuracy"), "{ev}");
    let onnx = d.join("g.onnx");
    let out = ok(&cnnkit(&[
        "export",
        "--model-file",
        s(&ck),
        "--onnx",
        s(&onnx),
    ]));
    assert!(out.contains("ONNX opset 17"), "{out}");
    assert!(
        std::fs::read(&onnx)
            .unwrap()
            .starts_with(cnnkit::onnx::HEAD)
    );
    // again: it replaces its own file
    ok(&cnnkit(&[
        "export",
        "--model-file",
        s(&ck),
        "--onnx",
        s(&onnx),
    ]));
    // the ONNX file is a model file like the checkpoint: the same evaluation
    let ev_onnx = ok(&cnnkit(&[
        "eval",
        "--model-file",
        s(&onnx),
        "--data",
        s(&dir),
    ]));
    let first_line = |t: &str| {
        t.lines()
            .next()
            .unwrap()
            .split(": ")
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(first_line(&ev_onnx), first_line(&ev), "{ev_onnx}\n{ev}");
    // fine-tuning from it starts a checkpoint, never writes the ONNX file
    fails_with(
        &cnnkit(&["train", "--data", s(&dir), "--resume", s(&onnx)]),
        &["--save"],
    );
    let tuned = d.join("tuned.safetensors");
    let rows = json_lines(&ok(&cnnkit(&[
        "train",
        "--data",
        s(&dir),
        "--resume",
        s(&onnx),
        "--save",
        s(&tuned),
        "--epochs",
        "1",
        "--batch",
        "32",
        "--json",
    ])));
    assert_eq!(rows.len(), 1);
    assert!(
        tuned.is_file()
            && std::fs::read(&onnx)
                .unwrap()
                .starts_with(cnnkit::onnx::HEAD)
    );
    let foreign = d.join("notes.onnx");
    std::fs::write(&foreign, b"my notes").unwrap();
    fails_with(
        &cnnkit(&["export", "--model-file", s(&ck), "--onnx", s(&foreign)]),
        &["--onnx", "--overwrite"],
    );
    assert_eq!(std::fs::read(&foreign).unwrap(), b"my notes");
    // the firmware network runs the blocks
    let out = ok(&cnnkit(&[
        "export",
        "--model-file",
        s(&ck),
        "--out",
        s(&d.join("fw")),
    ]));
    assert!(out.contains("layers"), "{out}");
    let src = std::fs::read_to_string(d.join("fw").join("model.rs")).unwrap();
    assert!(
        src.contains("Layer::Push") && src.contains("Layer::CatPop"),
        "{src}"
    );
    // import -> quantize -> firmware: the ONNX file quantises (its blocks as int8 block
    // operations), as accurate as the f32 model within 2 points, and exports as firmware
    let q = d.join("g.int8.safetensors");
    let qj = ok(&cnnkit(&[
        "quantize",
        "--model-file",
        s(&onnx),
        "--out",
        s(&q),
        "--data",
        s(&dir),
        "--calib",
        "100",
        "--eval",
        "--json",
    ]));
    let qv: serde_json::Value = serde_json::from_str(qj.trim()).unwrap();
    let (fa, ia) = (
        qv["accuracy_f32"].as_f64().unwrap(),
        qv["accuracy_int8"].as_f64().unwrap(),
    );
    assert!(fa > 0.8 && ia >= fa - 0.02, "{qv}");
    let qe = ok(&cnnkit(&["eval", "--model-file", s(&q), "--data", s(&dir)]));
    assert!(qe.contains("int8"), "{qe}");
    ok(&cnnkit(&[
        "export",
        "--model-file",
        s(&q),
        "--out",
        s(&d.join("fw8")),
    ]));
    let src = std::fs::read_to_string(d.join("fw8").join("model.rs")).unwrap();
    assert!(
        src.contains("QLayer::AddPop") && src.contains("QLayer::CatPop"),
        "{src}"
    );
    fails_with(&cnnkit(&["export", "--model-file", s(&ck)]), &["--out"]);
}

#[test]
fn threads_default_to_the_cores_available_and_resume_keeps_the_checkpoints() {
    let d = data("cli_threads");
    let (ck, dir) = (d.join("m.safetensors"), d.join("data"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(256));
    let run = |extra: &[&str]| {
        let mut args = vec!["train", "--data", s(&dir), "--batch", "32"];
        args.extend_from_slice(extra);
        ok(&cnnkit(&args))
    };
    let out = run(&["--epochs", "1", "--save", s(&ck)]);
    assert!(out.contains(&format!(", {cores} thread(s)")), "{out}");
    // a resumed run continues with the thread count it was started with (its results
    // depend on it), unless told otherwise
    let out = run(&[
        "--epochs",
        "2",
        "--threads",
        "1",
        "--save",
        s(&ck),
        "--resume",
        s(&ck),
    ]);
    assert!(out.contains(", 1 thread(s)"), "{out}");
    let out = run(&["--epochs", "3", "--save", s(&ck), "--resume", s(&ck)]);
    assert!(out.contains(", 1 thread(s)"), "{out}");
}

#[test]
fn same_seed_and_threads_give_identical_checkpoints_and_resume_is_exact() {
    let d = data("cli_determinism");
    let dd = d.join("data");
    let run = |name: &str, extra: &[&str]| {
        let ck = d.join(name);
        let mut args = vec![
            "train",
            "--data",
            s(&dd),
            "--batch",
            "50",
            "--model",
            "conv(4,3,pad=1) batchnorm relu maxpool(2) flatten dropout(0.2) linear(10)",
            "--save",
            s(&ck),
            "--json",
            "--schedule",
            "step:1:0.5",
        ];
        args.extend_from_slice(extra);
        ok(&cnnkit(&args));
        (
            std::fs::read(&ck).unwrap(),
            std::fs::read(d.join(format!("{name}.optim"))).unwrap(),
        )
    };
    for threads in ["1", "2"] {
        let a = run("a", &["--epochs", "2", "--threads", threads]);
        let b = run("b", &["--epochs", "2", "--threads", threads]);
        assert!(a == b, "two runs with --threads {threads} differ");
        // 1 epoch, then resume to 2: the same bytes as 2 straight
        let _ = run("c", &["--epochs", "1", "--threads", threads]);
        let ck = d.join("c");
        ok(&cnnkit(&[
            "train",
            "--data",
            s(&dd),
            "--resume",
            s(&ck),
            "--epochs",
            "2",
            "--json",
        ]));
        let c = (
            std::fs::read(&ck).unwrap(),
            std::fs::read(d.join("c.optim")).unwrap(),
        );
        assert!(
            a == c,
            "resumed run differs from the uninterrupted one (threads {threads})"
        );
    }
    // a different seed gives different weights
    let e = run("e", &["--epochs", "1", "--seed", "7"]);
    let f = run("f", &["--epochs", "1"]);
    assert!(e.0 != f.0);
}

#[test]
fn checkpoints_use_pytorch_state_dict_names() {
    let d = data("cli_names");
    let ck = d.join("m.safetensors");
    ok(&cnnkit(&[
        "train",
        "--data",
        s(&d.join("data")),
        "--epochs",
        "1",
        "--model",
        "fmnist",
        "--save",
        s(&ck),
        "--json",
    ]));
    let bytes = std::fs::read(&ck).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<&str> = st.names().into_iter().map(String::as_str).collect();
    names.sort();
    let expect = [
        "0.bias",
        "0.weight",
        "1.bias",
        "1.num_batches_tracked",
        "1.running_mean",
        "1.running_var",
        "1.weight",
        "14.bias",
        "14.weight",
        "17.bias",
        "17.weight",
        "4.bias",
        "4.weight",
        "5.bias",
        "5.num_batches_tracked",
        "5.running_mean",
        "5.running_var",
        "5.weight",
        "8.bias",
        "8.weight",
        "9.bias",
        "9.num_batches_tracked",
        "9.running_mean",
        "9.running_var",
        "9.weight",
    ];
    assert_eq!(names, expect);
    assert_eq!(st.tensor("0.weight").unwrap().shape(), [32, 1, 3, 3]);
    assert_eq!(st.tensor("14.weight").unwrap().shape(), [128, 1152]);
    let nbt = st.tensor("1.num_batches_tracked").unwrap();
    assert_eq!(nbt.dtype(), safetensors::Dtype::I64);
    assert_eq!(
        i64::from_le_bytes(nbt.data().try_into().unwrap()),
        600_usize.div_ceil(64) as i64
    );
    let opt_bytes = std::fs::read(d.join("m.safetensors.optim")).unwrap();
    let opt = safetensors::SafeTensors::deserialize(&opt_bytes).unwrap();
    // fmnist trains with Adam by default
    assert!(opt.tensor("0.weight.exp_avg").is_ok() && opt.tensor("17.bias.exp_avg_sq").is_ok());
}

#[test]
fn bad_input_exits_2_with_a_clear_message_and_overwrites_nothing() {
    let d = data("cli_bad");
    let dd = d.join("data");
    let ck = d.join("m.safetensors");
    ok(&cnnkit(&[
        "train",
        "--data",
        s(&dd),
        "--epochs",
        "1",
        "--save",
        s(&ck),
        "--json",
    ]));
    let before = std::fs::read(&ck).unwrap();

    // missing data directory: names the package and --data; the checkpoint is untouched
    let out = cnnkit(&["train", "--data", "/nonexistent/fm", "--save", s(&ck)]);
    fails_with(&out, &["dataset-fashion-mnist", "--data"]);
    fails_with(
        &cnnkit(&["eval", "--model-file", s(&ck), "--data", "/nonexistent/fm"]),
        &["dataset-fashion-mnist"],
    );

    // malformed IDX files
    let bad = d.join("bad");
    write_dataset(&bad, 30, 10, false);
    let f = bad.join("train-images-idx3-ubyte");
    let mut b = std::fs::read(&f).unwrap();
    b[1] = 7;
    std::fs::write(&f, &b).unwrap();
    fails_with(
        &cnnkit(&["train", "--data", s(&bad), "--save", s(&ck)]),
        &["magic", "train-images"],
    );
    b[1] = 0;
    b.truncate(b.len() - 10);
    std::fs::write(&f, &b).unwrap();
    fails_with(&cnnkit(&["train", "--data", s(&bad)]), &["truncated"]);
    write_dataset(&bad, 30, 10, false);
    std::fs::write(
        bad.join("t10k-labels-idx1-ubyte"),
        common::idx_bytes(&[11], &[0; 11]),
    )
    .unwrap();
    fails_with(
        &cnnkit(&["train", "--data", s(&bad)]),
        &["11 labels", "10 images"],
    );
    write_dataset(&bad, 30, 10, false);
    std::fs::write(
        bad.join("t10k-images-idx3-ubyte"),
        common::idx_bytes(&[60000, 60000, 60000], &[0; 4]),
    )
    .unwrap();
    fails_with(&cnnkit(&["train", "--data", s(&bad)]), &["1 GiB"]);

    // corrupt, truncated, foreign and ill-fitting checkpoints
    let trunc = d.join("trunc.safetensors");
    std::fs::write(&trunc, &before[..before.len() / 2]).unwrap();
    fails_with(
        &cnnkit(&["eval", "--model-file", s(&trunc), "--data", s(&dd)]),
        &["trunc.safetensors", "safetensors"],
    );
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot json").unwrap();
    fails_with(
        &cnnkit(&["predict", "--model-file", s(&junk), "x.png"]),
        &["junk.safetensors"],
    );
    fails_with(
        &cnnkit(&[
            "eval",
            "--model-file",
            s(&d.join("none.safetensors")),
            "--data",
            s(&dd),
        ]),
        &["none.safetensors"],
    );
    // a checkpoint whose metadata describes another model: the message names the tensor
    let at = before
        .windows(15)
        .position(|w| w == b"conv(6,5,pad=2)")
        .expect("spec in the metadata");
    let mut swapped = before.clone();
    swapped[at + 5] = b'7';
    let misfit = d.join("misfit.safetensors");
    std::fs::write(&misfit, &swapped).unwrap();
    fails_with(
        &cnnkit(&["eval", "--model-file", s(&misfit), "--data", s(&dd)]),
        &["0.weight", "shape"],
    );
    // resuming from a broken checkpoint leaves it as it was
    fails_with(
        &cnnkit(&[
            "train",
            "--data",
            s(&dd),
            "--resume",
            s(&trunc),
            "--epochs",
            "3",
        ]),
        &["trunc.safetensors"],
    );
    assert_eq!(std::fs::read(&trunc).unwrap().len(), before.len() / 2);
    // an optimizer file from another step
    let c2 = d.join("c2.safetensors");
    ok(&cnnkit(&[
        "train",
        "--data",
        s(&dd),
        "--epochs",
        "2",
        "--save",
        s(&c2),
        "--json",
    ]));
    std::fs::copy(
        d.join("m.safetensors.optim"),
        d.join("c2.safetensors.optim"),
    )
    .unwrap();
    fails_with(
        &cnnkit(&[
            "train",
            "--data",
            s(&dd),
            "--resume",
            s(&c2),
            "--epochs",
            "3",
        ]),
        &["do not belong together"],
    );
    // predict on an image that is not one
    let notimg = d.join("x.png");
    std::fs::write(&notimg, b"hello").unwrap();
    fails_with(
        &cnnkit(&["predict", "--model-file", s(&ck), s(&notimg)]),
        &["x.png"],
    );

    // unknown flags and values out of range
    for args in [
        vec!["train", "--bogus"],
        vec!["train", "--epochs", "0"],
        vec!["train", "--threads", "0"],
        vec!["train", "--batch", "0"],
        vec!["train", "--lr", "-1", "--data", s(&dd)],
        vec!["train", "--lr", "nan", "--data", s(&dd)],
        vec!["train", "--optimizer", "rmsprop", "--data", s(&dd)],
        vec!["train", "--schedule", "step:0:0.5", "--data", s(&dd)],
        vec!["train", "--model", "conv(6,5) linear(10)", "--data", s(&dd)],
        vec!["train", "--model", "resnet", "--data", s(&dd)],
        vec!["train", "--init", "orthogonal", "--data", s(&dd)],
        vec![
            "train",
            "--resume",
            s(&ck),
            "--model",
            "lenet5",
            "--data",
            s(&dd),
        ],
        vec![
            "train",
            "--model",
            "conv(6,99) flatten linear(10)",
            "--data",
            s(&dd),
        ],
        vec![
            "viz",
            "--model-file",
            s(&ck),
            "--data",
            s(&dd),
            "--image",
            "1000000",
            "--out",
            s(&d),
        ],
        vec!["eval"],
        vec![
            "train",
            "--data",
            s(&dd),
            "--save",
            "/nonexistent/dir/m.safetensors",
        ],
        vec!["train", "--data", s(&dd), "--save", s(&d)],
    ] {
        let out = cnnkit(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.trim().is_empty(),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        before,
        "a failed command changed the checkpoint"
    );
}

/// Images of several channels: an `idx4` image file `[n, channels, rows, cols]` trains
/// a graph from the spec, and evaluates; train and test images of other shapes are
/// refused, naming both.
#[test]
fn images_of_three_channels_train_from_idx4_files() {
    let d = tempdir("cli_rgb");
    let dir = d.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    // the class is the channel the bright row is in, and the row
    let write = |name: &str, n: usize, seed: u32, side: u32| {
        let (img, lab) = common::images(n, side as usize, seed);
        let plane = (side * side) as usize;
        let mut rgb = vec![0u8; 3 * img.len()];
        for (i, (im, &l)) in img.chunks(plane).zip(&lab).enumerate() {
            let c = usize::from(l) % 3;
            rgb[(3 * i + c) * plane..(3 * i + c + 1) * plane].copy_from_slice(im);
        }
        std::fs::write(
            dir.join(format!("{name}-images-idx4-ubyte")),
            common::idx_bytes(&[n as u32, 3, side, side], &rgb),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{name}-labels-idx1-ubyte")),
            common::idx_bytes(&[n as u32], &lab),
        )
        .unwrap();
    };
    write("train", 600, 1, 16);
    write("t10k", 200, 2, 16);
    let ck = d.join("rgb.safetensors");
    let rows = json_lines(&ok(&cnnkit(&[
        "train",
        "--data",
        s(&dir),
        "--model",
        "conv(8,3,pad=1) relu res[conv(8,3,pad=1) relu] maxpool(2) flatten linear(10)",
        "--epochs",
        "3",
        "--batch",
        "32",
        "--json",
        "--save",
        s(&ck),
    ])));
    assert!(rows[2]["test_acc"].as_f64().unwrap() > 0.8, "{rows:?}");
    let ev = ok(&cnnkit(&[
        "eval",
        "--model-file",
        s(&ck),
        "--data",
        s(&dir),
    ]));
    assert!(ev.contains("accuracy"), "{ev}");
    // predict takes RGB images for it (PNG and PPM, made from test images): the class the
    // model gives their planes
    let (img, lab) = common::images(6, 16, 2);
    let model = cnnkit::checkpoint::load_model(&ck).unwrap().0;
    let norm = cnnkit::checkpoint::load_model(&ck)
        .unwrap()
        .1
        .norm()
        .table();
    let mut files = Vec::new();
    let mut want = Vec::new();
    for (i, (im, &l)) in img.chunks(256).zip(&lab).enumerate() {
        let mut planes = vec![0u8; 3 * 256];
        let c = usize::from(l) % 3;
        planes[c * 256..(c + 1) * 256].copy_from_slice(im);
        let x: Vec<f32> = planes.iter().map(|&p| norm[usize::from(p)]).collect();
        let y = model
            .forward(&cnnkit::Tensor::from_vec(vec![1, 3, 16, 16], x).unwrap())
            .unwrap();
        want.push(cnnkit::loss::argmax(y.data()));
        let rgb: Vec<u8> = (0..256)
            .flat_map(|p| [planes[p], planes[256 + p], planes[512 + p]])
            .collect();
        let f = d.join(format!("rgb{i}.{}", if i % 2 == 0 { "png" } else { "ppm" }));
        image::RgbImage::from_raw(16, 16, rgb)
            .unwrap()
            .save(&f)
            .unwrap();
        files.push(f);
    }
    let mut args = vec!["predict", "--model-file", s(&ck), "--json"];
    args.extend(files.iter().map(|f| s(f)));
    let got = json_lines(&ok(&cnnkit(&args)));
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["class"], *w as u64, "{g}");
    }
    assert_eq!(got.len(), 6);
    // a test split of another size
    write("t10k", 200, 2, 12);
    fails_with(
        &cnnkit(&["train", "--data", s(&dir), "--epochs", "1"]),
        &["3x12x12", "3x16x16"],
    );
}
