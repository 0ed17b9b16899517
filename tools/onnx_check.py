# Runs the ONNX files tests/onnx.rs wrote (DIR/NAME.onnx) in onnxruntime on the inputs beside
# them (DIR/NAME.json) and compares the logits with cnnkit's: exit 1 unless every logit is
# within 1e-4 of cnnkit's. Usage: python3 tools/onnx_check.py target/tmp/onnx-check
import glob, json, os, sys
import numpy as np, onnxruntime as ort

worst_all, failed = 0.0, []
files = sorted(glob.glob(os.path.join(sys.argv[1], "*.onnx")))
if not files:
    sys.exit(f"no .onnx files in {sys.argv[1]}: run `cargo test --test onnx` first")
for f in files:
    d = json.load(open(f[:-5] + ".json"))
    x = np.array(d["input"], np.float32).reshape(d["input_shape"])
    want = np.array(d["logits"], np.float32).reshape(x.shape[0], -1)
    s = ort.InferenceSession(f, providers=["CPUExecutionProvider"])
    got = s.run(None, {"input": x})[0]
    worst = float(np.abs(got - want).max())
    meta = s.get_modelmeta().custom_metadata_map
    print(f"{os.path.basename(f)}: {len(s.get_inputs())} input, logits {got.shape}, max |onnxruntime - cnnkit| = {worst:.2e}, pixel_mean {meta['pixel_mean']}, pixel_std {meta['pixel_std']}")
    if not worst <= 1e-4:
        failed.append(f)
print(f"onnxruntime {ort.__version__}: {len(files) - len(failed)} of {len(files)} models within 1e-4")
sys.exit(1 if failed else 0)
