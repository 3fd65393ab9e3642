import random

from vs_sonar_dataset.embed.batching import token_budget_batches


def test_batches_cover_every_row_once_within_budget():
    rng = random.Random(1)
    lengths = [rng.randint(1, 120) for _ in range(500)]
    batches = token_budget_batches(lengths, tokens_per_batch=1000, max_rows=32)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        assert len(batch) <= 32
        assert max(lengths[i] for i in batch) * len(batch) <= 1000
    # length-sorted: each batch's rows are no longer than the next batch's shortest row
    for a, b in zip(batches, batches[1:]):
        assert max(lengths[i] for i in a) <= min(lengths[i] for i in b)


def test_overlong_row_gets_its_own_batch_and_ties_keep_input_order():
    batches = token_budget_batches([5, 5, 500, 5], tokens_per_batch=100, max_rows=8)
    assert batches == [[0, 1, 3], [2]]
