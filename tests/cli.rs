//! The `cnnkit` binary: `bench` prints rows with the documented JSON keys, and bad
//! arguments get a clear error and exit status 2.

use std::process::Command;

fn cnnkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cnnkit"))
        .args(args)
        .output()
        .expect("run cnnkit")
}

#[test]
fn bench_json_rows_have_the_documented_keys() {
    let out = cnnkit(&["bench", "--filter", "relu", "--json", "--min-time-ms", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The filter is a substring: `relu` names ReLU, leaky ReLU and ReLU6.
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["relu", "leakyrelu", "relu6"]);
    for r in &rows {
        for key in ["name", "variant", "pass", "threads", "ms", "gflops"] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
        assert_eq!(r["pass"], "fwd");
        assert_eq!(r["threads"], 1);
        assert!(r["ms"].as_f64().unwrap() > 0.0);
        // the % of peak is against the measured peak of the instruction set the row ran
        let (g, peak) = (
            r["gflops"].as_f64().unwrap(),
            r["peak_gflops"].as_f64().unwrap(),
        );
        assert!(peak > 0.0, "{r}");
        let pct = r["pct_peak"].as_f64().unwrap();
        assert!(
            (pct - 100.0 * g / peak).abs() <= 1e-9 * pct.abs().max(1.0),
            "{r}"
        );
    }
}

#[test]
fn bench_tune_times_every_kernel_of_each_pass_and_marks_the_pick() {
    let out = cnnkit(&[
        "bench",
        "--tune",
        "--filter",
        "lenet_c2",
        "--json",
        "--min-time-ms",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0]["name"], "conv2d/lenet_c2");
    let names = |pass: &str| -> (Vec<String>, Vec<String>) {
        let c = rows[0][pass].as_array().unwrap();
        assert!(c.iter().all(|c| c["ms"].as_f64().unwrap() > 0.0), "{text}");
        let all = c.iter().map(|c| c["kernel"].as_str().unwrap().to_string());
        let picked = c.iter().filter(|c| c["chosen"] == true);
        let picked = picked.map(|c| c["kernel"].as_str().unwrap().to_string());
        (all.collect(), picked.collect())
    };
    // every kernel that takes the pass, and the planner's pick, and only it, marked: the
    // kernel conv2d labels the row with (LeNet's conv2 takes no forward convolution of
    // dY: 6 input channels)
    let (all, picked) = names("forward");
    assert_eq!(all, ["direct", "implicit", "im2col"], "{text}");
    assert_eq!(picked, ["implicit"], "{text}");
    let (all, picked) = names("input_grad");
    assert_eq!(all, ["flat", "lanes", "col2im"], "{text}");
    assert_eq!(picked, ["lanes"], "{text}");
    let (all, picked) = names("weight_grad");
    assert_eq!(all, ["implicit", "im2col"], "{text}");
    assert_eq!(picked, ["implicit"], "{text}");
    let out = cnnkit(&["bench", "--tune", "--filter", "no-such-shape"]);
    assert_eq!(out.status.code(), Some(2));

    // the GEMM: every blocking of the grid timed, the model's marked once
    let out = cnnkit(&[
        "bench",
        "--tune",
        "--json",
        "--filter",
        "sgemm/256",
        "--min-time-ms",
        "1",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0]["name"], "sgemm/256");
    let cands = rows[0]["blockings"].as_array().unwrap();
    assert!(
        cands.len() >= cnnkit::bench::blocking_grid().len(),
        "{text}"
    );
    assert!(cands.iter().all(|c| c["gflops"].as_f64().unwrap() > 0.0));
    let chosen: Vec<_> = cands.iter().filter(|c| c["chosen"] == true).collect();
    assert_eq!(chosen.len(), 1, "{text}");
    let model = cnnkit::kernels::sgemm_blocking(cnnkit::kernels::arch::active());
    assert_eq!(chosen[0]["kc"], model.kc, "{text}");
    assert_eq!(chosen[0]["mc"], model.mc, "{text}");

    // a blocking forced for the rows
    let out = cnnkit(&[
        "bench",
        "--blocking",
        "48/64/64",
        "--filter",
        "sgemm/256",
        "--min-time-ms",
        "1",
    ]);
    assert!(out.status.success());
}

#[test]
fn bench_measures_the_peak_of_every_variant_it_can_run() {
    let out = cnnkit(&["bench", "--filter", "relu", "--min-time-ms", "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let head = text.lines().next().unwrap_or_default();
    for isa in cnnkit::kernels::arch::supported() {
        assert!(
            head.contains(&format!("{} ", isa.name())),
            "{isa:?}: {head}"
        );
    }
}

#[test]
fn bench_table_and_threads() {
    let out = cnnkit(&[
        "bench",
        "--filter",
        "lenet_c1",
        "--threads",
        "2",
        "--min-time-ms",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("conv2d/lenet_c1"), "{text}");
    assert!(text.contains("fwd+bwd"), "{text}");
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["bench", "--variant", "sse9"][..],
        &["bench", "--threads", "0"],
        &["bench", "--filter", "no-such-kernel", "--min-time-ms", "1"],
        &["bench", "--frobnicate"],
        &["bench", "--blocking", "50/64/64"],
        &["bench", "--blocking", "48/64"],
        &["bench", "--blocking", "48/x/64"],
        &["bench", "--blocking", "48/64/64", "--tune"],
        &["no-such-command"],
    ] {
        let out = cnnkit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
    }
}
