"""Batches by token budget: rows sorted by length so a batch pads little, each batch holding at most
`tokens_per_batch` padded tokens (rows × its longest row) and `max_rows` rows."""


def token_budget_batches(lengths: list[int], tokens_per_batch: int, max_rows: int) -> list[list[int]]:
    """Row indices grouped into batches; every index appears exactly once. Ties keep input order, so the
    batches are a pure function of the lengths (a resumed run encodes the same batches)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[i], 1)  # ascending order: the newest row is the longest
        if current and (longest * (len(current) + 1) > tokens_per_batch or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
