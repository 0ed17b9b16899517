# Loads a cnnkit checkpoint into the equivalent nn.Sequential with load_state_dict(strict=True)
# and evaluates it on the Fashion-MNIST test set. Usage: python3 check_checkpoint.py FILE
import sys, gzip, json, struct, numpy as np, torch, torch.nn as nn
from safetensors.torch import load_file
from safetensors import safe_open
path = sys.argv[1]
with safe_open(path, "pt") as f:
    meta = json.loads(f.metadata()["cnnkit"])
spec = meta["spec"]
def build(spec):
    layers = []; c = 1; h = w = 28; flat = None
    import re
    for tok in re.findall(r"[a-z]+(?:\([^)]*\))?", spec):
        name, _, args = tok.partition("(")
        args = args.rstrip(")").split(",") if args else []
        pos = [a for a in args if "=" not in a]; kw = dict(a.split("=") for a in args if "=" in a)
        if name == "conv":
            o, k = int(pos[0]), int(pos[1]); s = int(kw.get("stride", 1)); p = int(kw.get("pad", 0))
            layers.append(nn.Conv2d(c, o, k, s, p)); c = o; h = (h + 2*p - k)//s + 1; w = h
        elif name == "maxpool":
            k = int(pos[0]); layers.append(nn.MaxPool2d(k)); h //= k; w = h
        elif name == "relu": layers.append(nn.ReLU())
        elif name == "batchnorm": layers.append(nn.BatchNorm2d(c))
        elif name == "flatten": layers.append(nn.Flatten()); flat = c*h*w
        elif name == "dropout": layers.append(nn.Dropout(float(pos[0])))
        elif name == "linear":
            o = int(pos[0]); layers.append(nn.Linear(flat, o)); flat = o
        else: raise ValueError(tok)
    return nn.Sequential(*layers)
m = build(spec)
m.load_state_dict(load_file(path), strict=True)
m.eval()
d = "/usr/share/datasets/fashion-mnist/"
img = np.frombuffer(gzip.open(d + "t10k-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 1, 28, 28)
lab = np.frombuffer(gzip.open(d + "t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
x = (torch.from_numpy(img.astype(np.float32)) / 255 - meta["pixel_mean"]) / meta["pixel_std"]
with torch.no_grad():
    acc = (m(x).argmax(1).numpy() == lab).mean()
print(f"PyTorch {torch.__version__}: load_state_dict(strict=True) ok; test accuracy {acc*100:.2f}% (cnnkit recorded {meta['history'][-1]['test_acc']*100:.2f}%)")
