#!/usr/bin/env python3
"""Runs a .tflite model on Arm NN's TFLite parser and CpuRef backend: an independent TFLite
runtime (Debian's python3-pyarmnn, libarmnntfliteparser22, libarmnn-cpuref-backend22).

Usage: armnn_run.py MODEL.tflite INPUT.raw
INPUT.raw holds one or more inputs back to back, in the model input's own type (float32,
uint8 or int8, little-endian) and shape; the batch is run one input at a time.
Prints JSON: {"input": {"shape", "dtype", "scale", "zero_point"}, "output": {...},
"outputs": [[...], ...]} with one flat list of output values per input (quantized outputs
as their integer values).
"""
import json
import sys

import numpy as np
import pyarmnn as ann

DTYPES = {
    ann.DataType_Float32: np.float32,
    ann.DataType_QAsymmU8: np.uint8,
    ann.DataType_QAsymmS8: np.int8,
    ann.DataType_QSymmS8: np.int8,
}


def describe(info):
    return {
        "shape": list(info.GetShape()),
        "dtype": np.dtype(DTYPES[info.GetDataType()]).name,
        "scale": info.GetQuantizationScale(),
        "zero_point": info.GetQuantizationOffset(),
    }


def main():
    model, raw = sys.argv[1], sys.argv[2]
    parser = ann.ITfLiteParser()
    network = parser.CreateNetworkFromBinaryFile(model)
    inputs = parser.GetSubgraphInputTensorNames(0)
    outputs = parser.GetSubgraphOutputTensorNames(0)
    if len(inputs) != 1 or len(outputs) != 1:
        sys.exit(f"{model}: expected one input and one output, got {inputs} and {outputs}")
    in_binding = parser.GetNetworkInputBindingInfo(0, inputs[0])
    out_binding = parser.GetNetworkOutputBindingInfo(0, outputs[0])

    runtime = ann.IRuntime(ann.CreationOptions())
    optimized, _ = ann.Optimize(network, [ann.BackendId("CpuRef")], runtime.GetDeviceSpec(), ann.OptimizerOptions())
    net_id, _ = runtime.LoadNetwork(optimized)

    in_info = in_binding[1]
    data = np.fromfile(raw, dtype=DTYPES[in_info.GetDataType()])
    size = in_info.GetNumElements()
    if data.size == 0 or data.size % size != 0:
        sys.exit(f"{raw}: {data.size} values is not a whole number of inputs of {size}")
    results = []
    for one in data.reshape(-1, size):
        in_tensors = ann.make_input_tensors([in_binding], [one])
        out_tensors = ann.make_output_tensors([out_binding])
        runtime.EnqueueWorkload(net_id, in_tensors, out_tensors)
        out = ann.workload_tensors_to_ndarray(out_tensors)[0]
        results.append(out.reshape(-1).tolist())
    print(json.dumps({"input": describe(in_info), "output": describe(out_binding[1]), "outputs": results}))


if __name__ == "__main__":
    main()
