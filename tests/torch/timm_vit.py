"""timm's VisionTransformer (vit_base_patch16_224, vit_large_patch16_224), its
forward transcribed in float64 from timm's vision_transformer.py (Block,
Attention, LayerScale, forward_features, forward_head's pooling), on random
weights under timm's state_dict names; timm itself is no Debian package.

    timm_vit.py OUT IMAGE WIDTH DEPTH HEADS LAYERSCALE POOL HEADLESS

writes OUT/timm.st (the state_dict, float32: fc_norm when POOL is avg, as
timm makes it, else norm; no head when HEADLESS), OUT/crop.png (224 x 224
of IMAGE) and OUT/theirs (the features of the crop, one per line)."""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, __import__("os").path.dirname(__file__) + "/..")
import safetensors  # noqa: E402  (tests/safetensors.py)

out, image = sys.argv[1], sys.argv[2]
D, depth, heads = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
layer_scale, pool, headless = sys.argv[6] == "1", sys.argv[7], sys.argv[8] == "1"
T, d = 197, D // heads
torch.manual_seed(5)


def randn(*shape, scale=0.02):
    return scale * torch.randn(*shape, dtype=torch.float64)


sd = {"cls_token": randn(1, 1, D, scale=0.2), "pos_embed": randn(1, T, D, scale=0.2),
      "patch_embed.proj.weight": randn(D, 3, 16, 16), "patch_embed.proj.bias": randn(D)}


def linear(name, rows, cols):
    sd[name + ".weight"], sd[name + ".bias"] = randn(rows, cols), randn(rows)


def norm(name):
    sd[name + ".weight"], sd[name + ".bias"] = 1 + randn(D, scale=0.2), randn(D, scale=0.1)


for i in range(depth):
    p = "blocks.%d." % i
    norm(p + "norm1")
    linear(p + "attn.qkv", 3 * D, D)
    linear(p + "attn.proj", D, D)
    norm(p + "norm2")
    linear(p + "mlp.fc1", 4 * D, D)
    linear(p + "mlp.fc2", D, 4 * D)
    if layer_scale:
        sd[p + "ls1.gamma"] = 0.5 + torch.rand(D, dtype=torch.float64)
        sd[p + "ls2.gamma"] = 0.5 + torch.rand(D, dtype=torch.float64)
fc_norm = pool == "avg"   # timm: use_fc_norm = global_pool == "avg"
norm("fc_norm" if fc_norm else "norm")
if not headless:
    linear("head", 2, D)
safetensors.write(open(out + "/timm.st", "wb"), {},
                  {k: v.float().numpy() for k, v in sd.items()})
sd = {k: v.float().double() for k, v in sd.items()}   # the file's values

crop = np.asarray(Image.open(image).convert("RGB"))[100:324, 200:424]
Image.fromarray(crop).save(out + "/crop.png")
x = torch.from_numpy(crop / 255.0).permute(2, 0, 1)[None]
x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16)
x = torch.cat([sd["cls_token"], x.flatten(2).transpose(1, 2)], 1) + sd["pos_embed"]
with torch.no_grad():
    for i in range(depth):
        p = "blocks.%d." % i
        y = F.layer_norm(x, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        qkv = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(1, T, 3, heads, d).permute(2, 0, 3, 1, 4)
        a = ((q * d ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        y = (a @ v).transpose(1, 2).reshape(1, T, D)
        y = F.linear(y, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        x = x + (y * sd[p + "ls1.gamma"] if layer_scale else y)
        y = F.layer_norm(x, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        y = F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
        y = F.linear(y, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        x = x + (y * sd[p + "ls2.gamma"] if layer_scale else y)
    if not fc_norm:
        x = F.layer_norm(x, (D,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    f = x[:, 1:].mean(1) if pool == "avg" else x[:, 0]
    if fc_norm:
        f = F.layer_norm(f, (D,), sd["fc_norm.weight"], sd["fc_norm.bias"], 1e-6)
np.savetxt(out + "/theirs", f[0].numpy())
