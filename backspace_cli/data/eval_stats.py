"""The statistics of an A/B evaluation: the Wilson interval of one accuracy, and a paired difference of two with
its interval and exact McNemar test."""
import math

Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


def wilson(correct: int, total: int) -> tuple[float, float]:
    """The Wilson score interval: honest at small counts and at accuracies near 0 or 1."""
    if total == 0:
        return (0.0, 0.0)
    p = correct / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return (low, high)


def paired_difference(wins: int, losses: int, n: int) -> tuple[float, tuple[float, float]]:
    """The accuracy gain of A over B on the same n tasks, from the tasks only A got right (wins) and only B
    got right (losses), with its 95% interval."""
    if n == 0:
        return 0.0, (0.0, 0.0)
    gain = (wins - losses) / n
    half = Z95 * math.sqrt(max(0.0, wins + losses - (wins - losses) ** 2 / n)) / n
    return gain, (gain - half, gain + half)


def mcnemar_p(wins: int, losses: int) -> float:
    """The exact McNemar test: how often chance alone would split the discordant pairs so unevenly."""
    discordant = wins + losses
    tail = sum(math.comb(discordant, k) for k in range(min(wins, losses) + 1)) / 2**discordant
    return min(1.0, 2 * tail)
