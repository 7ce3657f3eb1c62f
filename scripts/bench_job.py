"""The job the demo serves over HTTP and `npm run bench`'s w5 loads: the same perform the
function-service peers serve."""


def perform(x: float, y: float) -> float:
    return x * y
