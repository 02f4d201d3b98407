#!/usr/bin/env python3
"""Reads a .tflite classifier's metadata independently of retrain-ts' TypeScript: Python
flatbuffers (Debian's python3-flatbuffers) with code flatc generates from the repo's .fbs
files, and Python's zipfile for the appended associated files.

Usage: tflite_metadata.py GENERATED_PY_DIR MODEL.tflite
GENERATED_PY_DIR holds `flatc --python --gen-object-api` output for schema.fbs and
metadata_schema.fbs. Prints JSON: the model's input/output tensors, its metadata entries,
the ModelMetadata (object API, as a dict) and the zip's entries.
"""
import json
import sys
import zipfile

sys.path.insert(0, sys.argv[1])
from tflite.Model import Model  # noqa: E402
from tflite.ModelMetadata import ModelMetadata, ModelMetadataT  # noqa: E402
from tflite.TensorType import TensorType  # noqa: E402


def plain(obj):
    """Object-API objects to JSON-able values."""
    if isinstance(obj, bytes):
        return obj.decode("utf-8")
    if isinstance(obj, (list, tuple)):
        return [plain(x) for x in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__dict__"):
        return {k: plain(v) for k, v in vars(obj).items() if v is not None}
    return obj


def main():
    path = sys.argv[2]
    buf = bytearray(open(path, "rb").read())
    if not Model.ModelBufferHasIdentifier(buf, 0):
        sys.exit(f"{path}: no TFL3 identifier")
    model = Model.GetRootAs(buf, 0)
    sg = model.Subgraphs(0)
    type_names = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}

    def tensor(i):
        t = sg.Tensors(i)
        return {"name": t.Name().decode(), "shape": t.ShapeAsNumpy().tolist(), "type": type_names[t.Type()]}

    entries = [(model.Metadata(i).Name().decode(), model.Metadata(i).Buffer()) for i in range(model.MetadataLength())]
    metadata = None
    for name, index in entries:
        if name == "TFLITE_METADATA":
            data = model.Buffers(index).DataAsNumpy().tobytes()
            if not ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
                sys.exit(f"{path}: TFLITE_METADATA has no M001 identifier")
            metadata = plain(ModelMetadataT.InitFromObj(ModelMetadata.GetRootAs(data, 0)))

    files = []
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            if bad is not None:
                sys.exit(f"{path}: {bad} fails its CRC")
            for info in z.infolist():
                files.append({
                    "name": info.filename,
                    "compress_type": info.compress_type,
                    "header_offset": info.header_offset,
                    "flag_bits": info.flag_bits,
                    "text": z.read(info).decode("utf-8"),
                })

    print(json.dumps({
        "inputs": [tensor(sg.Inputs(i)) for i in range(sg.InputsLength())],
        "outputs": [tensor(sg.Outputs(i)) for i in range(sg.OutputsLength())],
        "metadata_entries": entries,
        "metadata": metadata,
        "zip": files,
    }))


if __name__ == "__main__":
    main()
