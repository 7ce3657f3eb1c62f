"""The job of `npm run bench`'s w5: the same perform the function-service peers serve."""


def perform(x: float, y: float) -> float:
    return x * y
