"""What an exported model says about itself: its class names (and where they came from), the
input size it was exported and checked at, and whether its boxes are decoded.

ONNX files carry it as ``metadata_props`` (string key/value pairs any ONNX tool shows), ``.pt2``
and TorchScript files as a JSON extra file, ``EXTRA_FILE``, with the same keys. Lists are JSON.
"""

import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

__all__ = ["EXTRA_FILE", "ModelInfo", "onnx_io_shapes", "read_onnx_info", "write_onnx_info"]

EXTRA_FILE = "yolox_attn.json"
PRODUCER = "yolox-attn"
# How the demo tools feed the model (YOLOX's ValTransform, legacy=False): said in the file so
# that code outside this package can prepare images the same way.
PREPROCESSING = ("BGR uint8 image, resized by min(H/h, W/w) keeping its aspect ratio, placed top-left on a "
                 "HxW canvas of 114, as float32 CHW without normalisation")


@dataclass(frozen=True)
class ModelInfo:
    """The facts an exported file carries (see the module's docstring)."""

    class_names: Tuple[str, ...]
    input_size: Tuple[int, int]  # (height, width) of the export and of its check
    decoded: bool  # boxes as (cx, cy, w, h) input pixels; else raw per-anchor outputs, as YOLOX exports
    strides: Tuple[int, ...] = (8, 16, 32)  # the head's; decoding raw outputs needs them
    names_source: str = ""
    attention: str = ""
    exp_name: str = ""
    dynamic: bool = False  # batch, height and width may differ from the export's
    names_guessed: bool = False  # the names were guessed from the class count (see yolox_attn.class_names)

    def to_props(self) -> Dict[str, str]:
        """String key/value pairs (ONNX ``metadata_props``, the JSON extra file)."""
        return {"producer": PRODUCER, "class_names": json.dumps(list(self.class_names)),
                "names_source": self.names_source, "names_guessed": json.dumps(self.names_guessed),
                "num_classes": str(len(self.class_names)),
                "input_size": json.dumps(list(self.input_size)), "decoded": json.dumps(self.decoded),
                "strides": json.dumps(list(self.strides)), "dynamic": json.dumps(self.dynamic),
                "attention": self.attention, "exp_name": self.exp_name, "preprocessing": PREPROCESSING}

    @classmethod
    def from_props(cls, props: Dict[str, str], where: str) -> "ModelInfo":
        """The inverse of ``to_props``; ValueError naming ``where`` and the key when one is missing or bad."""
        def value(key: str):
            try:
                return json.loads(props[key])
            except KeyError:
                raise ValueError(f"{where}: no {key!r} in its metadata") from None
            except ValueError:
                raise ValueError(f"{where}: metadata {key!r} is not JSON: {props[key]!r}") from None

        names, size, strides = value("class_names"), value("input_size"), value("strides")
        if not (isinstance(names, list) and all(isinstance(s, str) for s in names)):
            raise ValueError(f"{where}: metadata 'class_names' must be a list of strings, got {names!r}")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
            raise ValueError(f"{where}: metadata 'input_size' must be [height, width], got {size!r}")
        return cls(tuple(names), (size[0], size[1]), bool(value("decoded")), tuple(int(s) for s in strides),
                   props.get("names_source", ""), props.get("attention", ""), props.get("exp_name", ""),
                   bool(json.loads(props.get("dynamic", "false"))), bool(json.loads(props.get("names_guessed", "false"))))

    def to_json(self) -> str:
        return json.dumps(self.to_props(), indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> "ModelInfo":
        try:
            props = json.loads(text)
        except ValueError:
            raise ValueError(f"{where}: its {EXTRA_FILE} is not JSON") from None
        return cls.from_props(props, where)


def write_onnx_info(path: str, info: ModelInfo) -> None:
    """Set ``info`` as ``metadata_props`` of the ONNX file at ``path`` (in place; other keys kept)."""
    import onnx

    model = onnx.load(path)
    props = info.to_props()
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, val in props.items():
        model.metadata_props.add(key=key, value=val)
    onnx.save(model, path)


def read_onnx_info(path: str) -> Optional[ModelInfo]:
    """The ``ModelInfo`` of an ONNX file, or None when it has none (a file from another exporter)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    if "class_names" not in props:
        return None
    return ModelInfo.from_props(props, path)


def onnx_io_shapes(path: str) -> Tuple[List[Union[int, str]], List[Union[int, str]]]:
    """The first input's and first output's shapes in an ONNX file: sizes, or the names of dynamic axes."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph

    def dims(value) -> List[Union[int, str]]:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]

    return dims(graph.input[0]), dims(graph.output[0])
