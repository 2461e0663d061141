"""Writes two tiny ONNX models in the input/output layout of the `ocrs` crate's models,
for testing our ocrs engine without its real weights (which cannot be fetched here).

- text-detection.onnx: input [1, 1, 96, 192] (greyscale, -0.5 = black .. 0.5 = white),
  output [1, 1, 96, 192] text probability = sigmoid(-40 * pixel): dark pixels are text.
- text-recognition.onnx: input [N, 1, 64, W], output [W/4, N, 97] log-probabilities
  (ocrs's default alphabet plus the CTC blank at 0): every 4-pixel column scores the
  blank when bright and 'A' when dark, so a dark bar reads as "A".

Usage: peers-venv/bin/python benches/peers/ocrs_tiny_models.py llamafarm-core/tests/fixtures/ocrs-tiny
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ALPHABET = " 0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~EABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
out = sys.argv[1]
os.makedirs(out, exist_ok=True)

det = helper.make_graph(
    [
        helper.make_node("Mul", ["input", "k"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["output"]),
    ],
    "tiny-ocrs-detection",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 96, 192])],
    [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 96, 192])],
    [numpy_helper.from_array(np.array([-40.0], dtype=np.float32), "k")],
)
onnx.save(helper.make_model(det, opset_imports=[helper.make_opsetid("", 17)]), os.path.join(out, "text-detection.onnx"))

classes = len(ALPHABET) + 1
a = ALPHABET.index("A") + 1
w = np.zeros((classes, 1, 64, 4), dtype=np.float32)
b = np.full((classes,), -50.0, dtype=np.float32)
w[0] = 40.0 / (64 * 4)
b[0] = 0.0
w[a] = -40.0 / (64 * 4)
b[a] = 0.0
rec = helper.make_graph(
    [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], kernel_shape=[64, 4], strides=[64, 4]),
        helper.make_node("Squeeze", ["conv", "axis"], ["seq"]),
        helper.make_node("Transpose", ["seq"], ["tnc"], perm=[2, 0, 1]),
        helper.make_node("LogSoftmax", ["tnc"], ["output"], axis=2),
    ],
    "tiny-ocrs-recognition",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 64, "width"])],
    [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["seq", "batch", classes])],
    [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array([2], dtype=np.int64), "axis")],
)
onnx.save(helper.make_model(rec, opset_imports=[helper.make_opsetid("", 17)]), os.path.join(out, "text-recognition.onnx"))
print("wrote", out)
