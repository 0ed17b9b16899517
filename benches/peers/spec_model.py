# cnnkit's model spec (src/spec.rs) as a PyTorch module whose state_dict names are cnnkit's:
# layer i of the spec, blocks flattened in spec order (each block's branches one after
# another, then the add or concatenation that joins them), is submodule `str(i)`.
# Usage: from spec_model import build; m = build("resnet8", (1, 28, 28))
import re, torch, torch.nn as nn

PRESETS = {
    "lenet5": "conv(6,5,pad=2) relu maxpool(2) conv(16,5) relu maxpool(2) flatten linear(120) relu linear(84) relu linear(10)",
    "fmnist": "conv(32,3,pad=1) batchnorm relu maxpool(2) conv(64,3,pad=1) batchnorm relu maxpool(2) conv(128,3,pad=1) batchnorm relu maxpool(2) flatten dropout(0.25) linear(128) relu dropout(0.25) linear(10)",
    "resnet8": "conv(16,3,pad=1) bn relu res[conv(16,3,pad=1) bn relu conv(16,3,pad=1) bn] relu res[conv(32,3,stride=2,pad=1) bn relu conv(32,3,pad=1) bn | conv(32,1,stride=2)] relu res[conv(64,3,stride=2,pad=1) bn relu conv(64,3,pad=1) bn | conv(64,1,stride=2)] relu gap flatten linear(10)",
}

class Add(nn.Module):
    def forward(self, *xs): return sum(xs[1:], xs[0])

class Cat(nn.Module):
    def forward(self, *xs): return torch.cat(xs, 1)

class Graph(nn.Module):
    def __init__(self, mods, inputs):
        super().__init__()
        for i, m in enumerate(mods): self.add_module(str(i), m)
        self.inputs = inputs
    def forward(self, x):
        vals = [x]
        for i, ins in enumerate(self.inputs):
            vals.append(getattr(self, str(i))(*[vals[v] for v in ins]))
        return vals[-1]

def tokens(spec):
    return re.findall(r"[a-z0-9]+\[|\||\]|[a-z0-9]+(?:\([^)]*\))?", spec.lower())

def build(spec, shape):
    spec = PRESETS.get(spec.strip(), spec)
    toks = tokens(spec); mods, inputs = [], []; pos = [0]
    def layer(tok, shape):
        c, h, w = shape if len(shape) == 3 else (shape[0], None, None)
        name, _, args = tok.partition("(")
        args = args.rstrip(")").split(",") if args else []
        p = [a for a in args if "=" not in a]; kw = dict(a.split("=") for a in args if "=" in a)
        if name in ("conv", "conv2d"):
            o, k = int(p[0]), int(p[1]); s = int(kw.get("stride", 1)); pd = int(kw.get("pad", 0)); g = int(kw.get("groups", 1))
            ho = (h + 2 * pd - k) // s + 1; wo = (w + 2 * pd - k) // s + 1
            return nn.Conv2d(c, o, k, s, pd, groups=g), (o, ho, wo)
        if name in ("maxpool", "avgpool"):
            k = int(p[0]); s = int(kw.get("stride", k)); pd = int(kw.get("pad", 0))
            m = nn.MaxPool2d(k, s, pd) if name == "maxpool" else nn.AvgPool2d(k, s, pd)
            return m, (c, (h + 2 * pd - k) // s + 1, (w + 2 * pd - k) // s + 1)
        if name in ("batchnorm", "bn"): return nn.BatchNorm2d(c), shape
        if name == "relu": return nn.ReLU(), shape
        if name == "relu6": return nn.ReLU6(), shape
        if name == "tanh": return nn.Tanh(), shape
        if name == "sigmoid": return nn.Sigmoid(), shape
        if name == "gelu": return nn.GELU(), shape
        if name == "leakyrelu": return nn.LeakyReLU(float(p[0]) if p else 0.01), shape
        if name in ("gap", "globalavgpool"): return nn.AdaptiveAvgPool2d(1), (c, 1, 1)
        if name == "flatten":
            n = 1
            for d in shape: n *= d
            return nn.Flatten(), (n,)
        if name == "dropout": return nn.Dropout(float(p[0]) if p else 0.5), shape
        if name in ("linear", "fc"): return nn.Linear(shape[0], int(p[0])), (int(p[0]),)
        raise ValueError(tok)
    def seq(frm, shape):
        while pos[0] < len(toks) and toks[pos[0]] not in ("|", "]"):
            t = toks[pos[0]]; pos[0] += 1
            if t.endswith("["):
                ends = []
                while True:
                    ends.append(seq(frm, shape))
                    t2 = toks[pos[0]]; pos[0] += 1
                    if t2 == "]": break
                if len(ends) == 1: ends.append((frm, shape))
                if t == "res[": out = ends[0][1]
                else:
                    out = (sum(e[1][0] for e in ends),) + tuple(ends[0][1][1:])
                mods.append(Add() if t == "res[" else Cat()); inputs.append([e[0] for e in ends])
                shape = out
            else:
                m, shape = layer(t, shape); mods.append(m); inputs.append([frm])
            frm = len(mods)
        return frm, shape
    seq(0, tuple(shape))
    return Graph(mods, inputs)
