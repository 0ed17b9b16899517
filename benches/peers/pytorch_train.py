# PyTorch baseline of `cnnkit train`: LeNet-5, the fmnist model or ResNet-8 on Fashion-MNIST,
# batch 64, the recipes of `cnnkit train` (lenet5: SGD Nesterov 0.05; fmnist and resnet8: Adam
# 0.001; weight decay 5e-4, cosine over the epochs), same normalisation.
# Usage: python3 pytorch_train.py lenet|fmnist|resnet8 THREADS EPOCHS [OUT.onnx]
# With OUT.onnx, the trained model is written there (torch.onnx.export, opset 17, batch norm
# kept) with `metadata_props` pixel_mean and pixel_std as cnnkit's export writes them: a
# model trained in PyTorch for `cnnkit eval`, `quantize` and `export` to take.
import gzip, numpy as np, torch, torch.nn as nn, time, sys, math
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
d = "/usr/share/datasets/fashion-mnist/"
def load(n):
    img = np.frombuffer(gzip.open(d + f"{n}-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 1, 28, 28)
    lab = np.frombuffer(gzip.open(d + f"{n}-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    return torch.from_numpy(img.astype(np.float32) / 255), torch.from_numpy(lab.astype(np.int64))
xtr, ytr = load("train"); xte, yte = load("t10k")
m_, s_ = xtr.mean(), xtr.std(); xtr = (xtr - m_) / s_; xte = (xte - m_) / s_
which = sys.argv[1]
class Res(nn.Module):
    # cnnkit's res[BODY | SHORTCUT] (an empty shortcut: the identity)
    def __init__(self, body, shortcut=None):
        super().__init__(); self.body = body; self.shortcut = shortcut or nn.Identity()
    def forward(self, x): return self.body(x) + self.shortcut(x)
def stage(cin, cout, stride):
    body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout))
    return Res(body, nn.Conv2d(cin, cout, 1, stride) if stride != 1 else None)
if which == "resnet8":  # cnnkit's `resnet8` preset (MLPerf Tiny's ResNet-8)
    m = nn.Sequential(nn.Conv2d(1,16,3,1,1), nn.BatchNorm2d(16), nn.ReLU(), stage(16,16,1), nn.ReLU(), stage(16,32,2), nn.ReLU(), stage(32,64,2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64,10))
elif which == "fmnist":
    m = nn.Sequential(nn.Conv2d(1,32,3,1,1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32,64,3,1,1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64,128,3,1,1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25), nn.Linear(1152,128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128,10))
else:
    m = nn.Sequential(nn.Conv2d(1,6,5,1,2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6,16,5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400,120), nn.ReLU(), nn.Linear(120,84), nn.ReLU(), nn.Linear(84,10))
opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
if which in ("fmnist", "resnet8"):  # cnnkit's recipe for these presets
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=5e-4)
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
steps = math.ceil(60000/64) * epochs
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
lossf = nn.CrossEntropyLoss()
for e in range(epochs):
    m.train(); perm = torch.randperm(60000); tl = 0; t0 = time.time()
    for i in range(0, 60000, 64):
        idx = perm[i:i+64]; opt.zero_grad(); l = lossf(m(xtr[idx]), ytr[idx]); l.backward(); opt.step(); sched.step(); tl += l.item() * len(idx)
    dt = time.time() - t0
    m.eval()
    with torch.no_grad(): acc = (m(xte).argmax(1) == yte).float().mean().item()
    print(f"{which} epoch {e+1}: loss {tl/60000:.4f} test {acc*100:.2f}% {60000/dt:.0f} img/s")
if len(sys.argv) > 4:
    import onnx
    out = sys.argv[4]
    torch.onnx.export(m.eval(), xte[:1], out, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=False, dynamo=False)
    g = onnx.load(out)
    for k, v in (("pixel_mean", m_), ("pixel_std", s_)):
        p = g.metadata_props.add(); p.key = k; p.value = repr(float(v))
    onnx.save(g, out)
    print(f"wrote {out}")
