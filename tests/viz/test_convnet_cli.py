"""``graphc dump`` and ``graphc profile`` on the built-in convnet example (the book's MNIST convnet step)."""
import re

from graphc.cli import main


def test_dump_kernels_shows_each_conv_layer_fused_with_its_bias_and_relu(capsys):
    assert main(["dump", "--example", "mnist-convnet", "--stage", "kernels"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# stage kernels")
    assert "x = placeholder() : float32(batch, 28, 28, 1)  [input]" in out
    forward = re.findall(r"^kernel k\d+_conv_relu\((\w+), (K\d), (c\d)\) -> (conv\d)$", out, re.MULTILINE)
    assert forward == [("x", "K1", "c1", "conv1"), ("pool1", "K2", "c2", "conv2"), ("pool2", "K3", "c3", "conv3")]
    assert re.search(r"^kernel k\d+_max_pool2d\(conv2\) -> pool2$", out, re.MULTILINE)


def test_profile_times_every_kernel_at_a_small_batch(capsys):
    assert main(["profile", "--example", "mnist-convnet", "--dim", "batch=2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# llvm backend, batch=2")
    assert re.search(r"^k\d+_conv_relu +conv\+relu +\d+\.\d+ +\d+\.\d%", out, re.MULTILINE)
    assert re.search(r"^program +\d+ thread", out, re.MULTILINE)
