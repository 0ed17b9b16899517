# Loads a cnnkit checkpoint into the equivalent PyTorch module (spec_model.py) with
# load_state_dict(strict=True)
# and evaluates it on the Fashion-MNIST test set. Usage: python3 check_checkpoint.py FILE
import os, sys, gzip, json, struct, numpy as np, torch, torch.nn as nn
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spec_model import build
from safetensors.torch import load_file
from safetensors import safe_open
path = sys.argv[1]
with safe_open(path, "pt") as f:
    meta = json.loads(f.metadata()["cnnkit"])
spec = meta["spec"]
m = build(spec, (1, 28, 28))
m.load_state_dict(load_file(path), strict=True)
m.eval()
d = "/usr/share/datasets/fashion-mnist/"
img = np.frombuffer(gzip.open(d + "t10k-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 1, 28, 28)
lab = np.frombuffer(gzip.open(d + "t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
x = (torch.from_numpy(img.astype(np.float32)) / 255 - meta["pixel_mean"]) / meta["pixel_std"]
with torch.no_grad():
    acc = (m(x).argmax(1).numpy() == lab).mean()
print(f"PyTorch {torch.__version__}: load_state_dict(strict=True) ok; test accuracy {acc*100:.2f}% (cnnkit recorded {meta['history'][-1]['test_acc']*100:.2f}%)")
