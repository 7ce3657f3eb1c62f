"""A Racetrack-style job for the tests: a class whose __init__ loads a file once."""
import json
import math
import os
import time
from typing import Dict, List, Optional

import helper  # a module beside this file: the job's folder is importable


class Model:
    """Scales products by a weight it loads at start.

    The weight comes from weights.json, read relative to this folder.
    """

    instances = 0

    def __init__(self) -> None:
        with open("weights.json") as f:
            self.scale = json.load(f)["scale"]
        Model.instances += 1

    def perform(self, x: float, y: float = 2.0, tags: Optional[List[str]] = None) -> Dict[str, object]:
        """Multiplies x and y, then scales.

        :param x: the first factor
        :param y: the second factor
        :return: the product, and where it ran
        """
        print(f"performing {x} * {y}")
        return {"product": helper.times(x, y) * self.scale, "host": os.environ["KS_NODE_NAME"], "instances": Model.instances, "tags": tags}

    def explain(self, x: float) -> Dict[str, float]:
        """Says how much x weighs."""
        return {"x_importance": x / (x + 1)}

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def odd(self, kind: str):
        if kind == "nan":
            return math.nan
        if kind == "bytes":
            return b"\x00\x01"
        if kind == "bigint":
            return 3 * 2**62
        import numpy as np

        if kind == "matrix":
            return np.arange(6, dtype=np.int32).reshape(2, 3)
        if kind == "bools":
            return np.array([True, False])
        if kind == "strings":
            return np.array(["a", "bc"])
        return np.array([1 + 2j])

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def whoami(self) -> Dict[str, int]:
        """The interpreter's pid, and how often this interpreter made a Model."""
        return {"pid": os.getpid(), "instances": Model.instances}

    def docs_input_example(self) -> dict:
        return {"x": 3, "y": 4}

    def auxiliary_endpoints(self):
        return {"/explain": self.explain, "/fail": self.fail, "/odd": self.odd, "/sleep": self.sleep, "/whoami": self.whoami}

    def static_endpoints(self):
        return {"/manifest": ("weights.json", "application/json"), "/site": "site"}

    def metrics(self):
        return [{"name": "model_scale", "value": self.scale, "description": "the loaded scale"}]
