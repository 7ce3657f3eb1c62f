"""Jobs the integration tests load by module name, and entrypoints that must fail to load."""


def multiply(x: int, y: int) -> int:
    """Multiplies two integers."""
    return x * y


class TakesArgs:
    def perform(self, *values):
        return sum(values)


class Broken:
    def __init__(self):
        raise RuntimeError("the model file is missing")

    def perform(self):
        return 1


class BadMetrics:
    """A job whose metrics() raises: a scrape leaves it out and says so."""

    def perform(self) -> int:
        return 1

    def metrics(self):
        raise RuntimeError("metrics are broken")
