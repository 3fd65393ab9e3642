import pyarrow as pa
import pyarrow.compute as pc

from vs_sonar_dataset.core.digests import add_row_digests, row_digests
from vs_sonar_dataset.core.shards import read_table


def test_equal_rows_have_equal_digests_and_any_change_shows(small_pool):
    batch = read_table(small_pool).slice(0, 50).combine_chunks().to_batches()[0]
    digests = row_digests(batch)
    assert len(set(digests)) == 50 and all(len(d) == 16 for d in digests)
    assert row_digests(batch.slice(10, 5)) == digests[10:15]  # a row's digest does not depend on its batch
    vectors = batch.column("embedding")
    flipped = pa.FixedSizeListArray.from_arrays(pc.negate(vectors.flatten()), type=vectors.type)
    changed = batch.set_column(batch.schema.get_field_index("embedding"), "embedding", flipped)
    assert all(a != b for a, b in zip(row_digests(changed), digests))
    seen = {}
    add_row_digests(seen, batch)
    assert seen == dict(zip(batch.column("id").to_pylist(), digests))
